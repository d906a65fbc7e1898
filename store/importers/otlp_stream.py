"""JSON documents read a piece at a time: the `resourceSpans` entries of an OTLP request come one by one, so that
a big single-document file (a pretty-printed request, or one very long line) is never held whole, nor parsed
into one tree. Other values are read whole, as before.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

CHUNK = 1 << 20  # characters read at a time
_WS = " \t\r\n"
STREAMED_KEYS = ("resourceSpans", "resource_spans")


@dataclass
class Piece:
    """One thing read from the document.

    kind "record": a whole top-level JSON value (`value`), to read as any record is read;
    kind "resource_spans": one entry of a top-level object's resourceSpans, `where` its path ("resourceSpans.3"),
    read whole when it is not an object (the reader reports it) or holds no list of scopes;
    kind "scope_spans", "span": see `context`;
    kind "error": the document cannot be read further (`message`, at `line`); what came before is kept.
    `raw` is the JSON text the value was parsed from.
    """

    kind: str
    prefix: str  # "" for the first document of the file, "[2]." for the third
    value: Any = None
    raw: str = ""
    where: str = ""
    line: int | None = None
    message: str = ""
    # kind "span" (one span, `where` its path) and "scope_spans" (one scopeSpans entry read whole): the resourceSpans
    # entry and the scopeSpans entry it is in, as read so far (without their lists of scopes and spans)
    context: tuple[dict[str, Any], dict[str, Any] | None] | None = None


class _SyntaxError(Exception):
    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


class _Source:
    """Text from a file with a window over it: what was read is dropped once consumed."""

    def __init__(self, fh: IO[str], head: str) -> None:
        self.fh = fh
        self.buf = head
        self.pos = 0
        self.eof = False
        self.lines_before = 0  # newlines in the text already dropped
        self.decoder = json.JSONDecoder()

    def _fill(self) -> bool:
        if self.eof:
            return False
        # Read at least as much again as is held, so that a value larger than a chunk costs linear time.
        chunk = self.fh.read(max(CHUNK, len(self.buf) - self.pos))
        if not chunk:
            self.eof = True
            return False
        self.lines_before += self.buf.count("\n", 0, self.pos)
        self.buf = self.buf[self.pos:] + chunk
        self.pos = 0
        return True

    def line(self, pos: int | None = None) -> int:
        at = self.pos if pos is None else pos
        return self.lines_before + self.buf.count("\n", 0, at) + 1

    def peek(self) -> str:
        """The next character that is not white space; "" at the end of the text."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in _WS:
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self._fill():
                return ""

    def expect(self, chars: str) -> str:
        ch = self.peek()
        if ch == "" or ch not in chars:
            found = repr(ch) if ch else "the end of the text"
            raise _SyntaxError(f"expected {' or '.join(repr(c) for c in chars)}, found {found}", self.line())
        self.pos += 1
        return ch

    def value(self) -> tuple[Any, str]:
        """The next JSON value and its text."""
        self.peek()
        while True:
            try:
                value, end = self.decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                if self._fill():
                    continue  # the value goes on past what has been read
                raise _SyntaxError(f"{exc.msg} (column {exc.colno})", self.lines_before + exc.lineno) from exc
            except RecursionError as exc:
                raise _SyntaxError("JSON nested too deeply to read", self.line()) from exc
            if end >= len(self.buf) and not self.eof and not isinstance(value, (dict, list, str)):
                # A number or literal at the very end of what was read may go on in the next chunk.
                if self._fill():
                    continue
            raw = self.buf[self.pos:end]
            self.pos = end
            return value, raw


def read_documents(fh: IO[str], head: str = "") -> Iterator[Piece]:
    """The JSON values of a text, one after another (white space between them), with the resourceSpans of a
    top-level object given entry by entry."""
    src = _Source(fh, head)
    count = 0
    try:
        while True:
            ch = src.peek()
            if ch == "":
                return
            prefix = "" if count == 0 else f"[{count}]."
            if ch == "{":
                yield from _object(src, prefix)
            else:
                value, raw = src.value()
                yield Piece("record", prefix, value, raw)
            count += 1
    except _SyntaxError as exc:
        # The document cannot be resynchronised after a syntax error; what was read before is kept.
        yield Piece("error", "", line=exc.line, message=exc.message)


def _object(src: _Source, prefix: str) -> Iterator[Piece]:
    src.expect("{")
    rest: dict[str, Any] = {}
    streamed = False
    if src.peek() == "}":
        src.pos += 1
    else:
        while True:
            if src.peek() != '"':
                raise _SyntaxError("expected a property name in double quotes", src.line())
            key, _ = src.value()
            src.expect(":")
            if key in STREAMED_KEYS and src.peek() == "[" and not streamed:
                streamed = True
                yield from _entries(src, prefix, key)
            else:
                rest[key], _ = src.value()
            if src.expect(",}") == "}":
                break
    if not streamed:
        yield Piece("record", prefix, rest, _raw_of(rest))


def _has_surrogate_text(value: Any) -> bool:
    """Whether any string in the value holds a lone surrogate (which `scrub_parsed` looks for in the raw text)."""
    if isinstance(value, str):
        return any("\ud800" <= ch <= "\udfff" for ch in value)
    if isinstance(value, dict):
        return any(_has_surrogate_text(k) or _has_surrogate_text(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_surrogate_text(v) for v in value)
    return False


def _array(src: _Source) -> Iterator[int]:
    """The indexes of an array's items, the source standing at each item in turn (the caller reads it)."""
    src.expect("[")
    if src.peek() == "]":
        src.pos += 1
        return
    i = 0
    while True:
        yield i
        i += 1
        if src.expect(",]") == "]":
            return


def _entries(src: _Source, prefix: str, key: str) -> Iterator[Piece]:
    for i in _array(src):
        where = f"{prefix}{key}.{i}"
        if src.peek() == "{":
            yield from _resource_entry(src, prefix, where)
        else:
            value, raw = src.value()
            yield Piece("resource_spans", prefix, value, raw, where=where)


_SCOPE_KEYS = ("scopeSpans", "scope_spans", "instrumentationLibrarySpans", "instrumentation_library_spans")


def _resource_entry(src: _Source, prefix: str, where: str) -> Iterator[Piece]:
    """One resourceSpans entry, its spans one by one (a request of one resource may hold every span). The
    resource and scope are those read before the spans, as OTLP/JSON writes them (fields in proto order)."""
    src.expect("{")
    resource: dict[str, Any] = {}
    streamed = False
    if src.peek() == "}":
        src.pos += 1
    else:
        while True:
            if src.peek() != '"':
                raise _SyntaxError("expected a property name in double quotes", src.line())
            key, _ = src.value()
            src.expect(":")
            if key in _SCOPE_KEYS and not streamed and src.peek() == "[":
                streamed = True
                for j in _array(src):
                    swhere = f"{where}.{key}.{j}"
                    if src.peek() == "{":
                        yield from _scope_entry(src, prefix, resource, swhere)
                    else:
                        value, raw = src.value()
                        yield Piece("scope_spans", prefix, value, raw, where=swhere, context=(resource, None))
            else:
                resource[key], _ = src.value()
            if src.expect(",}") == "}":
                break
    if not streamed:
        yield Piece("resource_spans", prefix, resource, _raw_of(resource), where=where)


def _scope_entry(src: _Source, prefix: str, resource: dict[str, Any], where: str) -> Iterator[Piece]:
    src.expect("{")
    scope: dict[str, Any] = {}
    streamed = False
    if src.peek() == "}":
        src.pos += 1
    else:
        while True:
            if src.peek() != '"':
                raise _SyntaxError("expected a property name in double quotes", src.line())
            key, _ = src.value()
            src.expect(":")
            if key == "spans" and not streamed and src.peek() == "[":
                streamed = True
                for k in _array(src):
                    value, raw = src.value()
                    yield Piece("span", prefix, value, raw, where=f"{where}.{key}.{k}", context=(resource, scope))
            else:
                scope[key], _ = src.value()
            if src.expect(",}") == "}":
                break
    if not streamed:
        yield Piece("scope_spans", prefix, scope, _raw_of(scope), where=where, context=(resource, None))


def _raw_of(value: dict[str, Any]) -> str:
    return json.dumps(value) if _has_surrogate_text(value) else ""
