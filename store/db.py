"""The one store class in front of SQLite: migrating on open, idempotent writes, paged and filtered reads."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import Config
from .models import (
    SEVERITY_RANK,
    EvalCase,
    Finding,
    RuleRun,
    Step,
    StepCost,
    Trace,
    TraceSummary,
    TraceTotals,
    format_time,
)
from .pricing import Pricer, default_pricer
from .rules import failure_reason, run_rules

if TYPE_CHECKING:
    from sqlite_utils import Database

# The migrations a store of this program has, in order (store/migrations.py's KNOWN; a test keeps the two equal).
# Read with plain SQL on every open, so an up-to-date store is opened without importing sqlite-utils.
SCHEMA = ("m001_initial", "m002_eval_results", "m003_search", "m004_version_indexes")

ENV_DB = "LOUPE_DB"


class StoreError(Exception):
    """The store cannot be opened or used; the message says why and names the file."""


def _can_write(path: Path) -> bool:
    """Whether a file or folder may be written. Its mode counts even for root, whom the OS would let write it
    anyway: a store someone made read-only is opened read-only."""
    try:
        return os.access(path, os.W_OK) and bool(path.stat().st_mode & 0o222)
    except OSError:
        return False


# SQLite's primary result codes for failures of the store itself, not of one trace being written.
_STORE_FAILURES = {
    "SQLITE_CORRUPT", "SQLITE_NOTADB", "SQLITE_FULL", "SQLITE_READONLY", "SQLITE_IOERR", "SQLITE_CANTOPEN",
    "SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_PERM", "SQLITE_NOMEM", "SQLITE_PROTOCOL",
}


def is_store_failure(exc: BaseException) -> bool:
    """Whether an SQLite error is about the store (full disk, damaged or read-only file, ...) rather than about
    the data being written: such an error ends the write; retrying with other data cannot help."""
    name = getattr(exc, "sqlite_errorname", None)
    if not isinstance(exc, sqlite3.Error) or not isinstance(name, str):
        return False
    return any(name == p or name.startswith(p + "_") for p in _STORE_FAILURES)  # extended codes: SQLITE_IOERR_...


def store_failure(path: Path, exc: sqlite3.Error) -> StoreError:
    """An SQLite error as a StoreError whose message names the store file and says what happened to it."""
    name = str(getattr(exc, "sqlite_errorname", "") or "")
    if name.startswith("SQLITE_FULL"):
        why = ("the disk is full: the write in progress was rolled back and nothing of it was stored; what was "
               "stored before is intact. Free some space and run it again")
    elif name.startswith("SQLITE_READONLY") or name.startswith("SQLITE_PERM"):
        why = "the store cannot be written: the file or its folder is read-only; nothing of this write was stored"
    elif name.startswith("SQLITE_CORRUPT"):
        why = (f"the store is damaged; it was left as it is. `sqlite3 {path} .recover` may save what can still be "
               "read")
    elif name.startswith("SQLITE_NOTADB"):
        return StoreError(f"{path}: not a traceloupe store or damaged ({exc}); it was left untouched")
    elif name.startswith("SQLITE_IOERR"):
        why = "the store could not be read or written (is the disk full, failing or gone?)"
    elif name.startswith("SQLITE_CANTOPEN"):
        why = "the store cannot be opened: check that the file and its folder can be read"
    elif name.startswith("SQLITE_BUSY") or name.startswith("SQLITE_LOCKED"):
        why = "another program has held the store's write lock for more than 30 s; try again"
    else:
        return StoreError(f"{path}: not a traceloupe store or damaged ({exc})")
    return StoreError(f"{path}: {why} ({exc})")


class TraceNotFound(LookupError):
    def __init__(self, ref: str) -> None:
        super().__init__(f"no trace matches {ref!r}")
        self.ref = ref


class AmbiguousTraceId(LookupError):
    def __init__(self, ref: str, candidates: list[str]) -> None:
        super().__init__(f"{ref!r} matches more than one trace: {', '.join(candidates)}")
        self.ref = ref
        self.candidates = candidates


def default_db_path() -> Path:
    """`$LOUPE_DB`, else the per-user data directory (XDG on Linux)."""
    env = os.environ.get(ENV_DB)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_path

    return user_data_path("traceloupe", appauthor=False) / "loupe.db"


@dataclass
class TraceFilter:
    """The filters shared by every command and the TUI."""

    prompt_versions: list[str] = field(default_factory=list)  # "v7" or "support_agent@v7"
    prompt: str | None = None
    model: str | None = None
    status: str | None = None  # "ok" | "error"
    violations: bool = False
    rule: str | None = None
    search: str | None = None
    since: str | None = None
    until: str | None = None

    def where(self) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if self.prompt_versions:
            ors = []
            for pv in self.prompt_versions:
                if isinstance(pv, VersionRef):
                    ors.append("(prompt_name IS ? AND prompt_version IS ?)")
                    params += [pv.name, pv.version]
                elif "@" in pv:
                    # NAME@VERSION names the version whose name, "@" and version spell exactly this text: either
                    # may hold "@" ("team@acme@v9", "a@b@c@d"), so every split is asked for. Two stored versions
                    # spelt the same way are told apart with --prompt NAME and the bare version.
                    for name, version in version_splits(pv):
                        ors.append("(prompt_name IS ? AND prompt_version IS ?)")
                        params += [name, version]
                else:
                    ors.append("prompt_version IS ?")
                    params.append(_version_or_none(pv))
            clauses.append("(" + " OR ".join(ors) + ")")
        if self.prompt:
            clauses.append("prompt_name = ?")
            params.append(self.prompt)
        if self.model:
            clauses.append("model = ?")
            params.append(self.model)
        if self.status:
            clauses.append("status = ?")
            params.append(self.status)
        if self.violations:
            clauses.append("findings > 0")
        if self.rule:
            clauses.append("id IN (SELECT trace_id FROM findings WHERE rule_id = ?)")
            params.append(self.rule)
        if self.search:
            fts = fts_query(self.search)
            if fts is not None:
                # The full-text index: the words in order, the last one also as the start of a longer word.
                clauses.append("id IN (SELECT trace_id FROM search_docs WHERE doc IN "
                               "(SELECT rowid FROM trace_search WHERE trace_search MATCH ?))")
                params.append(fts)
            else:
                # Text the index cannot tell apart ("100%", "$0.00", "{"): a substring of the trace's own fields,
                # read row by row.
                like = "%" + self.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
                clauses.append(
                    "(id LIKE ? ESCAPE '\\' OR name LIKE ? ESCAPE '\\' OR model LIKE ? ESCAPE '\\' "
                    "OR header LIKE ? ESCAPE '\\')"
                )
                params += [like] * 4
        if self.since:
            clauses.append("started_at >= ?")
            params.append(format_time(_parse_bound(self.since)))
        if self.until:
            clauses.append("started_at < ?")
            params.append(format_time(_parse_bound(self.until)))
        return (" AND ".join(clauses) if clauses else "1"), params

    def describe(self) -> str:
        parts = []
        if self.prompt_versions:
            parts.append("version " + ", ".join(self.prompt_versions))
        for label, value in (("prompt", self.prompt), ("model", self.model), ("status", self.status),
                             ("rule", self.rule), ("search", self.search)):
            if value:
                parts.append(f"{label} {value}")
        if self.violations:
            parts.append("with findings")
        return "; ".join(parts)


NO_VERSION = "(no version)"
NO_PROMPT = "(no prompt)"


def _version_or_none(v: str) -> str | None:
    return None if v in (NO_VERSION, "") else v


def version_splits(text: str) -> list[tuple[str | None, str | None]]:
    """Every (prompt name, version) that NAME@VERSION text could spell, one per "@", the last split first;
    "(no prompt)" and "(no version)" (or nothing after the "@") are None."""
    out: list[tuple[str | None, str | None]] = []
    at = len(text)
    while (at := text.rfind("@", 0, at)) >= 0:
        name = text[:at]
        out.append((None if name == NO_PROMPT else name, _version_or_none(text[at + 1:])))
    return out


class VersionRef(str):
    """A --prompt-version value that names exactly one (prompt name, version), whatever either holds: the TUI
    hands these to the list's filter, so a version with "@" in it is never split again. As text it is the usual
    NAME@VERSION label, so it shows and compares like one."""

    name: str | None
    version: str | None

    def __new__(cls, name: str | None, version: str | None) -> VersionRef:
        label = f"{NO_PROMPT if name is None else name}@{NO_VERSION if version is None else version}"
        self = super().__new__(cls, label)
        self.name, self.version = name, version
        return self

    def __getnewargs__(self) -> tuple[str | None, str | None]:  # type: ignore[override]
        return self.name, self.version  # copies and pickles keep the exact pair


def _parse_bound(text: str) -> datetime:
    from .models import parse_time

    dt = parse_time(text)
    if dt is None:
        raise ValueError(f"not a time: {text!r}")
    return dt


# Characters that separate words inside the things people search for (trc_7J4k9, gpt-4o, a.b/c, name@v7): a query
# made of words and these goes to the full-text index. Any other symbol ("100%", "$0.00") means the user is
# after exact characters the index does not keep, and the search falls back to a substring match.
_FTS_SEPARATORS = frozenset(" \t_-./:@,'\"?!()")
_FTS_WORD = re.compile(r"[^\W_]+")
# A search document's number says when its trace started: microseconds since 1970 times DOC_SLOTS, plus a slot
# for traces that started in the same microsecond. The index then hands out its hits newest first (FTS5 reads
# its lists in rowid order, either way), so the first page of a search for a word half the traces hold reads
# a page's worth of hits instead of sorting half a million. Traces without a start time (listed last) get
# numbers below every time's. 1990-2100 times 2,048 slots stays below 2**63.
DOC_SLOTS = 2_048
_NO_TIME_DOCS = 1 << 40  # document numbers of traces without a start time: 1 up to this
SEARCH_TEXT_LIMIT = 200_000  # characters of one trace's text that are indexed (a 5 MB answer is cut there)
_SEARCH_PIECE_LIMIT = 20_000  # characters of any one text field
_SEARCH_HEAD = 2_000  # characters of every field indexed before the rest of any long one


def fts_query(text: str) -> str | None:
    """The FTS5 query for a search text, or None when the text must be matched as a substring instead."""
    words = _FTS_WORD.findall(text)
    if not words or any(not (ch.isalnum() or ch in _FTS_SEPARATORS) for ch in text):
        return None
    # One phrase: the words in order; the last may be the start of a longer word ("refund the la" finds "last").
    return '"' + " ".join(words) + '"*'


def _texts(value: Any, out: list[str], depth: int = 0) -> None:
    """Every string and number in a value, for the index; object keys are left out (the same words in every
    trace, they would only make the index bigger)."""
    if isinstance(value, str):
        out.append(value[:_SEARCH_PIECE_LIMIT])
    elif isinstance(value, dict) and depth < 20:
        for v in value.values():
            _texts(v, out, depth + 1)
    elif isinstance(value, list) and depth < 20:
        for v in value:
            _texts(v, out, depth + 1)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        out.append(str(value))


def search_text(trace: Trace) -> str:
    """What the full-text index holds for a trace: its ID, name, prompt, user and session, tags, input and output,
    and per step the name, model, messages, output, tool arguments, result and error. A text repeated in every
    model call's conversation is indexed once."""
    parts: list[str] = [trace.id]
    for v in (trace.name, trace.prompt.name if trace.prompt else None, trace.prompt.version if trace.prompt else None,
              trace.user_id, trace.session_id):
        if v:
            parts.append(v)
    parts.extend(trace.tags)
    _texts(trace.input, parts)
    _texts(trace.output, parts)
    for step in trace.steps:
        for v in (step.name, step.model):
            if v:
                parts.append(v)
        for m in step.messages:
            _texts(m.content, parts)
            for call in m.tool_calls:
                parts.append(call.name)
                _texts(call.arguments, parts)
        _texts(step.output, parts)
        _texts(step.arguments, parts)
        _texts(step.result, parts)
        if step.error is not None:
            _texts([step.error.type, step.error.message], parts)
    # Every field's beginning first, then the rest of the long ones while the budget lasts: ten long retrieval
    # results must not push a short tool error that comes after them out of the index.
    heads: list[str] = []
    tails: list[str] = []
    for p in dict.fromkeys(parts):
        if len(p) <= _SEARCH_HEAD:
            heads.append(p)
            continue
        cut = p.rfind(" ", _SEARCH_HEAD // 2, _SEARCH_HEAD)  # at a space, so no word is split in two
        cut = cut if cut > 0 else _SEARCH_HEAD
        heads.append(p[:cut])
        tails.append(p[cut:])
    text = "\n".join(heads)
    for tail in tails:
        if len(text) >= SEARCH_TEXT_LIMIT:
            break
        text += "\n" + tail
    return text[:SEARCH_TEXT_LIMIT]


def _stored_trace(conn: sqlite3.Connection, trace_id: str) -> Trace | None:
    """A stored trace with its steps, as written (the text of its search document is made from it)."""
    row = conn.execute("SELECT header FROM traces WHERE id = ?", (trace_id,)).fetchone()
    if row is None:
        return None
    trace = Trace.model_validate(json.loads(row[0]))
    trace.steps = [Step.model_validate_json(r[0]) for r in conn.execute(
        "SELECT data FROM steps WHERE trace_id = ? ORDER BY idx", (trace_id,))]
    return trace


def doc_range(started_at: str | None) -> tuple[int, int]:
    """The document numbers [first, end) of traces with this start time (the store's form, or None)."""
    if started_at is None:
        return 1, _NO_TIME_DOCS
    dt = datetime.fromisoformat(started_at)  # the store's own form (format_time), "Z" read as UTC
    micros = (dt - _EPOCH) // timedelta(microseconds=1)
    return micros * DOC_SLOTS, (micros + 1) * DOC_SLOTS


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def new_doc(conn: sqlite3.Connection, trace_id: str, started_at: str | None) -> int:
    """A search document number for a trace, in its start time's range, recorded in search_docs."""
    first, end = doc_range(started_at)
    last = conn.execute("SELECT max(doc) FROM search_docs WHERE doc >= ? AND doc < ?", (first, end)).fetchone()[0]
    doc = first if last is None else last + 1
    if doc >= end:
        # More than DOC_SLOTS traces in one microsecond: filed with the traces without a time. Searches still find
        # it; only its place among the hits is off.
        doc = (conn.execute("SELECT max(doc) FROM search_docs WHERE doc < ?", (_NO_TIME_DOCS,)).fetchone()[0]
               or 0) + 1
    conn.execute("INSERT INTO search_docs (doc, trace_id) VALUES (?, ?)", (doc, trace_id))
    return doc


def index_existing_traces(conn: sqlite3.Connection) -> int:
    """Search documents for every stored trace that has none (the search migration, on a store with traces)."""
    n = 0
    rows = conn.execute(
        "SELECT id, started_at FROM traces WHERE id NOT IN (SELECT trace_id FROM search_docs)").fetchall()
    for tid, started in rows:
        trace = _stored_trace(conn, tid)
        if trace is None:
            continue
        doc = new_doc(conn, tid, started)
        conn.execute("INSERT INTO trace_search (rowid, body) VALUES (?, ?)", (doc, search_text(trace)))
        n += 1
    return n


def _keyset(after: tuple[str | None, str] | None) -> tuple[str, list[Any]]:
    """Rows strictly after the given (started_at, id) in (started_at DESC, id DESC) order; NULL times sort last."""
    if after is None:
        return "", []
    started, tid = after
    if started is None:
        return " AND started_at IS NULL AND id < ?", [tid]
    return " AND (started_at < ? OR (started_at = ? AND id < ?) OR started_at IS NULL)", [started, started, tid]


def _list_order(row: Any) -> tuple[bool, str, str]:
    """The list's order for summary rows sorted in Python with reverse=True: newest first, then by ID descending,
    rows without a start time last."""
    return (row[5] is not None, row[5] or "", row[0])


@dataclass
class StoredTrace:
    """A trace as read back from the store, with what loupe derived from it."""

    trace: Trace
    costs: dict[str, StepCost]
    totals: TraceTotals
    findings: list[Finding]
    rule_runs: list[RuleRun]
    ingested_at: str


@dataclass
class IngestCounts:
    traces: int = 0
    steps: int = 0
    updated: int = 0
    findings: int = 0  # findings in the traces written
    traces_with_findings: int = 0
    failed: list[tuple[str, str | None, str]] = field(default_factory=list)  # (trace ID, source, why)
    ids: set[str] = field(default_factory=set)  # the traces written
    existed: set[str] = field(default_factory=set)  # of those, the ones already stored before

    def add(self, trace_id: str, steps: int, existed: bool, findings: int) -> None:
        """Count one trace written. One written again in the same batch is the same trace (not one more, nor one
        "updated"); its steps and findings count again, as they do when the repeat comes in a later batch."""
        self.steps += steps
        self.findings += findings
        self.traces_with_findings += findings > 0
        if trace_id in self.ids:
            return
        self.traces += 1
        self.updated += existed
        self.ids.add(trace_id)
        if existed:
            self.existed.add(trace_id)


SUMMARY_COLUMNS = (
    "id, name, prompt_name, prompt_version, model, started_at, steps, llm_calls, input_tokens, output_tokens, "
    "usage_unknown_steps, cost, cost_unknown_steps, latency_ms, status, findings, worst_severity, partial"
)


@dataclass
class EvalResultRow:
    """One case scored against one prompt version in one run."""

    case_id: str
    group: str
    prompt_name: str | None
    prompt_version: str | None
    trace_id: str | None
    status: str  # "pass", "fail" or "not run"
    data: dict[str, Any] = field(default_factory=dict)  # failed assertions, reason when not run, ...
    ran_at: str = ""


def _summary(row: sqlite3.Row | tuple[Any, ...]) -> TraceSummary:
    (id_, name, pname, pver, model, started, steps, llm, tin, tout, uunk, cost, cunk, lat, status, nf, worst,
     partial) = row
    return TraceSummary(
        id=id_, name=name, prompt_name=pname, prompt_version=pver, model=model, started_at=started, steps=steps,
        llm_calls=llm, input_tokens=tin, output_tokens=tout, tokens_partial=bool(uunk), cost=cost,
        cost_partial=bool(cunk), latency_ms=lat, status=status, findings=nf, worst_severity=worst,
        partial=bool(partial),
    )


def compute_totals(trace: Trace, costs: dict[str, StepCost], findings: list[Finding]) -> TraceTotals:
    t = TraceTotals(steps=len(trace.steps), findings=len(findings))
    sums = {"input_tokens": None, "output_tokens": None, "cache_read_tokens": None, "reasoning_tokens": None}
    cost: float | None = None
    covered = _steps_with_llm_usage_below(trace)
    for step in trace.steps:
        if step.type != "llm" and step.usage is not None and step.usage.known and step.id not in covered:
            # An agent or chain reporting usage with no LLM step of its own: its usage is the only record.
            for key in sums:
                v = getattr(step.usage, key)
                if v is not None:
                    sums[key] = (sums[key] or 0) + v
        if step.type == "llm":
            t.llm_calls += 1
            if step.usage is None or not step.usage.known:
                t.usage_unknown_steps += 1
            else:
                for key in sums:
                    v = getattr(step.usage, key)
                    if v is not None:
                        sums[key] = (sums[key] or 0) + v
            c = costs.get(step.id)
            value = None if c is None else (c.computed if c.computed is not None else c.reported)
            if value is None:
                t.cost_unknown_steps += 1
            else:
                cost = (cost or 0.0) + value
        elif step.type == "tool":
            t.tool_calls += 1
            if step.cost is not None and step.cost > 0:
                cost = (cost or 0.0) + step.cost
        if step.status == "error" or (step.type == "tool" and failure_reason(step) is not None):
            t.errors += 1
    t.input_tokens = sums["input_tokens"]
    t.output_tokens = sums["output_tokens"]
    t.cache_read_tokens = sums["cache_read_tokens"]
    t.reasoning_tokens = sums["reasoning_tokens"]
    t.cost = cost
    t.latency_ms = trace_latency_ms(trace)
    return t


def _steps_with_llm_usage_below(trace: Trace) -> set[str]:
    """IDs of steps that have an LLM step with usage among their descendants (iteratively; cycles are cut)."""
    parent = {s.id: s.parent_id for s in trace.steps}
    covered: set[str] = set()
    for step in trace.steps:
        if step.type != "llm" or step.usage is None or not step.usage.known:
            continue
        seen: set[str] = set()
        node = parent.get(step.id)
        while node is not None and node in parent and node not in seen:
            seen.add(node)
            covered.add(node)
            node = parent.get(node)
    return covered


def _has_root(trace: Trace) -> bool:
    return any(s.parent_id is None and "missing_parent_id" not in s.metadata for s in trace.steps)


def merge_traces(old: Trace, new: Trace) -> Trace:
    """Two partial views of one trace as one. A span seen twice keeps its finished record (the newer when both
    are finished); trace fields take the newer value where it has one; steps are ordered by start time."""
    by_id: dict[str, Step] = {s.id: s for s in old.steps}
    for step in new.steps:
        prior = by_id.get(step.id)
        if prior is None or step.ended_at is not None or prior.ended_at is None:
            by_id[step.id] = step
    for sid, step in list(by_id.items()):
        # A span whose parent came in another part was stored as a root; now that the parent is here, relink it.
        lost = step.metadata.get("missing_parent_id")
        if isinstance(lost, str) and lost in by_id and lost != sid:
            meta = {k: v for k, v in step.metadata.items() if k != "missing_parent_id"}
            by_id[sid] = step.model_copy(update={"parent_id": lost, "metadata": meta})
    fields = old.model_dump(exclude={"steps"})
    for key, value in new.model_dump(exclude={"steps"}).items():
        if value not in (None, [], {}, False, ""):
            fields[key] = value
    # The trace's name belongs to the part that holds its root span; a part of children only must not rename it.
    if not _has_root(new) and _has_root(old):
        fields["name"] = old.name
    fields["metadata"] = {**old.metadata, **new.metadata}
    fields["tags"] = list(dict.fromkeys([*old.tags, *new.tags]))
    fields["problems"] = list(dict.fromkeys([*old.problems, *new.problems]))
    fields["partial"] = old.partial or new.partial
    _join_log_events(old, new, by_id, fields)
    steps = sorted(by_id.values(), key=lambda s: (s.started_at is None, s.started_at or datetime.min.replace(tzinfo=UTC)))
    starts = [t for t in (old.started_at, new.started_at) if t]
    ends = [t for t in (old.ended_at, new.ended_at) if t]
    fields["started_at"] = min(starts) if starts else None
    fields["ended_at"] = max(ends) if ends else None
    merged = Trace.model_validate(fields)
    merged.steps = steps
    return merged


PENDING_LOG_EVENTS = "pending_log_events"  # as in importers.otlp: span ID -> GenAI log records for that span
LOG_EVENTS_READ = "genai_log_events"  # step metadata: the GenAI log records read into the step when merging
FILLED_BY_LOG_EVENTS = "filled_by_log_events"  # step metadata: the fields those records filled


def _join_log_events(old: Trace, new: Trace, by_id: dict[str, Step], fields: dict[str, Any]) -> None:
    """GenAI events sent as log records, kept with a part whose span was not in it, join that span's step once
    the merged trace has it; the others stay waiting in the trace's metadata."""
    waiting: dict[str, list[Any]] = {}
    for part in (old, new):
        held = part.metadata.get(PENDING_LOG_EVENTS)
        if isinstance(held, dict):
            for sid, events in held.items():
                if isinstance(events, list):
                    waiting.setdefault(sid, []).extend(e for e in events if e not in waiting.get(sid, []))
    fields["metadata"].pop(PENDING_LOG_EVENTS, None)
    if not waiting:
        return
    from .importers.otlp_events import apply_genai_events  # the importers depend on the store, not the reverse

    for sid in [sid for sid in waiting if sid in by_id]:
        step = by_id[sid].model_copy(deep=True)
        # Exporters send log records one by one: the events read into the step before are read again with the
        # new ones, so that a later message adds to the messages the earlier ones filled rather than being lost.
        read = step.metadata.get(LOG_EVENTS_READ)
        read = read if isinstance(read, list) else []
        fresh = [e for e in waiting.pop(sid) if e not in read]
        if not fresh:
            continue
        filled = step.metadata.get(FILLED_BY_LOG_EVENTS)
        filled = filled if isinstance(filled, list) else []
        if "messages" in filled:
            step.messages = []
        if "output" in filled:
            step.output = None
            step.metadata.pop("output_messages", None)
        had_messages, had_output = bool(step.messages), step.output is not None
        events = step.metadata.get("events")
        kept = [e for e in (events if isinstance(events, list) else []) if e not in read]
        step.metadata["events"] = [*kept, *read, *fresh]
        problems = apply_genai_events(step)
        step.metadata[LOG_EVENTS_READ] = [*read, *fresh]
        step.metadata[FILLED_BY_LOG_EVENTS] = [
            name for name, had, now in (("messages", had_messages, bool(step.messages)),
                                        ("output", had_output, step.output is not None)) if now and not had]
        fields["problems"] = [*fields.get("problems", []), *(f"span {sid}: {p}" for p in problems)]
        by_id[sid] = step
        if fields.get("input") is None and step.type == "llm":
            users = [m for m in step.messages if m.role == "user"]
            if users and users[-1].text():
                fields["input"] = users[-1].text()
        if fields.get("output") is None and step.type == "llm":
            out = step.output_message
            if out is not None and out.text():
                fields["output"] = out.text()
    if waiting:
        fields["metadata"][PENDING_LOG_EVENTS] = waiting


def trace_bounds(trace: Trace) -> tuple[datetime | None, datetime | None]:
    starts = [s.started_at for s in trace.steps if s.started_at]
    ends = [s.ended_at for s in trace.steps if s.ended_at]
    start = trace.started_at or (min(starts) if starts else None)
    end = trace.ended_at or (max(ends) if ends else None)
    return start, end


def trace_latency_ms(trace: Trace) -> float | None:
    start, end = trace_bounds(trace)
    if start is None or end is None:
        return None
    ms = (end - start).total_seconds() * 1000
    return ms if ms >= 0 else None


@dataclass(slots=True)
class PreparedTrace:
    """A trace turned into the rows the store keeps, ready to write: priced, totalled, the rules run. Made
    without the store (and so possibly in another process, see importers.parallel)."""

    id: str
    source: str | None
    started_at: str | None
    trace_row: tuple[Any, ...]
    step_rows: list[tuple[Any, ...]]
    finding_rows: list[tuple[Any, ...]]
    search_body: str
    steps: int
    findings: int


_INSERT_TRACE = (
    "INSERT INTO traces (id, name, prompt_name, prompt_version, model, started_at, ended_at, user_id, "
    "session_id, steps, llm_calls, tool_calls, input_tokens, output_tokens, cache_read_tokens, "
    "reasoning_tokens, usage_unknown_steps, cost, cost_unknown_steps, latency_ms, status, errors, findings, "
    "worst_severity, partial, source, header, rule_runs, ingested_at) "
    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
_INSERT_STEP = (
    "INSERT INTO steps (trace_id, idx, id, parent_id, type, name, model, status, input_tokens, "
    "output_tokens, cost_computed, cost_reported, cost_note, started_at, latency_ms, data) "
    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
_INSERT_FINDING = (
    "INSERT INTO findings (trace_id, idx, rule_id, severity, message, evidence, quote, data) "
    "VALUES (?,?,?,?,?,?,?,?)"
)


def prepare_trace(trace: Trace, pricer: Pricer, rules_config: Config | None) -> PreparedTrace:
    """Price, total and run the rules over a trace, and make its rows (see PreparedTrace)."""
    costs = {s.id: pricer.step_cost(s) for s in trace.steps}
    totals = compute_totals(trace, costs, [])
    rules = run_rules(trace, rules_config, totals=totals, pricer=pricer)
    totals.findings = len(rules.findings)
    start, end = trace_bounds(trace)
    started_at = format_time(start)
    first_model = next((s.model for s in trace.steps if s.type == "llm" and s.model), None)
    worst = max((f.severity for f in rules.findings), key=SEVERITY_RANK.__getitem__, default=None)
    header = trace.model_dump(mode="json", exclude={"steps"}, exclude_none=True)
    trace_row = (
        trace.id, trace.name, trace.prompt.name if trace.prompt else None,
        trace.prompt.version if trace.prompt else None, first_model, started_at, format_time(end),
        trace.user_id, trace.session_id, totals.steps, totals.llm_calls, totals.tool_calls,
        totals.input_tokens, totals.output_tokens, totals.cache_read_tokens, totals.reasoning_tokens,
        totals.usage_unknown_steps, totals.cost, totals.cost_unknown_steps, totals.latency_ms,
        "error" if totals.errors else "ok", totals.errors, totals.findings, worst, int(trace.partial),
        trace.source, json.dumps(header, ensure_ascii=False),
        json.dumps([r.model_dump(mode="json") for r in rules.runs]), format_time(datetime.now(tz=UTC)),
    )
    step_rows = []
    for i, s in enumerate(trace.steps):
        cost = costs[s.id]
        usage = s.usage
        step_rows.append((
            trace.id, i, s.id, s.parent_id, s.type, s.name, s.model, s.status,
            usage.input_tokens if usage else None, usage.output_tokens if usage else None,
            cost.computed, cost.reported, cost.reason or cost.priced_as, format_time(s.started_at), s.latency_ms,
            s.model_dump_json(exclude_none=True),
        ))
    finding_rows = [
        (trace.id, i, f.rule_id, f.severity, f.message, json.dumps(f.evidence), f.quote, json.dumps(f.data))
        for i, f in enumerate(rules.findings)
    ]
    return PreparedTrace(trace.id, trace.source, started_at, trace_row, step_rows, finding_rows,
                         search_text(trace), len(trace.steps), len(rules.findings))


def _existing_ids(conn: sqlite3.Connection, ids: list[str]) -> set[str]:
    """Which of these trace IDs are stored."""
    found: set[str] = set()
    for i in range(0, len(ids), 500):
        part = ids[i:i + 500]
        found.update(r[0] for r in conn.execute(
            f"SELECT id FROM traces WHERE id IN ({','.join('?' * len(part))})", part))
    return found


def _insert_bulk(conn: sqlite3.Connection, items: list[PreparedTrace]) -> None:
    """The rows of traces not stored yet: traces, steps, findings, and their search documents."""
    conn.executemany(_INSERT_TRACE, [p.trace_row for p in items])
    conn.executemany(_INSERT_STEP, [r for p in items for r in p.step_rows])
    conn.executemany(_INSERT_FINDING, [r for p in items for r in p.finding_rows])
    docs = [(new_doc(conn, p.id, p.started_at), p.search_body) for p in items]
    conn.executemany("INSERT INTO trace_search (rowid, body) VALUES (?, ?)", docs)


class Store:
    """A traceloupe store: one SQLite file in WAL mode, migrated when opened."""

    def __init__(self, path: str | Path | None = None, *, pricer: Pricer | None = None, create: bool = True,
                 rules_config: Config | None = None) -> None:
        self.path = Path(path) if path is not None else default_db_path()
        self.pricer = pricer or default_pricer()
        # The rules' configuration used at ingest; None: the one active for the caller (see rules.using_config).
        self.rules_config = rules_config
        self._lock = threading.RLock()
        # Opened for reading only: the file or its folder cannot be written. Writes raise StoreError saying so.
        self.read_only = False
        # Things the user should hear about opening (a migration and its backup); the caller shows them.
        self.notices: list[str] = []
        self.backup: Path | None = None  # the copy taken before migrating an older store
        if self.path.exists() and self.path.is_dir():
            raise StoreError(f"{self.path}: is a directory, not a store file")
        if not create and self.path.is_file() and self.path.stat().st_size == 0:
            # SQLite would take an empty file for an empty database; a read command must not turn it into a store.
            raise StoreError(f"{self.path}: an empty file, not a store (loupe ingest creates one); left as it is")
        if not self.path.exists():
            if not create:
                raise StoreError(f"{self.path}: no store there (loupe ingest creates one)")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"{self.path}: cannot create the store's folder: {exc.strerror or exc}") from exc
            if not _can_write(self.path.parent):
                raise StoreError(f"{self.path}: cannot create the store: the folder {self.path.parent} is read-only")
        else:
            self.read_only = not (_can_write(self.path) and _can_write(self.path.parent))
        conn: sqlite3.Connection | None = None
        self._database: Database | None = None
        try:
            # Autocommit mode: every write transaction is explicit (see _write). One connection is shared by
            # the UI's worker threads, guarded by self._lock.
            conn = self._connect()
            self.conn = conn
            conn.execute("PRAGMA busy_timeout = 30000")
            if self._up_to_date():
                # The usual case: nothing to check or migrate, and sqlite-utils (and what it imports) is not
                # loaded at all, so `loupe show` stays quick.
                if not self.read_only:
                    conn.execute("PRAGMA journal_mode = WAL")
                    conn.execute("PRAGMA synchronous = NORMAL")
                return
            self._check_version()
            if self.read_only:
                from .migrations import migrations

                pending = [m.name for m in migrations.pending(self.db)]
                if pending:
                    raise StoreError(
                        f"{self.path}: this store is from an older loupe and needs upgrading ({', '.join(pending)}), "
                        "but it is read-only; it was left untouched. Make the file and its folder writable, or open "
                        "a writable copy"
                    )
            else:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
                self._migrate()
        except StoreError:
            if conn is not None:
                conn.close()
            raise
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            raise store_failure(self.path, exc) from exc

    @property
    def db(self) -> Database:
        """The connection as sqlite-utils sees it (for the migrations), made when first asked for."""
        if self._database is None:
            from sqlite_utils import Database

            self._database = Database(self.conn)
        return self._database

    def _up_to_date(self) -> bool:
        """Whether the store has exactly this program's migrations applied, read without sqlite-utils."""
        try:
            rows = self.conn.execute(
                "SELECT name FROM _sqlite_migrations WHERE migration_set = 'traceloupe' ORDER BY rowid").fetchall()
        except sqlite3.OperationalError:
            return False  # a new file, or another program's: the full check decides
        return tuple(r[0] for r in rows) == SCHEMA

    def _connect(self) -> sqlite3.Connection:
        if not self.read_only:
            return sqlite3.connect(str(self.path), check_same_thread=False, timeout=30, isolation_level=None)
        # Read-only: SQLite must not try to write (a read-only mount refuses it with a misleading "unable to open").
        # A WAL store in a folder where its -wal and -shm files neither exist nor can be created is opened
        # immutable: no writer can be using it, since a writer needs those files.
        side = [Path(f"{self.path}{suffix}") for suffix in ("-wal", "-shm")]
        immutable = not _can_write(self.path.parent) and not any(p.exists() for p in side)
        uri = f"{self.path.resolve().as_uri()}?mode=ro" + ("&immutable=1" if immutable else "")
        return sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=30, isolation_level=None)

    def _migrate(self) -> None:
        """Apply pending migrations. An existing store is copied first (SQLite's backup API, a consistent copy
        even while others write), and the copy is named in a notice; a store that cannot be copied is not
        migrated."""
        from .migrations import migrations

        applied = [m.name for m in migrations.applied(self.db)]
        pending = [m.name for m in migrations.pending(self.db)]
        if applied and pending:
            stamp = datetime.now(tz=UTC).strftime("%Y%m%dT%H%M%S")
            last = applied[-1].split("_", 1)[0]
            backup = self.path.with_name(f"{self.path.name}.bak-{last}-{stamp}")
            n = 1
            while backup.exists():
                n += 1
                backup = self.path.with_name(f"{self.path.name}.bak-{last}-{stamp}-{n}")
            try:
                target = sqlite3.connect(str(backup))
                try:
                    with self._lock:
                        self.conn.backup(target)
                finally:
                    target.close()
            except sqlite3.Error as exc:
                backup.unlink(missing_ok=True)
                raise StoreError(
                    f"{self.path}: this store is from an older loupe and needs upgrading ({', '.join(pending)}), "
                    f"but the backup copy {backup} could not be written ({exc}); nothing was changed"
                ) from exc
            self.backup = backup
        # All of them in one transaction under the write lock: two programs opening an old store at once migrate
        # it once, and a migration that fails (a damaged page, a full disk) leaves the store as it was. (Every
        # migration so far is transactional; one that is not, a VACUUM, would have to run after the COMMIT.)
        with self._lock:
            conn = self.conn
            try:
                conn.execute("BEGIN IMMEDIATE")
                migrations.apply(self.db)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if self.backup is not None:
                    self.backup.unlink(missing_ok=True)  # the store is unchanged: the copy would only be litter
                    self.backup = None
                raise
        if self.backup is not None:
            self.notices.append(
                f"{self.path}: upgraded from an older loupe ({', '.join(pending)} applied); the store as it was "
                f"is kept in {self.backup}"
            )

    def _check_version(self) -> None:
        """Refuse, untouched, a store from a newer loupe and an SQLite file that belongs to something else."""
        from .migrations import KNOWN, migrations

        tables = set(self.db.table_names())
        applied = {m.name for m in migrations.applied(self.db)}
        if tables and not applied:
            raise StoreError(
                f"{self.path}: an SQLite database that is not a traceloupe store (it has tables "
                f"{', '.join(sorted(tables)[:5])}); it was left untouched"
            )
        newer = sorted(applied - set(KNOWN))
        if newer:
            raise StoreError(
                f"{self.path}: this store was written by a newer loupe (migrations {', '.join(newer)}); "
                "upgrade traceloupe to open it. The file was left untouched."
            )

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ writes

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction. BEGIN IMMEDIATE takes the write lock up front, so a second writer waits for
        busy_timeout instead of failing with "database is locked" when its read turns into a write.

        A failure of the store itself (full disk, read-only or damaged file) is raised as StoreError naming the
        file; nothing of the transaction is then stored."""
        if self.read_only:
            raise StoreError(f"{self.path}: the store cannot be written: the file or its folder is read-only; "
                             "nothing was changed")
        with self._lock:
            conn = self.conn
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    # SQLite may already have rolled back (a full disk does): ROLLBACK again would hide why.
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                try:
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                if is_store_failure(exc):
                    raise store_failure(self.path, exc) from exc
                raise

    def insert_traces(self, traces: Iterable[Trace]) -> IngestCounts:
        """Insert or replace traces (the same ID updates, never duplicates), with costs and findings.

        One that cannot be stored is reported in `failed` and the others in the batch are still stored."""
        counts = IngestCounts()
        # Prepared before the write lock is taken, so that other writers wait only for the writing; a trace to be
        # combined with the stored one of its ID (Trace.merge) is prepared inside the transaction, in its turn.
        work: list[Trace | PreparedTrace] = []
        for trace in traces:
            if trace.merge:
                work.append(trace)
                continue
            try:
                work.append(prepare_trace(trace, self.pricer, self.rules_config))
            except (ValueError, OverflowError, UnicodeError) as exc:
                counts.failed.append((trace.id, trace.source, f"cannot be stored: {exc}"))
        with self._write() as conn:
            ready: list[PreparedTrace] = []
            for item in work:
                if isinstance(item, PreparedTrace):
                    ready.append(item)
                    continue
                self._write_prepared(conn, ready, counts)
                ready = []
                self._write_merged(conn, item, counts)
            self._write_prepared(conn, ready, counts)
        return counts

    def insert_prepared(self, prepared: list[PreparedTrace]) -> IngestCounts:
        """Write traces prepared elsewhere (`prepare_trace`, maybe in another process), as `insert_traces` does."""
        counts = IngestCounts()
        with self._write() as conn:
            self._write_prepared(conn, prepared, counts)
        return counts

    def _write_merged(self, conn: sqlite3.Connection, trace: Trace, counts: IngestCounts) -> None:
        def write() -> tuple[PreparedTrace, bool]:
            # The stored trace of the same ID combined with this one, span by span (see Trace.merge); read once,
            # it also gives the words its search document was made of.
            stored = _stored_trace(conn, trace.id)
            merged = merge_traces(stored, trace) if stored is not None else trace
            prepared = prepare_trace(merged, self.pricer, self.rules_config)
            return prepared, self._write_rows(conn, prepared, stored)

        self._write_one(conn, counts, trace, write)

    @staticmethod
    def _write_one(conn: sqlite3.Connection, counts: IngestCounts, subject: Trace | PreparedTrace,
                   write: Callable[[], tuple[PreparedTrace, bool]]) -> None:
        """One trace under its own savepoint: written and counted, or left out whole and reported in `failed`."""
        conn.execute("SAVEPOINT trace")
        try:
            prepared, existed = write()
        except (sqlite3.Error, ValueError, OverflowError, UnicodeError) as exc:
            if is_store_failure(exc) or not conn.in_transaction:
                raise  # the store failed, not this trace: the whole batch is rolled back (see _write)
            conn.execute("ROLLBACK TO trace")
            conn.execute("RELEASE trace")
            counts.failed.append((subject.id, subject.source, f"cannot be stored: {exc}"))
            return
        conn.execute("RELEASE trace")
        counts.add(prepared.id, prepared.steps, existed, prepared.findings)

    def _write_prepared(self, conn: sqlite3.Connection, items: list[PreparedTrace], counts: IngestCounts) -> None:
        """New traces in bulk (one savepoint, executemany); stored ones, repeats, and every trace of a bulk
        write that failed, one at a time under their own savepoints, so one bad trace costs only itself."""
        if not items:
            return
        existing = _existing_ids(conn, [p.id for p in items])
        bulk: list[PreparedTrace] = []
        one_by_one: list[PreparedTrace] = []
        seen: set[str] = set()
        for p in items:
            (one_by_one if p.id in existing or p.id in seen else bulk).append(p)
            seen.add(p.id)
        if bulk:
            conn.execute("SAVEPOINT batch")
            try:
                _insert_bulk(conn, bulk)
            except (sqlite3.Error, ValueError, OverflowError, UnicodeError) as exc:
                if is_store_failure(exc) or not conn.in_transaction:
                    raise
                conn.execute("ROLLBACK TO batch")
                conn.execute("RELEASE batch")
                one_by_one = bulk + one_by_one  # new and distinct: their order among themselves does not matter
            else:
                conn.execute("RELEASE batch")
                for p in bulk:
                    counts.add(p.id, p.steps, False, p.findings)
        for p in one_by_one:
            self._write_one(conn, counts, p, functools.partial(self._replace, conn, p))

    def _replace(self, conn: sqlite3.Connection, p: PreparedTrace) -> tuple[PreparedTrace, bool]:
        return p, self._write_rows(conn, p, None)

    def _write_rows(self, conn: sqlite3.Connection, p: PreparedTrace, stored: Trace | None) -> bool:
        """Write one prepared trace, replacing the stored one of its ID; whether there was one. `stored`: that
        trace, when the caller has read it already."""
        existed = conn.execute("SELECT 1 FROM traces WHERE id = ?", (p.id,)).fetchone() is not None
        doc_row = conn.execute("SELECT doc FROM search_docs WHERE trace_id = ?", (p.id,)).fetchone()
        if existed:
            if doc_row is not None:
                # A contentless index forgets a document only when told the words it was given.
                if stored is None:
                    try:
                        stored = _stored_trace(conn, p.id)
                    except ValueError:
                        stored = None  # unreadable as a trace now: its old words stay, pointing at this trace only
                if stored is not None:
                    conn.execute("INSERT INTO trace_search (trace_search, rowid, body) VALUES ('delete', ?, ?)",
                                 (doc_row[0], search_text(stored)))
                # A new number: the start time, which the number follows, may have changed.
                conn.execute("DELETE FROM search_docs WHERE doc = ?", (doc_row[0],))
            conn.execute("DELETE FROM steps WHERE trace_id = ?", (p.id,))
            conn.execute("DELETE FROM findings WHERE trace_id = ?", (p.id,))
            conn.execute("DELETE FROM traces WHERE id = ?", (p.id,))
        _insert_bulk(conn, [p])
        return existed

    # ------------------------------------------------------------------ reads

    def resolve_id(self, ref: str) -> str:
        """A full trace ID from a full ID or a unique prefix."""
        ref = ref.strip()
        with self._lock:
            if self.conn.execute("SELECT 1 FROM traces WHERE id = ?", (ref,)).fetchone():
                return ref
            rows = self.conn.execute(
                "SELECT id FROM traces WHERE id >= ? AND id < ? ORDER BY id LIMIT 11", (ref, ref + "\U0010ffff")
            ).fetchall()
        if not rows or not ref:
            raise TraceNotFound(ref)
        if len(rows) > 1:
            raise AmbiguousTraceId(ref, [r[0] for r in rows])
        return rows[0][0]

    def get_trace(self, ref: str) -> StoredTrace:
        trace_id = self.resolve_id(ref)
        with self._lock:
            conn = self.conn
            row = conn.execute(
                "SELECT header, rule_runs, ingested_at, steps, llm_calls, tool_calls, input_tokens, output_tokens, "
                "cache_read_tokens, reasoning_tokens, usage_unknown_steps, cost, cost_unknown_steps, latency_ms, "
                "errors, findings FROM traces WHERE id = ?",
                (trace_id,),
            ).fetchone()
            step_rows = conn.execute(
                "SELECT data, cost_computed, cost_reported, cost_note FROM steps WHERE trace_id = ? ORDER BY idx",
                (trace_id,),
            ).fetchall()
            finding_rows = conn.execute(
                "SELECT rule_id, severity, message, evidence, quote, data FROM findings WHERE trace_id = ? "
                "ORDER BY idx",
                (trace_id,),
            ).fetchall()
        header = json.loads(row[0])
        steps = [Step.model_validate_json(r[0]) for r in step_rows]
        trace = Trace.model_validate({**header, "steps": []})
        trace.steps = steps
        costs = {}
        for s, r in zip(steps, step_rows, strict=True):
            computed, reported, note = r[1], r[2], r[3]
            costs[s.id] = StepCost(
                computed=computed, reported=reported,
                priced_as=note if computed is not None else None, reason=None if computed is not None else note,
            )
        keys = ("steps", "llm_calls", "tool_calls", "input_tokens", "output_tokens", "cache_read_tokens",
                "reasoning_tokens", "usage_unknown_steps", "cost", "cost_unknown_steps", "latency_ms", "errors",
                "findings")
        totals = TraceTotals(**dict(zip(keys, row[3:], strict=True)))
        findings = [
            Finding(rule_id=r[0], severity=r[1], message=r[2], evidence=json.loads(r[3]), quote=r[4],
                    data=json.loads(r[5]))
            for r in finding_rows
        ]
        runs = [RuleRun.model_validate(x) for x in json.loads(row[1])]
        return StoredTrace(trace=trace, costs=costs, totals=totals, findings=findings, rule_runs=runs,
                           ingested_at=row[2])

    def data_version(self) -> int:
        """A number that changes when another connection commits to the store (PRAGMA data_version): cheap to
        poll, so a reader can tell when there is something new to show."""
        with self._lock:
            return int(self.conn.execute("PRAGMA data_version").fetchone()[0])

    def count_traces(self, flt: TraceFilter | None = None) -> int:
        flt = flt or TraceFilter()
        query = fts_query(flt.search) if flt.search else None
        if query is not None and dataclasses.replace(flt, search=None) == TraceFilter():
            # A search alone: every trace has one document, so the index counts them without reading the traces.
            with self._lock:
                return int(self.conn.execute(
                    "SELECT count(*) FROM trace_search WHERE trace_search MATCH ?", (query,)).fetchone()[0])
        where, params = flt.where()
        with self._lock:
            return self.conn.execute(f"SELECT count(*) FROM traces WHERE {where}", params).fetchone()[0]

    def list_traces(
        self,
        flt: TraceFilter | None = None,
        *,
        limit: int = 100,
        offset: int | None = None,
        after: tuple[str | None, str] | None = None,
    ) -> list[TraceSummary]:
        """Traces newest first. Page with `after` (the last row's (started_at, id)) or, for jumps, `offset`."""
        flt = flt or TraceFilter()
        query = fts_query(flt.search) if flt.search else None
        if query is not None:
            return self._search_page(flt, query, limit, offset or 0, after)
        where, params = flt.where()
        keyset, keyset_params = _keyset(after)
        # SQLite sorts NULL below every value, so DESC puts traces without a start time last by itself; spelling
        # that out ("started_at IS NULL" first) would keep the indexes from giving the order, and every page
        # would sort all the matching rows (seconds at a million traces).
        sql = f"SELECT {SUMMARY_COLUMNS} FROM traces WHERE {where}{keyset} ORDER BY started_at DESC, id DESC LIMIT ?"
        params = [*params, *keyset_params, limit]
        if offset:
            sql += " OFFSET ?"
            params.append(offset)
        with self._lock:
            rows = self.conn.execute(sql, params).fetchall()
        return [_summary(r) for r in rows]

    def _search_page(self, flt: TraceFilter, query: str, limit: int, offset: int,
                     after: tuple[str | None, str] | None) -> list[TraceSummary]:
        """A page of a search: the index's hits read newest first (document numbers follow start times, see
        DOC_SLOTS) in growing chunks, each checked against the other filters, until the page is certain."""
        rest, rest_params = dataclasses.replace(flt, search=None).where()
        keyset, keyset_params = _keyset(after)
        need = offset + limit
        below = doc_range(after[0])[1] if after is not None else None  # hits up to the last row's microsecond
        found: list[Any] = []
        # Each read of the index costs about as much as the word's whole list of hits when its last word is a
        # prefix (FTS5 merges the words it stands for): read few times. With other filters, expect to need more.
        chunk = min(max(64, 2 * need) * (1 if rest == "1" else 16), 8_192)
        with self._lock:
            conn = self.conn
            while True:
                if below is None:
                    docs = [r[0] for r in conn.execute(
                        "SELECT rowid FROM trace_search WHERE trace_search MATCH ? ORDER BY rowid DESC LIMIT ?",
                        (query, chunk))]
                else:
                    docs = [r[0] for r in conn.execute(
                        "SELECT rowid FROM trace_search WHERE trace_search MATCH ? AND rowid < ? "
                        "ORDER BY rowid DESC LIMIT ?", (query, below, chunk))]
                if docs:
                    marks = ",".join("?" * len(docs))
                    found += conn.execute(
                        f"SELECT {SUMMARY_COLUMNS} FROM traces WHERE id IN (SELECT trace_id FROM search_docs "
                        f"WHERE doc IN ({marks})) AND {rest}{keyset}", [*docs, *rest_params, *keyset_params]).fetchall()
                    below = docs[-1]
                if len(docs) < chunk:
                    break  # every hit read
                if len(found) >= need and below is not None:
                    found.sort(key=_list_order, reverse=True)
                    # The hits still unread started no later than the last one read: once that is before the
                    # page's last row's microsecond, none of them can come before it.
                    if below <= doc_range(found[need - 1][5])[0]:
                        break
                chunk = min(chunk * 4, 8_192)
        found.sort(key=_list_order, reverse=True)
        return [_summary(r) for r in found[offset:need]]

    def iter_traces(self, flt: TraceFilter | None = None, *, page: int = 500) -> Iterator[TraceSummary]:
        after = None
        while True:
            rows = self.list_traces(flt, limit=page, after=after)
            yield from rows
            if len(rows) < page:
                return
            after = (rows[-1].started_at, rows[-1].id)

    def prompt_versions(self) -> list[tuple[str | None, str | None, int]]:
        """(prompt name, version, trace count), by name then version."""
        with self._lock:
            rows = self.conn.execute(
                "SELECT prompt_name, prompt_version, count(*) FROM traces GROUP BY prompt_name, prompt_version "
                "ORDER BY prompt_name IS NULL, prompt_name, prompt_version IS NULL, prompt_version"
            ).fetchall()
        return [(r[0], r[1], r[2]) for r in rows]

    # ------------------------------------------------------------------ eval cases

    def find_case(self, content_hash: str) -> tuple[str, str | None] | None:
        """(case ID, file path) of the case with this content hash, if there is one."""
        with self._lock:
            row = self.conn.execute(
                "SELECT id, path FROM eval_cases WHERE content_hash = ?", (content_hash,)
            ).fetchone()
        return (row[0], row[1]) if row else None

    def save_case(self, case: EvalCase, path: str | None) -> bool:
        """Store a case; False (and nothing written) when a case with the same content hash exists."""
        with self._write() as conn:
            cur = conn.execute(
                "INSERT OR IGNORE INTO eval_cases (id, trace_id, content_hash, grp, name, path, created_at, data) "
                "VALUES (?,?,?,?,?,?,?,?)",
                (case.id, case.source_trace["id"], case.content_hash, case.group, case.name, path,
                 case.created_at, case.model_dump_json()),
            )
            return cur.rowcount == 1

    def get_case(self, case_id: str) -> EvalCase | None:
        with self._lock:
            row = self.conn.execute("SELECT data FROM eval_cases WHERE id = ?", (case_id,)).fetchone()
        return EvalCase.model_validate_json(row[0]) if row else None

    def cases_for_trace(self, trace_id: str) -> list[tuple[str, str | None]]:
        with self._lock:
            rows = self.conn.execute(
                "SELECT id, path FROM eval_cases WHERE trace_id = ? ORDER BY created_at", (trace_id,)
            ).fetchall()
        return [(r[0], r[1]) for r in rows]

    def list_cases(self) -> list[EvalCase]:
        with self._lock:
            rows = self.conn.execute("SELECT data FROM eval_cases ORDER BY grp, created_at").fetchall()
        return [EvalCase.model_validate_json(r[0]) for r in rows]

    # ------------------------------------------------------------------ eval results

    def save_eval_results(self, run_id: str, ran_at: str, results: Iterable[EvalResultRow]) -> int:
        """Record one run's result per case (status "pass", "fail" or "not run"); returns rows written."""
        n = 0
        with self._write() as conn:
            for r in results:
                conn.execute(
                    "INSERT INTO eval_results (run_id, case_id, grp, prompt_name, prompt_version, "
                    "trace_id, status, ran_at, data) VALUES (?,?,?,?,?,?,?,?,?)",
                    (run_id, r.case_id, r.group, r.prompt_name, r.prompt_version, r.trace_id, r.status, ran_at,
                     json.dumps(r.data, ensure_ascii=False, default=str)),
                )
                n += 1
        return n

    def last_eval_results(self, case_id: str | None = None) -> list[EvalResultRow]:
        """The latest result per case and prompt version (for one case, or every case), newest first."""
        where, args = ("WHERE case_id = ?", [case_id]) if case_id else ("", [])
        with self._lock:
            rows = self.conn.execute(
                "SELECT case_id, grp, prompt_name, prompt_version, trace_id, status, ran_at, data FROM ("
                "  SELECT *, row_number() OVER (PARTITION BY case_id, prompt_name, prompt_version "
                f"  ORDER BY ran_at DESC, run_id DESC) AS n FROM eval_results {where}"
                ") WHERE n = 1 ORDER BY ran_at DESC, case_id",
                args,
            ).fetchall()
        return [EvalResultRow(case_id=r[0], group=r[1], prompt_name=r[2], prompt_version=r[3], trace_id=r[4],
                              status=r[5], ran_at=r[6], data=json.loads(r[7])) for r in rows]

    def eval_pass_rates(self) -> dict[tuple[str | None, str | None], tuple[int, int]]:
        """(prompt name, version) -> (cases passed, cases run) over each case's latest result for that version;
        "not run" results are not counted as run."""
        out: dict[tuple[str | None, str | None], tuple[int, int]] = {}
        for r in self.last_eval_results():
            if r.status == "not run":
                continue
            passed, run = out.get((r.prompt_name, r.prompt_version), (0, 0))
            out[(r.prompt_name, r.prompt_version)] = (passed + (r.status == "pass"), run + 1)
        return out

