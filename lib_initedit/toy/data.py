"""Deterministic toy scenes: 1-3 coloured shapes on a dark gray background.

Positions and sizes are drawn independently of the caption, so where an object appears is decided
by the initial noise at sampling time. Objects may touch, overlap and sit at (or be cut by) the image border. Images are float tensors in [-1, 1], shape (3, 32, 32).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .tokenizer import COLOURS, SHAPES

SIZE = 32
BACKGROUND = (0.25, 0.25, 0.25)
RGB = {
    "red": (0.92, 0.12, 0.12),
    "green": (0.12, 0.78, 0.18),
    "blue": (0.18, 0.30, 0.95),
    "yellow": (0.95, 0.88, 0.12),
    "white": (0.96, 0.96, 0.96),
}
_SS = 4  # supersampling factor for anti-aliased edges


@dataclass
class Obj:
    colour: str
    shape: str
    cx: float
    cy: float
    r: float

    @property
    def phrase(self) -> str:
        return f"{self.colour} {self.shape}"

    @property
    def box(self) -> tuple[float, float, float, float]:
        return (self.cx - self.r, self.cy - self.r, self.cx + self.r, self.cy + self.r)


@dataclass
class Scene:
    objects: list[Obj]
    caption: str
    image: torch.Tensor  # (3, S, S) in [-1, 1]


def caption_for(objects) -> str:
    return " and ".join(f"a {o.colour} {o.shape}" for o in objects)


# Scene layout. Half the scenes keep their objects apart (a gap of at least 1 px); in the others objects may
# touch and overlap (centres at least OVERLAP x the sum of the radii apart; later objects are drawn on top).
# Centres may lie up to (1 - BORDER) x the radius beyond the inner margin, so an object can be cut by the
# image border; a share of the objects are pushed against a border (their centre within r of it, at least
# ``edge_cut`` x r in), and in the "corners" style another share into a corner (within r of two borders).
APART_P = 0.5
OVERLAP = 0.65
BORDER = 0.7


@dataclass(frozen=True)
class SceneStyle:
    at_border_p: float  # objects pushed against one border
    at_corner_p: float  # objects pushed into a corner
    edge_cut: float     # how far in the centre of a pushed object lies, at least (x r)


# "touching": the scenes of the second training stage; "corners": the third (objects as small boxes at the
# corners and edges of a picture ask for them: cut deeper by the border, and some in a corner)
STYLES = {"touching": SceneStyle(0.25, 0.0, BORDER), "corners": SceneStyle(0.25, 0.15, 0.3)}
DEFAULT_STYLE = "corners"


def random_objects(rng: np.random.Generator, n: int | None = None, size: int = SIZE,
                   style: str = DEFAULT_STYLE) -> list[Obj]:
    st = STYLES[style]
    n = int(rng.integers(1, 4)) if n is None else n
    colours = rng.choice(len(COLOURS), n, replace=False)
    apart = rng.random() < APART_P
    objs: list[Obj] = []
    for k in range(n):
        for _ in range(100):
            r = float(rng.uniform(3.5, 7.0))
            cx, cy = rng.uniform(BORDER * r, size - BORDER * r, 2)
            u = rng.random()
            if u < st.at_border_p:  # against one border: the centre within r of it
                side, d = int(rng.integers(0, 4)), float(rng.uniform(st.edge_cut * r, r))
                if side < 2:
                    cx = d if side == 0 else size - d
                else:
                    cy = d if side == 2 else size - d
            elif u < st.at_border_p + st.at_corner_p:  # into a corner: within r of two borders
                dx, dy = rng.uniform(st.edge_cut * r, r, 2)
                cx = float(dx) if rng.random() < 0.5 else size - float(dx)
                cy = float(dy) if rng.random() < 0.5 else size - float(dy)
            gap = (lambda o: np.hypot(cx - o.cx, cy - o.cy) > r + o.r + 1.0) if apart else \
                (lambda o: np.hypot(cx - o.cx, cy - o.cy) > OVERLAP * (r + o.r))
            if all(gap(o) for o in objs):
                break
        objs.append(Obj(COLOURS[colours[k]], SHAPES[int(rng.integers(0, 3))], float(cx), float(cy), r))
    return objs


def shape_alpha(o: Obj, size: int = SIZE) -> np.ndarray:
    """Anti-aliased coverage (size, size) of one object."""
    n = size * _SS
    c = (np.arange(n) + 0.5) / _SS
    x, y = np.meshgrid(c, c)
    if o.shape == "circle":
        m = (x - o.cx) ** 2 + (y - o.cy) ** 2 <= o.r ** 2
    elif o.shape == "square":
        s = o.r * 0.9
        m = (np.abs(x - o.cx) <= s) & (np.abs(y - o.cy) <= s)
    else:  # triangle, apex up
        top, bot = o.cy - o.r, o.cy + o.r
        m = (y >= top) & (y <= bot) & (np.abs(x - o.cx) <= o.r * (y - top) / (bot - top))
    return m.reshape(size, _SS, size, _SS).mean(axis=(1, 3))


def render(objects, size: int = SIZE) -> torch.Tensor:
    img = np.empty((3, size, size), dtype=np.float64)
    img[:] = np.asarray(BACKGROUND)[:, None, None]
    for o in objects:
        a = shape_alpha(o, size)[None]
        img = img * (1 - a) + np.asarray(RGB[o.colour])[:, None, None] * a
    return torch.from_numpy(img * 2 - 1).float()


def make_scene(seed: int, n: int | None = None, style: str = DEFAULT_STYLE) -> Scene:
    rng = np.random.default_rng(seed)
    objs = random_objects(rng, n, style=style)
    order = rng.permutation(len(objs))
    caption = caption_for([objs[i] for i in order])
    return Scene(objs, caption, render(objs))


def batch(seeds, style: str = DEFAULT_STYLE) -> tuple[torch.Tensor, list[str]]:
    scenes = [make_scene(int(s), style=style) for s in seeds]
    return torch.stack([s.image for s in scenes]), [s.caption for s in scenes]


def random_prompt(rng: np.random.Generator, n: int) -> list[tuple[str, str]]:
    """n (colour, shape) pairs with distinct colours, for benchmark prompts."""
    colours = rng.choice(len(COLOURS), n, replace=False)
    return [(COLOURS[c], SHAPES[int(rng.integers(0, 3))]) for c in colours]
