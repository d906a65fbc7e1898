"""simonw/llm's logs.db, read-only: one trace per user prompt, with the tool calls llm ran for it."""

from __future__ import annotations

import json
import re
import sqlite3
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ..models import Trace, parse_time
from .base import ImportProblem, ImportResult, validate_trace

# How the file is read
# --------------------
# llm writes logs.db with a rollback journal, not WAL: a reader that keeps a statement open holds a shared lock, and
# an `llm` command logging at the same time then waits and fails with "database is locked" after a few seconds. So
# the file is opened read-only and read in pages (PAGE model calls at a time, in insertion order, by rowid): each page
# is read in one short read transaction and no statement stays open while the traces are handed on and stored.
# Memory holds one page, the chains still waiting for their tool results, and a bounded cache of message rows.
#
# What becomes a trace
# --------------------
# llm 0.31 and older log each model call as a row of `responses` (tool calls it asked for in `tool_calls`; tool results
# it was sent, exceptions included, in `tool_results`). llm 0.32 and newer stopped writing those tables and log a call
# as a row of `turns`, whose input and output are content-addressed `messages` made of `parts`, in `threads`; an
# upgraded logs.db holds both, and both are read (a response also logged as a turn is read once, as the turn).
# When a call asks for tools, llm runs them and sends their results in a new call in the same conversation, whose
# prompt is empty (`responses`) or whose input is a tool message (`turns`). That chain, from the user's prompt to the
# answer, is one trace: an llm step per call, and a tool step per tool call with the result the next call carried.
# The trace ID is "llm_" + the ID of the chain's first call (the ID `llm logs` shows), so re-importing updates it.

PAGE = 200
MESSAGE_CACHE = 4096  # message rows kept between turns: a conversation's shared history is read once
_EXCEPTION = re.compile(r"^([A-Za-z_][\w.]*): (.*)$", re.S)
_TIMING_NOTE = "inferred: llm records no tool timings; the tool ran after the model call that asked for it ended"


@dataclass
class _Call:
    """One model call, read from `responses` or `turns`, in the shape both tables share."""

    id: str
    table: str
    conversation_id: str | None
    conversation_name: str | None
    model: str | None
    resolved_model: str | None
    started_at: datetime | None
    duration_ms: int | None
    messages: list[dict[str, Any]]
    prompt_text: str | None
    response_text: str | None
    tool_calls: list[dict[str, Any]]  # asked for by this call: id, name, arguments, metadata
    tool_results: list[dict[str, Any]]  # sent to this call: tool_call_id, name, output, exception, metadata
    usage: dict[str, Any] | None
    params: dict[str, Any]
    metadata: dict[str, Any]
    after: str | None = None  # turns: the message this call's own input follows (the previous call's output)
    tip: str | None = None  # turns: this call's last output message
    server_steps: list[dict[str, Any]] = field(default_factory=list)  # tools the provider ran inside the call
    problems: list[str] = field(default_factory=list)

    @property
    def ended_at(self) -> datetime | None:
        if self.started_at is None or self.duration_ms is None or self.duration_ms < 0:
            return None
        return self.started_at + timedelta(milliseconds=self.duration_ms)


def read_llm_db(path: Path, result: ImportResult) -> Iterator[Trace]:
    """Traces from an llm logs.db, opened read-only; a file that is not one is reported in `result`, not raised."""
    name = str(path)
    try:
        conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=10.0, isolation_level=None)
    except sqlite3.Error as exc:
        result.problems.append(ImportProblem(name, None, None, f"cannot open as SQLite: {exc}"))
        return
    conn.row_factory = sqlite3.Row
    try:
        schema = _Schema(conn)
        legacy, turns = schema.has(*_LEGACY_REQUIRED), schema.has(*_TURNS_REQUIRED)
        if not legacy and not turns:
            result.problems.append(ImportProblem(name, None, None, _not_llm(schema)))
            return
        calls: list[Iterable[_Call]] = []
        if legacy:
            calls.append(_legacy_calls(conn, schema, name, result))
        if turns:
            calls.append(_turn_calls(conn, schema, name, result))
        for chain in _chains(c for source in calls for c in source):
            trace = _trace(chain, name, result)
            if trace is not None:
                yield trace
    except sqlite3.Error as exc:
        result.problems.append(ImportProblem(name, None, None, f"cannot read the llm logs.db: {exc}"))
    finally:
        conn.close()


# The columns every llm version since 0.5 has written, in the legacy and in the current tables.
_LEGACY_REQUIRED = ("responses", "id", "model", "prompt", "response")
_TURNS_REQUIRED = ("turns", "id", "model", "parent_message_hash", "tip_message_hash")


def _not_llm(schema: _Schema) -> str:
    found = sorted(t for t in schema.tables if not t.startswith("sqlite_"))
    for table, *columns in (_LEGACY_REQUIRED, _TURNS_REQUIRED):
        if table in found:
            missing = ", ".join(c for c in columns if c not in schema.columns(table))
            return f"not an llm logs.db: its `{table}` table is not llm's (no column {missing})"
    if {"log", "logs"} & set(found):
        return ("an llm logs.db from before llm 0.5 (a `log` table, no `responses`): run any `llm` command once "
                "to migrate it, then import it again")
    shown = ", ".join(found[:8]) + (", ..." if len(found) > 8 else "") if found else "no tables at all"
    return f"not an llm logs.db: it has no `responses` or `turns` table (found {shown})"


class _Schema:
    """Which tables and columns this logs.db has: older llm versions lack some, and what is there is read."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}
        self._columns: dict[str, set[str]] = {}

    def has(self, table: str, *columns: str) -> bool:
        return table in self.tables and all(c in self.columns(table) for c in columns)

    def columns(self, table: str) -> set[str]:
        if table not in self._columns:
            rows = self.conn.execute(f"PRAGMA table_info({_q(table)})").fetchall() if table in self.tables else []
            self._columns[table] = {r[1] for r in rows}
        return self._columns[table]

    def select(self, table: str, alias: str, columns: Iterable[str], prefix: str = "") -> str:
        """`alias.col AS prefixcol` for each column the table has (and the table itself), `NULL AS ...` for others."""
        have = self.columns(table)
        return ", ".join(f"{alias}.{_q(c)} AS {_q(prefix + c)}" if c in have else f"NULL AS {_q(prefix + c)}"
                         for c in columns)


def _q(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


class _Snapshot:
    """A short read transaction: what one page reads is consistent, and no lock is held between pages."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> _Snapshot:
        self.conn.execute("BEGIN")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.conn.in_transaction:
            self.conn.execute("COMMIT")


def _by_ids(conn: sqlite3.Connection, sql: str, ids: list[Any]) -> list[sqlite3.Row]:
    """Rows of `sql` (with `{ids}` for a placeholder list) for the given IDs, a few hundred per statement."""
    out: list[sqlite3.Row] = []
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        out.extend(conn.execute(sql.format(ids=",".join("?" * len(chunk))), chunk).fetchall())
    return out


def _json(text: Any) -> Any:
    """A JSON column's value; text that is not JSON is kept as it is."""
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def _structured(text: Any) -> Any:
    """A tool output: JSON objects and arrays parsed (a tool may report errors as data), other text kept as text."""
    if isinstance(text, str) and text.lstrip()[:1] in ("{", "["):
        value = _json(text)
        if isinstance(value, (dict, list)):
            return value
    return text


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _dig(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def llm_usage(input_tokens: Any, output_tokens: Any, token_details: Any) -> dict[str, Any] | None:
    """Native usage from llm's input_tokens, output_tokens and token_details (the provider's extra counts, as JSON).

    None when llm recorded nothing (unknown, never zero). The details keep the plugin's own keys: OpenAI's
    `prompt_tokens_details.cached_tokens` / `completion_tokens_details.reasoning_tokens` (or the Responses API's
    `input_tokens_details` / `output_tokens_details`), Anthropic's `cache_read_input_tokens` /
    `cache_creation_input_tokens`, Gemini's `cachedContentTokenCount` / `thoughtsTokenCount`. Anthropic counts
    input without the cached tokens and old llm-gemini counted output without the thinking ones: both are brought
    to the native convention (input includes cached, output includes reasoning), the reported figure kept in extra.
    """
    details = _json(token_details) if token_details not in (None, "") else None
    inp, out = _count(input_tokens), _count(output_tokens)
    if inp is None and out is None and not details:
        return None
    d = details if isinstance(details, dict) else {}
    cache_read = next((v for v in (
        _count(_dig(d, "prompt_tokens_details", "cached_tokens")),
        _count(_dig(d, "input_tokens_details", "cached_tokens")),
        _count(d.get("cache_read_input_tokens")),
        _count(d.get("cachedContentTokenCount")),
    ) if v is not None), None)
    cache_write = _count(d.get("cache_creation_input_tokens"))
    reasoning = next((v for v in (
        _count(_dig(d, "completion_tokens_details", "reasoning_tokens")),
        _count(_dig(d, "output_tokens_details", "reasoning_tokens")),
        _count(_dig(d, "output_tokens_details", "thinking_tokens")),
        _count(d.get("thoughtsTokenCount")),
    ) if v is not None), None)
    extra: dict[str, Any] = dict(d) if d else ({"token_details": details} if details else {})
    if inp is not None and ("cache_read_input_tokens" in d or "cache_creation_input_tokens" in d):
        extra["input_tokens_reported"] = inp  # Anthropic: uncached input only
        inp += (cache_read or 0) + (cache_write or 0)
    thoughts, candidates = _count(d.get("thoughtsTokenCount")), _count(d.get("candidatesTokenCount"))
    if out is not None and thoughts and candidates is not None and out == candidates:
        extra["output_tokens_reported"] = out  # llm-gemini before 0.20 left the thinking tokens out
        out += thoughts
    usage: dict[str, Any] = {"input_tokens": inp, "output_tokens": out, "cache_read_tokens": cache_read,
                             "cache_write_tokens": cache_write, "reasoning_tokens": reasoning}
    usage = {k: v for k, v in usage.items() if v is not None}
    if extra:
        usage["extra"] = extra
    return usage


def _tool_error(exception: Any) -> dict[str, Any] | None:
    """llm records a tool's exception as "ExceptionClass: message"."""
    if exception in (None, ""):
        return None
    text = str(exception)
    m = _EXCEPTION.match(text)
    return {"type": m.group(1), "message": m.group(2)} if m else {"message": text}


def _model_fields(model: Any, resolved: Any) -> dict[str, Any]:
    """The model that answered (resolved_model when llm recorded one) and, from an "anthropic/..." ID, its provider."""
    out: dict[str, Any] = {"name": model, "model": resolved or model}
    if isinstance(model, str) and "/" in model:
        out["provider"] = model.split("/", 1)[0]
    return out


def _params(options_json: Any) -> dict[str, Any]:
    value = _json(options_json)
    return value if isinstance(value, dict) else ({"options": value} if value not in (None, "") else {})


# ---------------------------------------------------------------------------------------------------------------
# llm 0.31 and older: responses, tool_calls, tool_results
# ---------------------------------------------------------------------------------------------------------------

_RESPONSE_COLUMNS = ("id", "model", "resolved_model", "prompt", "system", "prompt_json", "options_json", "response",
                     "response_json", "reasoning", "conversation_id", "duration_ms", "datetime_utc", "input_tokens",
                     "output_tokens", "token_details", "schema_id")


def _legacy_calls(conn: sqlite3.Connection, schema: _Schema, name: str, result: ImportResult) -> Iterator[_Call]:
    has_turns = schema.has("turns", "id")
    if has_turns:
        (both,) = conn.execute("SELECT count(*) FROM responses WHERE id IN (SELECT id FROM turns)").fetchone()
        if both:
            result.skipped["llm response also logged as a turn (read once, as the turn)"] += both
    conv = schema.has("conversations", "id")
    schemas = schema.has("schemas", "id", "content") and "schema_id" in schema.columns("responses")
    sql = (
        f"SELECT r.rowid AS _rowid, {schema.select('responses', 'r', _RESPONSE_COLUMNS)}, "
        + schema.select("conversations" if conv else "", "c", ("name",), "conversation_")
        + (", s.content AS schema_json" if schemas else ", NULL AS schema_json")
        + " FROM responses r"
        + (" LEFT JOIN conversations c ON c.id = r.conversation_id" if conv else "")
        + (" LEFT JOIN schemas s ON s.id = r.schema_id" if schemas else "")
        + " WHERE r.rowid > ?"
        + (" AND r.id NOT IN (SELECT id FROM turns)" if has_turns else "")
        + " ORDER BY r.rowid LIMIT ?"
    )
    last = -(2**63)
    while True:
        with _Snapshot(conn):
            rows = conn.execute(sql, (last, PAGE)).fetchall()
            if not rows:
                return
            last = rows[-1]["_rowid"]
            extras = _LegacyExtras(conn, schema, [r["id"] for r in rows])
        for row in rows:
            try:
                call = _legacy_call(row, extras)
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                result.problems.append(ImportProblem(name, None, f"responses {row['id']}", f"left out: {exc}"))
                continue
            yield call


class _LegacyExtras:
    """The rows that hang off one page of responses: tool calls and results, tools, fragments, attachments."""

    def __init__(self, conn: sqlite3.Connection, schema: _Schema, ids: list[str]) -> None:
        self.calls: dict[str, list[sqlite3.Row]] = {}
        self.results: dict[str, list[sqlite3.Row]] = {}
        self.tools: dict[str, list[dict[str, Any]]] = {}
        self.fragments: dict[str, list[dict[str, Any]]] = {}
        self.attachments: dict[str, list[dict[str, Any]]] = {}
        self.result_attachments: dict[Any, list[dict[str, Any]]] = {}
        if schema.has("tool_calls", "response_id"):
            cols = schema.select("tool_calls", "t", ("id", "response_id", "tool_id", "name", "arguments",
                                                     "tool_call_id"))
            for r in _by_ids(conn, f"SELECT {cols} FROM tool_calls t WHERE t.response_id IN ({{ids}}) "
                                   "ORDER BY t.rowid", ids):
                self.calls.setdefault(r["response_id"], []).append(r)
        if schema.has("tool_results", "response_id"):
            cols = schema.select("tool_results", "t", ("id", "response_id", "tool_id", "name", "output",
                                                       "tool_call_id", "exception"))
            inst = schema.has("tool_instances", "id") and "instance_id" in schema.columns("tool_results")
            sql = (f"SELECT {cols}, "
                   + schema.select("tool_instances" if inst else "", "i", ("name", "plugin", "arguments"),
                                   "instance_")
                   + " FROM tool_results t"
                   + (" LEFT JOIN tool_instances i ON i.id = t.instance_id" if inst else "")
                   + " WHERE t.response_id IN ({ids}) ORDER BY t.rowid")
            rows = _by_ids(conn, sql, ids)
            for r in rows:
                self.results.setdefault(r["response_id"], []).append(r)
            if schema.has("tool_results_attachments", "tool_result_id", "attachment_id") and schema.has("attachments"):
                for a in _by_ids(conn, "SELECT tra.tool_result_id AS owner, " + _ATTACHMENT_COLUMNS
                                 + " FROM tool_results_attachments tra JOIN attachments a ON a.id = tra.attachment_id"
                                 " WHERE tra.tool_result_id IN ({ids}) ORDER BY "
                                 + _order(schema, "tool_results_attachments", "tra"),
                                 [r["id"] for r in rows]):
                    self.result_attachments.setdefault(a["owner"], []).append(_attachment(a))
        if schema.has("tool_responses", "tool_id", "response_id") and schema.has("tools", "id"):
            cols = schema.select("tools", "t", ("name", "description", "input_schema", "plugin"))
            for r in _by_ids(conn, f"SELECT tr.response_id AS owner, {cols} FROM tool_responses tr "
                                   "JOIN tools t ON t.id = tr.tool_id WHERE tr.response_id IN ({ids}) "
                                   "ORDER BY tr.rowid", ids):
                self.tools.setdefault(r["owner"], []).append(_tool_definition(r))
        for table, kind in (("system_fragments", "system"), ("prompt_fragments", "prompt")):
            if schema.has(table, "response_id", "fragment_id") and schema.has("fragments", "id"):
                for r in _by_ids(conn, _fragment_sql(schema, table, "response_id"), ids):
                    self.fragments.setdefault(r["owner"], []).append({"kind": kind, **dict(r)})
        if schema.has("prompt_attachments", "response_id", "attachment_id") and schema.has("attachments", "id"):
            for a in _by_ids(conn, "SELECT pa.response_id AS owner, " + _ATTACHMENT_COLUMNS
                             + " FROM prompt_attachments pa JOIN attachments a ON a.id = pa.attachment_id"
                             " WHERE pa.response_id IN ({ids}) ORDER BY "
                             + _order(schema, "prompt_attachments", "pa"), ids):
                self.attachments.setdefault(a["owner"], []).append(_attachment(a))


_ATTACHMENT_COLUMNS = "a.id AS id, a.type AS type, a.path AS path, a.url AS url, length(a.content) AS bytes"


def _order(schema: _Schema, table: str, alias: str) -> str:
    """The link table's own "order" column where it has one, else the order the rows were written in."""
    return f'{alias}."order"' if "order" in schema.columns(table) else f"{alias}.rowid"


def _attachment(row: sqlite3.Row) -> dict[str, Any]:
    """An attachment as metadata: what it was and where it came from, never its bytes."""
    return {k: row[k] for k in ("id", "type", "path", "url", "bytes") if row[k] is not None}


def _tool_definition(row: sqlite3.Row) -> dict[str, Any]:
    out: dict[str, Any] = {"name": row["name"]}
    if row["description"]:
        out["description"] = row["description"]
    if row["input_schema"]:
        out["input_schema"] = _json(row["input_schema"])
    if row["plugin"]:
        out["plugin"] = row["plugin"]
    return out


def _fragment_sql(schema: _Schema, table: str, owner: str) -> str:
    cols = schema.select("fragments", "f", ("hash", "source", "content"))
    aliases = ("(SELECT json_group_array(fa.alias) FROM fragment_aliases fa WHERE fa.fragment_id = f.id)"
               if schema.has("fragment_aliases", "alias", "fragment_id") else "NULL")
    order = _order(schema, table, "x")
    return (f"SELECT x.{_q(owner)} AS owner, f.id AS fragment_id, {cols}, {aliases} AS aliases "
            f"FROM {_q(table)} x JOIN fragments f ON f.id = x.fragment_id "
            f"WHERE x.{_q(owner)} IN ({{ids}}) ORDER BY {order}")


def _fragment_meta(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fragments as metadata: which ones, from where, how long; their text is in the messages already."""
    out = []
    for r in rows:
        item: dict[str, Any] = {"kind": r["kind"], "id": r["fragment_id"]}
        for key in ("hash", "source"):
            if r.get(key):
                item[key] = r[key]
        aliases = _json(r.get("aliases"))
        if isinstance(aliases, list) and aliases:
            item["aliases"] = aliases
        if isinstance(r.get("content"), str):
            item["chars"] = len(r["content"])
        out.append(item)
    return out


def _legacy_call(row: sqlite3.Row, extras: _LegacyExtras) -> _Call:
    rid = row["id"]
    if not isinstance(rid, str) or not rid:
        raise ValueError(f"a response without an ID (rowid {row['_rowid']})")
    fragments = extras.fragments.get(rid, [])
    # What the model saw, as llm builds it: prompt fragments then the prompt, each on its own line; system fragments
    # then the system prompt, with a blank line between.
    prompt_bits = [f["content"] for f in fragments if f["kind"] == "prompt" and isinstance(f.get("content"), str)]
    if row["prompt"]:
        prompt_bits.append(row["prompt"])
    prompt_text = "\n".join(prompt_bits) or None
    system_bits = [b.strip() for b in [*(f["content"] for f in fragments if f["kind"] == "system"
                                         and isinstance(f.get("content"), str)), row["system"] or ""] if b.strip()]
    system_text = "\n\n".join(system_bits) or None
    results = [{
        "tool_call_id": r["tool_call_id"], "name": r["name"], "output": r["output"], "exception": r["exception"],
        "metadata": {k: v for k, v in (
            ("tool_result_id", r["id"]),
            ("instance", {"name": r["instance_name"], "plugin": r["instance_plugin"],
                          "arguments": _json(r["instance_arguments"])} if r["instance_name"] else None),
            ("attachments", extras.result_attachments.get(r["id"])),
        ) if v is not None},
    } for r in extras.results.get(rid, [])]
    calls = [{"id": c["tool_call_id"], "name": c["name"] or "?", "arguments": _json(c["arguments"]),
              "metadata": {"tool_call_row": c["id"]}} for c in extras.calls.get(rid, [])]
    messages: list[dict[str, Any]] = []
    if system_text:
        messages.append({"role": "system", "content": system_text})
    messages.extend(_tool_message(r) for r in results)
    if prompt_text:
        messages.append({"role": "user", "content": prompt_text})
    meta: dict[str, Any] = {"response_id": rid}
    if row["resolved_model"] and row["resolved_model"] != row["model"]:
        meta["requested_model"] = row["model"]
    if fragments:
        meta["fragments"] = _fragment_meta(fragments)
    if extras.attachments.get(rid):
        meta["attachments"] = extras.attachments[rid]
    if extras.tools.get(rid):
        meta["tool_definitions"] = extras.tools[rid]
    if row["reasoning"]:
        meta["reasoning"] = row["reasoning"]
    if row["schema_json"] or row["schema_id"]:
        meta["schema"] = _json(row["schema_json"]) if row["schema_json"] else {"id": row["schema_id"]}
    for key in ("prompt_json", "response_json"):
        if row[key] not in (None, "", "{}", "null"):
            meta[key] = _json(row[key])
    return _Call(
        id=rid, table="responses", conversation_id=row["conversation_id"],
        conversation_name=row["conversation_name"], model=row["model"], resolved_model=row["resolved_model"],
        started_at=_time(row["datetime_utc"]), duration_ms=_count(row["duration_ms"]), messages=messages,
        prompt_text=prompt_text, response_text=row["response"] if row["response"] else None,
        tool_calls=calls, tool_results=results,
        usage=llm_usage(row["input_tokens"], row["output_tokens"], row["token_details"]),
        params=_params(row["options_json"]), metadata=meta,
    )


def _tool_message(r: dict[str, Any]) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": r["tool_call_id"], "name": r["name"], "content": r["output"]}


def _time(value: Any) -> datetime | None:
    try:
        return parse_time(value)
    except (ValueError, TypeError, OverflowError, OSError):
        return None


# ---------------------------------------------------------------------------------------------------------------
# llm 0.32 and newer: threads, turns, messages, parts
# ---------------------------------------------------------------------------------------------------------------

_TURN_COLUMNS = ("id", "thread_id", "parent_message_hash", "tip_message_hash", "model", "resolved_model",
                 "options_json", "schema_id", "input_tokens", "output_tokens", "token_details", "duration_ms",
                 "datetime_utc", "response_json")


@dataclass
class _Stored:
    parent: str | None
    role: str
    parts: list[dict[str, Any]]  # each part's full dict: type, text (fragments resolved), name, arguments, ...


class _MessageStore:
    """Message rows and their parts, read by hash, with the most recently used ones kept (shared histories)."""

    def __init__(self, conn: sqlite3.Connection, schema: _Schema) -> None:
        self.conn = conn
        self.ok = schema.has("messages", "hash", "parent_hash", "role") and schema.has("parts", "message_hash")
        self.part_cols = schema.select("parts", "p", ("position", "type", "tool_name", "text", "payload"))
        self.fragments = schema.has("fragments", "id", "content")
        self.attachments = schema.has("attachments", "id")
        self.cache: OrderedDict[str, _Stored] = OrderedDict()

    def get(self, hash_: str) -> _Stored | None:
        found = self.cache.get(hash_)
        if found is not None:
            self.cache.move_to_end(hash_)
            return found
        row = self.conn.execute("SELECT parent_hash, role FROM messages WHERE hash = ?", (hash_,)).fetchone()
        if row is None:
            return None
        parts = [self._part(p) for p in self.conn.execute(
            f"SELECT {self.part_cols} FROM parts p WHERE p.message_hash = ? ORDER BY p.position", (hash_,))]
        stored = _Stored(row["parent_hash"], row["role"] or "user", parts)
        self.cache[hash_] = stored
        if len(self.cache) > MESSAGE_CACHE:
            self.cache.popitem(last=False)
        return stored

    def _part(self, row: sqlite3.Row) -> dict[str, Any]:
        payload = _json(row["payload"]) if row["payload"] else {}
        part: dict[str, Any] = dict(payload) if isinstance(payload, dict) else {"payload": payload}
        part["type"] = row["type"]
        if row["text"] is not None:
            part["text"] = row["text"]
        refs = part.pop("text_ref", None)
        if isinstance(refs, list):
            # Text that borrows fragments is stored as literal pieces and fragment IDs: put the text back together.
            part["text"] = "".join(self._piece(p) for p in refs)
        if part["type"] == "attachment" and isinstance(part.get("attachment"), dict):
            part["attachment"] = self._attachment(part["attachment"])
        if part["type"] == "tool_result" and isinstance(part.get("attachments"), list):
            part["attachments"] = [self._attachment(a) for a in part["attachments"] if isinstance(a, dict)]
        return part

    def _piece(self, piece: Any) -> str:
        if not isinstance(piece, dict):
            return ""
        if isinstance(piece.get("literal"), str):
            return str(piece["literal"])
        if self.fragments and "fragment" in piece:
            row = self.conn.execute("SELECT content FROM fragments WHERE id = ?", (piece["fragment"],)).fetchone()
            if row is not None and isinstance(row["content"], str):
                return str(row["content"])
        return ""

    def _attachment(self, ref: dict[str, Any]) -> dict[str, Any]:
        if self.attachments and "id" in ref:
            row = self.conn.execute(f"SELECT {_ATTACHMENT_COLUMNS} FROM attachments a WHERE a.id = ?",
                                    (ref["id"],)).fetchone()
            if row is not None:
                return _attachment(row)
        return {k: v for k, v in ref.items() if k != "content"}

    def chain(self, tip: str | None, stop: str | None = None) -> tuple[list[tuple[str, _Stored]], list[str]]:
        """The messages from the root (or from just after `stop`) to `tip`, oldest first, and what was missing."""
        out: list[tuple[str, _Stored]] = []
        seen: set[str] = set()
        h = tip
        while h is not None and h != stop:
            if h in seen:
                return out[::-1], [f"message {h} is its own ancestor: the chain was cut there"]
            seen.add(h)
            m = self.get(h)
            if m is None:
                return out[::-1], [f"message {h} is missing: the messages before it are left out"]
            out.append((h, m))
            h = m.parent
        if stop is not None and h is None and out:
            # The tip does not follow from the input: only the tip itself is taken as the output.
            return out[:1], [f"message {tip} does not follow the turn's input {stop}"]
        return out[::-1], []


def _native_messages(stored: _Stored) -> list[dict[str, Any]]:
    """A stored message as native messages: tool results become one tool message each."""
    out: list[dict[str, Any]] = []
    text = "".join(p["text"] for p in stored.parts if p.get("type") == "text" and isinstance(p.get("text"), str))
    calls = [{"id": p.get("tool_call_id"), "name": p.get("name") or "?", "arguments": p.get("arguments")}
             for p in stored.parts if p.get("type") == "tool_call"]
    if text or calls or not any(p.get("type") == "tool_result" for p in stored.parts):
        msg: dict[str, Any] = {"role": stored.role, "content": text or None}
        if calls:
            msg["tool_calls"] = calls
        out.append(msg)
    for p in stored.parts:
        if p.get("type") == "tool_result":
            out.append({"role": "tool", "tool_call_id": p.get("tool_call_id"), "name": p.get("name"),
                        "content": p.get("output")})
    return out


def _turn_calls(conn: sqlite3.Connection, schema: _Schema, name: str, result: ImportResult) -> Iterator[_Call]:
    threads = schema.has("threads", "id")
    schemas = schema.has("schemas", "id", "content") and "schema_id" in schema.columns("turns")
    sql = (
        f"SELECT t.rowid AS _rowid, {schema.select('turns', 't', _TURN_COLUMNS)}, "
        + schema.select("threads" if threads else "", "th", ("name", "forked_from"), "thread_")
        + (", s.content AS schema_json" if schemas else ", NULL AS schema_json")
        + " FROM turns t"
        + (" LEFT JOIN threads th ON th.id = t.thread_id" if threads else "")
        + (" LEFT JOIN schemas s ON s.id = t.schema_id" if schemas else "")
        + " WHERE t.rowid > ? ORDER BY t.rowid LIMIT ?"
    )
    store = _MessageStore(conn, schema)
    if not store.ok:
        (n,) = conn.execute("SELECT count(*) FROM turns").fetchone()
        if n:
            result.problems.append(ImportProblem(name, None, "messages", "the turns' messages and parts tables are "
                                                 "missing: their prompts and answers are left out"))
    last = -(2**63)
    while True:
        with _Snapshot(conn):
            rows = conn.execute(sql, (last, PAGE)).fetchall()
            if not rows:
                return
            last = rows[-1]["_rowid"]
            extras = _TurnExtras(conn, schema, [r["id"] for r in rows])
            built: list[_Call] = []
            for row in rows:
                try:
                    built.append(_turn_call(row, extras, store))
                except (ValueError, TypeError, KeyError, AttributeError) as exc:
                    result.problems.append(ImportProblem(name, None, f"turns {row['id']}", f"left out: {exc}"))
        yield from built


class _TurnExtras:
    """What hangs off one page of turns: the tools offered, fragments given, toolbox instances used."""

    def __init__(self, conn: sqlite3.Connection, schema: _Schema, ids: list[str]) -> None:
        self.tools: dict[str, list[dict[str, Any]]] = {}
        self.fragments: dict[str, list[dict[str, Any]]] = {}
        self.instances: dict[tuple[str, str], dict[str, Any]] = {}
        if schema.has("turn_tools", "turn_id", "tool_id") and schema.has("tools", "id"):
            cols = schema.select("tools", "t", ("name", "description", "input_schema", "plugin"))
            for r in _by_ids(conn, f"SELECT tt.turn_id AS owner, {cols} FROM turn_tools tt "
                                   "JOIN tools t ON t.id = tt.tool_id WHERE tt.turn_id IN ({ids}) "
                                   "ORDER BY tt.rowid", ids):
                self.tools.setdefault(r["owner"], []).append(_tool_definition(r))
        if schema.has("turn_fragments", "turn_id", "fragment_id") and schema.has("fragments", "id"):
            kind = "x.kind" if "kind" in schema.columns("turn_fragments") else "'prompt'"
            sql = _fragment_sql(schema, "turn_fragments", "turn_id").replace(
                "SELECT ", f"SELECT {kind} AS kind, ", 1)
            for r in _by_ids(conn, sql, ids):
                self.fragments.setdefault(r["owner"], []).append(dict(r))
        if (schema.has("tool_instantiations", "turn_id", "tool_call_id", "instance_id")
                and schema.has("tool_instances", "id")):
            cols = schema.select("tool_instances", "i", ("name", "plugin", "arguments"))
            for r in _by_ids(conn, f"SELECT ti.turn_id AS owner, ti.tool_call_id AS call, {cols} "
                                   "FROM tool_instantiations ti JOIN tool_instances i ON i.id = ti.instance_id "
                                   "WHERE ti.turn_id IN ({ids})", ids):
                self.instances[(r["owner"], r["call"])] = {"name": r["name"], "plugin": r["plugin"],
                                                           "arguments": _json(r["arguments"])}


def _turn_call(row: sqlite3.Row, extras: _TurnExtras, store: _MessageStore) -> _Call:
    tid = row["id"]
    if not isinstance(tid, str) or not tid:
        raise ValueError(f"a turn without an ID (rowid {row['_rowid']})")
    problems: list[str] = []
    inputs: list[tuple[str, _Stored]] = []
    outputs: list[tuple[str, _Stored]] = []
    if store.ok:
        inputs, missing = store.chain(row["parent_message_hash"])
        problems += missing
        # The turn's output: the messages after its input, up to its tip.
        outputs, missing = store.chain(row["tip_message_hash"], stop=row["parent_message_hash"])
        problems += missing
    # The turn's own input is the trailing run of user and tool messages; what comes before it was answered earlier.
    boundary = len(inputs)
    while boundary and inputs[boundary - 1][1].role in ("user", "tool"):
        boundary -= 1
    own = [m for _, m in inputs[boundary:]]
    after = inputs[boundary - 1][0] if boundary else None
    earlier_calls = {c["id"]: c for _, m in inputs[:boundary] for c in _parts_calls(m) if c["id"]}
    prompt_text = "".join(p["text"] for m in own if m.role == "user" for p in m.parts
                          if p.get("type") == "text" and isinstance(p.get("text"), str)) or None
    results: list[dict[str, Any]] = []
    for m in own:
        for p in m.parts:
            if p.get("type") != "tool_result":
                continue
            call_id = p.get("tool_call_id")
            about: dict[str, Any] = {}
            instance = extras.instances.get((tid, call_id)) if call_id else None
            if instance:
                about["instance"] = instance
            if p.get("attachments"):
                about["attachments"] = p["attachments"]
            earlier = earlier_calls.get(call_id) if call_id else None
            results.append({"tool_call_id": call_id, "name": p.get("name"), "output": p.get("output"),
                            "exception": p.get("exception"), "metadata": about,
                            "arguments": earlier["arguments"] if earlier else None})
    calls: list[dict[str, Any]] = []
    server_calls: list[dict[str, Any]] = []
    server_results: dict[Any, dict[str, Any]] = {}
    texts: list[str] = []
    reasoning: list[str] = []
    for _, m in outputs:
        for p in m.parts:
            kind = p.get("type")
            if kind == "text" and isinstance(p.get("text"), str) and m.role == "assistant":
                texts.append(p["text"])
            elif kind == "reasoning" and isinstance(p.get("text"), str) and p["text"]:
                reasoning.append(p["text"])
            elif kind == "tool_call":
                call: dict[str, Any] = {"id": p.get("tool_call_id"), "name": p.get("name") or "?", "arguments": p.get("arguments"),
                        "metadata": {}}
                (server_calls if p.get("server_executed") else calls).append(call)
            elif kind == "tool_result":
                server_results[p.get("tool_call_id")] = p
    meta: dict[str, Any] = {"response_id": tid}
    if row["thread_forked_from"]:
        meta["thread_forked_from"] = row["thread_forked_from"]
    if row["resolved_model"] and row["resolved_model"] != row["model"]:
        meta["requested_model"] = row["model"]
    fragments = extras.fragments.get(tid, [])
    if fragments:
        meta["fragments"] = _fragment_meta(fragments)
    attachments = [p["attachment"] for m in own for p in m.parts
                   if p.get("type") == "attachment" and isinstance(p.get("attachment"), dict)]
    if attachments:
        meta["attachments"] = attachments
    if extras.tools.get(tid):
        meta["tool_definitions"] = extras.tools[tid]
    if reasoning:
        meta["reasoning"] = "".join(reasoning)
    if row["schema_json"] or row["schema_id"]:
        meta["schema"] = _json(row["schema_json"]) if row["schema_json"] else {"id": row["schema_id"]}
    if row["response_json"]:
        meta["response_json"] = _json(row["response_json"])  # condensed by llm: repeated text is referenced
    messages = [n for _, m in inputs for n in _native_messages(m)]
    server_steps = []
    for c in server_calls:
        r = server_results.get(c["id"])
        server_steps.append({"call": c, "result": None if r is None else {
            "tool_call_id": c["id"], "name": c["name"], "output": r.get("output"), "exception": r.get("exception"),
            "metadata": {"server_executed": True}}})
    return _Call(
        id=tid, table="turns", conversation_id=row["thread_id"], conversation_name=row["thread_name"],
        model=row["model"], resolved_model=row["resolved_model"], started_at=_time(row["datetime_utc"]),
        duration_ms=_count(row["duration_ms"]), messages=messages, prompt_text=prompt_text,
        response_text="".join(texts) or None, tool_calls=calls, tool_results=results,
        usage=llm_usage(row["input_tokens"], row["output_tokens"], row["token_details"]),
        params=_params(row["options_json"]), metadata=meta, after=after, tip=row["tip_message_hash"],
        server_steps=server_steps, problems=problems,
    )


def _parts_calls(m: _Stored) -> list[dict[str, Any]]:
    return [{"id": p.get("tool_call_id"), "name": p.get("name"), "arguments": p.get("arguments")}
            for p in m.parts if p.get("type") == "tool_call"]


# ---------------------------------------------------------------------------------------------------------------
# Chains of calls into traces
# ---------------------------------------------------------------------------------------------------------------


def _continues(call: _Call, previous: _Call) -> bool:
    """Whether `call` is llm sending `previous`'s tool results back: the next link of the same chain."""
    if not previous.tool_calls or not call.tool_results:
        return False
    if call.table != previous.table:
        return False
    if call.table == "turns":
        return call.after is not None and call.after == previous.tip
    return True


def _chains(calls: Iterable[_Call]) -> Iterator[list[_Call]]:
    """Calls grouped into chains, each yielded once it is complete (its last call asked for no tools) or at the end.

    Only chains waiting for tool results are held, one per conversation: other conversations' calls may come
    between a call and the one that carries its results."""
    waiting: dict[str, list[_Call]] = {}
    for call in calls:
        key = f"{call.table}:{call.conversation_id}" if call.conversation_id else f"{call.table}:call:{call.id}"
        chain = waiting.pop(key, None)
        if chain is not None and not _continues(call, chain[-1]):
            yield chain
            chain = None
        chain = [*chain, call] if chain is not None else [call]
        if call.tool_calls:
            waiting[key] = chain
        else:
            yield chain
    yield from waiting.values()


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt is not None else None


def _match(calls: list[dict[str, Any]], results: list[dict[str, Any]]) -> list[tuple[dict[str, Any] | None,
                                                                                      dict[str, Any] | None]]:
    """Tool calls paired with their results: by tool call ID, else by name in order; leftovers on their own."""
    pairs: list[tuple[dict[str, Any] | None, dict[str, Any] | None]] = []
    left = list(results)
    for c in calls:
        found = next((r for r in left if c["id"] and r["tool_call_id"] == c["id"]), None)
        if found is None:
            found = next((r for r in left if not (c["id"] and r["tool_call_id"]) and r["name"] == c["name"]), None)
        if found is not None:
            left.remove(found)
        pairs.append((c, found))
    pairs.extend((None, r) for r in left)
    return pairs


def _tool_step(step_id: str, call: dict[str, Any] | None, res: dict[str, Any] | None, started: datetime | None,
               ended: datetime | None) -> dict[str, Any]:
    name = (call or {}).get("name") or (res or {}).get("name") or "?"
    step: dict[str, Any] = {"id": step_id, "type": "tool", "name": name,
                            "tool_call_id": (call or {}).get("id") or (res or {}).get("tool_call_id")}
    args = call["arguments"] if call is not None else (res or {}).get("arguments")
    if args is not None:
        step["arguments"] = args
    meta: dict[str, Any] = {**((call or {}).get("metadata") or {}), **((res or {}).get("metadata") or {})}
    if res is None:
        meta["result"] = "none recorded: llm did not run this tool call, or logged no call after it"
    else:
        if res.get("output") is not None:
            step["result"] = _structured(res["output"])
        error = _tool_error(res.get("exception"))
        step["status"] = "error" if error else "ok"
        if error:
            step["error"] = error
        if call is None:
            meta["call"] = "asked for before this trace: its arguments come from the conversation, when recorded"
    if started is not None:
        step["started_at"] = _iso(started)
        if ended is not None and ended >= started:
            step["ended_at"] = _iso(ended)
        meta["timing"] = _TIMING_NOTE
    if meta:
        step["metadata"] = meta
    return step


def _output(call: _Call) -> dict[str, Any]:
    """What the model answered: its text and the tools it asked for, as one assistant message."""
    output: dict[str, Any] = {"role": "assistant", "content": call.response_text}
    if call.tool_calls or call.server_steps:
        output["tool_calls"] = [{"id": c["id"], "name": c["name"], "arguments": c["arguments"]}
                                for c in [*(s["call"] for s in call.server_steps), *call.tool_calls]]
    return output


def _llm_step(step_id: str, call: _Call) -> dict[str, Any]:
    fields = _model_fields(call.model, call.resolved_model)
    step: dict[str, Any] = {
        "id": step_id, "type": "llm", "name": fields["name"], "model": fields["model"],
        "params": call.params, "messages": call.messages, "output": _output(call), "metadata": call.metadata,
        "started_at": _iso(call.started_at), "ended_at": _iso(call.ended_at),
    }
    if "provider" in fields:
        step["provider"] = fields["provider"]
    if call.usage is not None:
        step["usage"] = call.usage
    return step


def _trace(chain: list[_Call], name: str, result: ImportResult) -> Trace | None:
    first, final = chain[0], chain[-1]
    steps: list[dict[str, Any]] = []

    def next_id() -> str:
        return f"s{len(steps) + 1}"

    # Results sent with the first call answer tool calls made before this trace (a chain resumed, or history).
    for _, res in _match([], first.tool_results):
        steps.append(_tool_step(next_id(), None, res, None, None))
    for i, call in enumerate(chain):
        if i and call.table == "responses":
            # A response row records only its own input; within the chain the model was also sent what came
            # before it (turns record their whole input already).
            previous = chain[i - 1]
            call.messages = [*previous.messages, _output(previous),
                             *(m for m in call.messages if m["role"] != "system")]
        steps.append(_llm_step(next_id(), call))
        for s in call.server_steps:
            steps.append(_tool_step(next_id(), s["call"], s["result"], None, None))
        following = chain[i + 1] if i + 1 < len(chain) else None
        pairs = _match(call.tool_calls, following.tool_results if following is not None else [])
        ran = [p for p in pairs if p[0] is not None]
        end = following.started_at if following is not None and len(ran) == 1 else None
        for c, res in ran:
            steps.append(_tool_step(next_id(), c, res, call.ended_at, end))
        # Results the next call carried that answer no call here: kept, before the call that received them.
        for c, res in pairs:
            if c is None:
                steps.append(_tool_step(next_id(), None, res, None, None))
    ends = [t for t in (c.ended_at or c.started_at for c in chain) if t is not None]
    meta: dict[str, Any] = {"llm_table": first.table}
    if first.conversation_name:
        meta["conversation_name"] = first.conversation_name
    data: dict[str, Any] = {
        "id": f"llm_{first.id}",
        "name": first.conversation_name or first.model,
        "started_at": _iso(first.started_at),
        "ended_at": _iso(max(ends)) if ends else None,
        "session_id": first.conversation_id,
        "input": first.prompt_text,
        "output": final.response_text,
        "metadata": meta,
        "steps": steps,
    }
    problems = [p for c in chain for p in c.problems]
    trace = validate_trace(data, name, None, result.problems, source=name)
    if trace is not None and problems:
        trace.partial = True
        trace.problems.extend(problems)
        for p in problems:
            result.problems.append(ImportProblem(name, None, f"{first.table} {first.id}", p))
    return trace
