"""The native format: JSON Lines with one trace per line, or one JSON array of traces."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from ..models import Trace
from .base import ImportProblem, ImportResult, validate_trace


def read_native(path: Path, result: ImportResult) -> Iterator[Trace]:
    name = str(path)
    with open(path, encoding="utf-8", errors="surrogateescape") as fh:
        head = fh.read(4096).lstrip()
        fh.seek(0)
        if head.startswith("["):
            text = fh.read()
            try:
                items = json.loads(text)
            except json.JSONDecodeError as exc:
                result.problems.append(ImportProblem(name, exc.lineno, None, f"invalid JSON: {exc.msg}"))
                return
            for i, item in enumerate(items):
                trace = validate_trace(item, name, None, result.problems, source=name)
                if trace is None:
                    result.problems[-1].field = f"[{i}]" + ("." + result.problems[-1].field
                                                            if result.problems[-1].field else "")
                    continue
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
            trace = validate_trace(data, name, lineno, result.problems, source=name)
            if trace is not None:
                yield trace
