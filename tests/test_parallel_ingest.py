"""A large native file made ready by worker processes leaves the store exactly as a one-process ingest does."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

import store.importers.parallel as parallel
from store.db import Store, TraceFilter
from store.importers import ingest_paths

from .conftest import make_trace

PARTIAL = [i for i in range(300) if i % 11 == 5 and i not in (17, 253)]  # 17 is broken, 253 repeats 3, in _file


def _lines(n: int) -> list[bytes]:
    """Traces with the findings, problems and quirks a one-process read handles, one per line."""
    out: list[bytes] = []
    for i in range(n):
        t = make_trace(i, version=f"v{i % 3}")
        if i % 7 == 3:
            # A failed refund and a claim that it went through: findings with evidence.
            t["steps"] += [
                {"id": "r", "type": "tool", "name": "issue_refund", "arguments": {"order": i},
                 "result": {"error": "permission_denied"}, "status": "error"},
                {"id": "b", "type": "llm", "model": "gpt-4o-mini",
                 "messages": [{"role": "user", "content": "Refund please"}],
                 "output": {"role": "assistant", "content": "I've processed your refund."},
                 "usage": {"input_tokens": 10, "output_tokens": 5}},
            ]
        if i % 11 == 5:
            t["steps"][0]["usage"] = {"input_tokens": -4}  # a bad field: left out, the trace marked partial
        if i % 13 == 6:
            t["steps"][0]["model"] = "a-model-nobody-prices"  # cost unknown, never $0
        out.append(json.dumps(t, ensure_ascii=i % 2 == 0).encode())
    return out


def _file(path: Path, n: int) -> Path:
    lines = _lines(n)
    lines[17] = b'{"id": "trc_broken", "steps": ['  # invalid JSON, named by its line
    if n > 260:
        # Trace 3 again, 250 lines later, changed: the later one is stored, and it is counted once.
        lines[253] = lines[3].replace(b"processed your refund", b"processed your refund twice")
    if n > 40:
        lines[40] = lines[40].replace(b"How do I", b"How do \xff I")  # not UTF-8: replaced, visibly
    body = b""
    for i, line in enumerate(lines):
        end = b"\r\n" if i % 5 == 0 else b"\n"
        body += line + end
        if i % 9 == 0:
            body += b"\n"  # blank lines count as lines
        if i == 10:
            # A lone CR ends a line too: the lines after it are numbered one more.
            body += b"\r" + _lines(1)[0].replace(b"trc_t0000", b"trc_after_cr") + b"\n"
    path.write_bytes(body)
    return path


def _dump(db: Path) -> dict[str, list[tuple[object, ...]]]:
    conn = sqlite3.connect(db)
    try:
        return {
            "traces": conn.execute("SELECT * FROM traces ORDER BY id").fetchall(),
            "steps": conn.execute("SELECT * FROM steps ORDER BY trace_id, idx").fetchall(),
            "findings": conn.execute("SELECT * FROM findings ORDER BY trace_id, idx").fetchall(),
            "docs": conn.execute("SELECT doc, trace_id FROM search_docs ORDER BY doc").fetchall(),
        }
    finally:
        conn.close()


def _without_ingest_time(rows: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
    return [r[:-1] for r in rows]  # ingested_at, the last column, is the clock's


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "MIN_BYTES", 0)
    monkeypatch.setattr(parallel, "CHUNK_BYTES", 4096)  # many chunks: lines cut across chunk ends are joined
    monkeypatch.setattr(parallel, "BATCH", 50)


@pytest.mark.usefixtures("small_chunks")
def test_workers_leave_the_store_as_one_process_does(tmp_path: Path) -> None:
    src = _file(tmp_path / "t.jsonl", 300)
    with Store(tmp_path / "one.db") as one, Store(tmp_path / "many.db") as many:
        alone = ingest_paths(one, [src], workers=1)
        spread = ingest_paths(many, [src], workers=2)
        # 300 lines, the broken one and the repeat of trace 3 left out, and the one after the CR.
        assert spread.counts.traces == alone.counts.traces == 299
        assert spread.counts.findings == alone.counts.findings > 0
        assert (spread.counts.steps, spread.counts.traces_with_findings) == (alone.counts.steps,
                                                                             alone.counts.traces_with_findings)
        assert spread.counts.updated == alone.counts.updated == 0
        # The same problems, at the same lines (a CR alone, blank lines and CRLF counted as a text reader does).
        assert [str(p) for p in spread.problems] == [str(p) for p in alone.problems]
        assert any(str(p).startswith(f"{src}:22: invalid JSON") for p in spread.problems)
        assert sum("input_tokens" in str(p) for p in spread.problems) == len(PARTIAL)
        # Searches find the same traces, newest first.
        for words in ("processed your refund", "Billing", "trc_after_cr", "\ufffd"):
            found = [r.id for r in many.list_traces(TraceFilter(search=words), limit=500)]
            assert found == [r.id for r in one.list_traces(TraceFilter(search=words), limit=500)]
    a, b = _dump(tmp_path / "one.db"), _dump(tmp_path / "many.db")
    assert _without_ingest_time(b["traces"]) == _without_ingest_time(a["traces"])
    assert [r for r in b["steps"] if r[0] == "trc_t0003" and "twice" in str(r)]  # the later copy of trace 3
    assert b["steps"] == a["steps"] and b["findings"] == a["findings"] and b["docs"] == a["docs"]
    conn = sqlite3.connect(tmp_path / "many.db")
    partial = [r[0] for r in conn.execute("SELECT id FROM traces WHERE partial = 1 ORDER BY id")]
    conn.close()
    assert partial == [f"trc_t{i:04d}" for i in PARTIAL]


@pytest.mark.usefixtures("small_chunks")
def test_reingesting_through_workers_updates_and_never_duplicates(tmp_path: Path) -> None:
    src = _file(tmp_path / "t.jsonl", 120)
    with Store(tmp_path / "s.db") as store:
        first = ingest_paths(store, [src], workers=2)
        again = ingest_paths(store, [src], workers=2)
        assert first.counts.updated == 0 and again.counts.updated == again.counts.traces == 120
        assert store.count_traces() == 120  # 119 lines and the one after the CR
        assert store.conn.execute("SELECT count(*) FROM search_docs").fetchone()[0] == 120
        found = {r.id for r in store.list_traces(TraceFilter(search="processed your refund"), limit=500)}
        assert found == {f"trc_t{i:04d}" for i in range(120) if i % 7 == 3 and i != 17}


@pytest.mark.usefixtures("small_chunks")
def test_a_stop_request_commits_what_the_workers_made_ready(tmp_path: Path) -> None:
    src = _file(tmp_path / "t.jsonl", 300)
    asked = 0

    def stop() -> bool:
        nonlocal asked
        asked += 1
        return asked > 3

    with Store(tmp_path / "s.db") as store:
        report = ingest_paths(store, [src], workers=2, stop=stop)
        assert report.interrupted
        assert 0 < report.counts.traces == store.count_traces() < 299
        # The traces stored are the file's first ones, whole: a re-run finishes the job.
        again = ingest_paths(store, [src], workers=2)
        assert store.count_traces() == 299 and again.counts.updated == report.counts.traces


@pytest.mark.parametrize("body", [b"a\r\nbb\rccc\n" + b"x" * 30 + b"\n\nlast",
                                  b"one\rtwo\rthree\r" + b"y" * 20 + b"\rfour\r\r\nfive\r\nsix"])
def test_chunks_end_at_line_ends_and_count_lines_as_a_text_reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  body: bytes) -> None:
    monkeypatch.setattr(parallel, "CHUNK_BYTES", 8)
    path = tmp_path / "t.jsonl"
    path.write_bytes(body)
    pieces = list(parallel.chunks(path))
    assert b"".join(p for _, _, p in pieces) == body
    # Every chunk but the last ends a line: at a LF, or at a CR that is not the first half of a CRLF.
    assert all(p.endswith(b"\n") or (p.endswith(b"\r") and not body[len(b"".join(q for _, _, q in pieces[:i + 1])):]
                                       .startswith(b"\n")) for i, (_, _, p) in enumerate(pieces[:-1]))
    assert len(pieces) > 3  # a file of old-Mac line ends (CR only) is cut too, not read as one chunk
    with open(path, encoding="utf-8", newline=None) as fh:
        text_lines = fh.read().split("\n")
    for _, first, piece in pieces:
        own = piece.decode().replace("\r\n", "\n").replace("\r", "\n").split("\n")
        assert text_lines[first - 1] == own[0]


def test_small_files_and_other_formats_are_read_in_this_process(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    def no_workers(*args: object, **kwargs: object) -> None:
        raise AssertionError("workers started")

    monkeypatch.setattr(parallel, "read_prepared", no_workers)
    src = _file(tmp_path / "t.jsonl", 30)  # far below MIN_BYTES
    array = tmp_path / "a.json"
    array.write_text(json.dumps([make_trace(100 + i) for i in range(3)]))
    with Store(tmp_path / "s.db") as store:
        report = ingest_paths(store, [src, array], workers=2)
        assert report.counts.traces == store.count_traces() == 30 + 3


def test_a_native_line_cannot_ask_to_be_merged_with_the_stored_trace(tmp_path: Path) -> None:
    first = tmp_path / "a.jsonl"
    first.write_text(json.dumps(make_trace(1, name="kept")) + "\n")
    again = tmp_path / "b.jsonl"
    again.write_text(json.dumps({"id": "trc_t0001", "merge": True, "steps": [{"id": "x", "type": "tool"}]}) + "\n")
    with Store(tmp_path / "s.db") as store:
        ingest_paths(store, [first])
        ingest_paths(store, [again])
        trace = store.get_trace("trc_t0001").trace
        assert [s.id for s in trace.steps] == ["x"] and trace.name is None  # replaced, as every re-ingest is
        assert trace.metadata["merge"] is True  # the key is kept where unknown keys go


def test_a_byte_order_mark_and_a_number_too_long_cost_nothing_but_their_line(tmp_path: Path) -> None:
    src = tmp_path / "t.jsonl"
    long_number = json.dumps(make_trace(2)).replace('"input_tokens": 100', '"input_tokens": ' + "9" * 5000)
    src.write_text("\ufeff" + json.dumps(make_trace(1)) + "\n" + long_number + "\n" + json.dumps(make_trace(3)) + "\n")
    with Store(tmp_path / "s.db") as store:
        report = ingest_paths(store, [src])
        assert sorted(r.id for r in store.list_traces()) == ["trc_t0001", "trc_t0003"]
        assert [p.line for p in report.problems] == [2] and "4300" in report.problems[0].message


def test_a_number_too_long_on_the_first_line_costs_that_line_only(tmp_path: Path) -> None:
    src = tmp_path / "t.jsonl"
    first = json.dumps(make_trace(1)).replace('"input_tokens": 100', '"input_tokens": ' + "9" * 5000)
    src.write_text(first + "\n" + json.dumps(make_trace(2)) + "\n")
    with Store(tmp_path / "s.db") as store:
        report = ingest_paths(store, [src])  # the format is told from the first record: that must not stop it
        assert [r.id for r in store.list_traces()] == ["trc_t0002"]
        assert [p.line for p in report.problems] == [1] and not report.failed_files


def test_a_merge_key_does_not_overwrite_the_traces_own_metadata(tmp_path: Path) -> None:
    src = tmp_path / "t.jsonl"
    src.write_text(json.dumps(make_trace(1, merge="yes", metadata={"merge": "mine"})) + "\n")
    with Store(tmp_path / "s.db") as store:
        ingest_paths(store, [src])
        assert store.get_trace("trc_t0001").trace.metadata == {"merge": "mine"}
