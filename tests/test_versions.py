"""Per-version statistics (store.versions): the kept sums, the numbers, the intervals, the plans, and `loupe versions`."""

from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from store.config import parse_config
from store.db import EvalResultRow, Store, TraceFilter
from store.migrations import _M004_SUMS
from store.models import Trace
from store.versions import (
    AmbiguousVersion,
    VersionKey,
    VersionNotFound,
    VersionStats,
    compare,
    percentile_ranks,
    previous_version,
    resolve_version,
    time_series,
    version_stats,
    version_table,
    wilson,
)
from tui import cli

runner = CliRunner()
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
BUDGETS = parse_config({"rules": {"budget-exceeded": {"budgets": {"*": {"cost": 0.05, "latency_seconds": 8}}}}})


def iso(day: int, hour: int = 10, minute: int = 0, second: float = 0.0) -> str:
    return f"2026-01-{day:02d}T{hour:02d}:{minute:02d}:{second:06.3f}Z"


def trace(i: int, version: str | None = "v1", *, prompt: str | None = "support_agent", day: int = 5, hour: int = 10,
          minute: int = 0, seconds: float = 1.0, cost: float | None = 0.01, usage: bool = True, calls: int = 1,
          tool_error: bool = False, tools: int = 0, model: str = "acme-test", started: bool = True,
          cached: int | None = 20, reasoning: int | None = None) -> dict[str, Any]:
    """A trace with exactly the numbers asked for: `calls` model calls (of an unpriced model whose reported cost is
    `cost` split between them; None: unknown), `tools` tool calls (the first failing when `tool_error`)."""
    start = iso(day, hour, minute)
    end = iso(day, hour, minute, seconds)
    steps: list[dict[str, Any]] = []
    for c in range(calls):
        step: dict[str, Any] = {
            "id": f"m{c}", "type": "llm", "model": model, "provider": "acme", "started_at": start, "ended_at": end,
            "messages": [{"role": "user", "content": "How do I change my card?"}],
            "output": {"role": "assistant", "content": "Go to Settings, then Billing."},
        }
        if usage:
            step["usage"] = {"input_tokens": 100, "output_tokens": 10}
            if cached is not None:
                step["usage"]["cache_read_tokens"] = cached
            if reasoning is not None:
                step["usage"]["reasoning_tokens"] = reasoning
        if cost is not None:
            step["cost"] = cost / calls
        steps.append(step)
    for t in range(tools):
        tool: dict[str, Any] = {"id": f"t{t}", "type": "tool", "name": "get_plan", "arguments": {"customer": "c1"},
                                "result": {"plan": "Pro"}, "status": "ok", "started_at": start, "ended_at": end}
        if tool_error and t == 0:
            tool.update(status="error", error={"type": "timeout", "message": "upstream timed out"}, result=None)
        steps.append(tool)
    out: dict[str, Any] = {"id": f"trc_{i:05d}", "name": "support_agent", "input": "How do I change my card?",
                           "output": "Go to Settings, then Billing.", "steps": steps}
    if prompt is not None or version is not None:
        out["prompt"] = {"name": prompt, "version": version}
    if started:
        out["started_at"], out["ended_at"] = start, end
    else:
        for s in steps:
            s.pop("started_at", None)
            s.pop("ended_at", None)
    return out


def store_with(path: Path, traces: list[dict[str, Any]], **kw: Any) -> Store:
    s = Store(path, **kw)
    s.insert_traces([Trace.model_validate(t) for t in traces])
    return s


# ---------------------------------------------------------------------------------------------- the kept sums


def expected_rollups(conn: Any) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """version_hours and version_counts as they must be: summed from the traces and findings now."""
    sums = ", ".join(f"total({expr.format(r='traces')})" for _, _, expr in _M004_SUMS)
    hours = conn.execute(f"SELECT prompt_name, prompt_version, substr(started_at, 1, 13), {sums} FROM traces "
                         "GROUP BY 1, 2, 3").fetchall()
    metric = "CASE WHEN j.type = 'object' THEN json_extract(j.value, '$.metric') END"
    counts = conn.execute(
        "SELECT prompt_name, prompt_version, 'model', model, substr(started_at, 1, 13), count(*), count(*) "
        "FROM traces GROUP BY 1, 2, 4, 5 "
        "UNION ALL SELECT t.prompt_name, t.prompt_version, 'rule', f.rule_id, substr(t.started_at, 1, 13), "
        "count(DISTINCT f.trace_id), count(*) FROM findings f JOIN traces t ON t.id = f.trace_id GROUP BY 1, 2, 4, 5 "
        f"UNION ALL SELECT t.prompt_name, t.prompt_version, 'budget', {metric}, substr(t.started_at, 1, 13), "
        "count(DISTINCT f.trace_id), count(*) FROM findings f JOIN traces t ON t.id = f.trace_id, "
        "json_each(f.data, '$.over') j WHERE f.rule_id = 'budget-exceeded' GROUP BY 1, 2, 4, 5").fetchall()
    return hours, counts


def kept_rollups(conn: Any) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    cols = ", ".join(c for c, _, _ in _M004_SUMS)
    hours = conn.execute(f"SELECT prompt_name, prompt_version, hour, {cols} FROM version_hours").fetchall()
    counts = conn.execute("SELECT prompt_name, prompt_version, kind, key, hour, traces, items "
                          "FROM version_counts").fetchall()
    return hours, counts


def _norm(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    # Floats rounded: sums kept by adding and taking away drift in the last digits.
    return sorted((tuple(round(v, 9) if isinstance(v, float) else v for v in r) for r in rows), key=repr)


def assert_rollups_current(store: Store) -> None:
    conn = store.conn
    want_hours, want_counts = expected_rollups(conn)
    got_hours, got_counts = kept_rollups(conn)
    assert _norm(got_hours) == _norm(want_hours)
    assert _norm(got_counts) == _norm(want_counts)


def varied(n: int, seed: int = 3) -> list[dict[str, Any]]:
    """Traces of several prompts and versions with every kind of gap: unknown cost and usage, no start time, no
    prompt, tool errors, budget breaches (cost over 0.05, latency over 8 s), several models."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        prompt, version = rnd.choice([("support_agent", "v1"), ("support_agent", "v2"), ("triage", "v1"),
                                      (None, None), ("support_agent", None)])
        out.append(trace(
            i, version, prompt=prompt, day=rnd.randint(3, 9), hour=rnd.randint(0, 23), minute=rnd.randint(0, 59),
            seconds=round(rnd.uniform(0.2, 12), 3), cost=None if rnd.random() < 0.1 else round(rnd.uniform(0, 0.08), 6),
            usage=rnd.random() > 0.1, calls=rnd.randint(0 if rnd.random() < 0.05 else 1, 3),
            tool_error=rnd.random() < 0.3, tools=rnd.randint(0, 3), model=rnd.choice(["acme-test", "acme-big"]),
            started=rnd.random() > 0.05, cached=rnd.choice([None, 0, 30]), reasoning=rnd.choice([None, 2])))
    return out


def test_the_sums_follow_ingest_reingest_updates_and_deletes(tmp_path: Path) -> None:
    traces = varied(120)
    s = store_with(tmp_path / "s.db", traces, rules_config=BUDGETS)
    assert s.conn.execute("SELECT count(*) FROM version_counts WHERE kind = 'budget'").fetchone()[0] > 0
    assert_rollups_current(s)
    # Ingesting the same traces again replaces them (delete, then insert): nothing counts twice.
    s.insert_traces([Trace.model_validate(t) for t in traces[:40]])
    assert_rollups_current(s)
    # A trace re-ingested under another version and time moves its share.
    moved = [dict(t, prompt={"name": "triage", "version": "v9"}, started_at="2026-01-20T05:00:00Z") for t in traces[:10]]
    s.insert_traces([Trace.model_validate(t) for t in moved])
    assert_rollups_current(s)
    conn = s.conn
    with s._write() as c:
        # Direct updates and deletes, in both orders (findings first, as ingest does; the trace first).
        c.execute("UPDATE traces SET prompt_version = 'v3', started_at = '2026-01-21T01:00:00.000000Z' "
                  "WHERE id IN (SELECT id FROM traces WHERE findings > 0 LIMIT 5)")
        c.execute("UPDATE traces SET cost = cost * 2, latency_ms = 5 WHERE prompt_version = 'v2'")
        victims = [r[0] for r in c.execute("SELECT id FROM traces WHERE findings > 0 LIMIT 6")]
        for tid in victims[:3]:
            c.execute("DELETE FROM findings WHERE trace_id = ?", (tid,))
            c.execute("DELETE FROM traces WHERE id = ?", (tid,))
        for tid in victims[3:]:
            c.execute("DELETE FROM traces WHERE id = ?", (tid,))
            c.execute("DELETE FROM findings WHERE trace_id = ?", (tid,))
    assert_rollups_current(s)
    # Nothing left over once everything is gone.
    with s._write() as c:
        c.execute("DELETE FROM findings")
        c.execute("DELETE FROM traces")
    assert conn.execute("SELECT count(*) FROM version_hours").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM version_counts").fetchone()[0] == 0


def test_a_hostile_finding_never_keeps_a_trace_out(tmp_path: Path) -> None:
    s = store_with(tmp_path / "s.db", [trace(1)])
    with s._write() as c:
        for i, data in enumerate(['not json', '{"over": "cost"}', '{"over": [1, null, {"metric": 5}]}', '[]']):
            c.execute("INSERT INTO findings (trace_id, idx, rule_id, severity, message, evidence, data) "
                      "VALUES ('trc_00001', ?, 'budget-exceeded', 'warning', 'm', '[]', ?)", (10 + i, data))
        c.execute("UPDATE traces SET rule_runs = 'garbage' WHERE id = 'trc_00001'")
    [v] = version_table(s)
    assert v.budgets["5"].count == 1  # the one metric that was there
    assert v.rules["budget-exceeded"].count == 1


def test_an_existing_store_gets_its_sums_when_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    s = store_with(path, varied(60, seed=9), rules_config=BUDGETS)
    before = _norm(kept_rollups(s.conn)[0]), _norm(kept_rollups(s.conn)[1])
    table_before = [v.to_json() for v in version_table(s)]
    # Undo m004 as if the store came from a loupe without it.
    with s._write() as c:
        for (name, kind) in c.execute("SELECT name, type FROM sqlite_master WHERE sql LIKE '%version_%' "
                                      "AND type IN ('trigger', 'index')").fetchall():
            c.execute(f"DROP {kind} {name}")
        c.execute("DROP TABLE version_hours")
        c.execute("DROP TABLE version_counts")
        c.execute("DELETE FROM _sqlite_migrations WHERE name = 'm004_version_indexes'")
    s.close()
    s = Store(path)
    assert (_norm(kept_rollups(s.conn)[0]), _norm(kept_rollups(s.conn)[1])) == before
    assert [v.to_json() for v in version_table(s)] == table_before
    assert_rollups_current(s)


# ---------------------------------------------------------------------------------------------- the numbers


def nearest_rank(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(math.ceil(p * len(ordered) - 1e-9), 1) - 1]


def test_the_table_says_what_it_knows_and_what_it_does_not(tmp_path: Path) -> None:
    costs = [0.01, 0.02, 0.03, 0.04, None]
    latencies = [1.0, 2.0, 3.0, 4.0, 10.0]
    traces = [trace(i, "v1", cost=c, seconds=lat, calls=1 + i % 3, tools=i % 2 * 2, tool_error=i == 1, hour=10 + i)
              for i, (c, lat) in enumerate(zip(costs, latencies, strict=True))]
    traces.append(trace(9, "v1", cost=None, calls=0, usage=False, started=False))  # no model call: $0, no time
    s = store_with(tmp_path / "s.db", traces)
    s.save_eval_results("run_1", "2026-01-06T00:00:00.000000Z", [
        EvalResultRow("case_a", "g", "support_agent", "v1", None, "pass"),
        EvalResultRow("case_b", "g", "support_agent", "v1", None, "fail"),
        EvalResultRow("case_c", "g", "support_agent", "v1", None, "not run"),
    ])
    [v] = version_table(s)
    assert v.key == VersionKey("support_agent", "v1") and v.traces == 6
    assert (v.first_seen, v.last_seen) == ("2026-01-05T10:00:00.000000Z", "2026-01-05T14:00:00.000000Z")
    assert v.models == [("acme-test", 5), (None, 1)]
    # Cost: the trace with an unknown cost is left out of mean and percentiles and makes the total partial; the
    # trace without a model call cost nothing.
    known = [0.01, 0.02, 0.03, 0.04, 0.0]
    assert (v.cost.known, v.cost.unknown, v.cost.partial) == (5, 1, True)
    assert v.cost.mean.value == pytest.approx(sum(known) / 5)
    assert v.cost.p50.value == pytest.approx(nearest_rank(known, 0.5))
    assert v.cost.p95.value == pytest.approx(0.04)
    assert v.cost.total == pytest.approx(0.10)
    assert (v.latency.known, v.latency.unknown) == (5, 1)
    assert v.latency.p50.value == pytest.approx(3000) and v.latency.p99.value == pytest.approx(10_000)
    # Tokens over the traces with usage; the trace without a model call used none.
    assert (v.tokens.known, v.tokens.unknown) == (6, 0)
    calls = [1 + i % 3 for i in range(5)] + [0]
    assert v.tokens.input.value == pytest.approx(sum(100 * c for c in calls) / 6)
    assert v.tokens.cached_share == pytest.approx(0.2) and v.tokens.reasoning_share is None
    assert (v.model_calls.mean.value, v.model_calls.max) == (pytest.approx(sum(calls) / 6), 3)
    assert (v.tool_calls.mean.value, v.tool_calls.max) == (pytest.approx(4 / 6), 2)
    assert (v.tool_errors.count, v.tool_errors.of) == (1, 6)
    assert v.rules["tool-error"].count == 1 and v.findings.count >= 1
    assert v.failed_steps.count == 1
    assert v.evals is not None and (v.evals.count, v.evals.of) == (1, 2)  # "not run" is not run
    assert v.budgets == {}


def test_budget_breaches_per_budget_and_a_switched_off_rule_is_unknown(tmp_path: Path) -> None:
    cfg = parse_config({"rules": {"budget-exceeded": {"budgets": {"*": {"cost": 0.05, "latency_seconds": 8}}},
                                  "tool-error": {"enabled": False}}})
    traces = [trace(1, cost=0.06), trace(2, cost=0.06, seconds=9), trace(3, seconds=9), trace(4),
              trace(5, tools=1, tool_error=True)]
    s = store_with(tmp_path / "s.db", traces, rules_config=cfg)
    [v] = version_table(s)
    assert {m: r.count for m, r in v.budgets.items()} == {"cost": 2, "latency_seconds": 2}
    assert v.rules["budget-exceeded"].count == 3
    # The tool-error rule did not run on any trace: the tool error rate is unknown, not 0%.
    assert v.tool_errors.of == 0 and v.tool_errors.rate is None
    assert v.failed_steps.count == 1


def test_the_kept_sums_and_the_trace_rows_give_the_same_table(tmp_path: Path) -> None:
    s = store_with(tmp_path / "s.db", varied(300, seed=5), rules_config=BUDGETS)
    filters = [
        TraceFilter(), TraceFilter(prompt="support_agent"), TraceFilter(prompt_versions=["v1"]),
        TraceFilter(prompt_versions=["(no prompt)@(no version)", "support_agent@v2"]),
        TraceFilter(since="2026-01-05"), TraceFilter(until="2026-01-07T13:00:00Z"),
        TraceFilter(since="2026-01-04T10:30:00Z", until="2026-01-08T07:15:30Z", prompt="support_agent"),
        TraceFilter(since="2026-01-06T10:05:00Z", until="2026-01-06T10:55:00Z"),  # inside one hour
        TraceFilter(since="2026-01-06T10:05:00Z", until="2026-01-06T11:00:00Z"),
        TraceFilter(since="2026-01-07", until="2026-01-07"),  # empty
    ]
    for flt in filters:
        fast = [v.to_json() for v in version_table(s, flt)]
        slow = [v.to_json() for v in version_table(s, flt, method="rows")]
        assert _close(fast, slow), flt
    # And filters only the rows can answer agree with the list's counts.
    for flt in (TraceFilter(status="error"), TraceFilter(model="acme-big", search="card"),
                TraceFilter(rule="tool-error", since="2026-01-06")):
        rows = version_table(s, flt)
        assert sum(v.traces for v in rows) == s.count_traces(flt) > 0, flt
        if flt.model:
            assert all(v.models == [("acme-big", v.traces)] for v in rows)
        if flt.rule:
            assert all(v.rules["tool-error"].count == v.traces for v in rows)


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 29, 30, 31, 64, 101])
def test_percentiles_are_the_nearest_rank_with_order_statistic_intervals(tmp_path: Path, n: int) -> None:
    rnd = random.Random(n)
    # Ties on purpose: a few distinct values.
    lat = [float(rnd.choice([1, 2, 2, 3, 5, 8, 13])) + rnd.choice([0, 0.5]) for _ in range(n)]
    s = store_with(tmp_path / "s.db", [trace(i, seconds=x, cost=x / 100, minute=i % 60, hour=i // 60)
                                       for i, x in enumerate(lat)])
    [walked] = version_table(s)
    [pulled] = version_table(s, method="rows")
    # A time range holding every trace walks the index too; one that leaves some out reads the values.
    [whole_range] = version_table(s, TraceFilter(since="2000-01-01"))
    assert whole_range.latency == walked.latency and whole_range.cost == walked.cost
    for p, got, other in ((0.5, walked.latency.p50, pulled.latency.p50), (0.95, walked.latency.p95,
                                                                           pulled.latency.p95),
                          (0.99, walked.latency.p99, pulled.latency.p99)):
        ordered = sorted(x * 1000 for x in lat)
        rank, first, last = percentile_ranks(n, p)
        assert got.value == pytest.approx(nearest_rank(ordered, p))
        assert (got.low, got.high) == (pytest.approx(ordered[first - 1]), pytest.approx(ordered[last - 1]))
        assert got.low <= got.value <= got.high
        assert got == other
    assert walked.cost.p95 == pulled.cost.p95


def test_percentile_ranks_hold_the_rank_and_stay_in_range() -> None:
    for n in range(1, 300):
        for p in (0.5, 0.95, 0.99):
            rank, first, last = percentile_ranks(n, p)
            assert 1 <= first <= rank <= last <= n
            assert rank == max(math.ceil(p * n - 1e-9), 1)
    # Wide enough: at n = 1000 the p50's 95% interval spans about ±31 ranks.
    _, first, last = percentile_ranks(1000, 0.5)
    assert (first, last) == (469, 532)


def test_wilson_interval_known_values() -> None:
    iv = wilson(0, 10)
    assert iv is not None and iv.low == 0 and iv.high == pytest.approx(0.2775, abs=1e-4)
    iv = wilson(5, 10)
    assert iv is not None and (iv.low, iv.high) == (pytest.approx(0.2366, abs=1e-4), pytest.approx(0.7634, abs=1e-4))
    assert wilson(0, 0) is None


def test_every_query_walks_an_index(tmp_path: Path) -> None:
    """The plans behind the speed (timed in bench/, never here): no full scan of the traces for the table."""
    s = store_with(tmp_path / "s.db", [trace(i, minute=i) for i in range(5)])
    conn = s.conn
    key = ["support_agent", "v1"]

    def plan(sql: str, params: list[Any]) -> str:
        return " | ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, params))

    where = "prompt_name IS ? AND prompt_version IS ?"
    assert "COVERING INDEX traces_version_cost" in plan(
        f"SELECT coalesce(cost, 0) FROM traces WHERE {where} AND cost_unknown_steps = 0 ORDER BY cost LIMIT 5 "
        "OFFSET 3", key)
    assert "COVERING INDEX traces_version_latency" in plan(
        f"SELECT latency_ms FROM traces WHERE {where} AND latency_ms IS NOT NULL ORDER BY latency_ms DESC LIMIT 5 "
        "OFFSET 3", key)
    assert "COVERING INDEX traces_version_llm_calls" in plan(f"SELECT max(llm_calls) FROM traces WHERE {where}", key)
    assert "COVERING INDEX traces_version_day" in plan(
        f"SELECT latency_ms FROM traces WHERE {where} AND substr(started_at, 1, 10) = ? AND latency_ms IS NOT NULL "
        "ORDER BY latency_ms DESC LIMIT 1 OFFSET 0", [*key, "2026-01-05"])
    assert "COVERING INDEX traces_version_hour" in plan(
        f"SELECT latency_ms, cost, cost_unknown_steps, llm_calls, tool_calls FROM traces WHERE {where} "
        "AND substr(started_at, 1, 13) >= ? AND substr(started_at, 1, 13) < ?", [*key, "2026-01-05T00", "2026-01-06"])
    assert "COVERING INDEX version_counts_key" in plan(
        "SELECT prompt_name, prompt_version, kind, key, total(traces), total(items) FROM version_counts "
        "WHERE (1) AND hour IS NOT NULL GROUP BY 1, 2, 3, 4", [])
    assert "traces_prompt" in plan(f"SELECT min(started_at) FROM traces WHERE {where} AND (1)", key)


# ---------------------------------------------------------------------------------------------- comparing


def _two(tmp_path: Path, n_a: int, n_b: int, lat_a: float, lat_b: float, err_a: int, err_b: int) -> tuple[
        VersionStats, VersionStats]:
    rnd = random.Random(1)
    traces = [trace(i, "v1", seconds=lat_a * rnd.uniform(0.9, 1.1), cost=0.01 * rnd.uniform(0.9, 1.1),
                    tools=1, tool_error=i < err_a, minute=i % 60, hour=i // 60) for i in range(n_a)]
    traces += [trace(1000 + i, "v2", day=6, seconds=lat_b * rnd.uniform(0.9, 1.1), cost=0.01 * rnd.uniform(0.9, 1.1),
                     tools=1, tool_error=i < err_b, minute=i % 60, hour=i // 60) for i in range(n_b)]
    s = store_with(tmp_path / "s.db", traces)
    a, b = (version_stats(s, VersionKey("support_agent", v)) for v in ("v1", "v2"))
    return a, b


def test_compare_marks_the_better_side_only_when_the_samples_tell(tmp_path: Path) -> None:
    a, b = _two(tmp_path, 60, 80, lat_a=2.0, lat_b=4.0, err_a=30, err_b=28)
    cmp = compare(a, b)
    m = {x.metric: x for x in cmp.metrics}
    p95 = m["latency.p95"]
    assert p95.better == "a" and p95.clear and p95.note is None and p95.method == "order statistic"
    assert p95.delta == pytest.approx(b.latency.p95.value - a.latency.p95.value)
    assert p95.delta_pct == pytest.approx(p95.delta / a.latency.p95.value * 100)
    tool = m["tool_errors"]
    assert tool.better == "b" and not tool.clear
    assert tool.note == "too small to tell: 95% intervals overlap (wilson)"
    cost = m["cost.mean"]
    assert cost.method == "normal"
    assert m["tokens.input"].better is None and m["model_calls"].better is None  # no better direction
    assert m["evals"].a is None and m["evals"].note is None
    assert json.loads(json.dumps(cmp.to_json()))["metrics"][0]["metric"] == "traces"


def test_compare_says_too_small_below_thirty(tmp_path: Path) -> None:
    a, b = _two(tmp_path, 29, 80, lat_a=2.0, lat_b=9.0, err_a=0, err_b=0)
    p95 = next(x for x in compare(a, b).metrics if x.metric == "latency.p95")
    assert p95.better == "a" and not p95.clear
    assert p95.note == "too small to tell: fewer than 30 (29 vs 80)"


# ---------------------------------------------------------------------------------------------- over time


def test_time_series_per_day_with_empty_days_and_each_days_p95(tmp_path: Path) -> None:
    traces = [trace(i, day=5, hour=i, seconds=float(i + 1), cost=0.01) for i in range(20)]
    traces += [trace(100 + i, day=8, hour=i, seconds=2.0, cost=None if i == 0 else 0.03, tools=1, tool_error=True)
               for i in range(4)]
    s = store_with(tmp_path / "s.db", traces)
    series = time_series(s, VersionKey("support_agent", "v1"))
    assert [b.start for b in series] == ["2026-01-05", "2026-01-06", "2026-01-07", "2026-01-08"]
    assert {b.unit for b in series} == {"day"}
    day5, day6, _day7, day8 = series
    assert day5.traces == 20 and day5.p95_latency_ms == pytest.approx(nearest_rank([i + 1.0 for i in range(20)],
                                                                                   0.95) * 1000)
    assert day5.cost_per_trace == pytest.approx(0.01) and day5.finding_rate == 0
    assert (day6.traces, day6.cost_per_trace, day6.p95_latency_ms, day6.finding_rate) == (0, None, None, None)
    assert day8.cost_per_trace == pytest.approx(0.03) and day8.cost_unknown == 1 and day8.finding_rate == 1.0


def test_time_series_per_hour_when_the_span_is_short(tmp_path: Path) -> None:
    s = store_with(tmp_path / "s.db", [trace(i, hour=10 + i % 3, minute=i, seconds=1 + i) for i in range(9)])
    series = time_series(s, VersionKey("support_agent", "v1"))
    assert [b.start for b in series] == ["2026-01-05T10", "2026-01-05T11", "2026-01-05T12"]
    assert [b.traces for b in series] == [3, 3, 3]
    assert series[0].p95_latency_ms == pytest.approx(7000)  # seconds 1, 4, 7
    assert [b.start for b in time_series(s, VersionKey("support_agent", "v1"), "day")] == ["2026-01-05"]
    assert time_series(s, VersionKey("nobody", "v0")) == []


# ---------------------------------------------------------------------------------------------- naming versions


def test_versions_are_named_as_the_filters_name_them(tmp_path: Path) -> None:
    s = store_with(tmp_path / "s.db", [trace(1, "v1", day=3), trace(2, "v2", day=5), trace(3, "v1", prompt="triage"),
                                       trace(4, "v3", day=4), trace(5, None, prompt=None)])
    assert resolve_version(s, "v2") == VersionKey("support_agent", "v2")
    assert resolve_version(s, "triage@v1") == VersionKey("triage", "v1")
    assert resolve_version(s, "v1", prompt="triage") == VersionKey("triage", "v1")
    assert resolve_version(s, "(no prompt)@(no version)") == VersionKey(None, None)
    with pytest.raises(AmbiguousVersion) as exc:
        resolve_version(s, "v1")
    assert "support_agent@v1, triage@v1" in str(exc.value)
    with pytest.raises(VersionNotFound):
        resolve_version(s, "v9")
    # The previous version is the one first seen before, not the one that sorts before.
    assert previous_version(s, VersionKey("support_agent", "v2")) == VersionKey("support_agent", "v3")
    assert previous_version(s, VersionKey("support_agent", "v3")) == VersionKey("support_agent", "v1")
    assert previous_version(s, VersionKey("support_agent", "v1")) is None


# ---------------------------------------------------------------------------------------------- loupe versions


def invoke(*args: str) -> Any:
    return runner.invoke(cli.app, list(args))


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = tmp_path / "v.db"
    traces = [trace(i, "v1", cost=0.01, minute=i) for i in range(5)]
    traces += [trace(10 + i, "v2", day=6, cost=None if i == 0 else 0.02, minute=i, tools=1, tool_error=i < 2)
               for i in range(4)]
    traces += [trace(20, "v1", prompt="triage", cost=None)]
    store_with(path, traces).close()
    return str(path)


def test_versions_prints_one_table_per_prompt(db: str) -> None:
    result = invoke("versions", "--db", db)
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.startswith("3 prompt versions")
    lines = [line.rstrip() for line in out.splitlines()]
    agent, triage = lines[lines.index("support_agent"):lines.index("triage")], lines[lines.index("triage"):]
    rows = {line[:16].strip(): line[16:].split() for line in agent[2:] if line}
    assert agent[1].split() == ["v1", "v2"]
    assert rows["traces"] == ["5", "4"]
    assert rows["tool errors"] == ["0.0%", "0", "50.0%", "2"]
    assert rows["rule tool-error"] == ["-", "50.0%", "2"]
    assert rows["cost/trace mean"] == ["$0.0100", "$0.0200"]  # v2's over the three traces whose cost is known
    assert rows["cost total"] == ["$0.0500", "$0.0600+"]  # and its total leaves the fourth out, and says so
    assert rows["cost unknown"] == ["-", "partial:", "1", "of", "4"]
    assert rows["usage unknown"] == ["-", "-"]
    assert rows["output tokens"] == ["10", "(?", "reasoning)", "10", "(?", "reasoning)"]  # never reported: unknown
    # triage@v1: every cost unknown, shown as "?" and never as $0.
    t_rows = {line[:16].strip(): line[16:].split() for line in triage[2:] if line}
    assert t_rows["cost/trace mean"] == t_rows["cost/trace p95"] == t_rows["cost total"] == ["?"]
    assert t_rows["cost unknown"] == ["all", "1", "unknown"]  # not "partial: 1 of 1"
    assert not any("$0" in line for line in triage)


def test_versions_json_and_filters(db: str) -> None:
    result = invoke("versions", "--db", db, "--prompt", "support_agent", "--since", "2026-01-06", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["filter"] == {"prompt": "support_agent", "prompt_versions": [], "since": "2026-01-06", "until": None}
    [v2] = doc["versions"]
    assert (v2["label"], v2["traces"], v2["cost"]["unknown"], v2["cost"]["partial"]) == ("support_agent@v2", 4, 1, True)
    assert v2["tool_errors"]["count"] == 2 and v2["latency"]["p95"]["interval"] is not None
    assert invoke("versions", "--db", db, "--since", "yesterday").exit_code == 2


def test_versions_compare(db: str) -> None:
    result = invoke("versions", "--db", db, "--compare", "support_agent@v1", "v2")
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.startswith("Comparing support_agent@v1 (A) with support_agent@v2 (B)")
    tool = next(line for line in out.splitlines() if line.startswith("tool error rate"))
    assert "0.0%" in tool and "50.0%" in tool and tool.rstrip().endswith("A? n<30")
    assert "n<30 = fewer than 30 on a side" in out and "Wilson score for rates" in out
    doc = json.loads(invoke("versions", "--db", db, "--compare", "support_agent@v1", "v2", "--json").output)
    assert (doc["a"]["label"], doc["b"]["label"]) == ("support_agent@v1", "support_agent@v2")


def test_versions_usage_and_input_errors(db: str, tmp_path: Path) -> None:
    ambiguous = invoke("versions", "--db", db, "--compare", "v1", "v2")
    assert ambiguous.exit_code == 2
    assert "'support_agent@v1', 'triage@v1'" in ambiguous.output
    # --prompt says which prompt a bare version belongs to.
    assert invoke("versions", "--db", db, "--prompt", "support_agent", "--compare", "v1", "v2").exit_code == 0
    missing = invoke("versions", "--db", db, "--compare", "support_agent@v1", "v9")
    assert missing.exit_code == 2 and "'v9'" in missing.output
    outside = invoke("versions", "--db", db, "--compare", "support_agent@v1", "v2", "--until", "2026-01-06")
    assert outside.exit_code == 2 and "no traces of it" in outside.output
    assert invoke("versions", "--db", str(tmp_path / "nowhere.db")).exit_code == 3


def test_version_names_from_traces_are_printed_inert(tmp_path: Path) -> None:
    evil = "[bold]x[/bold] \x1b[31mred\x1b]8;;http://e\x07"
    path = tmp_path / "e.db"
    store_with(path, [trace(1, evil, prompt=evil), trace(2, "v1")]).close()
    for args in (["versions"], ["versions", "--compare", "support_agent@v1", f"{evil}@{evil}"], ["versions", "--json"]):
        result = invoke(*args, "--db", str(path))
        assert result.exit_code == 0, result.output
        assert not UNSAFE.search(result.output.replace("\n", ""))
    assert "[bold]x[/bold]" in invoke("versions", "--db", str(path)).output


# ---------------------------------------------------------------------------------------------- what a tester found


@pytest.fixture
def at_db(tmp_path: Path) -> str:
    """Versions whose names and versions hold "@" and markup, beside ordinary ones."""
    path = tmp_path / "at.db"
    traces = [trace(i, "[@click=app.quit]x", prompt="[bold]evil[/bold]", minute=i) for i in range(3)]
    traces += [trace(10 + i, "c@d", prompt="a@b", minute=i) for i in range(2)]
    traces += [trace(20 + i, "v1", prompt="fresh", minute=i) for i in range(4)]
    traces += [trace(30, "v1", prompt="tz")]
    store_with(path, traces).close()
    return str(path)


def test_a_version_holding_at_signs_can_be_named(at_db: str) -> None:
    with Store(at_db) as s:
        # NAME@VERSION is the version whose name, "@" and version spell it, whichever "@" divides them.
        assert resolve_version(s, "a@b@c@d") == VersionKey("a@b", "c@d")
        evil = VersionKey("[bold]evil[/bold]", "[@click=app.quit]x")
        assert resolve_version(s, "[bold]evil[/bold]@[@click=app.quit]x") == evil
        # With --prompt, the bare version is that prompt's, spelt exactly: "@" and all.
        assert resolve_version(s, "[@click=app.quit]x", prompt="[bold]evil[/bold]") == evil
        assert version_stats(s, evil).traces == 3  # the exact filter: not split again at the last "@"
        assert [r.key for r in version_table(s, TraceFilter(prompt_versions=["a@b@c@d"]))] == [
            VersionKey("a@b", "c@d")]
    ls = invoke("ls", "--db", at_db, "--prompt-version", "[bold]evil[/bold]@[@click=app.quit]x", "--json")
    assert ls.exit_code == 0, ls.output
    assert len(json.loads(ls.output)) == 3
    result = invoke("versions", "--db", at_db, "--compare", "a@b@c@d", "fresh@v1", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert (doc["a"]["prompt"], doc["b"]["label"]) == ({"name": "a@b", "version": "c@d"}, "fresh@v1")
    exact = invoke("versions", "--db", at_db, "--prompt", "[bold]evil[/bold]", "--compare", "[@click=app.quit]x",
                   "[@click=app.quit]x", "--json")
    assert exact.exit_code == 0, exact.output
    assert "--prompt NAME" in " ".join(invoke("versions", "--help").output.split())


def test_two_versions_spelt_alike_are_ambiguous_and_prompt_tells_them_apart(tmp_path: Path) -> None:
    s = store_with(tmp_path / "twin.db", [trace(1, "c@d", prompt="a@b"), trace(2, "b@c@d", prompt="a")])
    with pytest.raises(AmbiguousVersion):
        resolve_version(s, "a@b@c@d")
    assert resolve_version(s, "b@c@d", prompt="a") == VersionKey("a", "b@c@d")
    assert resolve_version(s, "c@d", prompt="a@b") == VersionKey("a@b", "c@d")
    s.close()


def test_compare_reads_versions_as_the_filter_does_without_stripping(at_db: str) -> None:
    spaced = invoke("versions", "--db", at_db, "--compare", "tz@v1 ", "fresh@v1")
    assert spaced.exit_code == 2 and "'tz@v1 '" in spaced.output  # as `ls --prompt-version 'tz@v1 '` finds none
    assert invoke("versions", "--db", at_db, "--compare", "tz@v1", "fresh@v1").exit_code == 0


def test_the_header_has_no_stray_separator(at_db: str) -> None:
    out = invoke("versions", "--db", at_db, "--since", "2026-01-01").output
    assert out.splitlines()[0] == "4 prompt versions (since 2026-01-01)"
    out = invoke("versions", "--db", at_db, "--prompt", "tz", "--until", "2026-02-01").output
    assert out.splitlines()[0] == "1 prompt version (prompt tz; until 2026-02-01)"


@pytest.mark.parametrize("flag", ["--since", "--until"])
def test_a_bad_date_names_the_option_and_shows_one(at_db: str, flag: str) -> None:
    result = invoke("versions", "--db", at_db, flag, "yesterday")
    assert result.exit_code == 2
    assert f"{flag} 'yesterday' is not an ISO date or time; for example {flag} 2026-01-09" in result.output
    assert "Invalid isoformat" not in result.output


def test_huge_latencies_in_hours_and_days_and_json_without_float_noise(tmp_path: Path) -> None:
    path = tmp_path / "slow.db"
    # 4.038 s from float seconds (4038.0000000000005 ms), and traces that ran 2.5 hours and 40 days.
    traces = [trace(1, "v1", seconds=4.038), trace(2, "v2", seconds=1), trace(3, "v3", day=1, seconds=1)]
    traces[1]["ended_at"] = "2026-01-05T12:30:00.000Z"
    traces[2]["ended_at"] = "2026-02-10T10:00:00.000Z"
    store_with(path, traces).close()
    out = invoke("versions", "--db", str(path)).output
    p50 = next(line for line in out.splitlines() if line.startswith("latency p50")).split()[2:]
    assert p50 == ["40.0d", "4.04s", "2.5h"]  # first seen first; was 57600.0m and 150.0m
    doc = json.loads(invoke("versions", "--db", str(path), "--json").output)
    by_label = {v["label"]: v for v in doc["versions"]}
    assert by_label["support_agent@v1"]["latency"]["p50"]["value"] == 4038.0
    cmp = json.loads(invoke("versions", "--db", str(path), "--compare", "v1", "v2", "--json").output)
    lat = next(m for m in cmp["metrics"] if m["metric"] == "latency.p50")
    assert (lat["a"], lat["delta"]) == (4038.0, 8995962.0)


def test_output_to_a_reader_that_stops_early_exits_quietly(at_db: str) -> None:
    import subprocess
    import sys

    code = "import sys; from tui.cli import app; sys.argv = ['loupe'] + sys.argv[1:]; app()"
    for args in (["versions"], ["versions", "--json"]):
        proc = subprocess.Popen([sys.executable, "-c", code, *args, "--db", at_db], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, cwd=Path(__file__).parent.parent)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # `| head -0`: the reader is gone before loupe writes a line
        err = proc.stderr.read().decode()
        assert proc.wait() == 0, err
        assert "BrokenPipe" not in err and "Traceback" not in err
