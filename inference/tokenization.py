"""Fast (Rust) tokenization shared by the model and the HTTP fronts.

The engine serialises its tokenizer (`spec`, the tokenizer.json text with truncation set) and the
fronts rebuild it, so each front process tokenizes its own requests: tokenization is the costliest
CPU step per text, and spread over the fronts it no longer caps what one engine process can feed
the GPU.
"""

from __future__ import annotations

from tokenizers import Tokenizer

from inference.models.base import TokenizedBatch


class TextTokenizer:
    def __init__(self, spec: str, max_length: int | None = None) -> None:
        self._tokenizer = Tokenizer.from_str(spec)
        self._tokenizer.no_padding()
        if max_length is not None:
            self._tokenizer.enable_truncation(max_length=max_length)
        self.spec = self._tokenizer.to_str()

    def tokenize(self, texts: list[str]) -> TokenizedBatch:
        """Unpadded ids; `encode_batch` releases the GIL and runs in parallel."""
        encodings = self._tokenizer.encode_batch(texts, add_special_tokens=True)
        return TokenizedBatch(
            ids=[e.ids for e in encodings],
            type_ids=[e.type_ids for e in encodings],
            truncated=[bool(e.overflowing) for e in encodings],
        )
