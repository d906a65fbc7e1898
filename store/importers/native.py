"""The native format: JSON Lines with one trace per line, or one JSON array of traces."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from ..models import Trace
from .base import ImportProblem, ImportResult, iter_json_array, validate_trace


def read_native(path: Path, result: ImportResult) -> Iterator[Trace]:
    name = str(path)
    # Bytes that are not UTF-8 are replaced (U+FFFD), visibly, rather than failing the file.
    with open(path, encoding="utf-8", errors="replace") as fh:
        head = fh.read(4096).lstrip("\ufeff \t\r\n")
        fh.seek(0)
        first_line = head.split("\n", 1)[0].strip()
        if head.startswith("["):
            # A JSON array of traces, read item by item: memory holds one trace, and a truncated array keeps every
            # complete trace before the cut.
            many = head[1:].lstrip(" \t\r\n")[:1] not in ("", "]")
            try:
                for i, (lineno, item) in enumerate(iter_json_array(fh)):
                    before = len(result.problems)
                    trace = validate_trace(item, name, lineno, result.problems, source=name)
                    if many:
                        for problem in result.problems[before:]:
                            problem.field = f"[{i}]" + (f".{problem.field}" if problem.field else "")
                    if trace is not None:
                        yield trace
            except json.JSONDecodeError as exc:
                result.problems.append(ImportProblem(name, exc.lineno, None, f"invalid JSON: {exc.msg}"))
            except RecursionError:
                result.problems.append(ImportProblem(name, None, None, "JSON nested too deeply to read"))
            return
        if first_line == "{":
            # One pretty-printed trace (`loupe show --json`): a single record, read whole.
            text = fh.read()
            try:
                item = json.loads(text)
            except json.JSONDecodeError as exc:
                result.problems.append(ImportProblem(name, exc.lineno, None, f"invalid JSON: {exc.msg}"))
                return
            trace = validate_trace(item, name, None, result.problems, source=name)
            if trace is not None:
                yield trace
            return
        for lineno, line in enumerate(fh, start=1):
            trace = read_line(line, name, lineno, result)
            if trace is not None:
                yield trace


def layout(path: Path) -> str:
    """How a native file holds its traces: "array" (one JSON array), "document" (one pretty-printed trace) or
    "lines" (JSON Lines, one trace per line)."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        head = fh.read(4096).lstrip("\ufeff \t\r\n")
    if head.startswith("["):
        return "array"
    return "document" if head.split("\n", 1)[0].strip() == "{" else "lines"


def read_line(line: str, name: str, lineno: int, result: ImportResult) -> Trace | None:
    """The trace on one line of a JSON Lines file; None (with the problem noted) when there is none."""
    if lineno == 1:
        line = line.lstrip("\ufeff")  # a byte order mark is not part of the first trace
    if not line.strip():
        return None
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        result.problems.append(ImportProblem(name, lineno, None, f"invalid JSON: {exc.msg}"))
        return None
    except RecursionError:
        result.problems.append(ImportProblem(name, lineno, None, "JSON nested too deeply to read"))
        return None
    except ValueError as exc:  # a number longer than Python reads (4,300 digits): this line only, not the file
        result.problems.append(ImportProblem(name, lineno, None, f"cannot read: {str(exc)[:200]}"))
        return None
    return validate_trace(data, name, lineno, result.problems, source=name, raw=line)
