"""Tokenizers: round trips, <unk> and <eos> handling, vocabulary limits, save/load."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from charrnn.core.config import TokenizerConfig
from charrnn.core.special_tokens import EOS_ID, UNK_ID
from charrnn.core.tokenizers import CharTokenizer, WordTokenizer, build_tokenizer, tokenizer_from_files


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1).filter(lambda t: t.strip("\n")))
def test_char_round_trip_any_unicode(text: str) -> None:
    tokenizer = build_tokenizer(text, TokenizerConfig(level="char"))
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_char_round_trip_scripts_emoji_and_combining_marks() -> None:
    text = "漢字とかな\n👩‍👩‍👧 family\ne\u0301 = é\n"
    tokenizer = build_tokenizer(text, TokenizerConfig(level="char"))
    assert tokenizer.decode(tokenizer.encode_corpus(text)) == text


def test_every_line_ends_with_eos() -> None:
    text = "first line\n\nthird line\nlast without newline"
    for level in ("char", "word"):
        tokenizer = build_tokenizer(text, TokenizerConfig(level=level))
        ids = tokenizer.encode_corpus(text)
        assert ids.count(EOS_ID) == 4
        assert ids[-1] == EOS_ID
        lines = tokenizer.decode(ids).split("\n")
        assert len(lines) == 5 and lines[-1] == ""


def test_char_vocab_limits_map_rare_units_to_unk() -> None:
    text = "aaaa bbb cc d\n"
    tokenizer = build_tokenizer(text, TokenizerConfig(level="char", vocab_size=3 + 3))  # specials + a, ' ', b
    assert tokenizer.encode("d")[0] == UNK_ID and tokenizer.encode("c")[0] == UNK_ID
    assert UNK_ID not in tokenizer.encode("ab a")
    by_count = build_tokenizer(text, TokenizerConfig(level="char", min_count=3))
    assert by_count.encode("c") == [UNK_ID] and UNK_ID not in by_count.encode("b a")


def test_word_split_is_words_and_punctuation() -> None:
    tokenizer = WordTokenizer(["<pad>", "<unk>", "<eos>"])
    assert tokenizer.split("Don't stop, well-known (really)!") == [
        "Don't",
        "stop",
        ",",
        "well-known",
        "(",
        "really",
        ")",
        "!",
    ]
    assert tokenizer.split("a <unk> b") == ["a", "<unk>", "b"]


def test_word_unknown_words_map_to_unk_and_decode_spacing() -> None:
    text = "The apple and pear salad.\nA pair of shoes, please.\n"
    tokenizer = build_tokenizer(text, TokenizerConfig(level="word"))
    ids = tokenizer.encode("The apple and kiwi salad.")
    assert ids[3] == UNK_ID and ids.count(UNK_ID) == 1
    assert tokenizer.decode(tokenizer.encode("A pair of shoes, please.")) == "A pair of shoes, please."
    assert tokenizer.encode("a <unk>")[1] == UNK_ID  # WikiText's literal <unk>


def test_word_lowercase_and_min_count() -> None:
    text = "Apple apple APPLE pear\n"
    lower = build_tokenizer(text, TokenizerConfig(level="word", lowercase=True, min_count=2))
    assert lower.tokens(lower.encode("APPLE Pear")) == ["apple", "<unk>"]


def test_subword_unknown_characters_map_to_unk(shakespeare_head: str) -> None:
    tokenizer = build_tokenizer(shakespeare_head, TokenizerConfig(level="subword", vocab_size=200))
    ids = tokenizer.encode("the king 漢")
    assert ids[-1] == UNK_ID and UNK_ID not in ids[:-1]
    assert tokenizer.decode(tokenizer.encode("the king speaks")) == "the king speaks"


def test_subword_needs_a_vocab_size() -> None:
    from charrnn.core.errors import CharRNNError

    with pytest.raises(CharRNNError, match="--vocab-size"):
        build_tokenizer("some text\n", TokenizerConfig(level="subword"))


@pytest.mark.parametrize("level", ["char", "word", "subword"])
def test_save_load_gives_identical_ids(level: str, shakespeare_head: str) -> None:
    config = TokenizerConfig(level=level, vocab_size=250 if level == "subword" else None)
    tokenizer = build_tokenizer(shakespeare_head, config)
    loaded = tokenizer_from_files(tokenizer.to_files())
    probe = shakespeare_head[:2000] + "\nUnseen words: zyxt, qwerty 漢字!"
    assert type(loaded) is type(tokenizer)
    assert loaded.vocab_size == tokenizer.vocab_size
    assert loaded.encode_corpus(probe) == tokenizer.encode_corpus(probe)
    assert loaded.decode(loaded.encode(probe)) == tokenizer.decode(tokenizer.encode(probe))


def test_vocabulary_is_ordered_by_frequency() -> None:
    tokenizer = build_tokenizer("b a b c b a\n", TokenizerConfig(level="word"))
    assert isinstance(tokenizer, WordTokenizer)
    assert tokenizer.units[3:] == ["b", "a", "c"]
    assert isinstance(build_tokenizer("x", TokenizerConfig()), CharTokenizer)


@pytest.mark.parametrize("level", ["char", "word", "subword"])
@pytest.mark.parametrize("lowercase", [False, True])
def test_bulk_encoder_gives_the_ids_of_encode(level: str, lowercase: bool, shakespeare_head: str) -> None:
    config = TokenizerConfig(level=level, lowercase=lowercase, vocab_size=200 if level == "subword" else None)
    tokenizer = build_tokenizer(shakespeare_head[:3000], config)
    encode = tokenizer.bulk_encoder()
    for text in (shakespeare_head, "Unseen ☃ İSTANBUL <unk> don't\n\nlast line, no newline", "", "\n"):
        ids = encode(text)
        assert ids.dtype == "uint32" and ids.tolist() == tokenizer.encode(text)
