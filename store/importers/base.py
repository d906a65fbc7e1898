"""What every importer returns: the traces it could read, what it skipped and why, and the problems it met."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from ..models import Step, Trace


@dataclass
class ImportProblem:
    """Something in a file that could not be read; file, line and field say where."""

    file: str
    line: int | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = self.file + (f":{self.line}" if self.line is not None else "")
        return f"{where}: {self.field + ': ' if self.field else ''}{self.message}"


@dataclass
class ImportResult:
    traces: list[Trace] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> count of records passed over
    problems: list[ImportProblem] = field(default_factory=list)


def error_field(exc: ValidationError, prefix: str = "") -> tuple[str, str]:
    """The first failing field of a validation error as a dotted path, and its message."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err.get("loc", ()))
    path = f"{prefix}.{loc}" if prefix and loc else (prefix or loc)
    return path, err.get("msg", str(exc))


def validate_trace(
    data: Any, file: str, line: int | None, problems: list[ImportProblem], *, source: str | None = None
) -> Trace | None:
    """A Trace from a native dict. Steps that fail validation are left out and the trace marked partial."""
    if not isinstance(data, dict):
        problems.append(ImportProblem(file, line, None, f"expected a JSON object, found {type(data).__name__}"))
        return None
    raw_steps = data.get("steps")
    head = {k: v for k, v in data.items() if k != "steps"}
    try:
        trace = Trace.model_validate(head)
    except ValidationError as exc:
        path, msg = error_field(exc)
        problems.append(ImportProblem(file, line, path, msg))
        return None
    if raw_steps is not None and not isinstance(raw_steps, list):
        problems.append(ImportProblem(file, line, "steps", "expected a list of steps"))
        trace.partial = True
        trace.problems.append("steps: expected a list")
        raw_steps = []
    steps: list[Step] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_steps or []):
        try:
            step = Step.model_validate(raw)
        except ValidationError as exc:
            path, msg = error_field(exc, f"steps.{i}")
            problems.append(ImportProblem(file, line, path, msg))
            trace.partial = True
            trace.problems.append(f"{path}: {msg}")
            continue
        if step.id in seen:
            # Two steps with one ID would make evidence ambiguous: keep both, renaming the later one.
            step.metadata["original_id"] = step.id
            step.id = f"{step.id}#{i}"
        seen.add(step.id)
        steps.append(step)
    trace.steps = steps
    if source and not trace.source:
        trace.source = source
    return trace
