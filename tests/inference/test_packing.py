"""Packed token batches and CUDA-graph bucket planning: the pure parts of the fast forward path."""

from __future__ import annotations

import numpy as np
import pytest

from canaryflow.adapters.model_assets import minilm_path
from inference.models.base import TokenizedBatch
from inference.models.cuda_graphs import BATCH_BUCKETS, length_buckets, plan_replays
from inference.tokenization import TextTokenizer
from tests.inference.conftest import SENTENCES


def _batch(rows: list[list[int]], types: list[list[int]] | None = None) -> TokenizedBatch:
    flat_types = None if types is None else np.array([t for r in types for t in r], dtype=np.int32)
    return TokenizedBatch(
        np.array([t for r in rows for t in r], dtype=np.int32),
        np.array([len(r) for r in rows], dtype=np.int32),
        flat_types,
        np.zeros(len(rows), dtype=bool),
    )


def test_take_and_concat_keep_each_text_whole() -> None:
    rows = [[101, 5, 6, 102], [101, 102], [101, 7, 8, 9, 10, 102]]
    batch = _batch(rows, types=[[0, 0, 0, 0], [0, 1], [0, 0, 1, 1, 1, 1]])
    picked = batch.take([2, 0])
    assert picked.ids.tolist() == rows[2] + rows[0]
    assert picked.lengths.tolist() == [6, 4]
    assert picked.type_ids is not None and picked.type_ids.tolist() == [0, 0, 1, 1, 1, 1, 0, 0, 0, 0]
    joined = TokenizedBatch.concat([picked, _batch([[101, 3, 102]])])
    assert joined.ids.tolist() == rows[2] + rows[0] + [101, 3, 102]
    assert joined.type_ids is not None and joined.type_ids.tolist()[-3:] == [0, 0, 0]
    assert len(batch.take([])) == 0


def test_filled_batch_has_the_asked_shape() -> None:
    batch = TokenizedBatch.filled(3, 5, token=7)
    assert len(batch) == 3 and batch.lengths.tolist() == [5, 5, 5]
    assert batch.ids.tolist() == [7] * 15 and not batch.truncated.any()


def test_pad_into_writes_rows_and_masks_padding() -> None:
    batch = _batch([[101, 5, 102], [101, 102]])
    ids = np.full((4, 5), -1, dtype=np.int64)  # poisoned: every cell must be written
    mask = np.full((4, 5), -1, dtype=np.int64)
    batch.pad_into(ids, mask, None, pad_id=0)
    assert ids.tolist() == [[101, 5, 102, 0, 0], [101, 102, 0, 0, 0], [0] * 5, [0] * 5]
    # Rows past the batch keep one unmasked token so a fixed-shape pass stays finite.
    assert mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0], [1, 0, 0, 0, 0]]


def test_tokenizer_packs_what_the_rust_tokenizer_returns() -> None:
    from tokenizers import Tokenizer

    spec = Tokenizer.from_file(str(minilm_path() / "tokenizer.json")).to_str()
    tokenizer = TextTokenizer(spec, max_length=8)
    batch = tokenizer.tokenize(SENTENCES[:3])
    reference = Tokenizer.from_str(spec)
    reference.no_padding()
    reference.enable_truncation(max_length=8)
    expected = [e.ids for e in reference.encode_batch(SENTENCES[:3])]
    assert batch.lengths.tolist() == [len(e) for e in expected]
    assert batch.ids.tolist() == [t for e in expected for t in e]
    assert batch.truncated.tolist() == [True, True, False]  # "Hi" fits in 8 tokens
    assert batch.type_ids is None  # single-segment texts: all zero, not shipped


@pytest.mark.parametrize("n", [1, 3, 37, 256, 257, 1000])
def test_replays_cover_every_row_once_within_token_budget(n: int) -> None:
    rng = np.random.default_rng(n)
    lengths = rng.integers(5, 60, size=n).astype(np.int32)
    widths = length_buckets(256)
    replays = plan_replays(lengths, widths, max_tokens=8192)
    covered = [i for _, rows in replays for i in range(rows.start, rows.stop)]
    assert covered == list(range(n))
    for bucket, rows in replays:
        assert bucket.width >= lengths.max() and bucket.width in widths
        assert bucket.rows in BATCH_BUCKETS and bucket.rows >= rows.stop - rows.start
        assert bucket.rows * bucket.width <= 8192


def test_length_buckets_end_at_the_model_limit() -> None:
    assert length_buckets(256)[-1] == 256
    assert length_buckets(128) == [16, 24, 32, 48, 64, 96, 128]
    assert length_buckets(100)[-1] == 100
