"""Phrase -> token positions in a conditioning made of 77-token chunks.

Chunk c holds [BOS] + up to 75 content tokens + [EOS/padding], so content token j (0-based) of chunk c
sits at position ``c * 77 + 1 + j``. A phrase may straddle a chunk boundary (BREAK, long prompts), so
the search runs over the content tokens of all chunks joined.
"""
from __future__ import annotations

from typing import Callable, Collection, Sequence

CHUNK_LENGTH = 77


class PhraseNotFound(ValueError):
    """The phrase's tokens do not occur in the prompt; the message lists what the prompt contains."""


def content_positions(chunks: Sequence[Sequence[int]]) -> list[tuple[int, int]]:
    """(token id, position) for every content token, chunks given as content ids (no BOS/EOS/padding)."""
    return [(tok, c * CHUNK_LENGTH + 1 + j) for c, chunk in enumerate(chunks) for j, tok in enumerate(chunk)]


def find_phrase(chunks: Sequence[Sequence[int]], phrase_ids: Sequence[int]) -> list[list[int]]:
    """Positions of every occurrence of ``phrase_ids`` (each occurrence a list of positions)."""
    flat = content_positions(chunks)
    n = len(phrase_ids)
    if n == 0:
        return []
    ids = [tok for tok, _ in flat]
    target = list(phrase_ids)
    return [[pos for _, pos in flat[i:i + n]] for i in range(len(ids) - n + 1) if ids[i:i + n] == target]


def phrase_positions(chunks: Sequence[Sequence[int]], phrase: str, encode: Callable[[str], Sequence[int]],
                     decode: Callable[[Sequence[int]], str] | None = None) -> list[int]:
    """All positions of all occurrences of ``phrase`` (sorted, unique); PhraseNotFound if none."""
    phrase_ids = list(encode(phrase))
    if not phrase_ids:
        raise PhraseNotFound(f"phrase {phrase!r} has no tokens")
    found = find_phrase(chunks, phrase_ids)
    if not found:
        raise PhraseNotFound(f"phrase {phrase!r} is not in the prompt; the prompt has: {describe(chunks, decode)}")
    return sorted({p for occurrence in found for p in occurrence})


def describe(chunks: Sequence[Sequence[int]], decode: Callable[[Sequence[int]], str] | None) -> str:
    """Human text of the prompt's tokens, for error messages."""
    ids = [tok for chunk in chunks for tok in chunk]
    text = decode(ids) if decode is not None else None
    if text is None:  # no decoder for this tokenizer: show the ids
        return "token ids " + " ".join(map(str, ids)) if ids else "(nothing)"
    words = text.split()
    text = " ".join(words)
    return repr(text if len(text) <= 200 else text[:197] + "...") if words else "(nothing)"


def chunk_contents(chunk_tokens: Sequence[Sequence[int]], pad_ids: Collection[int]) -> list[list[int]]:
    """Content token ids of each 77-token chunk as a WebUI tokenizer builds them (BOS first, EOS last, padded
    with ``pad_ids``): BOS, EOS and the trailing padding dropped."""
    out = []
    for chunk in chunk_tokens:
        ids = list(chunk[1:-1])
        while ids and ids[-1] in pad_ids:
            ids.pop()
        out.append(ids)
    return out
