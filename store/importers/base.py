"""What every importer returns: the traces it could read, what it skipped and why, and the problems it met."""

from __future__ import annotations

import copy
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, TypeVar

from pydantic import BaseModel, ValidationError

from ..models import Message, Step, Trace


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


MAX_PROBLEMS = 1000  # problems kept per file: a 2 GB file of bad lines is reported by its first ones and a count


class ProblemList(list[ImportProblem]):
    """The problems met in one file: the first MAX_PROBLEMS kept, the rest only counted (`more`), so that memory
    stays bounded however broken a file is."""

    more: int = 0

    def append(self, problem: ImportProblem) -> None:
        if len(self) < MAX_PROBLEMS:
            super().append(problem)
        else:
            self.more += 1

    def extend(self, problems: Iterable[ImportProblem]) -> None:
        for problem in problems:
            self.append(problem)


@dataclass
class ImportResult:
    traces: list[Trace] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> count of records passed over
    skipped_at: dict[str, list[str]] = field(default_factory=dict)  # reason -> the first few "file:line"
    problems: list[ImportProblem] = field(default_factory=ProblemList)

    def skip(self, reason: str, file: str, line: int | None) -> None:
        """Count a record passed over, remembering where the first few were."""
        self.skipped[reason] += 1
        where = self.skipped_at.setdefault(reason, [])
        if len(where) < 3:
            where.append(file + (f":{line}" if line is not None else ""))


def error_field(exc: ValidationError, prefix: str = "") -> tuple[str, str]:
    """The first failing field of a validation error as a dotted path, and its message."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err.get("loc", ()))
    path = f"{prefix}.{loc}" if prefix and loc else (prefix or loc)
    return path, err.get("msg", str(exc))


_SURROGATE = re.compile("[\ud800-\udfff]")
# What `loupe show --json` adds to a trace: derived by loupe, so recomputed rather than kept when read back.
DERIVED_KEYS = ("totals", "findings", "rules_not_run")
DERIVED_STEP_KEYS = ("cost_computed", "cost_unknown_reason")


MAX_DEPTH = 48  # nesting kept as structure; deeper parts are kept as JSON text (pydantic and SQLite stay safe)


def scrub(value: Any, depth: int = 0) -> Any:
    """Lone UTF-16 surrogates (from JSON escapes or undecodable bytes) replaced by U+FFFD, visibly; structure
    nested deeper than MAX_DEPTH kept as its JSON text rather than as objects."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value) if _SURROGATE.search(value) else value
    if isinstance(value, (dict, list)) and depth >= MAX_DEPTH:
        try:
            return scrub(json.dumps(value, ensure_ascii=False))
        except (RecursionError, ValueError):
            return "(nested too deeply to keep)"
    if isinstance(value, dict):
        return {scrub(k): scrub(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v, depth + 1) for v in value]
    return value


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def scrub_parsed(value: Any, raw: str) -> Any:
    """`scrub` for a value parsed from JSON text `raw`, skipped when the text has no surrogate escape at all."""
    return scrub(value) if _SURROGATE_ESCAPE.search(raw) else value


def needs_scrub(value: Any, raw: str) -> bool:
    """Whether `scrub` could change a value parsed from the JSON text `raw`: a surrogate escape in the text, or
    containers nested MAX_DEPTH deep. Walks only the containers, not every string, so it costs a fraction of scrub."""
    if _SURROGATE_ESCAPE.search(raw):
        return True
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if depth >= MAX_DEPTH:
            return True
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))
    return False


def _delete(data: Any, loc: tuple[Any, ...]) -> bool:
    """Remove the value at `loc` from nested dicts and lists; False when there is nothing there."""
    node = data
    for part in loc[:-1]:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            return False
    last = loc[-1] if loc else None
    if isinstance(node, dict) and last in node:
        del node[last]
        return True
    if isinstance(node, list) and isinstance(last, int) and 0 <= last < len(node):
        del node[last]
        return True
    return False


M = TypeVar("M", bound=BaseModel)


def salvage(model: type[M], data: dict[str, Any], prefix: str, notes: list[tuple[str, str]]) -> M | None:
    """Validate `data`; for each bad field, leave that field out (or the smallest part around it) and try again.

    Every field left out is noted as (path, message). None when even the bare record is invalid.
    """
    try:
        return model.model_validate(data)  # the common case: valid as it stands, no copy needed
    except ValidationError:
        pass
    data = copy.deepcopy(data)  # fields are deleted from the copy, never from the caller's record
    for _ in range(200):
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = tuple(err.get("loc", ()))
            path = ".".join(str(p) for p in (prefix, *loc) if p != "")
            # Trim the location until it names something present in the data.
            while loc and not _delete(data, loc):
                loc = loc[:-1]
            if not loc:
                notes.append((path or prefix, err.get("msg", str(exc))))
                return None
            notes.append((path, f"{err.get('msg', str(exc))}; left out"))
    return None


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON values: like ==, but 1, 1.0 and true are told apart (a reused message must be the same)."""
    kind = type(a)
    if kind is not type(b):
        return False
    if kind is dict:
        return a.keys() == b.keys() and all(_same(v, b[k]) for k, v in a.items())
    if kind is list:
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def validate_trace(
    data: Any, file: str, line: int | None, problems: list[ImportProblem], *, source: str | None = None,
    raw: str | None = None,
) -> Trace | None:
    """A Trace from a native dict. A bad field is left out (the trace marked partial), never the whole trace.
    `raw`, the JSON text `data` was parsed from, lets the scrub be skipped when it would change nothing."""
    if not isinstance(data, dict):
        problems.append(ImportProblem(file, line, None, f"expected a JSON object, found {type(data).__name__}"))
        return None
    if raw is None or needs_scrub(data, raw):
        data = scrub(data)  # the store cannot hold lone surrogates
    raw_steps = data.get("steps")
    head = {k: v for k, v in data.items() if k != "steps" and k not in DERIVED_KEYS}
    if "merge" in head:
        # An ingest hint of span sources, never a field of the format: a trace file cannot ask to be merged with
        # what is stored. Kept as metadata, like any other key loupe does not read.
        hint, meta = head.pop("merge"), head.get("metadata")
        if meta is None or isinstance(meta, dict):
            head["metadata"] = {"merge": hint, **(meta or {})}  # a "merge" of the trace's own metadata wins
    notes: list[tuple[str, str]] = []
    trace = salvage(Trace, head, "", notes)
    if trace is None:
        for path, msg in notes:
            problems.append(ImportProblem(file, line, path or None, msg))
        return None
    if raw_steps is not None and not isinstance(raw_steps, list):
        notes.append(("steps", "expected a list of steps; left out"))
        raw_steps = []
    steps: list[Step] = []
    seen: set[str] = set()
    # The conversation so far comes again with every model call: a message equal to one of the last model call's
    # is taken as already validated, so a long conversation is not validated once per call.
    last_raw: list[Any] = []
    last_messages: list[Message] = []
    for i, given in enumerate(raw_steps or []):
        if not isinstance(given, dict):
            notes.append((f"steps.{i}", f"expected an object, found {type(given).__name__}; left out"))
            continue
        record = {k: v for k, v in given.items() if k not in DERIVED_STEP_KEYS}
        if not isinstance(record.get("id"), (str, int)) or record.get("id") in ("", None):
            notes.append((f"steps.{i}.id", f"missing or empty; named step-{i}"))
            record["id"] = f"step-{i}"
        raw_messages = record.get("messages")
        if last_raw and isinstance(raw_messages, list):
            record["messages"] = [
                last_messages[j] if j < len(last_raw) and _same(m, last_raw[j]) else m
                for j, m in enumerate(raw_messages)
            ]
        noted = len(notes)
        step = salvage(Step, record, f"steps.{i}", notes)
        if step is None:
            continue
        if isinstance(raw_messages, list) and len(notes) == noted and len(step.messages) == len(raw_messages):
            last_raw, last_messages = raw_messages, step.messages
        if step.id in seen:
            # Two steps with one ID would make evidence ambiguous: keep both, renaming the later one.
            step.metadata["original_id"] = step.id
            notes.append((f"steps.{i}.id", f"duplicate step ID {step.id!r}; renamed {step.id}#{i}"))
            step.id = f"{step.id}#{i}"
        seen.add(step.id)
        steps.append(step)
    for looped in cut_parent_loops(steps):
        notes.append((f"steps.{looped}.parent_id", "its parents lead back to it; shown as a root"))
    trace.steps = steps
    for path, msg in notes:
        problems.append(ImportProblem(file, line, path or None, msg))
        trace.problems.append(f"{path}: {msg}" if path else msg)
    if any(not msg.startswith("duplicate step ID") and "lead back to it" not in msg for _, msg in notes):
        trace.partial = True
    if source and not trace.source:
        trace.source = source if line is None else f"{source}:{line}"
    return trace


ARRAY_CHUNK = 1 << 20  # characters read at a time from a JSON array; one item larger than this is read whole


def iter_json_array(fh: IO[str]) -> Iterator[tuple[int, Any]]:
    """The items of the JSON array that `fh` holds, one at a time, each with the line it starts on.

    The file is read in chunks, so memory holds the item being read rather than the whole array (a 2 GB export
    streams). Every item before a broken one is yielded first; then a JSONDecodeError is raised whose `lineno`
    is the line in the file (a truncated array keeps all its complete items)."""
    decoder = json.JSONDecoder()
    buf = ""
    pos = 0
    line = 1  # the line that buf[pos] is on
    eof = False

    def more() -> bool:
        nonlocal buf, pos, eof
        if eof:
            return False
        # Ask for at least as much as is buffered: an item far larger than a chunk is re-parsed log(n) times, not n.
        chunk = fh.read(max(ARRAY_CHUNK, len(buf) - pos))
        if not chunk:
            eof = True
            return False
        buf = buf[pos:] + chunk
        pos = 0
        return True

    def advance(to: int) -> None:
        nonlocal pos, line
        line += buf.count("\n", pos, to)
        pos = to

    def skip_space() -> bool:
        """Move past whitespace; False at the end of the file."""
        while True:
            m = _SPACE.match(buf, pos)
            advance(m.end() if m else pos)
            if pos < len(buf):
                return True
            if not more():
                return False

    def fail(message: str, at: int) -> json.JSONDecodeError:
        err = json.JSONDecodeError(message, buf, at)
        err.lineno = line + buf.count("\n", pos, at)
        return err

    if not skip_space() or buf[pos] != "[":
        raise fail("expected a JSON array", pos)
    advance(pos + 1)
    expect_item = True
    while True:
        if not skip_space():
            raise fail("the array is not closed (the file ends early)", pos)
        if buf[pos] == "]":
            return
        if not expect_item:
            if buf[pos] != ",":
                raise fail("expected ',' or ']' between items", pos)
            advance(pos + 1)
            expect_item = True
            continue
        while True:
            try:
                item, end = decoder.raw_decode(buf, pos)
            except json.JSONDecodeError as exc:
                if more():
                    continue  # the item may only be cut by the chunk's end
                raise fail(exc.msg, exc.pos) from None
            if end == len(buf) and not eof and buf[pos] not in "[{\"" and more():
                continue  # a number or literal at the chunk's end may go on in the next one
            break
        start = line
        advance(end)
        yield start, item
        expect_item = False
        if pos > ARRAY_CHUNK:
            buf, pos = buf[pos:], 0  # drop what was read: the buffer stays about one chunk plus one item


_SPACE = re.compile(r"[ \t\r\n\ufeff]*")


def cut_parent_loops(steps: list[Step]) -> list[int]:
    """Parent links that loop (a -> b -> a: bad data) would hide every step of the loop from the tree: the loop's
    earliest step becomes a root, its link kept as metadata["cyclic_parent_id"]. Returns the
    indexes of the steps cut. One walk per step at most (linear), iterative: a chain thousands deep is fine."""
    parent_of = {s.id: s.parent_id for s in steps}
    order = {s.id: i for i, s in enumerate(steps)}
    state: dict[str, int] = {}  # 1: on the walk now, 2: done
    looped: set[str] = set()
    for s in steps:
        path: list[str] = []
        x: str | None = s.id
        while x is not None and x in parent_of and x not in state:
            state[x] = 1
            path.append(x)
            x = parent_of[x]
        if x is not None and state.get(x) == 1:
            # One cut per loop, at its earliest step: the rest of the loop still hangs from it as a chain.
            looped.add(min(path[path.index(x):], key=order.__getitem__))
        for y in path:
            state[y] = 2
    cut = []
    for i, s in enumerate(steps):
        if s.id in looped:
            s.metadata["cyclic_parent_id"] = s.parent_id
            s.parent_id = None
            cut.append(i)
    return cut
