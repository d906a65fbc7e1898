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


def test_common_and_rare_words_are_searched_two_ways_with_the_same_answer(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(tmp_path / "s.db")
    traces = [_trace(f"trc_{i:03d}", f"Answer {i}: " + ("the invoice is late" if i % 3 else "all good"),
                     started=f"2026-01-02T10:{i // 60:02d}:{i % 60:02d}Z") for i in range(90)]
    store.insert_traces(traces)
    queries = ["invoice is late", "all good", "answer 1", "trc_04", "lookup_invoice"]
    sorted_hits = {q: _ids(store, q) for q in queries}
    assert not store._common_search(TraceFilter(search="invoice"))  # a small store always sorts its hits
    monkeypatch.setattr(store_db, "SEARCH_MIN_HITS", 1)
    monkeypatch.setattr(store_db, "SEARCH_COST_RATIO", 0)
    assert store._common_search(TraceFilter(search="invoice"))  # now every word with a hit walks the list
    for q in queries:
        assert _ids(store, q) == sorted_hits[q], q
        assert len(sorted_hits[q]) == store.count_traces(TraceFilter(search=q))
    assert sorted_hits["all good"] == [f"trc_{i:03d}" for i in range(87, -1, -3)]
    store.close()
