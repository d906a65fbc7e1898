"""The simonw/llm logs.db importer: a logs.db written by the real llm 0.31.1 and 0.36, the documented schema, others."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from store.db import Store
from store.importers import detect_format, ingest_paths
from store.importers import llm_db as llm_db_module
from store.importers.base import ImportResult
from store.importers.llm_db import llm_usage, read_llm_db
from store.models import Step, Trace, parse_time
from store.rules import failure_reason
from tests.conftest import REAL, needs_real
from tui.cli import app

FIXTURE = Path(__file__).parent / "fixtures" / "llm" / "logs.sqlite"
SCHEMA_SQL = REAL / "simonw-llm" / "logs-db-schema.sql"
runner = CliRunner()


def read(path: Path) -> tuple[list[Trace], ImportResult]:
    result = ImportResult()
    return list(read_llm_db(path, result)), result


def rows(sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
    """Rows of the fixture, read the way a test may: a read-only connection."""
    conn = sqlite3.connect(FIXTURE.resolve().as_uri() + "?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def call_row(response_id: str) -> sqlite3.Row:
    """The responses or turns row of one model call."""
    found = rows("SELECT input_tokens, output_tokens, token_details, duration_ms, datetime_utc, model "
                 "FROM responses WHERE id = ? UNION ALL SELECT input_tokens, output_tokens, token_details, "
                 "duration_ms, datetime_utc, model FROM turns WHERE id = ?", (response_id, response_id))
    assert len(found) == 1, response_id
    return found[0]


def chain_traces(traces: list[Trace]) -> dict[str, Trace]:
    """The tool-chain trace of each table ("responses", "turns")."""
    out = {t.metadata["llm_table"]: t for t in traces if any(s.type == "tool" for s in t.steps)}
    assert set(out) == {"responses", "turns"}
    return out


@pytest.fixture(scope="module")
def fixture_traces() -> list[Trace]:
    traces, result = read(FIXTURE)
    assert result.problems == [] and not result.skipped
    return traces


# --- the logs.db written by the real llm ---------------------------------------------------------------------------


def test_fixture_is_an_upgraded_logs_db_written_by_llm() -> None:
    assert detect_format(FIXTURE) == "llm"
    assert FIXTURE.stat().st_size < 200_000
    # Rows from llm 0.31.1 in the legacy tables, rows from llm 0.36 in the new ones.
    assert rows("SELECT count(*) FROM responses")[0][0] == 7
    assert rows("SELECT count(*) FROM turns")[0][0] == 8
    assert rows("SELECT count(*) FROM tool_results WHERE exception IS NOT NULL")[0][0] == 1


def test_one_trace_per_prompt_the_tool_round_trip_inside_it(fixture_traces: list[Trace]) -> None:
    # A call that carries tool results continues the chain of the call that asked for them; every other call
    # starts a trace of its own, named by the ID of that call.
    starts = [r[0] for r in rows("SELECT id FROM responses WHERE id NOT IN (SELECT response_id FROM tool_results)")]
    starts += [r[0] for r in rows("SELECT t.id FROM turns t JOIN messages m ON m.hash = t.parent_message_hash "
                                  "WHERE m.role != 'tool'")]
    assert len(starts) == 13
    assert sorted(t.id for t in fixture_traces) == sorted(f"llm_{i}" for i in starts)
    for trace in fixture_traces:
        tool_steps = [s for s in trace.steps if s.type == "tool"]
        assert len(trace.steps) == (4 if tool_steps else 1), trace.id
        assert trace.source == str(FIXTURE) and not trace.partial and trace.prompt is None


@pytest.mark.parametrize("table", ["responses", "turns"])
def test_tool_chain_steps_arguments_results_and_the_raising_tool(fixture_traces: list[Trace], table: str) -> None:
    trace = chain_traces(fixture_traces)[table]
    assert [(s.type, s.name) for s in trace.steps] == [
        ("llm", "loupe-fixture"), ("tool", "multiply"), ("tool", "issue_refund"), ("llm", "loupe-fixture")]
    first, mul, refund, last = trace.steps
    assert [(c.id, c.name, c.arguments) for c in first.output_message.tool_calls] == [  # type: ignore[union-attr]
        ("call_mul", "multiply", {"a": 6, "b": 7}), ("call_refund", "issue_refund", {"order_id": "1042"})]
    assert (mul.tool_call_id, mul.arguments, mul.result, mul.status) == ("call_mul", {"a": 6, "b": 7}, "42", "ok")
    assert failure_reason(mul) is None
    assert refund.tool_call_id == "call_refund" and refund.arguments == {"order_id": "1042"}
    assert failure_reason(refund) is not None and refund.status == "error"
    (exception,) = [r[0] for r in rows("SELECT exception FROM tool_results WHERE exception IS NOT NULL")]
    assert exception == "PermissionError: refunds for order 1042 need a supervisor's approval"
    assert refund.error is not None
    assert f"{refund.error.type}: {refund.error.message}" == exception
    assert refund.result == "Error: refunds for order 1042 need a supervisor's approval"
    # The second call was sent the results; its answer is the trace's output.
    assert [(m.role, m.tool_call_id) for m in last.messages if m.role == "tool"] == [
        ("tool", "call_mul"), ("tool", "call_refund")]
    assert [m.role for m in last.messages] == ["user", "assistant", "tool", "tool"]
    assert trace.output == "6 times 7 is 42, and I've issued the refund for order 1042."
    assert trace.input is not None and trace.input.endswith("What is 6 times 7? Also refund order 1042, please.")
    # Tools ran after the call that asked for them ended; llm records no finer timing.
    assert mul.started_at == first.ended_at and "timing" in mul.metadata
    assert first.metadata["tool_definitions"][1]["name"] == "issue_refund"


def test_tokens_models_and_durations_equal_the_db(fixture_traces: list[Trace]) -> None:
    llm_steps = [s for t in fixture_traces for s in t.steps if s.type == "llm"]
    assert len(llm_steps) == 15
    for step in llm_steps:
        row = call_row(step.metadata["response_id"])
        assert step.model == row["model"] == "loupe-fixture"
        if row["input_tokens"] is None:
            assert step.usage is None  # unknown, never zero
        else:
            assert step.usage is not None
            assert (step.usage.input_tokens, step.usage.output_tokens) == (row["input_tokens"], row["output_tokens"])
        assert step.started_at == parse_time(row["datetime_utc"])
        assert step.latency_ms == pytest.approx(row["duration_ms"])
    unknown = [s for s in llm_steps if s.usage is None]
    assert len(unknown) == 2  # the --schema prompts, whose model reported no usage
    detailed = [s for s in llm_steps if s.usage is not None and s.usage.cache_read_tokens is not None]
    assert len(detailed) == 2
    for step in detailed:
        assert step.usage is not None and step.params == {"temperature": 0.2}
        assert (step.usage.cache_read_tokens, step.usage.reasoning_tokens) == (8, 5)
        assert step.usage.extra["completion_tokens_details"] == {"reasoning_tokens": 5}
        assert [m.role for m in step.messages] == ["system", "user"]


def test_conversations_are_sessions_and_turns_carry_their_history(fixture_traces: list[Trace]) -> None:
    tea = sorted((t for t in fixture_traces if any(w in str(t.input) for w in ("tea.", "coffee?", "cocoa?"))),
                 key=lambda t: str(t.started_at))
    legacy = [t for t in tea if t.metadata["llm_table"] == "responses"]
    assert len(legacy) == 2 and legacy[0].session_id == legacy[1].session_id
    assert [t.input for t in legacy] == ["[llm 0.31.1] First turn of a conversation about tea.",
                                         "[llm 0.31.1] Second turn: and coffee?"]
    # llm 0.36 continued the 0.31 conversation: same session, and the turn records the history it was sent.
    upgraded = next(t for t in tea if "Third turn" in str(t.input))
    assert upgraded.session_id == legacy[0].session_id and upgraded.metadata["llm_table"] == "turns"
    assert [m.role for m in upgraded.steps[0].messages] == ["user", "assistant", "user", "assistant", "user"]
    assert upgraded.steps[0].messages[0].content == legacy[0].input


def test_fragments_and_attachments_are_summarised_in_metadata(fixture_traces: list[Trace]) -> None:
    found = [t for t in fixture_traces if "Read the notes" in str(t.input)]
    assert len(found) == 2
    for trace in found:
        step = trace.steps[0]
        # The model saw the fragment's text before the prompt, as llm sends it.
        assert step.messages[0].content == trace.input
        assert str(trace.input).startswith("The customer prefers email.\n")
        (fragment,) = step.metadata["fragments"]
        assert fragment["kind"] == "prompt" and fragment["source"].endswith("notes.txt") and fragment["chars"] == 28
        (attachment,) = step.metadata["attachments"]
        assert attachment["type"] == "image/png" and attachment["path"].endswith("pixel.png")
    schema_steps = [t.steps[0] for t in fixture_traces if "Invent a person" in str(t.input)]
    assert [s.metadata["schema"]["required"] for s in schema_steps] == [["name", "age"], ["name", "age"]]


def test_reading_pages_gives_the_same_traces(monkeypatch: pytest.MonkeyPatch,
                                             fixture_traces: list[Trace]) -> None:
    # Two calls a page: the chain's two calls land in different pages and must still meet.
    monkeypatch.setattr(llm_db_module, "PAGE", 2)
    traces, result = read(FIXTURE)
    assert result.problems == []
    assert [t.model_dump() for t in traces] == [t.model_dump() for t in fixture_traces]


# --- idempotence, and the user's file left alone -------------------------------------------------------------------


def test_reingest_changes_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "store.db")
    first = store.insert_traces(read(FIXTURE)[0])
    assert (first.traces, first.updated) == (13, 0)
    ids = sorted(s.id for s in store.list_traces(limit=100))
    again = store.insert_traces(read(FIXTURE)[0])
    assert (again.traces, again.updated) == (13, 13)
    assert store.count_traces() == 13
    assert sorted(s.id for s in store.list_traces(limit=100)) == ids


def test_the_logs_db_is_not_modified(tmp_path: Path) -> None:
    llm_dir = tmp_path / "llm"
    llm_dir.mkdir()
    copy = llm_dir / "logs.db"
    shutil.copy2(FIXTURE, copy)
    before = (copy.read_bytes(), copy.stat().st_mtime_ns)
    traces, _ = read(copy)
    report = ingest_paths(Store(tmp_path / "store.db"), [copy])
    assert traces and report.counts.traces == 13 and report.problems == []
    assert (copy.read_bytes(), copy.stat().st_mtime_ns) == before
    assert [p.name for p in llm_dir.iterdir()] == ["logs.db"]  # no journal or WAL file left beside it


def test_no_lock_is_held_while_traces_are_handed_on(tmp_path: Path) -> None:
    # llm logs with a rollback journal: a reader holding a lock between traces would make it fail to log.
    copy = tmp_path / "logs.db"
    shutil.copy2(FIXTURE, copy)
    result = ImportResult()
    traces = read_llm_db(copy, result)
    next(traces)
    writer = sqlite3.connect(copy, timeout=0)
    writer.execute("UPDATE conversations SET name = name")
    writer.commit()
    writer.close()
    assert len(list(traces)) == 12 and result.problems == []


# --- the documented schema, older schemas, and files that are not a logs.db ----------------------------------------


def _insert(conn: sqlite3.Connection, table: str, **values: Any) -> None:
    cols = ", ".join(f'"{k}"' for k in values)
    conn.execute(f'INSERT INTO "{table}" ({cols}) VALUES ({", ".join("?" * len(values))})', tuple(values.values()))


@needs_real
def test_the_documented_logs_db_schema_imports(tmp_path: Path) -> None:
    path = tmp_path / "logs.db"
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA_SQL.read_text(encoding="utf-8"))
    # A legacy chain: a prompt that asks for a tool, and the call that carried its (failed) result.
    _insert(conn, "conversations", id="c1", name="weather", model="gpt-4.1-mini")
    _insert(conn, "tools", id=1, hash="h", name="get_weather", description="Weather for a city",
            input_schema='{"type": "object"}')
    _insert(conn, "responses", id="r1", model="gpt-4.1-mini", prompt="Weather in Paris?", system="Be brief.",
            options_json='{"max_tokens": 100}', response="", conversation_id="c1", duration_ms=900,
            datetime_utc="2025-06-01T10:00:00+00:00", input_tokens=120, output_tokens=15,
            token_details='{"prompt_tokens_details": {"cached_tokens": 64}}', resolved_model="gpt-4.1-mini-2025")
    _insert(conn, "tool_responses", tool_id=1, response_id="r1")
    _insert(conn, "tool_calls", response_id="r1", tool_id=1, name="get_weather", arguments='{"city": "Paris"}',
            tool_call_id="call_1")
    _insert(conn, "responses", id="r2", model="gpt-4.1-mini", prompt="", response="It is sunny.",
            conversation_id="c1", duration_ms=400, datetime_utc="2025-06-01T10:00:01.500000+00:00",
            input_tokens=150, output_tokens=5)
    _insert(conn, "tool_results", response_id="r2", tool_id=1, name="get_weather", output="Error: timeout",
            tool_call_id="call_1", exception="TimeoutError: the weather service did not answer")
    # A turn: a system and a user message (with a fragment), the assistant's answer.
    _insert(conn, "fragments", id=1, hash="fh", content="Paris is in France.", source="notes.md")
    _insert(conn, "messages", hash="m1", role="system")
    _insert(conn, "parts", message_hash="m1", position=0, type="text", text="Be brief.")
    _insert(conn, "messages", hash="m2", parent_hash="m1", role="user")
    _insert(conn, "parts", message_hash="m2", position=0, type="text",
            payload=json.dumps({"text_ref": [{"fragment": 1}, {"literal": "\nWhere is Paris?"}]}))
    _insert(conn, "messages", hash="m3", parent_hash="m2", role="assistant")
    _insert(conn, "parts", message_hash="m3", position=0, type="reasoning", text="Geography.")
    _insert(conn, "parts", message_hash="m3", position=1, type="text", text="In France.")
    _insert(conn, "threads", id="th1", name="paris", tip_message_hash="m3")
    _insert(conn, "turns", id="t1", thread_id="th1", parent_message_hash="m2", tip_message_hash="m3",
            model="anthropic/claude-sonnet-4-0", input_tokens=10, output_tokens=7, duration_ms=250,
            datetime_utc="2025-06-02T08:00:00+00:00",
            token_details='{"cache_read_input_tokens": 30, "cache_creation_input_tokens": 5}')
    _insert(conn, "turn_fragments", turn_id="t1", fragment_id=1, order=0, kind="prompt")
    conn.commit()
    conn.close()
    traces, result = read(path)
    assert result.problems == []
    chain, turn = traces
    assert chain.id == "llm_r1" and chain.session_id == "c1" and chain.name == "weather"
    assert [(s.type, s.name) for s in chain.steps] == [("llm", "gpt-4.1-mini"), ("tool", "get_weather"),
                                                       ("llm", "gpt-4.1-mini")]
    ask, tool, answer = chain.steps
    assert ask.model == "gpt-4.1-mini-2025" and ask.metadata["requested_model"] == "gpt-4.1-mini"
    assert ask.params == {"max_tokens": 100} and ask.usage is not None and ask.usage.cache_read_tokens == 64
    assert tool.arguments == {"city": "Paris"} and failure_reason(tool) is not None
    assert tool.error is not None and tool.error.message == "the weather service did not answer"
    assert tool.latency_ms == pytest.approx(600)  # the only tool of its round: from one call's end to the next
    assert answer.output_message is not None and answer.output_message.text() == "It is sunny."
    assert [m.role for m in answer.messages] == ["system", "user", "assistant", "tool"]
    assert chain.output == "It is sunny."
    assert turn.id == "llm_t1" and turn.session_id == "th1" and turn.input == "Paris is in France.\nWhere is Paris?"
    step = turn.steps[0]
    assert [m.role for m in step.messages] == ["system", "user"] and step.provider == "anthropic"
    assert step.metadata["reasoning"] == "Geography." and step.metadata["fragments"][0]["source"] == "notes.md"
    # Anthropic counts input without the cached tokens: brought to the native convention.
    assert step.usage is not None
    assert (step.usage.input_tokens, step.usage.cache_read_tokens, step.usage.cache_write_tokens) == (45, 30, 5)
    assert step.usage.extra["input_tokens_reported"] == 10


def test_an_older_logs_db_without_usage_or_tool_tables(tmp_path: Path) -> None:
    # What llm 0.10 left: responses and conversations, no token counts, no tools, fragments or attachments.
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE conversations (id TEXT PRIMARY KEY, name TEXT, model TEXT);
        CREATE TABLE responses (id TEXT PRIMARY KEY, model TEXT, prompt TEXT, system TEXT, prompt_json TEXT,
            options_json TEXT, response TEXT, response_json TEXT, conversation_id TEXT, duration_ms INTEGER,
            datetime_utc TEXT);
        INSERT INTO conversations VALUES ('c1', 'hello', 'gpt-3.5-turbo');
        INSERT INTO responses VALUES ('r1', 'gpt-3.5-turbo', 'Hi', NULL, NULL, '{}', 'Hello!',
            '{"id": "chatcmpl-1"}', 'c1', 1200, '2023-08-01 12:00:00.000001');
    """)
    conn.close()
    (trace,), result = read(path)
    assert result.problems == []
    (step,) = trace.steps
    assert step.usage is None and step.model == "gpt-3.5-turbo" and step.latency_ms == pytest.approx(1200)
    assert step.metadata["response_json"] == {"id": "chatcmpl-1"}
    assert trace.input == "Hi" and trace.output == "Hello!" and str(trace.started_at) == "2023-08-01 12:00:00.000001+00:00"


def _turns_db(path: Path) -> sqlite3.Connection:
    """The current tables alone, as an llm 0.32 logs.db has them, without the optional ones."""
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE messages (hash TEXT PRIMARY KEY, parent_hash TEXT, role TEXT, provider_metadata TEXT);
        CREATE TABLE parts (id INTEGER PRIMARY KEY, message_hash TEXT, position INTEGER, type TEXT,
            tool_name TEXT, text TEXT, payload TEXT);
        CREATE TABLE threads (id TEXT PRIMARY KEY, name TEXT, tip_message_hash TEXT, forked_from TEXT,
            datetime_utc TEXT);
        CREATE TABLE turns (id TEXT PRIMARY KEY, thread_id TEXT, parent_message_hash TEXT, tip_message_hash TEXT,
            model TEXT, resolved_model TEXT, options_json TEXT, schema_id TEXT, input_tokens INTEGER,
            output_tokens INTEGER, token_details TEXT, duration_ms INTEGER, datetime_utc TEXT);
    """)
    return conn


def _message(conn: sqlite3.Connection, hash_: str, parent: str | None, role: str, *parts: dict[str, Any]) -> None:
    _insert(conn, "messages", hash=hash_, parent_hash=parent, role=role)
    for i, part in enumerate(parts):
        kind = part.pop("type")
        text = part.pop("text", None)
        _insert(conn, "parts", message_hash=hash_, position=i, type=kind, tool_name=part.get("name"), text=text,
                payload=json.dumps(part) if part else None)


def test_server_side_tools_paused_chains_and_results_from_an_earlier_call(tmp_path: Path) -> None:
    path = tmp_path / "logs.db"
    conn = _turns_db(path)
    # Turn a: the provider searched the web itself, then answered.
    _message(conn, "u1", None, "user", {"type": "text", "text": "News?"})
    _message(conn, "a1", "u1", "assistant",
             {"type": "tool_call", "name": "web_search", "arguments": {"q": "news"}, "tool_call_id": "ws1",
              "server_executed": True},
             {"type": "tool_result", "name": "web_search", "output": "3 results", "tool_call_id": "ws1",
              "server_executed": True},
             {"type": "text", "text": "Here is the news."})
    _insert(conn, "turns", id="a", thread_id="t1", parent_message_hash="u1", tip_message_hash="a1", model="m",
            datetime_utc="2025-01-01T00:00:00Z", duration_ms=10)
    # Turn b asks for a tool and llm logged nothing after it (a paused chain); turn c, in a fork, sends the result.
    _message(conn, "u2", None, "user", {"type": "text", "text": "Delete the file."})
    _message(conn, "a2", "u2", "assistant",
             {"type": "tool_call", "name": "delete", "arguments": {"path": "x"}, "tool_call_id": "d1"})
    _insert(conn, "turns", id="b", thread_id="t2", parent_message_hash="u2", tip_message_hash="a2", model="m",
            datetime_utc="2025-01-02T00:00:00Z", duration_ms=10)
    _message(conn, "r2", "a2", "tool", {"type": "tool_result", "name": "delete", "output": "Error: denied",
                                       "tool_call_id": "d1", "exception": "OSError: denied"})
    _message(conn, "a3", "r2", "assistant", {"type": "text", "text": "Deleted."})
    _insert(conn, "turns", id="c", thread_id="t3", parent_message_hash="r2", tip_message_hash="a3", model="m",
            datetime_utc="2025-01-03T00:00:00Z", duration_ms=10)
    conn.commit()
    conn.close()
    traces, result = read(path)
    assert result.problems == []
    by_id = {t.id: t for t in traces}
    assert set(by_id) == {"llm_a", "llm_b", "llm_c"}
    server = by_id["llm_a"].steps
    assert [(s.type, s.name, s.status) for s in server] == [("llm", "m", None), ("tool", "web_search", "ok")]
    assert server[1].result == "3 results" and server[1].metadata["server_executed"] is True
    paused = by_id["llm_b"].steps
    assert [(s.type, s.status) for s in paused] == [("llm", None), ("tool", None)]
    assert paused[1].arguments == {"path": "x"} and "none recorded" in paused[1].metadata["result"]
    resumed = by_id["llm_c"]
    assert [(s.type, s.name) for s in resumed.steps] == [("tool", "delete"), ("llm", "m")]
    tool = resumed.steps[0]
    assert tool.arguments == {"path": "x"} and failure_reason(tool) is not None and resumed.input is None


def test_legacy_tool_results_without_their_call_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "logs.db"
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE responses (id TEXT PRIMARY KEY, model TEXT, prompt TEXT, system TEXT, response TEXT,
            conversation_id TEXT, duration_ms INTEGER, datetime_utc TEXT, input_tokens INTEGER, output_tokens INTEGER);
        CREATE TABLE tool_results (id INTEGER PRIMARY KEY, response_id TEXT, tool_id INTEGER, name TEXT,
            output TEXT, tool_call_id TEXT);
        INSERT INTO responses VALUES ('r1', 'm', 'Go on.', NULL, 'Done.', 'c', 5, '2025-01-01T00:00:00Z', 3, 1);
        INSERT INTO tool_results VALUES (1, 'r1', NULL, 'lookup', '{"error": "not found"}', 'x1');
    """)
    conn.close()
    (trace,), result = read(path)
    assert result.problems == []
    tool, call = trace.steps
    # No exception column in this version, but the tool reported its error as data.
    assert tool.result == {"error": "not found"} and tool.status == "ok" and failure_reason(tool) is not None
    assert call.messages[0].role == "tool" and call.messages[1].content == "Go on."


def test_an_sqlite_file_that_is_not_a_logs_db_is_a_clear_problem(tmp_path: Path) -> None:
    other = tmp_path / "app.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)")
    conn.close()
    traces, result = read(other)
    assert traces == []
    (problem,) = result.problems
    assert problem.file == str(other) and "not an llm logs.db" in problem.message and "users" in problem.message
    # Another application's table that happens to be called `responses` is not taken for llm's.
    survey = tmp_path / "survey.db"
    conn = sqlite3.connect(survey)
    conn.execute("CREATE TABLE responses (id INTEGER PRIMARY KEY, answer TEXT)")
    conn.close()
    traces, result = read(survey)
    assert traces == [] and "`responses` table is not llm's" in result.problems[0].message
    # loupe's own store is SQLite too: refused the same way, through the dispatcher, without raising.
    store_path = tmp_path / "store.db"
    Store(store_path).insert_traces([])
    report = ingest_paths(Store(tmp_path / "target.db"), [store_path, other])
    assert report.counts.traces == 0 and len(report.problems) == 2
    assert all("not an llm logs.db" in p.message for p in report.problems)


def test_a_corrupt_sqlite_file_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    bad = tmp_path / "logs.db"
    bad.write_bytes(b"SQLite format 3\x00" + b"\xff" * 200)
    traces, result = read(bad)
    assert traces == [] and len(result.problems) == 1 and result.problems[0].file == str(bad)


def test_llm_usage_reads_each_plugins_details() -> None:
    assert llm_usage(None, None, None) is None
    assert llm_usage(0, 0, None) == {"input_tokens": 0, "output_tokens": 0}
    responses_api = llm_usage(100, 40, '{"input_tokens_details": {"cached_tokens": 30}, '
                                       '"output_tokens_details": {"reasoning_tokens": 20}}')
    assert responses_api is not None
    assert (responses_api["cache_read_tokens"], responses_api["reasoning_tokens"]) == (30, 20)
    # llm-gemini adds the thinking tokens to the output; versions before that did not.
    gemini = {"candidatesTokenCount": 10, "thoughtsTokenCount": 25, "cachedContentTokenCount": 4}
    assert llm_usage(50, 35, json.dumps(gemini)) == {
        "input_tokens": 50, "output_tokens": 35, "cache_read_tokens": 4, "reasoning_tokens": 25, "extra": gemini}
    old = llm_usage(50, 10, json.dumps(gemini))
    assert old is not None and (old["output_tokens"], old["extra"]["output_tokens_reported"]) == (35, 10)
    assert llm_usage(5, 1, "not json") == {"input_tokens": 5, "output_tokens": 1,
                                           "extra": {"token_details": "not json"}}


# --- end to end through the command line ---------------------------------------------------------------------------


def test_cli_ingest_ls_and_show(tmp_path: Path) -> None:
    copy = tmp_path / "logs.db"
    shutil.copy2(FIXTURE, copy)
    result = runner.invoke(app, ["ingest", str(copy)])
    assert result.exit_code == 0, result.output
    assert "Imported 13 traces (19 steps)" in result.output
    listed = json.loads(runner.invoke(app, ["ls", "--json"]).output)
    assert len(listed) == 13 and all(r["id"].startswith("llm_") for r in listed)
    chain = next(r for r in listed if r["steps"] == 4)
    assert chain["status"] == "error" and chain["findings"] == 2  # the claim, and the failed tool call
    shown = runner.invoke(app, ["show", chain["id"], "--json"])
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.output)
    assert [s["type"] for s in data["steps"]] == ["llm", "tool", "tool", "llm"]
    assert data["steps"][2]["status"] == "error" and data["steps"][2]["error"]["type"] == "PermissionError"
    assert data["totals"]["input_tokens"] == 140 and data["totals"]["tool_calls"] == 2
    (finding,) = [f for f in data["findings"] if f["rule_id"] == "success-after-tool-error"]
    assert finding["evidence"] == ["s3", "s4"]
    again = runner.invoke(app, ["ingest", str(copy)])
    assert again.exit_code == 0 and "13 already stored, updated" in again.output
    assert len(json.loads(runner.invoke(app, ["ls", "--json"]).output)) == 13


def test_steps_are_plain_native_steps(fixture_traces: list[Trace]) -> None:
    # Everything the importer made round-trips through the native format unchanged.
    for trace in fixture_traces:
        again = Trace.model_validate_json(trace.model_dump_json())
        assert again == trace
        assert all(isinstance(s, Step) for s in again.steps)
