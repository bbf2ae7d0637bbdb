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

_ONE_BY_ONE = 4  # texts; up to this, encoded on the calling thread (no thread-pool hand-off)


class TextTokenizer:
    def __init__(self, spec: str, max_length: int | None = None) -> None:
        self._tokenizer = Tokenizer.from_str(spec)
        self._tokenizer.no_padding()
        if max_length is not None:
            self._tokenizer.enable_truncation(max_length=max_length)
        self.spec = self._tokenizer.to_str()
        # Without character offsets (which serving never reads) the Rust side does a third less work.
        self._encode = getattr(self._tokenizer, "encode_batch_fast", self._tokenizer.encode_batch)

    def tokenize(self, texts: list[str]) -> TokenizedBatch:
        """Unpadded ids, packed; the Rust call releases the GIL and runs in parallel.

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
