import pytest

from lib_initedit.layout.tokens import PhraseNotFound, find_phrase, phrase_positions

VOCAB = {}


def encode(text):
    return [VOCAB.setdefault(w, len(VOCAB) + 10) for w in text.lower().split()]


def decode(ids):
    inv = {v: k for k, v in VOCAB.items()}
    return " ".join(inv.get(i, "?") for i in ids)


def test_single_chunk_positions_skip_bos():
    chunks = [encode("a cat and a red car")]
    assert phrase_positions(chunks, "cat", encode) == [2]
    assert phrase_positions(chunks, "red car", encode) == [5, 6]


def test_all_occurrences():
    chunks = [encode("a cat and a cat")]
    assert find_phrase(chunks, encode("cat")) == [[2], [5]]
    assert phrase_positions(chunks, "cat", encode) == [2, 5]


def test_second_chunk_offsets():
    chunks = [encode("a photo"), encode("of a dog")]
    assert phrase_positions(chunks, "dog", encode) == [77 + 3]


def test_phrase_split_across_chunks():
    chunks = [encode("a big red"), encode("car on grass")]
    assert phrase_positions(chunks, "red car", encode) == [3, 78]


def test_not_found_lists_the_prompt():
    chunks = [encode("a cat on a sofa")]
    with pytest.raises(PhraseNotFound) as err:
        phrase_positions(chunks, "dog", encode, decode)
    assert "'dog' is not in the prompt" in str(err.value) and "a cat on a sofa" in str(err.value)


def test_not_found_without_a_decoder_shows_ids():
    chunks = [encode("a cat")]
    with pytest.raises(PhraseNotFound, match="token ids"):
        phrase_positions(chunks, "dog", encode, lambda ids: None)


def test_chunk_contents_drop_bos_eos_and_trailing_padding_only():
    from lib_initedit.layout.tokens import chunk_contents

    bos, eos, pad = 49406, 49407, 0
    chunks = [[bos, 5, 6, pad, 7, eos, pad, pad], [bos, 8, eos, eos, eos]]
    assert chunk_contents(chunks, {eos, pad}) == [[5, 6, pad, 7], [8]]
    assert chunk_contents([[bos, eos]], {eos}) == [[]]
