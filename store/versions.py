"""Prompt versions side by side: per-version statistics, a comparison of two, and series over time, from SQL alone."""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from .db import NO_PROMPT, NO_VERSION, Store, TraceFilter, VersionRef, version_splits
from .migrations import _M004_SUMS
from .models import format_time, parse_time

Z95 = 1.959963984540054  # the normal quantile of a two-sided 95% interval
MIN_SAMPLE = 30  # fewer observations than this on either side: too small to tell
HOURLY_SPAN = timedelta(hours=48)  # a series spanning at most this is drawn per hour, a longer one per day
COST_PERCENTILES = (0.5, 0.95)
LATENCY_PERCENTILES = (0.5, 0.95, 0.99)

Unit = Literal["hour", "day"]
MS_DIGITS = 1  # latencies in JSON to 0.1 ms: sums of float seconds carry noise (4038.0000000000005) past that


def round_ms(value: float | None) -> float | None:
    """A latency in milliseconds as JSON gives it: to 0.1 ms."""
    return None if value is None else round(value, MS_DIGITS)
Side = Literal["a", "b"]


class VersionNotFound(LookupError):
    """No stored trace has this prompt version."""

    def __init__(self, ref: str) -> None:
        super().__init__(f"no traces of prompt version {ref!r}")
        self.ref = ref


class AmbiguousVersion(LookupError):
    """A bare version names several prompts' versions: the caller must say which (NAME@VERSION)."""

    def __init__(self, ref: str, candidates: list[VersionKey]) -> None:
        names = ", ".join(c.label for c in candidates)
        super().__init__(f"{ref!r} names more than one prompt version: {names}; give NAME@VERSION, or --prompt NAME "
                         "and the version")
        self.ref = ref
        self.candidates = candidates


@dataclass(frozen=True, order=True)
class VersionKey:
    """One prompt version: a prompt name and a version, either of which a trace may lack (None)."""

    prompt: str | None
    version: str | None

    @property
    def label(self) -> str:
        """`name@version`, the way the filters spell it; what is missing is "(no prompt)" or "(no version)"."""
        return f"{NO_PROMPT if self.prompt is None else self.prompt}@{NO_VERSION if self.version is None else self.version}"

    def filter(self, base: TraceFilter | None = None) -> TraceFilter:
        """The trace filter that selects exactly this version (on top of `base`'s other filters)."""
        return replace(base or TraceFilter(), prompt_versions=[self.ref], prompt=None)

    @property
    def ref(self) -> VersionRef:
        """The filter value for exactly this version, even when its name or version holds "@"."""
        return VersionRef(self.prompt, self.version)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.prompt, "version": self.version}


# ---------------------------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class Interval:
    """A 95% interval and how it was made: "wilson" (rates), "normal" (means, from the standard deviation) or
    "order statistic" (percentiles: the values at the ranks that bound the percentile's rank, no assumption about
    the distribution)."""

    low: float
    high: float
    method: str

    def overlaps(self, other: Interval) -> bool:
        return self.low <= other.high and other.low <= self.high


def wilson(count: int, n: int, z: float = Z95) -> Interval | None:
    """The Wilson score interval of count/n; None when n is 0."""
    if n <= 0:
        return None
    p = count / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return Interval(max(0.0, centre - half), min(1.0, centre + half), "wilson")


@dataclass(frozen=True)
class Rate:
    """`count` of `of` (traces, or eval cases run); the rate is unknown when nothing was counted."""

    count: int
    of: int

    @property
    def rate(self) -> float | None:
        return self.count / self.of if self.of else None

    @property
    def interval(self) -> Interval | None:
        return wilson(self.count, self.of)

    def to_json(self) -> dict[str, Any]:
        iv = self.interval
        return {"count": self.count, "of": self.of, "rate": self.rate,
                "interval": None if iv is None else [iv.low, iv.high]}


@dataclass(frozen=True)
class Mean:
    """A mean over `n` observations with its standard deviation; None values when n is 0."""

    value: float | None
    n: int
    sd: float | None = None

    @property
    def interval(self) -> Interval | None:
        if self.value is None or self.sd is None or self.n < 2:
            return None
        half = Z95 * self.sd / math.sqrt(self.n)
        return Interval(self.value - half, self.value + half, "normal")

    @classmethod
    def from_sums(cls, n: float, total: float, squares: float) -> Mean:
        n = int(n)
        if n <= 0:
            return cls(None, 0)
        mean = total / n
        sd = math.sqrt(max(0.0, (squares - total * total / n) / (n - 1))) if n > 1 else None
        return cls(mean, n, sd)

    def to_json(self, digits: int | None = None) -> dict[str, Any]:
        def r(x: float | None) -> float | None:
            return x if x is None or digits is None else round(x, digits)

        iv = self.interval
        return {"mean": r(self.value), "n": self.n, "sd": r(self.sd),
                "interval": None if iv is None else [r(iv.low), r(iv.high)]}


@dataclass(frozen=True)
class Percentile:
    """The p-th percentile (nearest rank) of `n` values, with its order-statistic 95% interval."""

    p: float
    value: float | None
    n: int
    low: float | None = None
    high: float | None = None

    @property
    def interval(self) -> Interval | None:
        if self.low is None or self.high is None:
            return None
        return Interval(self.low, self.high, "order statistic")

    def to_json(self, digits: int | None = None) -> dict[str, Any]:
        def r(x: float | None) -> float | None:
            return x if x is None or digits is None else round(x, digits)

        return {"p": self.p, "value": r(self.value), "n": self.n,
                "interval": None if self.low is None else [r(self.low), r(self.high)]}


@dataclass(frozen=True)
class CostStats:
    """Cost per trace in USD. `known` traces have every model call priced (a trace with none costs $0); `unknown`
    ones have at least one unpriced call and are left out of mean and percentiles. `total` adds what is known of
    both, so it is a lower bound (`partial`) when any cost is unknown; None when nothing at all is known."""

    known: int
    unknown: int
    mean: Mean
    p50: Percentile
    p95: Percentile
    total: float | None

    @property
    def partial(self) -> bool:
        return self.unknown > 0

    def to_json(self) -> dict[str, Any]:
        return {"known": self.known, "unknown": self.unknown, "partial": self.partial, "mean": self.mean.to_json(),
                "p50": self.p50.to_json(), "p95": self.p95.to_json(), "total": self.total}


@dataclass(frozen=True)
class TokenStats:
    """Tokens per trace over the `known` traces whose every model call reported usage. Input includes cached
    tokens and output includes reasoning tokens; the shares are over the traces that report those counts."""

    known: int
    unknown: int
    input: Mean
    output: Mean
    cached_share: float | None
    reasoning_share: float | None

    def to_json(self) -> dict[str, Any]:
        return {"known": self.known, "unknown": self.unknown, "input": self.input.to_json(),
                "output": self.output.to_json(), "cached_share": self.cached_share,
                "reasoning_share": self.reasoning_share}


@dataclass(frozen=True)
class LatencyStats:
    """Latency per trace in milliseconds, over the `known` traces that have start and end times."""

    known: int
    unknown: int
    mean: Mean
    p50: Percentile
    p95: Percentile
    p99: Percentile

    def to_json(self) -> dict[str, Any]:
        d = MS_DIGITS
        return {"known": self.known, "unknown": self.unknown, "mean": self.mean.to_json(d),
                "p50": self.p50.to_json(d), "p95": self.p95.to_json(d), "p99": self.p99.to_json(d)}


@dataclass(frozen=True)
class CallStats:
    """Model or tool calls per trace."""

    mean: Mean
    max: int | None

    def to_json(self) -> dict[str, Any]:
        return {"mean": self.mean.to_json(), "max": self.max}


@dataclass
class VersionStats:
    """Everything `loupe versions` says about one prompt version."""

    key: VersionKey
    traces: int
    first_seen: str | None
    last_seen: str | None
    models: list[tuple[str | None, int]]  # (model, traces), most traces first
    findings: Rate  # traces with any finding
    error_findings: Rate  # traces with an error-severity finding
    rules: dict[str, Rate]  # rule ID -> traces with a finding of it
    rule_findings: dict[str, int]  # rule ID -> findings
    # Traces where a tool call failed (a tool-error finding: structured error signals and the tools' failure_when),
    # out of the traces the tool-error rule ran on.
    tool_errors: Rate
    failed_steps: Rate  # traces with any failed step, model calls included (the `errors` column)
    evals: Rate | None  # eval cases passed of those run against this version (latest result per case)
    cost: CostStats
    tokens: TokenStats
    latency: LatencyStats
    model_calls: CallStats
    tool_calls: CallStats
    budgets: dict[str, Rate]  # budget metric (cost, latency_seconds, ...) -> traces over it

    def to_json(self) -> dict[str, Any]:
        return {
            "prompt": self.key.to_json(), "label": self.key.label, "traces": self.traces,
            "first_seen": self.first_seen, "last_seen": self.last_seen,
            "models": [{"model": m, "traces": n} for m, n in self.models],
            "findings": self.findings.to_json(), "error_findings": self.error_findings.to_json(),
            "rules": {r: {**rate.to_json(), "findings": self.rule_findings.get(r, 0)} for r, rate in self.rules.items()},
            "tool_errors": self.tool_errors.to_json(), "failed_steps": self.failed_steps.to_json(),
            "evals": None if self.evals is None else self.evals.to_json(),
            "cost": self.cost.to_json(), "tokens": self.tokens.to_json(), "latency": self.latency.to_json(),
            "model_calls": self.model_calls.to_json(), "tool_calls": self.tool_calls.to_json(),
            "budgets": {m: r.to_json() for m, r in self.budgets.items()},
        }


# ---------------------------------------------------------------------------------------------- reading


@contextmanager
def _reading(store: Store) -> Iterator[sqlite3.Connection]:
    """The store's connection inside one read transaction: every number of one answer from the same snapshot, even
    while another process writes."""
    # The store's one connection is shared by the UI's worker threads under its lock (see Store.__init__).
    with store._lock:
        conn = store.conn
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")


SUM_COLUMNS = tuple(col for col, _, _ in _M004_SUMS)
Sums = dict[str, float]
Counts = dict[tuple[str, str | None], tuple[int, int]]  # (kind, key) -> (traces, items)
Method = Literal["auto", "rows"]
# What the percentiles and maxima are read from, per trace: the columns of traces_version_hour after its key.
VALUE_COLUMNS = "latency_ms, cost, cost_unknown_steps, llm_calls, tool_calls"
ON_THE_HOUR = ":00:00.000000Z"


def _versions_only(flt: TraceFilter) -> TraceFilter:
    return TraceFilter(prompt_versions=flt.prompt_versions, prompt=flt.prompt)


@dataclass(frozen=True)
class _Plan:
    """How a filter is answered.

    "versions": prompts and versions alone, from the kept sums and counts of every hour, percentiles and maxima by
    walking an index to the rank. "hours": the same with --since/--until: the sums and counts of the whole hours in
    the range, plus the traces of the part-hours at its ends; percentiles from the values in traces_version_hour
    (no trace rows read). "rows": any other filter: the matching traces, summed and sorted."""

    mode: Literal["versions", "hours", "rows"]
    hours: tuple[str | None, str | None] = (None, None)  # whole hours from (inclusive) to (exclusive); None: open
    whole_hours: bool = True  # False: the range lies within one hour
    edges: tuple[tuple[str, str], ...] = ()  # [start, end) times of the part-hours at the ends of the range
    empty: bool = False  # since is not before until: nothing matches


def _next_hour(t: str) -> str:
    return format_time(datetime.fromisoformat(t[:13] + ":00+00:00") + timedelta(hours=1)) or ""


def _plan(flt: TraceFilter, method: Method) -> _Plan:
    if method == "rows" or flt != replace(_versions_only(flt), since=flt.since, until=flt.until):
        return _Plan("rows")
    if flt.since is None and flt.until is None:
        return _Plan("versions")
    since = format_time(_bound(flt.since)) if flt.since else None
    until = format_time(_bound(flt.until)) if flt.until else None
    if since is not None and until is not None:
        if since >= until:
            return _Plan("hours", empty=True)
        if since[:13] == until[:13]:  # within one hour: no whole hour at all
            return _Plan("hours", whole_hours=False, edges=((since, until),))
    edges = []
    first = None
    if since is not None:
        if since.endswith(ON_THE_HOUR):
            first = since[:13]
        else:
            edges.append((since, _next_hour(since)))
            first = edges[-1][1][:13]
    last = None
    if until is not None:
        last = until[:13]
        if not until.endswith(ON_THE_HOUR):
            edges.append((until[:13] + ON_THE_HOUR, until))
    return _Plan("hours", hours=(first, last), edges=tuple(edges))


def _bound(text: str) -> datetime:
    dt = parse_time(text)
    if dt is None:
        raise ValueError(f"not a time: {text!r}")
    return dt


def _hour_where(plan: _Plan) -> tuple[str, list[Any]]:
    first, last = plan.hours
    clauses, params = ["hour IS NOT NULL"], []
    if first is not None:
        clauses.append("hour >= ?")
        params.append(first)
    if last is not None:
        clauses.append("hour < ?")
        params.append(last)
    return " AND ".join(clauses), params


def _add(into: dict[VersionKey, Any], more: dict[VersionKey, Any]) -> None:
    """Add one set of per-version sums or counts into another, key by key."""
    for key, values in more.items():
        mine = into.setdefault(key, {})
        for k, v in values.items():
            if isinstance(v, tuple):
                old = mine.get(k, (0, 0))
                mine[k] = (old[0] + v[0], old[1] + v[1])
            else:
                mine[k] = mine.get(k, 0) + v


def _sum_rows(conn: sqlite3.Connection, where: str, params: list[Any]) -> dict[VersionKey, Sums]:
    """The sums of the traces matching `where`, from their rows (the same expressions the triggers add up)."""
    cols = ", ".join(f"total({expr.format(r='traces')})" for _, _, expr in _M004_SUMS)
    rows = conn.execute(f"SELECT prompt_name, prompt_version, {cols} FROM traces WHERE {where} GROUP BY 1, 2", params)
    return {VersionKey(r[0], r[1]): dict(zip(SUM_COLUMNS, r[2:], strict=True)) for r in rows}


def _count_rows(conn: sqlite3.Connection, where: str, params: list[Any]) -> dict[VersionKey, Counts]:
    """Models, rules and budget metrics of the traces matching `where`, from their rows and findings."""
    picked = f"(SELECT id, prompt_name, prompt_version FROM traces WHERE {where} AND findings > 0)"
    metric = "CASE WHEN j.type = 'object' THEN json_extract(j.value, '$.metric') END"
    rows = conn.execute(
        f"SELECT prompt_name, prompt_version, 'model', model, count(*), count(*) FROM traces WHERE {where} "
        "GROUP BY 1, 2, 4", params).fetchall()
    rows += conn.execute(
        f"SELECT t.prompt_name, t.prompt_version, 'rule', f.rule_id, count(DISTINCT f.trace_id), count(*) "
        f"FROM {picked} AS t JOIN findings AS f ON f.trace_id = t.id GROUP BY 1, 2, 4", params).fetchall()
    rows += conn.execute(
        f"SELECT t.prompt_name, t.prompt_version, 'budget', {metric}, count(DISTINCT f.trace_id), "
        f"count(DISTINCT f.trace_id || char(31) || f.idx) FROM {picked} AS t JOIN findings AS f ON f.trace_id = t.id, "
        "json_each(CASE WHEN json_valid(f.data) THEN f.data ELSE '{}' END, '$.over') AS j "
        f"WHERE f.rule_id = 'budget-exceeded' AND {metric} IS NOT NULL GROUP BY 1, 2, 4", params).fetchall()
    return _counts_of(rows)


def _counts_of(rows: list[Any]) -> dict[VersionKey, Counts]:
    out: dict[VersionKey, Counts] = {}
    for name, version, kind, key, traces, items in rows:
        mine = out.setdefault(VersionKey(name, version), {})
        old = mine.get((kind, key), (0, 0))
        mine[(kind, key)] = (old[0] + int(traces), old[1] + int(items))
    return out


def _edge_where(flt: TraceFilter, edge: tuple[str, str]) -> tuple[str, list[Any]]:
    where, params = _versions_only(flt).where()
    return f"({where}) AND started_at >= ? AND started_at < ?", [*params, *edge]


def _gather(conn: sqlite3.Connection, flt: TraceFilter,
            plan: _Plan) -> tuple[dict[VersionKey, Sums], dict[VersionKey, Counts]]:
    """Per version: the sums, and the counts by model, rule and budget metric."""
    if plan.mode == "rows":
        where, params = flt.where()
        return _sum_rows(conn, where, params), _count_rows(conn, where, params)
    if plan.empty:
        return {}, {}
    vwhere, vparams = _versions_only(flt).where()
    hwhere, hparams = ("1", []) if plan.mode == "versions" else _hour_where(plan)
    sums: dict[VersionKey, Sums] = {}
    counts: dict[VersionKey, Counts] = {}
    if plan.whole_hours:
        cols = ", ".join(f"total({c})" for c in SUM_COLUMNS)
        rows = conn.execute(f"SELECT prompt_name, prompt_version, {cols} FROM version_hours "
                            f"WHERE ({vwhere}) AND {hwhere} GROUP BY 1, 2", [*vparams, *hparams])
        _add(sums, {VersionKey(r[0], r[1]): dict(zip(SUM_COLUMNS, r[2:], strict=True)) for r in rows})
        _add(counts, _counts_of(conn.execute(
            f"SELECT prompt_name, prompt_version, kind, key, total(traces), total(items) FROM version_counts "
            f"WHERE ({vwhere}) AND {hwhere} GROUP BY 1, 2, 3, 4", [*vparams, *hparams]).fetchall()))
    for edge in plan.edges:
        where, params = _edge_where(flt, edge)
        _add(sums, _sum_rows(conn, where, params))
        _add(counts, _count_rows(conn, where, params))
    return {k: v for k, v in sums.items() if v.get("traces", 0) > 0}, counts


def percentile_ranks(n: int, p: float, z: float = Z95) -> tuple[int, int, int]:
    """(rank of the p-th percentile, first and last rank of its 95% interval) among n sorted values, 1-based. The
    percentile is the nearest rank, ceil(p*n); the interval's ranks are where a binomial(n, p) count of values below
    the true percentile would put it (normal approximation), so the interval needs no assumption about the values."""
    rank = min(max(math.ceil(p * n - 1e-9), 1), n)
    half = z * math.sqrt(n * p * (1 - p))
    first = min(max(math.floor(n * p - half), 1), rank)
    last = max(min(math.ceil(n * p + half) + 1, n), rank)
    return rank, first, last


def _percentile(p: float, n: int, first: int, values: list[float], rank: int) -> Percentile:
    """The percentile from the values at ranks first.. (ascending), which hold its rank and interval bounds."""
    if not values:
        return Percentile(p, None, 0)
    at = min(max(rank - first, 0), len(values) - 1)
    return Percentile(p, float(values[at]), n, float(values[0]), float(values[-1]))


class _Values:
    """Percentiles and maxima of one version's traces."""

    def percentile(self, metric: Literal["cost", "latency"], n: int, p: float) -> Percentile:
        raise NotImplementedError

    def maximum(self, column: Literal["llm_calls", "tool_calls"]) -> int | None:
        raise NotImplementedError


class _IndexWalk(_Values):
    """Read by walking the version's index in value order to the ranks wanted, from whichever end is nearer: a few
    thousand index entries, whatever the number of traces."""

    # (value, order, condition) per metric. Known costs only, in the order of traces_version_cost: a NULL cost there
    # is a trace with nothing priced, $0, and sorts first as $0 would (costs are never negative).
    ORDER = {"cost": ("coalesce(cost, 0)", "cost", "cost_unknown_steps = 0"),
             "latency": ("latency_ms", "latency_ms", "latency_ms IS NOT NULL")}

    def __init__(self, conn: sqlite3.Connection, key: VersionKey) -> None:
        self.conn = conn
        self.params = [key.prompt, key.version]

    def percentile(self, metric: Literal["cost", "latency"], n: int, p: float) -> Percentile:
        if n <= 0:
            return Percentile(p, None, 0)
        value, order, cond = self.ORDER[metric]
        rank, first, last = percentile_ranks(n, p)
        count = last - first + 1
        base = f"SELECT {value} FROM traces WHERE prompt_name IS ? AND prompt_version IS ? AND {cond} ORDER BY {order}"
        if first - 1 <= n - last:
            values = [r[0] for r in self.conn.execute(f"{base} LIMIT ? OFFSET ?", [*self.params, count, first - 1])]
        else:
            values = [r[0] for r in self.conn.execute(f"{base} DESC LIMIT ? OFFSET ?",
                                                      [*self.params, count, n - last])][::-1]
        return _percentile(p, n, first, values, rank)

    def maximum(self, column: Literal["llm_calls", "tool_calls"]) -> int | None:
        # A lone max() over an index that starts with the version: one seek.
        row = self.conn.execute(f"SELECT max({column}) FROM traces WHERE prompt_name IS ? AND prompt_version IS ?",
                                self.params).fetchone()
        return None if row is None else row[0]


class _Pulled(_Values):
    """Read from every matching trace's values, sorted here."""

    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self.latency = sorted(r[0] for r in rows if r[0] is not None)
        self.cost = sorted((r[1] or 0.0) for r in rows if r[2] == 0)
        self.llm_calls = max((r[3] for r in rows), default=None)
        self.tool_calls = max((r[4] for r in rows), default=None)

    def percentile(self, metric: Literal["cost", "latency"], n: int, p: float) -> Percentile:
        values = self.cost if metric == "cost" else self.latency
        if not values:
            return Percentile(p, None, 0)
        n = len(values)
        rank, first, last = percentile_ranks(n, p)
        return _percentile(p, n, first, values[first - 1:last], rank)

    def maximum(self, column: Literal["llm_calls", "tool_calls"]) -> int | None:
        return self.llm_calls if column == "llm_calls" else self.tool_calls


def _values(conn: sqlite3.Connection, key: VersionKey, flt: TraceFilter, plan: _Plan, traces: int) -> _Values:
    if plan.mode == "versions":
        return _IndexWalk(conn, key)
    if plan.mode == "hours":
        # A time range that holds every trace of the version (--since before its first): its values are all of
        # them, and the index walk needs no pulling.
        everything = conn.execute("SELECT total(traces) FROM version_hours WHERE prompt_name IS ? "
                                  "AND prompt_version IS ?", [key.prompt, key.version]).fetchone()[0]
        if everything == traces:
            return _IndexWalk(conn, key)
    mine = "prompt_name IS ? AND prompt_version IS ?"
    if plan.mode == "rows":
        where, params = flt.where()
        return _Pulled(conn.execute(f"SELECT {VALUE_COLUMNS} FROM traces WHERE {mine} AND ({where})",
                                    [key.prompt, key.version, *params]).fetchall())
    rows: list[tuple[Any, ...]] = []
    if plan.whole_hours:
        # The hour expression spelt as in traces_version_hour, which holds all five values: no trace row is read.
        hwhere, hparams = _hour_where(plan)
        hwhere = hwhere.replace("hour", "substr(started_at, 1, 13)")
        rows += conn.execute(f"SELECT {VALUE_COLUMNS} FROM traces WHERE {mine} AND {hwhere}",
                             [key.prompt, key.version, *hparams]).fetchall()
    for start, end in plan.edges:
        rows += conn.execute(f"SELECT {VALUE_COLUMNS} FROM traces WHERE {mine} AND started_at >= ? AND started_at < ?",
                             [key.prompt, key.version, start, end]).fetchall()
    return _Pulled(rows)


def version_table(store: Store, flt: TraceFilter | None = None, *, method: Method = "auto") -> list[VersionStats]:
    """One VersionStats per prompt name and version with traces matching the filter: by prompt name, then by first
    seen. Prompts and versions (and --since/--until) are answered from the sums the store keeps per version and
    hour; other filters read the matching traces. method="rows" always reads the traces (the slow reference)."""
    flt = flt or TraceFilter()
    plan = _plan(flt, method)
    passes = store.eval_pass_rates()
    with _reading(store) as conn:
        sums, counts = _gather(conn, flt, plan)
        out = []
        for key, s in sums.items():
            where, params = flt.where()
            values = _values(conn, key, flt, plan, int(s["traces"]))
            out.append(_stats(conn, key, s, counts.get(key, {}), values, (where, params),
                              passes.get((key.prompt, key.version))))
    out.sort(key=lambda v: (v.key.prompt is None, v.key.prompt or "", v.first_seen is None, v.first_seen or "",
                            v.key.version or ""))
    return out


def _stats(conn: sqlite3.Connection, key: VersionKey, s: Sums, counts: Counts, values: _Values,
           where: tuple[str, list[Any]], passed_run: tuple[int, int] | None) -> VersionStats:
    traces = int(s["traces"])
    # min() and max() each alone in a query: SQLite answers that with one seek of traces_prompt.
    seen = (f"FROM traces WHERE prompt_name IS ? AND prompt_version IS ? AND ({where[0]})",
            [key.prompt, key.version, *where[1]])
    first = conn.execute(f"SELECT min(started_at) {seen[0]}", seen[1]).fetchone()[0]
    last = conn.execute(f"SELECT max(started_at) {seen[0]}", seen[1]).fetchone()[0]
    rules = {k: Rate(t, traces) for (kind, k), (t, _) in counts.items() if kind == "rule" and k is not None and t > 0}
    tool_ran = traces - int(s["tool_rule_off"])
    cost_n, latency_n, usage_n = int(s["cost_n"]), int(s["latency_n"]), int(s["usage_n"])
    return VersionStats(
        key=key, traces=traces, first_seen=first, last_seen=last,
        models=sorted(((k, t) for (kind, k), (t, _) in counts.items() if kind == "model" and t > 0),
                      key=lambda m: (-m[1], m[0] or "")),
        findings=Rate(int(s["with_findings"]), traces),
        error_findings=Rate(int(s["error_findings"]), traces),
        rules=dict(sorted(rules.items(), key=lambda r: (-r[1].count, r[0]))),
        rule_findings={k: i for (kind, k), (t, i) in counts.items() if kind == "rule" and k is not None and t > 0},
        tool_errors=Rate(rules["tool-error"].count if "tool-error" in rules else 0, tool_ran),
        failed_steps=Rate(int(s["failed"]), traces),
        evals=None if passed_run is None or passed_run[1] == 0 else Rate(*passed_run),
        cost=CostStats(
            known=cost_n, unknown=int(s["cost_unknown"]),
            mean=Mean.from_sums(cost_n, s["cost_sum"], s["cost_sq"]),
            p50=values.percentile("cost", cost_n, 0.5),
            p95=values.percentile("cost", cost_n, 0.95),
            total=None if cost_n == 0 and not s["cost_partial_sum"] else s["cost_sum"] + s["cost_partial_sum"],
        ),
        tokens=TokenStats(
            known=usage_n, unknown=traces - usage_n,
            input=Mean.from_sums(usage_n, s["input_sum"], s["input_sq"]),
            output=Mean.from_sums(usage_n, s["output_sum"], s["output_sq"]),
            cached_share=s["cached_sum"] / s["cached_base"] if s["cached_base"] else None,
            reasoning_share=s["reasoning_sum"] / s["reasoning_base"] if s["reasoning_base"] else None,
        ),
        latency=LatencyStats(
            known=latency_n, unknown=traces - latency_n,
            mean=Mean(s["latency_sum"] / latency_n, latency_n) if latency_n else Mean(None, 0),
            p50=values.percentile("latency", latency_n, 0.5),
            p95=values.percentile("latency", latency_n, 0.95),
            p99=values.percentile("latency", latency_n, 0.99),
        ),
        model_calls=CallStats(Mean.from_sums(traces, s["llm_sum"], s["llm_sq"]), values.maximum("llm_calls")),
        tool_calls=CallStats(Mean.from_sums(traces, s["tool_sum"], s["tool_sq"]), values.maximum("tool_calls")),
        budgets=dict(sorted((k, Rate(t, traces)) for (kind, k), (t, _) in counts.items()
                            if kind == "budget" and k is not None and t > 0)),
    )


def version_keys(store: Store) -> list[VersionKey]:
    """Every prompt version with stored traces."""
    with _reading(store) as conn:
        rows = conn.execute("SELECT DISTINCT prompt_name, prompt_version FROM version_hours").fetchall()
    return sorted((VersionKey(r[0], r[1]) for r in rows),
                  key=lambda k: (k.prompt is None, k.prompt or "", k.version is None, k.version or ""))


def resolve_version(store: Store, ref: str, prompt: str | None = None) -> VersionKey:
    """The prompt version that `ref` names, read as the filters read it, never stripped:
    with `prompt`, first the version of that prompt spelt exactly `ref` (the way to name a version holding "@");
    else "NAME@VERSION", the version whose name, "@" and version spell `ref` (either may hold "@"); else a bare
    version that only one prompt has (within `prompt` when given). Raises VersionNotFound or AmbiguousVersion."""
    keys = version_keys(store)
    if prompt is not None:
        exact = VersionKey(prompt, None if ref in (NO_VERSION, "") else ref)
        if exact in keys:
            return exact
    if "@" in ref:
        matches = [k for k in (VersionKey(n, v) for n, v in version_splits(ref)) if k in keys]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise AmbiguousVersion(ref, matches)
        if prompt is None:
            raise VersionNotFound(ref)
    version = None if ref in (NO_VERSION, "") else ref
    matches = [k for k in keys if k.version == version and (prompt is None or k.prompt == prompt)]
    if not matches:
        raise VersionNotFound(ref if prompt is None else f"{prompt}@{ref}")
    if len(matches) > 1:
        raise AmbiguousVersion(ref, matches)
    return matches[0]


def version_stats(store: Store, key: VersionKey, flt: TraceFilter | None = None) -> VersionStats:
    """The statistics of one version (VersionNotFound when no trace of it matches)."""
    rows = version_table(store, key.filter(flt))
    if not rows:
        raise VersionNotFound(key.label)
    return rows[0]


def previous_version(store: Store, key: VersionKey) -> VersionKey | None:
    """The version of the same prompt first seen last before this one was first seen; None when there is none."""
    with _reading(store) as conn:
        rows = conn.execute(
            "SELECT prompt_version, min(hour) FROM version_hours WHERE prompt_name IS ? AND hour IS NOT NULL "
            "GROUP BY prompt_version", [key.prompt]).fetchall()
        firsts: dict[str | None, str] = {}
        for version, _hour in rows:
            # The hour finds the first day cheaply; the exact first time settles versions started the same hour.
            firsts[version] = conn.execute(
                "SELECT min(started_at) FROM traces WHERE prompt_name IS ? AND prompt_version IS ?",
                [key.prompt, version]).fetchone()[0]
    mine = firsts.get(key.version)
    if mine is None:
        return None
    earlier = [(t, v or "") for v, t in firsts.items() if v != key.version and t is not None and t < mine]
    if not earlier:
        return None
    _, version = max(earlier)
    return VersionKey(key.prompt, version or None)


# ---------------------------------------------------------------------------------------------- comparison


@dataclass(frozen=True)
class MetricDelta:
    """One metric of two versions: B against A (delta = b - a), which side is better, and whether the samples can
    tell them apart."""

    metric: str  # an ID: "cost.p95", "rule.tool-error", ...
    label: str
    unit: str  # "rate", "usd", "ms", "tokens", "calls", "share", "traces"
    a: float | None
    b: float | None
    a_n: int
    b_n: int
    lower_is_better: bool | None  # None: neither direction is better (tokens, calls: explained by cost and latency)
    a_interval: Interval | None = None
    b_interval: Interval | None = None

    @property
    def delta(self) -> float | None:
        return None if self.a is None or self.b is None else self.b - self.a

    @property
    def delta_pct(self) -> float | None:
        d = self.delta
        return None if d is None or not self.a else d / abs(self.a) * 100

    @property
    def better(self) -> Side | None:
        """The side with the better value; None when equal, unknown, or when neither direction is better."""
        if self.lower_is_better is None or self.a is None or self.b is None or self.a == self.b:
            return None
        b_lower = self.b < self.a
        return "b" if b_lower == self.lower_is_better else "a"

    @property
    def method(self) -> str | None:
        iv = self.a_interval or self.b_interval
        return None if iv is None else iv.method

    @property
    def note(self) -> str | None:
        """Why the difference cannot be told from chance, or None when it can (or there is nothing to tell)."""
        if self.a is None or self.b is None or self.lower_is_better is None or self.unit == "traces":
            return None
        if min(self.a_n, self.b_n) < MIN_SAMPLE:
            return f"too small to tell: fewer than {MIN_SAMPLE} ({self.a_n:,} vs {self.b_n:,})"
        if self.a == self.b:
            return None
        if self.a_interval is None or self.b_interval is None:
            return "too small to tell: no interval"
        if self.a_interval.overlaps(self.b_interval):
            return f"too small to tell: 95% intervals overlap ({self.a_interval.method})"
        return None

    @property
    def short_note(self) -> str | None:
        """The note in a few characters, for a table column; the legend under the table says what each means."""
        note = self.note
        if note is None:
            return None
        if "fewer than" in note:
            return f"n<{MIN_SAMPLE}"
        return "CIs overlap" if "overlap" in note else "no CI"

    @property
    def clear(self) -> bool:
        """The better side is told apart from chance."""
        return self.better is not None and self.note is None

    def to_json(self) -> dict[str, Any]:
        def r(x: float | None) -> float | None:
            return round_ms(x) if self.unit == "ms" else x

        def iv(i: Interval | None) -> list[float | None] | None:
            return None if i is None else [r(i.low), r(i.high)]

        return {"metric": self.metric, "label": self.label, "unit": self.unit, "a": r(self.a), "b": r(self.b),
                "a_n": self.a_n, "b_n": self.b_n, "delta": r(self.delta), "delta_pct": self.delta_pct,
                "lower_is_better": self.lower_is_better, "better": self.better, "clear": self.clear,
                "note": self.note, "interval_method": self.method, "a_interval": iv(self.a_interval),
                "b_interval": iv(self.b_interval)}


@dataclass
class Comparison:
    """Version B against version A, metric by metric."""

    a: VersionStats
    b: VersionStats
    metrics: list[MetricDelta] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"a": self.a.to_json(), "b": self.b.to_json(), "metrics": [m.to_json() for m in self.metrics],
                "min_sample": MIN_SAMPLE,
                "intervals": "95%: Wilson score for rates, normal (mean ± 1.96·sd/√n) for means, order statistics "
                             "for percentiles"}


def _rate(metric: str, label: str, a: Rate | None, b: Rate | None, lower: bool | None = True) -> MetricDelta:
    return MetricDelta(metric, label, "rate", None if a is None else a.rate, None if b is None else b.rate,
                       0 if a is None else a.of, 0 if b is None else b.of, lower,
                       None if a is None else a.interval, None if b is None else b.interval)


def _mean(metric: str, label: str, unit: str, a: Mean, b: Mean, lower: bool | None = True) -> MetricDelta:
    return MetricDelta(metric, label, unit, a.value, b.value, a.n, b.n, lower, a.interval, b.interval)


def _pct(metric: str, label: str, unit: str, a: Percentile, b: Percentile) -> MetricDelta:
    return MetricDelta(metric, label, unit, a.value, b.value, a.n, b.n, True, a.interval, b.interval)


def compare(a: VersionStats, b: VersionStats) -> Comparison:
    """B against A on every metric both can have: deltas, the better side, and a "too small to tell" note where
    either side has fewer than MIN_SAMPLE observations or the two 95% intervals overlap."""
    m: list[MetricDelta] = [
        MetricDelta("traces", "traces", "traces", a.traces, b.traces, a.traces, b.traces, None),
        _rate("findings", "traces with findings", a.findings, b.findings),
        _rate("error_findings", "traces with error findings", a.error_findings, b.error_findings),
        _rate("tool_errors", "tool error rate", a.tool_errors, b.tool_errors),
        _rate("evals", "eval pass rate", a.evals, b.evals, lower=False),
        _mean("cost.mean", "cost per trace (mean)", "usd", a.cost.mean, b.cost.mean),
        _pct("cost.p50", "cost per trace p50", "usd", a.cost.p50, b.cost.p50),
        _pct("cost.p95", "cost per trace p95", "usd", a.cost.p95, b.cost.p95),
        _pct("latency.p50", "latency p50", "ms", a.latency.p50, b.latency.p50),
        _pct("latency.p95", "latency p95", "ms", a.latency.p95, b.latency.p95),
        _pct("latency.p99", "latency p99", "ms", a.latency.p99, b.latency.p99),
        _mean("tokens.input", "input tokens per trace", "tokens", a.tokens.input, b.tokens.input, None),
        _mean("tokens.output", "output tokens per trace", "tokens", a.tokens.output, b.tokens.output, None),
        MetricDelta("tokens.cached_share", "cached share of input", "share", a.tokens.cached_share,
                    b.tokens.cached_share, a.tokens.known, b.tokens.known, None),
        MetricDelta("tokens.reasoning_share", "reasoning share of output", "share", a.tokens.reasoning_share,
                    b.tokens.reasoning_share, a.tokens.known, b.tokens.known, None),
        _mean("model_calls", "model calls per trace", "calls", a.model_calls.mean, b.model_calls.mean, None),
        _mean("tool_calls", "tool calls per trace", "calls", a.tool_calls.mean, b.tool_calls.mean, None),
    ]
    for rule in sorted(set(a.rules) | set(b.rules)):
        m.append(_rate(f"rule.{rule}", f"rule {rule}", a.rules.get(rule, Rate(0, a.traces)),
                       b.rules.get(rule, Rate(0, b.traces))))
    for metric in sorted(set(a.budgets) | set(b.budgets)):
        m.append(_rate(f"budget.{metric}", f"over budget: {metric.replace('_', ' ')}",
                       a.budgets.get(metric, Rate(0, a.traces)), b.budgets.get(metric, Rate(0, b.traces))))
    return Comparison(a, b, m)


# ---------------------------------------------------------------------------------------------- over time


@dataclass(frozen=True)
class Bucket:
    """One hour or day (UTC) of a version's traces. Values are None where the bucket has nothing to say: no traces,
    no known cost, no known latency."""

    start: str  # "2026-01-14" (day) or "2026-01-14T10" (hour)
    unit: Unit
    traces: int
    cost_per_trace: float | None  # mean over the traces with known cost
    cost_unknown: int  # traces left out of it
    p95_latency_ms: float | None
    finding_rate: float | None

    def to_json(self) -> dict[str, Any]:
        return {"start": self.start, "unit": self.unit, "traces": self.traces, "cost_per_trace": self.cost_per_trace,
                "cost_unknown": self.cost_unknown, "p95_latency_ms": round_ms(self.p95_latency_ms),
                "finding_rate": self.finding_rate}


def _unit_for(first: str | None, last: str | None) -> Unit:
    if not first or not last:
        return "day"
    span = datetime.fromisoformat(last) - datetime.fromisoformat(first)
    return "hour" if span <= HOURLY_SPAN else "day"


def _steps(first: str, last: str, unit: Unit) -> list[str]:
    """Every bucket from first to last, empty ones included, so that a plot keeps time evenly."""
    fmt, step = ("%Y-%m-%dT%H", timedelta(hours=1)) if unit == "hour" else ("%Y-%m-%d", timedelta(days=1))
    t, end = datetime.strptime(first, fmt), datetime.strptime(last, fmt)
    out = []
    while t <= end:
        out.append(t.strftime(fmt))
        t += step
    return out


def time_series(store: Store, version: VersionKey, bucket: Unit | None = None) -> list[Bucket]:
    """Cost per trace, p95 latency and finding rate of one version per hour or day (UTC): per hour when its traces
    span at most two days, else per day, unless `bucket` says. Traces without a start time are left out."""
    with _reading(store) as conn:
        where = "prompt_name IS ? AND prompt_version IS ?"
        key = [version.prompt, version.version]
        first, last = conn.execute(
            f"SELECT min(hour), max(hour) FROM version_hours WHERE {where} AND hour IS NOT NULL", key).fetchone()
        if first is None:
            return []
        unit: Unit = bucket or _unit_for(first[:13] + ":00", last[:13] + ":00")
        width = 13 if unit == "hour" else 10
        rows = {r[0]: r[1:] for r in conn.execute(
            f"SELECT substr(hour, 1, {width}), total(traces), total(with_findings), total(cost_n), total(cost_sum), "
            f"total(cost_unknown), total(latency_n) FROM version_hours WHERE {where} AND hour IS NOT NULL GROUP BY 1",
            key)}
        out = []
        for start in _steps(first[:width], last[:width], unit):
            traces, with_findings, cost_n, cost_sum, cost_unknown, latency_n = rows.get(start, (0,) * 6)
            p95 = None
            if latency_n:
                # The bucket's rows in latency order come from traces_version_day / traces_version_hour: the
                # expression must be spelt exactly as in the index for SQLite to use it.
                n = int(latency_n)
                rank = percentile_ranks(n, 0.95)[0]
                row = conn.execute(
                    f"SELECT latency_ms FROM traces WHERE {where} AND substr(started_at, 1, {width}) = ? "
                    "AND latency_ms IS NOT NULL ORDER BY latency_ms DESC LIMIT 1 OFFSET ?",
                    [*key, start, n - rank]).fetchone()
                p95 = None if row is None else float(row[0])
            out.append(Bucket(
                start=start, unit=unit, traces=int(traces),
                cost_per_trace=cost_sum / cost_n if cost_n else None, cost_unknown=int(cost_unknown),
                p95_latency_ms=p95, finding_rate=with_findings / traces if traces else None,
            ))
    return out
