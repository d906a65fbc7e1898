"""The native format: JSON Lines with one trace per line, or one JSON array of traces."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from ..models import Trace
from .base import ImportProblem, ImportResult, validate_trace


def read_native(path: Path, result: ImportResult) -> Iterator[Trace]:
    name = str(path)
    # Bytes that are not UTF-8 are replaced (U+FFFD), visibly, rather than failing the file.
    with open(path, encoding="utf-8", errors="replace") as fh:
        head = fh.read(4096).lstrip("\ufeff \t\r\n")
        fh.seek(0)
        first_line = head.split("\n", 1)[0].strip()
        if head.startswith("[") or first_line == "{":
            # One JSON document: an array of traces, or a single pretty-printed trace (`loupe show --json`).
            text = fh.read()
            try:
                items = json.loads(text)
            except json.JSONDecodeError as exc:
                result.problems.append(ImportProblem(name, exc.lineno, None, f"invalid JSON: {exc.msg}"))
                return
            if isinstance(items, dict):
                items = [items]
            if not isinstance(items, list):
                result.problems.append(ImportProblem(name, 1, None, "expected a trace or a list of traces"))
                return
            for i, item in enumerate(items):
                before = len(result.problems)
                trace = validate_trace(item, name, None, result.problems, source=name)
                if len(items) > 1:
                    for problem in result.problems[before:]:
                        problem.field = f"[{i}]" + (f".{problem.field}" if problem.field else "")
                if trace is not None:
                    yield trace
            return
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                result.problems.append(ImportProblem(name, lineno, None, f"invalid JSON: {exc.msg}"))
                continue
            except RecursionError:
                result.problems.append(ImportProblem(name, lineno, None, "JSON nested too deeply to read"))
                continue
            trace = validate_trace(data, name, lineno, result.problems, source=name)
            if trace is not None:
                yield trace
