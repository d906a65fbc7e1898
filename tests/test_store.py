"""The store: migrations, idempotent writes, lookups by ID and prefix, paging and filters."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from store.db import AmbiguousTraceId, Store, StoreError, TraceFilter, TraceNotFound
from store.migrations import KNOWN
from store.models import Trace
from tests.conftest import make_trace


def _store(tmp_path: Path) -> Store:
    return Store(tmp_path / "t.db")


def test_blank_store_is_migrated_and_in_wal_mode(tmp_path: Path) -> None:
    store = _store(tmp_path)
    tables = set(store.db.table_names())
    assert {"traces", "steps", "findings", "eval_cases", "_sqlite_migrations"} <= tables
    applied = [r[0] for r in store.conn.execute("SELECT name FROM _sqlite_migrations")]
    assert applied == KNOWN
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()
    # Opening again applies nothing twice.
    again = _store(tmp_path)
    assert [r[0] for r in again.conn.execute("SELECT name FROM _sqlite_migrations")] == KNOWN


def test_store_from_a_newer_loupe_is_refused_and_untouched(tmp_path: Path) -> None:
    _store(tmp_path).close()
    path = tmp_path / "t.db"
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO _sqlite_migrations (migration_set, name, applied_at) "
                 "VALUES ('traceloupe', 'm999_future', 'x')")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="newer loupe"):
        _store(tmp_path)
    assert path.read_bytes() == before


def test_a_file_that_is_not_sqlite_gives_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    path.write_text("hello, not a database\n" * 100)
    with pytest.raises(StoreError, match="not a traceloupe store"):
        Store(path)


def test_insert_is_idempotent(tmp_path: Path, seed: dict) -> None:
    store = _store(tmp_path)
    first = store.insert_traces([Trace.model_validate(seed)])
    seed["output"] = "changed"
    second = store.insert_traces([Trace.model_validate(seed)])
    assert (first.updated, second.updated) == (0, 1)
    assert store.count_traces() == 1
    assert store.conn.execute("SELECT count(*) FROM steps").fetchone()[0] == 4
    assert store.conn.execute("SELECT count(*) FROM findings").fetchone()[0] == 3
    assert store.get_trace("trc_7J4k9").trace.output == "changed"


def test_ids_by_full_id_unique_prefix_ambiguous_and_unknown(tmp_path: Path, seed: dict) -> None:
    store = _store(tmp_path)
    store.insert_traces([Trace.model_validate(seed)] + [Trace.model_validate(make_trace(i)) for i in range(3)])
    assert store.resolve_id("trc_7J4k9") == "trc_7J4k9"
    assert store.resolve_id("trc_7J") == "trc_7J4k9"
    with pytest.raises(AmbiguousTraceId) as exc:
        store.resolve_id("trc_t")
    assert exc.value.candidates == ["trc_t0000", "trc_t0001", "trc_t0002"]
    with pytest.raises(TraceNotFound):
        store.resolve_id("trc_nope")
    with pytest.raises(TraceNotFound):
        store.resolve_id("")


def test_list_is_newest_first_and_keyset_pages_match_offset_pages(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.insert_traces([Trace.model_validate(make_trace(i)) for i in range(57)])
    whole = [r.id for r in store.list_traces(limit=1000)]
    assert len(whole) == 57
    starts = [r.started_at for r in store.list_traces(limit=1000)]
    assert starts == sorted(starts, reverse=True)
    paged, after = [], None
    while True:
        page = store.list_traces(limit=10, after=after)
        paged += [r.id for r in page]
        if len(page) < 10:
            break
        after = (page[-1].started_at, page[-1].id)
    assert paged == whole
    assert [r.id for r in store.list_traces(limit=10, offset=20)] == whole[20:30]
    assert [r.id for r in store.iter_traces(page=7)] == whole


def test_filters_by_prompt_version_and_versions_with_counts(tmp_path: Path, seed: dict) -> None:
    store = _store(tmp_path)
    traces = [make_trace(i, "v6") for i in range(5)] + [make_trace(10 + i, "v7") for i in range(3)]
    traces.append(make_trace(20, prompt={"name": "support_agent", "version": 3}))
    traces.append(make_trace(21, prompt={"name": "support_agent", "version": "3"}))
    traces.append(make_trace(22, prompt=None))
    store.insert_traces([Trace.model_validate(t) for t in traces + [seed]])
    assert store.count_traces(TraceFilter(prompt_versions=["v7"])) == 4
    assert store.count_traces(TraceFilter(prompt_versions=["support_agent@v6"])) == 5
    assert store.count_traces(TraceFilter(prompt_versions=["v6", "v7"])) == 9
    assert store.count_traces(TraceFilter(prompt_versions=["3"])) == 2  # 3 and "3" are one version
    assert store.count_traces(TraceFilter(prompt_versions=["(no version)"])) == 1
    assert store.count_traces(TraceFilter(violations=True)) == 1
    assert store.count_traces(TraceFilter(rule="success-after-tool-error")) == 1
    assert store.count_traces(TraceFilter(status="error")) == 1
    assert store.count_traces(TraceFilter(search="refund the last")) == 1
    assert store.count_traces(TraceFilter(search="100%")) == 0
    assert store.prompt_versions() == [
        ("support_agent", "3", 2), ("support_agent", "v6", 5), ("support_agent", "v7", 4), (None, None, 1)
    ]


def test_totals_keep_unknown_apart_from_zero(tmp_path: Path) -> None:
    store = _store(tmp_path)
    t = make_trace(1)
    t["steps"].append({"id": "b", "type": "llm", "model": "gpt-4o-mini",
                       "output": {"role": "assistant", "content": "more"}})
    store.insert_traces([Trace.model_validate(t), Trace.model_validate(make_trace(2, steps=[]))])
    st = store.get_trace("trc_t0001")
    assert st.totals.input_tokens == 100
    assert st.totals.usage_unknown_steps == 1
    assert st.totals.cost_unknown_steps == 1 and st.totals.cost_partial
    assert st.costs["b"].computed is None and st.costs["b"].reason == "usage missing"
    empty = store.get_trace("trc_t0002")
    assert empty.totals.input_tokens is None and empty.totals.cost is None
    row = store.list_traces(TraceFilter(search="trc_t0001"))[0]
    assert row.cost_partial and row.cost is not None


def test_a_foreign_sqlite_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.execute("PRAGMA user_version = 999")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="not a traceloupe store"):
        Store(path)
    assert path.read_bytes() == before


def test_a_missing_store_is_created_only_when_asked(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no store there"):
        Store(tmp_path / "nowhere" / "x.db", create=False)
    assert not (tmp_path / "nowhere").exists()


def test_a_trace_that_cannot_be_stored_does_not_sink_its_batch(tmp_path: Path) -> None:
    store = _store(tmp_path)
    bad = Trace.model_validate(make_trace(2))
    bad.steps[0].usage.input_tokens = 2**70  # type: ignore[union-attr]  # bypasses validation on purpose
    counts = store.insert_traces([Trace.model_validate(make_trace(1)), bad, Trace.model_validate(make_trace(3))])
    assert counts.traces == 2 and [f[0] for f in counts.failed] == ["trc_t0002"]
    assert [r.id for r in store.list_traces()] == ["trc_t0003", "trc_t0001"]


WRITER = """
import sys
from store.db import Store
from store.models import Trace
from tests.conftest import make_trace
store = Store(sys.argv[1])
base = int(sys.argv[2])
for i in range(20):
    store.insert_traces([Trace.model_validate(make_trace(base + i * 10 + j)) for j in range(10)])
"""


def test_concurrent_writers_never_see_database_is_locked(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "c.db"
    Store(path).close()
    root = Path(__file__).resolve().parents[1]
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(k * 1000)], cwd=root,
                              stderr=subprocess.PIPE, text=True) for k in range(4)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
    assert Store(path).count_traces() == 4 * 200


def _span(sid: str, parent: str | None, start: str, end: str | None, **more: object) -> dict:
    return {"id": sid, "parent_id": parent, "type": "other", "name": sid, "started_at": start,
            "ended_at": end, **more}


def test_a_trace_split_across_ingests_is_joined_span_by_span(tmp_path: Path) -> None:
    store = _store(tmp_path)
    first = Trace.model_validate({"id": "otel1", "steps": [
        _span("root", None, "2026-01-01T00:00:00Z", None),  # not finished yet in this batch
        _span("a", "root", "2026-01-01T00:00:01Z", "2026-01-01T00:00:02Z")]})
    second = Trace.model_validate({"id": "otel1", "name": "workflow", "steps": [
        _span("b", "root", "2026-01-01T00:00:03Z", "2026-01-01T00:00:04Z"),
        _span("root", None, "2026-01-01T00:00:00Z", "2026-01-01T00:00:05Z")]})
    stale = Trace.model_validate({"id": "otel1", "steps": [_span("root", None, "2026-01-01T00:00:00Z", None)]})
    for t in (first, second, stale):
        t.merge = True
        store.insert_traces([t])
    got = store.get_trace("otel1")
    assert [s.id for s in got.trace.steps] == ["root", "a", "b"]
    assert got.trace.steps[0].ended_at is not None  # the finished record of the root won over the unfinished
    assert got.trace.name == "workflow"
    assert got.totals.latency_ms == 5000
    # A native trace (no merge) replaces what was stored.
    store.insert_traces([Trace.model_validate({"id": "otel1", "steps": []})])
    assert store.get_trace("otel1").trace.steps == []


def test_usage_of_an_agent_is_not_added_on_top_of_its_llm_children(tmp_path: Path) -> None:
    store = _store(tmp_path)
    usage = {"input_tokens": 100, "output_tokens": 10}
    t = Trace.model_validate({"id": "agent", "steps": [
        {"id": "ag", "type": "agent", "usage": {"input_tokens": 200, "output_tokens": 20}},
        {"id": "l1", "parent_id": "ag", "type": "llm", "model": "gpt-4o-mini", "usage": usage},
        {"id": "l2", "parent_id": "ag", "type": "llm", "model": "gpt-4o-mini", "usage": usage},
        {"id": "lone", "type": "agent", "usage": {"input_tokens": 7, "output_tokens": 1}},
    ]})
    store.insert_traces([t])
    totals = store.get_trace("agent").totals
    assert (totals.input_tokens, totals.output_tokens) == (207, 21)


def test_the_schema_the_store_checks_on_open_is_the_list_of_migrations() -> None:
    from store.db import SCHEMA

    assert SCHEMA == tuple(KNOWN)


def test_an_up_to_date_store_opens_without_sqlite_utils(tmp_path: Path) -> None:
    import subprocess
    import sys

    Store(tmp_path / "s.db").close()
    code = ("import sys; from store.db import Store; s = Store(sys.argv[1], create=False); "
            "s.list_traces(); print('sqlite_utils' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "s.db")], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "False", out.stderr


def test_a_batch_written_in_bulk_falls_back_to_one_by_one_when_a_row_fails(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import store.db as db

    store = _store(tmp_path)
    real = db._insert_bulk
    calls: list[int] = []

    def failing(conn: sqlite3.Connection, items: list[db.PreparedTrace]) -> None:
        calls.append(len(items))
        real(conn, items)  # rows written, then refused: the savepoint must take them back
        if any(p.id == "trc_t0002" for p in items):
            raise sqlite3.IntegrityError("a constraint failed")

    monkeypatch.setattr(db, "_insert_bulk", failing)
    traces = [Trace.model_validate(make_trace(i)) for i in (1, 2, 3)]
    counts = store.insert_traces(traces)
    assert calls[0] == 3  # tried in bulk first, then one at a time
    assert counts.traces == 2 and [f[0] for f in counts.failed] == ["trc_t0002"]
    assert [r.id for r in store.list_traces()] == ["trc_t0003", "trc_t0001"]
    assert store.conn.execute("SELECT count(*) FROM steps").fetchone()[0] == 2
    assert store.conn.execute("SELECT count(*) FROM search_docs").fetchone()[0] == 2
    assert [r.id for r in store.list_traces(TraceFilter(search="Billing"))] == ["trc_t0003", "trc_t0001"]


def test_the_same_id_twice_in_one_batch_keeps_the_later_trace(tmp_path: Path) -> None:
    store = _store(tmp_path)
    first = Trace.model_validate(make_trace(1, output="first answer"))
    later = Trace.model_validate(make_trace(1, output="later answer"))
    counts = store.insert_traces([first, Trace.model_validate(make_trace(2)), later])
    assert store.count_traces() == 2 and counts.failed == []
    assert (counts.traces, counts.updated, counts.steps) == (2, 0, 3)  # one trace, not one more or "updated"
    assert store.get_trace("trc_t0001").trace.output == "later answer"
    assert store.conn.execute("SELECT count(*) FROM steps WHERE trace_id = 'trc_t0001'").fetchone()[0] == 1
    assert [r.id for r in store.list_traces(TraceFilter(search="later answer"))] == ["trc_t0001"]
    assert store.list_traces(TraceFilter(search="first answer")) == []


def test_a_conversation_repeated_in_each_model_call_is_kept_as_each_call_gave_it(tmp_path: Path) -> None:
    from store.importers.base import ImportResult, validate_trace

    def call(step_id: str, args: object, flag: object) -> dict[str, object]:
        return {"id": step_id, "type": "llm", "model": "gpt-4o-mini", "messages": [
            {"role": "user", "content": "Refund order 7"},
            {"role": "assistant", "tool_calls": [{"id": "c1", "name": "refund", "arguments": args}]},
            {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "ok", "final": flag}]},
        ]}

    data = {"id": "trc_conv", "steps": [call("a", {"amount": 10}, True), call("b", {"amount": 10.0}, 1),
                                        call("c", {"amount": 10.0}, 1)]}
    trace = validate_trace(data, "f", 1, ImportResult().problems)
    assert trace is not None
    a, b, c = (s.messages for s in trace.steps)
    assert a[0] is b[0] is c[0]  # equal messages are validated once
    # 10 and 10.0, true and 1 are equal to Python but not the same JSON: each call keeps what it gave.
    assert [m.model_dump_json() for m in b] != [m.model_dump_json() for m in a]
    assert b[1].tool_calls[0].arguments == {"amount": 10.0} and isinstance(b[1].tool_calls[0].arguments["amount"],
                                                                             float)
    assert b[2].content[0]["final"] == 1 and b[2].content[0]["final"] is not True
    assert c[1] is b[1] and c[2] is b[2]
    store = _store(tmp_path)
    store.insert_traces([trace])
    stored = store.get_trace("trc_conv").trace
    assert [s.model_dump_json() for s in stored.steps] == [s.model_dump_json() for s in trace.steps]
