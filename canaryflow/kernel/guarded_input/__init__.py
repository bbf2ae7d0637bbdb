"""One guarded reader for every body and file the product reads: JSON, YAML, JSON Lines records.

Every way a document can be hostile is checked here, once, and refused with one line naming where:
- size: at most `max_bytes` (the caller's limit; a file is read at most that many bytes plus one);
- encoding: UTF-8 only (`json.loads` on bytes would also guess UTF-16 and UTF-32);
- integer length: at most `MAX_INTEGER_DIGITS` digits. Python refuses to convert more than 4,300
  digits with a plain `ValueError` that no JSON or YAML error handler expects (a 500, a traceback);
  no field of any document here needs more than 20 digits, so a long integer is refused far earlier;
- NaN and +/-Infinity: JSON has neither (`json.loads` accepts them), YAML's `.nan`/`.inf` are refused
  too: NaN compares false with every threshold and would pass any check it meets;
- nesting depth: at most `MAX_DEPTH` containers deep (the decoders recurse; 100k levels is a
  RecursionError, a few thousand is a slow walk for every consumer after);
- size of the tree: at most `MAX_NODES` values once YAML aliases are expanded (a "billion laughs");
- strings: no lone UTF-16 surrogate (`"\\ud800"` parses, then fails wherever the text is encoded).

`read_regular_file` opens without blocking and refuses anything but a regular file: a named pipe
given as a policy or a log would otherwise hang the reader until someone writes to it. It lives here,
beside the checks, because the kernel's own readers (policies, settings) need it too.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from pathlib import Path
from typing import IO, Annotated, Any

import yaml
from pydantic import AfterValidator

MAX_DEPTH = 64
MAX_INTEGER_DIGITS = 64
MAX_NODES = 1_000_000
MAX_DOCUMENT_BYTES = 1 << 20  # a policy, a settings file, a reference request: far below a megabyte

_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class InputRefused(ValueError):
    """A body or file refused before (or right after) parsing; the message is one line."""


def one_line(text: object) -> str:
    """An error message on one line, control characters blanked (pyarrow's and YAML's span several
    lines and may quote the damaged bytes)."""
    return " ".join("".join(c if c.isprintable() else " " for c in str(text)).split())


def decode_utf8(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputRefused(f"{where}: not UTF-8 text (byte {exc.start})") from exc


def check_size(raw: bytes | str, where: str, max_bytes: int | None) -> None:
    """`max_bytes` None: the caller already bounded what it read (an HTTP body, say)."""
    if max_bytes is not None and len(raw) > max_bytes:
        raise InputRefused(f"{where}: larger than {max_bytes} bytes")


class _Refused:
    """A value the decoder met but must not convert (a huge integer, NaN): kept in its place, so that
    `check_tree` refuses it naming where in the document it stands."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _integer(text: str) -> int | _Refused:
    digits = len(text) - (text[0] == "-")
    if digits > MAX_INTEGER_DIGITS:
        return _Refused(f"an integer of {digits} digits (at most {MAX_INTEGER_DIGITS})")
    return int(text)


def _no_constant(name: str) -> _Refused:
    return _Refused(f"{name} is not a number JSON allows")


def _nested(where: str) -> InputRefused:
    return InputRefused(f"{where}: nested too deeply (more than {MAX_DEPTH} levels)")


def parse_json(raw: bytes | str, where: str, max_bytes: int | None = MAX_DOCUMENT_BYTES) -> Any:
    """One JSON document, every check of this module applied; InputRefused naming `where`."""
    check_size(raw, where, max_bytes)
    text = decode_utf8(raw, where) if isinstance(raw, bytes) else raw
    try:
        doc = json.loads(text, parse_int=_integer, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise InputRefused(f"{where}: not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from exc
    except RecursionError as exc:
        raise _nested(where) from exc
    check_tree(doc, where)
    return doc


def parse_yaml(raw: bytes | str, where: str, max_bytes: int | None = MAX_DOCUMENT_BYTES) -> Any:
    """One YAML document (safe types only), every check of this module applied."""
    check_size(raw, where, max_bytes)
    text = decode_utf8(raw, where) if isinstance(raw, bytes) else raw
    try:
        doc = yaml.load(text, Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        if "nesting depth" in str(exc):  # libyaml's own depth limit
            raise _nested(where) from exc
        raise InputRefused(f"{where}: not valid YAML ({one_line(exc)})") from exc
    except RecursionError as exc:
        raise _nested(where) from exc
    except ValueError as exc:  # an integer past Python's digit limit, in the resolver
        raise InputRefused(f"{where}: {one_line(exc)}") from exc
    check_tree(doc, where)
    return doc


def check_tree(doc: Any, where: str) -> None:
    """Depth, node count, finite numbers, integer length and encodable strings of a parsed document
    (walked without recursion, aliases counted each time they are reached); a refusal names the path
    of the value (`body.data.version`, `body.items[3]`) as well as the document.

    A document is first walked without its paths (`_acceptable`, the same rules): most are fine, and
    naming every value's path cost more than the checks (the controller reads a step's verdict, a
    few thousand values, on every tick). Only a refused one is walked again to name where."""
    if _acceptable(doc):
        return
    stack: list[tuple[Any, int, str]] = [(doc, 0, where)]
    nodes = 0
    while stack:
        value, depth, at = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise InputRefused(f"{where}: more than {MAX_NODES} values (aliases expanded)")
        if isinstance(value, dict | list):
            if depth >= MAX_DEPTH:
                raise _nested(where)
            if isinstance(value, dict):
                stack.extend((key, depth + 1, at) for key in value)
                stack.extend((item, depth + 1, f"{at}.{key}") for key, item in value.items())
            else:
                stack.extend((item, depth + 1, f"{at}[{i}]") for i, item in enumerate(value))
        elif isinstance(value, _Refused):
            raise InputRefused(f"{at}: {value.reason}")
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise InputRefused(f"{at}: {value} is not a finite number")
        elif isinstance(value, int) and not isinstance(value, bool):
            if value.bit_length() > MAX_INTEGER_DIGITS * 3.33:
                raise InputRefused(f"{at}: an integer of more than {MAX_INTEGER_DIGITS} digits")
        elif isinstance(value, str) and not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                code = ord(value[exc.start])
                raise InputRefused(f"{at}: a string holding a lone surrogate (\\u{code:x})") from exc


def _acceptable(doc: Any) -> bool:
    """Whether `check_tree` accepts `doc`: its rules, without the paths; False at the first doubt."""
    stack: list[tuple[Any, int]] = [(doc, 0)]
    nodes = 0
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if isinstance(value, dict | list):
            if depth >= MAX_DEPTH:
                return False
            children = [*value, *value.values()] if isinstance(value, dict) else value
            nodes += len(children)
            if nodes > MAX_NODES:
                return False
            for child in children:
                kind = type(child)  # the common leaves first, without a call
                if kind is float:
                    if not math.isfinite(child):
                        return False
                elif kind is str:
                    if not child.isascii() and not _acceptable_leaf(child):
                        return False
                elif kind is dict or kind is list or isinstance(child, dict | list):
                    nodes -= 1  # counted when popped
                    stack.append((child, depth + 1))
                elif not _acceptable_leaf(child):
                    return False
        elif not _acceptable_leaf(value):
            return False
        if nodes > MAX_NODES:
            return False
    return True


def _acceptable_leaf(value: Any) -> bool:
    if isinstance(value, _Refused):
        return False
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value.bit_length() <= MAX_INTEGER_DIGITS * 3.33
    if isinstance(value, str) and not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
    return True


def open_regular_file(path: Path | str, where: str | None = None, what: str = "file") -> IO[bytes]:
    """The file opened for reading in binary, if it is a regular file; a named pipe, a device, a
    socket or a directory is refused at once (opened non-blocking, so a pipe cannot hang us)."""
    name = where or str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise InputRefused(f"{name}: cannot read {what} ({exc.strerror or exc})") from exc
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):  # never read: a pipe would block, a device never end
            is_dir = stat.S_ISDIR(mode)
            kind = "a named pipe" if stat.S_ISFIFO(mode) else "a directory" if is_dir else "a device"
            raise InputRefused(f"{name}: {kind}, not a regular file (only regular files are read)")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular_file(
    path: Path | str, max_bytes: int = MAX_DOCUMENT_BYTES, where: str | None = None, what: str = "file"
) -> bytes:
    """The bytes of a regular file of at most `max_bytes`; InputRefused otherwise."""
    name = where or str(path)
    with open_regular_file(path, name, what) as handle:
        try:
            raw = handle.read(max_bytes + 1)
        except OSError as exc:
            raise InputRefused(f"{name}: cannot read {what} ({exc.strerror or exc})") from exc
    check_size(raw, name, max_bytes)
    return raw


# Texts written into manifests: a newline or a space is quoted safely by the YAML writer, yet gives
# an Argo CD `repoURL` or an HTTPRoute hostname their consumer refuses, so it is refused up front.
_HOSTNAME = re.compile(r"(\*\.)?[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*")


def _url_text(value: str) -> str:
    if len(value) > 2048 or any(c.isspace() or not c.isprintable() for c in value):
        raise ValueError("a URL on one line, without spaces or control characters (at most 2048)")
    return value


def _hostname(value: str) -> str:
    if len(value) > 253 or not _HOSTNAME.fullmatch(value):
        raise ValueError(f"{value!r} is not a DNS hostname (lowercase labels, an optional leading '*.')")
    return value


UrlText = Annotated[str, AfterValidator(_url_text)]
Hostname = Annotated[str, AfterValidator(_hostname)]
