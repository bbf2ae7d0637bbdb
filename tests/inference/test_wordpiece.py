"""The ASCII WordPiece fast path gives the Rust tokenizer's ids, or steps aside."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, models, pre_tokenizers

from bench.inference import make_sentences
from canaryflow.adapters.model_assets import minilm_path
from inference.tokenization import TextTokenizer
from inference.wordpiece import AsciiWordPiece

SPEC = (minilm_path() / "tokenizer.json").read_text()
FAST = TextTokenizer(SPEC, max_length=256)
RUST = TextTokenizer(SPEC, max_length=256, fast_path=False)

# Mostly what the fast path takes (letters, digits, punctuation, the whitespace it maps), plus what
# it must hand over: control characters, accents, CJK, other scripts, the added tokens' bracket.
HANDED_OVER = [*"\x00\x0b\x0c\x1f\x7f", "é", "Ü", "ß", "中", "文", "\u00a0", "\u2019", "🙂", "\ufffd"]
ALPHABET = st.sampled_from([*"abcXYZ019 .,;:!?'\"-_()[]{}<>@#$%^&*+=/\\|`~\t\n\r", *HANDED_OVER])
TEXTS = st.text(alphabet=ALPHABET, max_size=60)


def assert_same(texts: list[str], fast: TextTokenizer = FAST, rust: TextTokenizer = RUST) -> None:
    got, want = fast.tokenize(texts), rust.tokenize(texts)
    assert got.lengths.tolist() == want.lengths.tolist()
    assert got.ids.tolist() == want.ids.tolist()
    assert got.truncated.tolist() == want.truncated.tolist()
    got_types = np.zeros_like(got.ids) if got.type_ids is None else got.type_ids
    want_types = np.zeros_like(want.ids) if want.type_ids is None else want.type_ids
    assert got_types.tolist() == want_types.tolist()


def test_the_model_is_a_bert_wordpiece_tokenizer_so_the_fast_path_is_on() -> None:
    assert AsciiWordPiece.from_spec(FAST.spec) is not None


@settings(max_examples=300, deadline=None)
@given(TEXTS)
def test_one_text_is_tokenized_as_the_rust_tokenizer_does(text: str) -> None:
    assert_same([text])


@settings(max_examples=150, deadline=None)
@given(st.lists(TEXTS, min_size=2, max_size=12))
def test_batches_mixing_both_paths_keep_each_text_in_its_place(texts: list[str]) -> None:
    assert_same(texts)


def test_real_sentences_long_texts_and_edge_cases() -> None:
    sentences = make_sentences(300)
    long = " ".join(sentences[:40])  # far over 256 tokens: truncated, [SEP] kept at the end
    word = "a" * 101  # over max_input_chars_per_word: one [UNK]
    texts = [*sentences, long, word, "", "   ", "Hello [MASK] world", "it's e.g. 3.5x faster!"]
    assert_same(texts)
    assert FAST.tokenize([long]).truncated.tolist() == [True]
    assert len(FAST.tokenize([long]).ids) == 256


def test_a_tokenizer_truncating_shorter_is_followed() -> None:
    short, short_rust = TextTokenizer(SPEC, max_length=12), TextTokenizer(SPEC, 12, fast_path=False)
    assert_same(make_sentences(20), short, short_rust)


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d.update(normalizer={**d["normalizer"], "lowercase": False}),  # cased model
        lambda d: d.update(pre_tokenizer={"type": "Whitespace"}),
        lambda d: d["post_processor"].update(single=[{"Sequence": {"id": "A", "type_id": 1}}]),
        lambda d: d.update(truncation={"max_length": 8, "stride": 0, "direction": "Left"}),
    ],
)
def test_any_other_pipeline_turns_the_fast_path_off(change: object) -> None:
    doc = json.loads(FAST.spec)
    change(doc)  # type: ignore[operator]
    assert AsciiWordPiece.from_spec(json.dumps(doc)) is None


def test_a_bpe_tokenizer_has_no_fast_path() -> None:
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Whitespace()
    assert AsciiWordPiece.from_spec(bpe.to_str()) is None
