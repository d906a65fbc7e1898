"""The one store class in front of SQLite: migrating on open, idempotent writes, paged and filtered reads."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from .config import Config
from .migrations import KNOWN, migrations
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

ENV_DB = "LOUPE_DB"


class StoreError(Exception):
    """The store cannot be opened or used; the message says why and names the file."""


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
                if "@" in pv:
                    # The version never holds "@"; a prompt name may ("team@acme@v9").
                    name, _, version = pv.rpartition("@")
                    ors.append("(prompt_name IS ? AND prompt_version IS ?)")
                    params += [None if name == NO_PROMPT else name, _version_or_none(version)]
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


def _parse_bound(text: str) -> datetime:
    from .models import parse_time

    dt = parse_time(text)
    if dt is None:
        raise ValueError(f"not a time: {text!r}")
    return dt


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


class Store:
    """A traceloupe store: one SQLite file in WAL mode, migrated when opened."""

    def __init__(self, path: str | Path | None = None, *, pricer: Pricer | None = None, create: bool = True,
                 rules_config: Config | None = None) -> None:
        self.path = Path(path) if path is not None else default_db_path()
        self.pricer = pricer or default_pricer()
        # The rules' configuration used at ingest; None: the one active for the caller (see rules.using_config).
        self.rules_config = rules_config
        self._lock = threading.RLock()
        if self.path.exists() and self.path.is_dir():
            raise StoreError(f"{self.path}: is a directory, not a store file")
        if not self.path.exists():
            if not create:
                raise StoreError(f"{self.path}: no store there (loupe ingest creates one)")
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # Autocommit mode: every write transaction is explicit (see _write). One connection is shared by
            # the UI's worker threads, guarded by self._lock.
            conn = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30, isolation_level=None)
            self.db = Database(conn)
            conn.execute("PRAGMA busy_timeout = 30000")
            self._check_version()
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            migrations.apply(self.db)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: not a traceloupe store or damaged ({exc})") from exc

    def _check_version(self) -> None:
        """Refuse, untouched, a store from a newer loupe and an SQLite file that belongs to something else."""
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
            self.db.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ writes

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction. BEGIN IMMEDIATE takes the write lock up front, so a second writer waits for
        busy_timeout instead of failing with "database is locked" when its read turns into a write."""
        with self._lock:
            conn = self.db.conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def insert_traces(self, traces: Iterable[Trace]) -> IngestCounts:
        """Insert or replace traces (the same ID updates, never duplicates), with costs and findings.

        Each trace is written under its own savepoint: one that cannot be stored is reported in `failed`
        and the others in the batch are still stored."""
        counts = IngestCounts()
        with self._write() as conn:
            for trace in traces:
                conn.execute("SAVEPOINT trace")
                try:
                    existed, found = self._write_trace(conn, trace)
                except (sqlite3.Error, ValueError, OverflowError, UnicodeError) as exc:
                    conn.execute("ROLLBACK TO trace")
                    conn.execute("RELEASE trace")
                    counts.failed.append((trace.id, trace.source, f"cannot be stored: {exc}"))
                    continue
                conn.execute("RELEASE trace")
                counts.traces += 1
                counts.steps += len(trace.steps)
                counts.updated += existed
                counts.ids.add(trace.id)
                if existed:
                    counts.existed.add(trace.id)
                counts.findings += found
                counts.traces_with_findings += found > 0
        return counts

    def _merged(self, conn: sqlite3.Connection, trace: Trace) -> Trace:
        """The stored trace of the same ID combined with this one, span by span (see Trace.merge)."""
        row = conn.execute("SELECT header FROM traces WHERE id = ?", (trace.id,)).fetchone()
        if row is None:
            return trace
        old = Trace.model_validate(json.loads(row[0]))
        old.steps = [Step.model_validate_json(r[0]) for r in conn.execute(
            "SELECT data FROM steps WHERE trace_id = ? ORDER BY idx", (trace.id,))]
        return merge_traces(old, trace)

    def _write_trace(self, conn: sqlite3.Connection, trace: Trace) -> tuple[bool, int]:
        """Write one trace with its costs and findings; (whether it replaced a stored one, findings)."""
        if trace.merge:
            trace = self._merged(conn, trace)
        costs = {s.id: self.pricer.step_cost(s) for s in trace.steps}
        totals = compute_totals(trace, costs, [])
        rules = run_rules(trace, self.rules_config, totals=totals, pricer=self.pricer)
        totals.findings = len(rules.findings)
        start, end = trace_bounds(trace)
        existed = conn.execute("SELECT 1 FROM traces WHERE id = ?", (trace.id,)).fetchone() is not None
        if existed:
            conn.execute("DELETE FROM steps WHERE trace_id = ?", (trace.id,))
            conn.execute("DELETE FROM findings WHERE trace_id = ?", (trace.id,))
            conn.execute("DELETE FROM traces WHERE id = ?", (trace.id,))
        first_model = next((s.model for s in trace.steps if s.type == "llm" and s.model), None)
        worst = max((f.severity for f in rules.findings), key=SEVERITY_RANK.__getitem__, default=None)
        header = trace.model_dump(mode="json", exclude={"steps"}, exclude_none=True)
        conn.execute(
            "INSERT INTO traces (id, name, prompt_name, prompt_version, model, started_at, ended_at, user_id, "
            "session_id, steps, llm_calls, tool_calls, input_tokens, output_tokens, cache_read_tokens, "
            "reasoning_tokens, usage_unknown_steps, cost, cost_unknown_steps, latency_ms, status, errors, findings, "
            "worst_severity, partial, source, header, rule_runs, ingested_at) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                trace.id, trace.name, trace.prompt.name if trace.prompt else None,
                trace.prompt.version if trace.prompt else None, first_model, format_time(start), format_time(end),
                trace.user_id, trace.session_id, totals.steps, totals.llm_calls, totals.tool_calls,
                totals.input_tokens, totals.output_tokens, totals.cache_read_tokens, totals.reasoning_tokens,
                totals.usage_unknown_steps, totals.cost, totals.cost_unknown_steps, totals.latency_ms,
                "error" if totals.errors else "ok", totals.errors, totals.findings, worst, int(trace.partial),
                trace.source, json.dumps(header, ensure_ascii=False),
                json.dumps([r.model_dump(mode="json") for r in rules.runs]), format_time(datetime.now(tz=UTC)),
            ),
        )
        conn.executemany(
            "INSERT INTO steps (trace_id, idx, id, parent_id, type, name, model, status, input_tokens, "
            "output_tokens, cost_computed, cost_reported, cost_note, started_at, latency_ms, data) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [
                (
                    trace.id, i, s.id, s.parent_id, s.type, s.name, s.model, s.status,
                    s.usage.input_tokens if s.usage else None, s.usage.output_tokens if s.usage else None,
                    costs[s.id].computed, costs[s.id].reported,
                    costs[s.id].reason or costs[s.id].priced_as, format_time(s.started_at), s.latency_ms,
                    s.model_dump_json(exclude_none=True),
                )
                for i, s in enumerate(trace.steps)
            ],
        )
        conn.executemany(
            "INSERT INTO findings (trace_id, idx, rule_id, severity, message, evidence, quote, data) "
            "VALUES (?,?,?,?,?,?,?,?)",
            [
                (trace.id, i, f.rule_id, f.severity, f.message, json.dumps(f.evidence), f.quote, json.dumps(f.data))
                for i, f in enumerate(rules.findings)
            ],
        )
        return existed, len(rules.findings)

    # ------------------------------------------------------------------ reads

    def resolve_id(self, ref: str) -> str:
        """A full trace ID from a full ID or a unique prefix."""
        ref = ref.strip()
        with self._lock:
            if self.db.conn.execute("SELECT 1 FROM traces WHERE id = ?", (ref,)).fetchone():
                return ref
            rows = self.db.conn.execute(
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
            conn = self.db.conn
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
            return int(self.db.conn.execute("PRAGMA data_version").fetchone()[0])

    def count_traces(self, flt: TraceFilter | None = None) -> int:
        where, params = (flt or TraceFilter()).where()
        with self._lock:
            return self.db.conn.execute(f"SELECT count(*) FROM traces WHERE {where}", params).fetchone()[0]

    def list_traces(
        self,
        flt: TraceFilter | None = None,
        *,
        limit: int = 100,
        offset: int | None = None,
        after: tuple[str | None, str] | None = None,
    ) -> list[TraceSummary]:
        """Traces newest first. Page with `after` (the last row's (started_at, id)) or, for jumps, `offset`."""
        where, params = (flt or TraceFilter()).where()
        sql = f"SELECT {SUMMARY_COLUMNS} FROM traces WHERE {where}"
        if after is not None:
            started, tid = after
            # Keyset: rows strictly after the given one in (started_at DESC, id DESC) order; NULL times sort last.
            if started is None:
                sql += " AND started_at IS NULL AND id < ?"
                params = [*params, tid]
            else:
                sql += " AND (started_at < ? OR (started_at = ? AND id < ?) OR started_at IS NULL)"
                params = [*params, started, started, tid]
        sql += " ORDER BY started_at IS NULL, started_at DESC, id DESC LIMIT ?"
        params = [*params, limit]
        if offset:
            sql += " OFFSET ?"
            params.append(offset)
        with self._lock:
            rows = self.db.conn.execute(sql, params).fetchall()
        return [_summary(r) for r in rows]

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
            rows = self.db.conn.execute(
                "SELECT prompt_name, prompt_version, count(*) FROM traces GROUP BY prompt_name, prompt_version "
                "ORDER BY prompt_name IS NULL, prompt_name, prompt_version IS NULL, prompt_version"
            ).fetchall()
        return [(r[0], r[1], r[2]) for r in rows]

    # ------------------------------------------------------------------ eval cases

    def find_case(self, content_hash: str) -> tuple[str, str | None] | None:
        """(case ID, file path) of the case with this content hash, if there is one."""
        with self._lock:
            row = self.db.conn.execute(
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
            row = self.db.conn.execute("SELECT data FROM eval_cases WHERE id = ?", (case_id,)).fetchone()
        return EvalCase.model_validate_json(row[0]) if row else None

    def cases_for_trace(self, trace_id: str) -> list[tuple[str, str | None]]:
        with self._lock:
            rows = self.db.conn.execute(
                "SELECT id, path FROM eval_cases WHERE trace_id = ? ORDER BY created_at", (trace_id,)
            ).fetchall()
        return [(r[0], r[1]) for r in rows]

    def list_cases(self) -> list[EvalCase]:
        with self._lock:
            rows = self.db.conn.execute("SELECT data FROM eval_cases ORDER BY grp, created_at").fetchall()
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
            rows = self.db.conn.execute(
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

