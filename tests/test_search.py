"""Full-text search: the FTS5 index over message and tool text, kept in step at ingest, with a substring fallback."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

import store.db as store_db
from store.db import Store, TraceFilter, fts_query, search_text
from store.models import Trace


def _trace(tid: str, answer: str, tool_result: Any = None, started: str = "2026-01-02T10:00:00Z") -> Trace:
    return Trace.model_validate({
        "id": tid, "name": "support_agent", "prompt": {"name": "support_agent", "version": "v7"},
        "started_at": started, "input": "Where is my invoice?",
        "steps": [
            {"id": "s1", "type": "llm", "model": "gpt-4o-mini",
             "messages": [{"role": "system", "content": "You are a helpful assistant."},
                          {"role": "user", "content": "Where is my invoice?"}],
             "output": {"role": "assistant", "content": None,
                        "tool_calls": [{"id": "c1", "name": "lookup_invoice", "arguments": {"customer": "cus_Q9"}}]}},
            {"id": "s2", "type": "tool", "name": "lookup_invoice", "arguments": {"customer": "cus_Q9"},
             "result": tool_result if tool_result is not None else {"status": "ok"}},
            {"id": "s3", "type": "llm", "model": "gpt-4o-mini",
             "output": {"role": "assistant", "content": answer}},
        ],
    })


def _ids(store: Store, text: str) -> list[str]:
    return [r.id for r in store.list_traces(TraceFilter(search=text))]


def test_search_finds_words_in_messages_and_tool_results(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    store.insert_traces([
        _trace("trc_a1", "Your invoice was emailed to billing@example.com.", {"warehouse": "Snowflake EU"}),
        _trace("trc_b2", "I could not find an invoice for that month.", {"error": "upstream timeout"},
               started="2026-01-03T10:00:00Z"),
    ])
    assert _ids(store, "snowflake") == ["trc_a1"]  # a tool result, any case
    assert _ids(store, "upstream timeout") == ["trc_b2"]  # words in order
    assert _ids(store, "timeout upstream") == []  # not in that order
    assert _ids(store, "could not fi") == ["trc_b2"]  # the last word may be the start of a longer one
    assert _ids(store, "invoice") == ["trc_b2", "trc_a1"]  # newest first, like the list
    assert _ids(store, "lookup_invoice") == ["trc_b2", "trc_a1"]  # a tool name
    assert _ids(store, "trc_a") == ["trc_a1"]  # an ID prefix
    assert _ids(store, "a1") == ["trc_a1"]  # a part of an ID after its separator
    assert store.count_traces(TraceFilter(search="emailed", prompt_versions=["v7"])) == 1
    assert _ids(store, "nothing-like-this") == []
    store.close()


def test_text_the_index_cannot_hold_falls_back_to_a_substring_match(tmp_path: Path) -> None:
    assert fts_query("100%") is None and fts_query("$0.00") is None and fts_query("   ") is None
    assert fts_query("gpt-4o") == '"gpt 4o"*'
    store = Store(tmp_path / "s.db")
    t = _trace("trc_pct", "done")
    t.metadata["discount"] = "100% off"
    store.insert_traces([t, _trace("trc_other", "done")])
    assert _ids(store, "100%") == ["trc_pct"]  # the trace's own fields, as LIKE read them
    assert _ids(store, 'say "done') == []  # a quote in the text is no broken FTS query
    store.close()


def test_a_replaced_trace_is_found_by_its_new_words_only(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = Store(path)
    store.insert_traces([_trace("trc_r", "The refund was declined by the processor.")])
    assert _ids(store, "declined") == ["trc_r"]
    store.insert_traces([_trace("trc_r", "The refund went through.")])  # the same ID again: replaced
    assert _ids(store, "declined") == []
    assert _ids(store, "went through") == ["trc_r"]
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM search_docs").fetchone()[0] == 1
    # The index agrees with its documents: FTS5's own check.
    conn.execute("INSERT INTO trace_search (trace_search, rank) VALUES ('integrity-check', 1)")
    conn.close()
    store.close()


def test_a_conversation_repeated_in_every_model_call_is_indexed_once() -> None:
    trace = _trace("trc_x", "ok")
    trace.steps[2].messages = list(trace.steps[0].messages)
    text = search_text(trace)
    assert text.count("You are a helpful assistant.") == 1
    assert "cus_Q9" in text and "lookup_invoice" in text and "trc_x" in text


def test_a_store_with_traces_from_before_the_index_is_indexed_when_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    store = Store(path)
    store.insert_traces([_trace("trc_old", "Archived answer about quotas.")])
    store.close()
    conn = sqlite3.connect(path)
    # As a store written before the index existed: no documents, the migration not applied.
    conn.execute("DELETE FROM search_docs")
    conn.execute("DROP TABLE trace_search")
    conn.execute("DROP TABLE search_docs")
    conn.execute("DELETE FROM _sqlite_migrations WHERE name = 'm003_search'")
    conn.commit()
    conn.close()
    store = Store(path)
    assert _ids(store, "quotas") == ["trc_old"]
    store.close()


def _sql_order(store: Store, flt: TraceFilter) -> list[str]:
    """The list as one SQL query over the filter's own condition, sorted by SQLite: what pages must add up to."""
    where, params = flt.where()
    return [r[0] for r in store.conn.execute(
        f"SELECT id FROM traces WHERE {where} ORDER BY started_at DESC, id DESC", params)]


def test_search_pages_come_newest_first_like_the_list(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    traces = []
    for i in range(260):
        # Ties (four traces per second, two per microsecond), traces without a time, inserted out of order.
        started = None if i % 37 == 0 else f"2026-01-02T10:{(i // 4) // 60:02d}:{(i // 4) % 60:02d}.{i % 2:06d}Z"
        t = _trace(f"trc_{(i * 7919) % 1000:03d}_{i}", "the invoice is late" if i % 3 else "all good")
        t.started_at = None if started is None else Trace.model_validate({"id": "x", "started_at": started}).started_at
        if i % 5 == 0:
            t.prompt = None
        traces.append(t)
    store.insert_traces(list(reversed(traces)))
    for flt in (TraceFilter(search="invoice"), TraceFilter(search="all good"), TraceFilter(search="trc"),
                TraceFilter(search="invoice", prompt_versions=["v7"]), TraceFilter(search="nothing here")):
        whole = _sql_order(store, flt)
        assert [r.id for r in store.list_traces(flt, limit=1000)] == whole, flt
        assert [r.id for r in store.iter_traces(flt, page=7)] == whole, flt  # keyset pages, ties included
        assert [r.id for r in store.list_traces(flt, limit=9, offset=40)] == whole[40:49], flt
        assert store.count_traces(flt) == len(whole)
    assert store.count_traces(TraceFilter(search="is late")) == 173
    store.close()


def test_a_trace_that_arrives_in_parts_is_found_by_the_words_of_every_part(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = Store(path)
    first = Trace.model_validate({"id": "trc_parts", "steps": [
        {"id": "a", "type": "tool", "name": "lookup", "result": {"note": "alpha quadrant"}}]})
    second = Trace.model_validate({"id": "trc_parts", "steps": [
        {"id": "b", "type": "tool", "name": "lookup", "result": {"note": "bravo sector"}}]})
    first.merge = second.merge = True  # as span-based sources (OTLP, serve) send them
    store.insert_traces([first])
    store.insert_traces([second])
    assert _ids(store, "alpha quadrant") == ["trc_parts"] and _ids(store, "bravo sector") == ["trc_parts"]
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO trace_search (trace_search, rank) VALUES ('integrity-check', 1)")
    conn.close()
    store.close()


def test_more_traces_in_one_microsecond_than_numbers_for_it_are_still_found(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_db, "DOC_SLOTS", 2)
    store = Store(tmp_path / "s.db")
    store.insert_traces([_trace(f"trc_same_{i}", "duplicate charge") for i in range(5)])
    assert sorted(_ids(store, "duplicate charge")) == [f"trc_same_{i}" for i in range(5)]
    assert store.count_traces(TraceFilter(search="duplicate")) == 5
    store.close()


def test_long_results_never_push_a_short_tool_error_out_of_the_index(tmp_path: Path) -> None:
    import random
    import string

    rnd = random.Random(1)

    def doc(n: int) -> str:
        return " ".join("".join(rnd.choices(string.ascii_lowercase, k=7)) for _ in range(n // 8))

    steps: list[dict[str, Any]] = [
        {"id": f"s{i}", "type": "retrieval", "name": "search_docs", "arguments": {"q": "x"}, "result": doc(21_000),
         "status": "ok"} for i in range(10)]
    steps.append({"id": "s99", "type": "tool", "name": "issue_refund", "arguments": {"order": "A1"},
                  "status": "error", "error": {"type": "QuotaExceeded", "message": "zanzibarquota exceeded"}})
    with Store(tmp_path / "n.db") as store:
        store.insert_traces([Trace.model_validate({"id": "needle", "steps": steps})])
        for word in ("issue_refund", "zanzibarquota", "QuotaExceeded"):
            assert [r.id for r in store.list_traces(TraceFilter(search=word))] == ["needle"], word
