"""Fast (Rust) tokenization shared by the model and the HTTP fronts.

The engine serialises its tokenizer (`spec`, the tokenizer.json text with truncation set) and the
fronts rebuild it, so each front process tokenizes its own requests: tokenization is the costliest
CPU step per text, and spread over the fronts it no longer caps what one engine process can feed
the GPU.
"""

from __future__ import annotations

from itertools import chain

import numpy as np
from tokenizers import Encoding, Tokenizer

from inference.models.base import TokenizedBatch
from inference.wordpiece import AsciiWordPiece

_ONE_BY_ONE = 4  # texts; up to this, encoded on the calling thread (no thread-pool hand-off)


class TextTokenizer:
    def __init__(self, spec: str, max_length: int | None = None, fast_path: bool = True) -> None:
        self._tokenizer = Tokenizer.from_str(spec)
        self._tokenizer.no_padding()
        if max_length is not None:
            self._tokenizer.enable_truncation(max_length=max_length)
        self.spec = self._tokenizer.to_str()
        # Without character offsets (which serving never reads) the Rust side does a third less work.
        self._encode = getattr(self._tokenizer, "encode_batch_fast", self._tokenizer.encode_batch)
        self._fast = AsciiWordPiece.from_spec(self.spec) if fast_path else None

    def tokenize(self, texts: list[str]) -> TokenizedBatch:
        """Unpadded ids, packed. Plain-ASCII texts of a BERT tokenizer take the exact fast path
        (`wordpiece.py`); the rest go to the Rust tokenizer."""
        fast = self._fast
        if fast is None:
            return self._tokenize_rust(texts)
        flat: list[int] = []
        lengths = np.empty(len(texts), dtype=np.int32)
        truncated = np.zeros(len(texts), dtype=bool)
        others: list[int] = []
        for i, text in enumerate(texts):
            done = fast.encode(text)
            if done is None:
                others.append(i)
                lengths[i] = 0
                continue
            ids, cut = done
            flat += ids
            lengths[i] = len(ids)
            truncated[i] = cut
        if not others:
            return TokenizedBatch(np.array(flat, dtype=np.int32), lengths, None, truncated)
        if len(others) == len(texts):
            return self._tokenize_rust(texts)
        rest = self._tokenize_rust([texts[i] for i in others])
        fast_part = TokenizedBatch(np.array(flat, dtype=np.int32), lengths, None, truncated)
        return _interleave(fast_part, rest, others)

    def _tokenize_rust(self, texts: list[str]) -> TokenizedBatch:
        """The Rust call releases the GIL and runs in parallel.

        A few texts are encoded one by one: the batch call hands its work to the Rust thread pool
        and waits for a pool thread to wake, which costs more than encoding one short text, and
        requests are tokenized one by one as they arrive.
        """
        if len(texts) == 1:  # the commonest request: packed without the generic path's iterators
            one = self._tokenizer.encode(texts[0])
            ids = np.array(one.ids, dtype=np.int32)
            type_ids = np.array(one.type_ids, dtype=np.int32)
            lengths = np.array([len(ids)], dtype=np.int32)
            truncated = np.array([bool(one.overflowing)])
            return TokenizedBatch(ids, lengths, type_ids if type_ids.any() else None, truncated)
        encodings: list[Encoding]
        if len(texts) <= _ONE_BY_ONE:
            encodings = [self._tokenizer.encode(text) for text in texts]
        else:
            encodings = self._encode(texts, add_special_tokens=True)
        n = len(encodings)
        lengths = np.fromiter((len(e) for e in encodings), dtype=np.int32, count=n)
        total = int(lengths.sum())
        ids = np.fromiter(chain.from_iterable(e.ids for e in encodings), np.int32, count=total)
        type_ids = np.fromiter(chain.from_iterable(e.type_ids for e in encodings), np.int32, count=total)
        truncated = np.fromiter((bool(e.overflowing) for e in encodings), dtype=bool, count=n)
        return TokenizedBatch(ids, lengths, type_ids if type_ids.any() else None, truncated)

    @property
    def vocab_size(self) -> int:
        return int(self._tokenizer.get_vocab_size(with_added_tokens=True))

    @staticmethod
    def from_ids(sequences: list[list[int]], max_length: int, truncate: bool) -> TokenizedBatch:
        """Token-id inputs packed as the tokenizer packs texts: taken as given, cut to `max_length`."""
        lengths = np.fromiter((len(s) for s in sequences), dtype=np.int32, count=len(sequences))
        truncated = lengths > max_length
        if truncate and truncated.any():
            sequences = [s[:max_length] for s in sequences]
            lengths = np.minimum(lengths, max_length)
        ids = np.fromiter(chain.from_iterable(sequences), np.int32, count=int(lengths.sum()))
        return TokenizedBatch(ids, lengths, None, truncated)


def _interleave(fast: TokenizedBatch, rest: TokenizedBatch, rows: list[int]) -> TokenizedBatch:
    """`fast` (length 0 at `rows`) with `rest`'s texts put at `rows`, in the texts' order."""
    n = len(fast)
    lengths = fast.lengths.copy()
    lengths[rows] = rest.lengths
    truncated = fast.truncated.copy()
    truncated[rows] = rest.truncated
    # Where each text's ids lie: the fast texts in `fast.ids`, the others after them in `rest.ids`.
    source = np.concatenate([fast.ids, rest.ids])
    starts = np.empty(n, dtype=np.int64)
    in_rows = np.zeros(n, dtype=bool)
    in_rows[rows] = True
    fast_lengths = np.where(in_rows, 0, fast.lengths)
    starts[~in_rows] = (np.cumsum(fast_lengths, dtype=np.int64) - fast_lengths)[~in_rows]
    starts[rows] = len(fast.ids) + rest.starts
    order = np.repeat(starts - (np.cumsum(lengths, dtype=np.int64) - lengths), lengths)
    order += np.arange(int(lengths.sum()), dtype=np.int64)
    type_ids = None
    if rest.type_ids is not None:
        all_types = np.concatenate([np.zeros(len(fast.ids), dtype=np.int32), rest.type_ids])
        type_ids = all_types[order]
    return TokenizedBatch(source[order], lengths, type_ids, truncated)
