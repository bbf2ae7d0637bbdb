"""Admission control: what a request may cost before any model work is queued for it.

Each limit is checked as early as its cost is known, and each refusal is cheap:
- the body is read with a byte limit (413 as soon as `Content-Length` or the bytes read pass it, the
  rest is never buffered);
- inputs per request and characters per text at parsing (413 / 400);
- tokens per request once tokenized (413) - texts are tokenized here, in the front, so that every
  later bound is in tokens, the unit a forward pass costs;
- tokens queued per version in the batcher (429 + Retry-After, `batching.QueueFull`);
- a deadline per request and the client's connection: when either ends first, the request's
  future is cancelled and the batcher drops the work if it has not started (504, or nothing to send).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import numpy as np

from inference.api import Inputs
from inference.backend import VersionInfo
from inference.batching import EmbedResult
from inference.models.base import TokenizedBatch
from inference.openai_errors import ApiError, bad_request
from inference.tokenization import TextTokenizer

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
_INLINE_TEXTS = 64  # up to this, tokenizing costs less than a hop to a thread and back
_WATCH_AFTER_S = 0.05


class ClientGone(Exception):
    """The client closed its connection before its answer was ready; there is no one to answer."""


async def read_body(receive: Receive, headers: Any, max_bytes: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed `max_bytes`."""
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(int(declared), max_bytes)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone("client went away while sending its request")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(size, max_bytes)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _too_large(size: int, limit: int) -> ApiError:
    return ApiError(413, f"body: {size} bytes or more, at most {limit} (max_body_bytes)", param=None)


class TokenIdDecoder:
    """Token ids counted with a tiktoken encoding (what LangChain and other clients that split long
    texts locally send) turned back into text, so the served model embeds what the client meant."""

    def __init__(self, encoding: str) -> None:
        try:
            import tiktoken
        except ImportError as exc:  # pragma: no cover - only with token_ids_encoding set
            raise ValueError("token_ids_encoding: needs the tiktoken package") from exc
        self._encoding = tiktoken.get_encoding(encoding)
        self.vocab_size = int(self._encoding.n_vocab)

    def decode(self, sequences: list[list[int]]) -> list[str]:
        return [self._encoding.decode(ids, errors="replace") for ids in sequences]


def _check_vocabulary(sequences: list[list[int]], vocab_size: int, whose: str) -> None:
    for i, ids in enumerate(sequences):
        if max(ids) >= vocab_size:
            j = next(j for j, token in enumerate(ids) if token >= vocab_size)
            limit = f"0..{vocab_size - 1}"
            raise bad_request(
                f"input[{i}][{j}]: token id {ids[j]} is outside the vocabulary of {whose} ({limit})"
            )


async def tokenize(
    inputs: Inputs,
    info: VersionInfo,
    whose: str,
    *,
    truncate: bool,
    max_tokens: int,
    decoder: TokenIdDecoder | None = None,
) -> tuple[TokenizedBatch, list[str] | None]:
    """The inputs as the version's token ids (and their texts, when there are), limits checked."""
    texts = inputs.texts
    if inputs.token_ids is not None:
        if decoder is not None:
            _check_vocabulary(inputs.token_ids, decoder.vocab_size, "the token-id encoding")
            texts = decoder.decode(inputs.token_ids)
        else:
            _check_vocabulary(inputs.token_ids, info.vocab_size, whose)
            batch = TextTokenizer.from_ids(inputs.token_ids, info.max_seq_length, truncate)
    if texts is not None:
        if len(texts) <= _INLINE_TEXTS:
            batch = info.tokenizer.tokenize(texts)
        else:
            loop = asyncio.get_running_loop()
            batch = await loop.run_in_executor(None, info.tokenizer.tokenize, texts)
    if not truncate and batch.truncated.any():
        first = int(np.flatnonzero(batch.truncated)[0])
        raise bad_request(
            f"input[{first}]: longer than the {info.max_seq_length} tokens {whose} takes (truncate is off)",
            code="context_length_exceeded",
        )
    total = int(batch.lengths.sum())
    if total > max_tokens:
        raise ApiError(
            413, f"input: {total} tokens, at most {max_tokens} per request (max_request_tokens)",
            param="input", code="too_many_tokens",
        )  # fmt: skip
    return batch, texts


def check_dimensions(dimensions: int | None, info: VersionInfo, whose: str) -> int | None:
    """The size to shorten to, None for the full embedding; 400 when the model cannot be shortened."""
    if dimensions is None or dimensions == info.dimension:
        return None
    if dimensions > info.dimension:
        raise bad_request(f"dimensions: {dimensions}, but {whose} has {info.dimension}", "dimensions")
    if not info.matryoshka_dims:
        raise bad_request(
            f"dimensions: {whose} is not trained for shortened embeddings (Matryoshka); "
            f"only its full size {info.dimension} is served",
            "dimensions",
        )
    smallest = min(info.matryoshka_dims)
    if dimensions < smallest:
        raise bad_request(
            f"dimensions: {dimensions}, at least {smallest} for {whose} (trained down to {smallest})",
            "dimensions",
        )
    return dimensions


async def wait_for_result(
    future: asyncio.Future[EmbedResult], receive: Receive, timeout_s: float
) -> EmbedResult:
    """The result, unless the deadline passes (504) or the client goes (ClientGone) first.

    Either way the future is cancelled, which drops its work from the queue if it has not started.
    """
    loop = asyncio.get_running_loop()
    reason: list[str] = []

    def cancel(why: str) -> None:
        if not future.done():
            reason.append(why)
            future.cancel()

    async def watch() -> None:
        # Once the body is read, `receive` returns only when the connection is gone.
        while (await receive())["type"] != "http.disconnect":
            pass
        cancel("disconnect")

    def start_watching() -> None:
        watchers.append(loop.create_task(watch()))

    # Most answers come back within milliseconds: only a request still waiting after
    # `_WATCH_AFTER_S` watches its connection, which spares a task per request on a busy server.
    watchers: list[asyncio.Task[None]] = []
    timer = loop.call_later(timeout_s, cancel, "deadline")
    watch_timer = loop.call_later(min(_WATCH_AFTER_S, timeout_s), start_watching)
    try:
        return await future
    except asyncio.CancelledError:
        if not reason:
            raise
        if reason[0] == "disconnect":
            raise ClientGone("client went away while its request waited") from None
        raise ApiError(
            504, f"not done within the request deadline of {timeout_s:g} s (request_timeout_s)",
            kind="server_error", code="timeout",
        ) from None  # fmt: skip
    finally:
        timer.cancel()
        watch_timer.cancel()
        for watcher in watchers:
            watcher.cancel()
