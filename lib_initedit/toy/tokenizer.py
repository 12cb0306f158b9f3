"""Word-level tokenizer over the toy caption vocabulary.

Ids 0 and 1 are BOS and EOS; content words follow. A conditioning chunk is 77 ids:
BOS, the content ids, then EOS padding (as SD1's CLIP pads with EOS).
"""
from __future__ import annotations

import re

COLOURS = ("red", "green", "blue", "yellow", "white")
SHAPES = ("circle", "square", "triangle")
BOS, EOS = 0, 1
CHUNK = 77
WORDS = ("<bos>", "<eos>", "a", "and") + COLOURS + SHAPES
_ID = {w: i for i, w in enumerate(WORDS)}


class Tokenizer:
    vocab = WORDS
    bos, eos, chunk = BOS, EOS, CHUNK

    def encode(self, text: str) -> list[int]:
        """Content ids of `text` (no BOS/EOS). Unknown words raise ValueError."""
        words = re.findall(r"[a-z]+", text.lower())
        bad = [w for w in words if w not in _ID or _ID[w] < 2]
        if bad:
            raise ValueError(f"words not in the toy vocabulary: {bad}")
        return [_ID[w] for w in words]

    def decode(self, ids) -> str:
        return " ".join(WORDS[int(i)] for i in ids if int(i) not in (BOS, EOS))

    def chunk_ids(self, text: str) -> list[int]:
        """BOS + content + EOS padding to 77 ids."""
        ids = self.encode(text)[: CHUNK - 2]
        return [BOS] + ids + [EOS] * (CHUNK - 1 - len(ids))

    def phrase_positions(self, text: str, phrase: str) -> list[int]:
        """Chunk positions (BOS = 0) of `phrase` in `text`, found the way the extension finds them."""
        from ..layout.tokens import phrase_positions  # the library's own lookup: the toy world tests it too

        return phrase_positions([self.encode(text)], phrase, self.encode, self.decode)
