"""What each image of a generation gets: its resolved reroll seeds (vary "reroll": seed + image index) and its
own infotext value."""
from __future__ import annotations

import dataclasses
import random

from ..spec import RANDOM_SEED_LIMIT, InitEditSpec, wrap_seed


def batch_first_index(p) -> int:
    return int(getattr(p, "iteration", 0)) * int(getattr(p, "batch_size", 1))


def resolve_seeds(spec: InitEditSpec) -> InitEditSpec:
    """-1 -> a random seed, as the WebUI resolves its own seed."""
    regions = tuple(r if r.seed >= 0 else dataclasses.replace(r, seed=int(random.randrange(RANDOM_SEED_LIMIT)))
                    for r in spec.reroll)
    return spec.replace(reroll=regions)


def spec_for_image(spec: InitEditSpec, index: int) -> InitEditSpec:
    """The spec image ``index`` was made with: with vary "reroll" its reroll seeds are seed + index."""
    if spec.vary != "reroll" or not spec.reroll:
        return spec
    return spec.replace(reroll=tuple(dataclasses.replace(r, seed=wrap_seed(r.seed + index)) for r in spec.reroll))


def infotext_image_index(count: int, p=None, index=0, all_prompts=None, all_seeds=None, **_) -> int:
    """The global image index of a create_infotext call (A1111 1.9+ calls per-image values with locals()).

    Inside the batch loop it is called with the batch's own prompt and seed lists and a batch-local index
    (reForge passes a cleaned copy of the prompts there, but the batch's own ``p.seeds``).
    """
    in_batch = p is not None and (all_prompts is getattr(p, "prompts", None)
                                  or (all_seeds is not None and all_seeds is getattr(p, "seeds", None)))
    if in_batch:
        index = batch_first_index(p) + int(index or 0)
    return max(0, min(int(index or 0), count - 1))


class PerImageInfotext(str):
    """InitEdit's infotext value: ``create_infotext`` calls it for each image (A1111 1.9+ per-image values); a
    WebUI that JSON-dumps ``extra_generation_params`` without ``default=`` (Forge Classic's ``Processed.js``)
    writes it as the generation's spec text instead of failing."""

    def __new__(cls, text: str, per_image):
        obj = super().__new__(cls, text)
        obj.per_image = per_image
        return obj

    def __call__(self, **kw) -> str:
        return self.per_image(**kw)
