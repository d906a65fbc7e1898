"""Hostile text (issue 8): markup, ANSI/OSC escapes, lone surrogates, zero-width and bidi characters, NUL and invalid
UTF-8 in every field are shown literally or visibly replaced in `show`, kept exactly in `show --json` and in eval
cases, and never act on the terminal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.fixtures.hostile.traces import (
    TEXT,
    TEXT_SHOWN,
    case_of,
    cli,
    show_json,
    show_text,
    store_traces,
    text_trace,
    unsafe_in,
)

# What the store keeps of TEXT: everything as given, but the lone surrogate (which no UTF-8 file or SQLite text
# can hold) replaced by U+FFFD, visibly.
KEPT = TEXT.replace("\ud800", "\ufffd")


def test_show_prints_every_field_literally_and_nothing_acts_on_the_terminal(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    store, problems = store_traces(db, text_trace())
    store.close()
    assert problems == []
    out = show_text(db, "trc_text")
    assert unsafe_in(out) == []
    for piece in TEXT_SHOWN:
        assert piece in out, piece
    # The finding quotes the claim; the failed tool's error and result are shown, as text.
    assert "success-after-tool-error" in out and "I've issued the refund." in out


def test_show_json_keeps_the_exact_text(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    store_traces(db, text_trace())[0].close()
    data = show_json(db, "trc_text")  # ASCII only: every control character is a \u escape
    assert data["input"] == KEPT and data["user_id"] == KEPT and data["tags"] == [KEPT]
    assert data["prompt"] == {"name": KEPT, "version": KEPT}
    assert data["metadata"] == {KEPT: KEPT, "x_" + KEPT: KEPT}
    tool = data["steps"][1]
    assert tool["arguments"] == {KEPT: KEPT} and tool["result"] == KEPT
    assert tool["error"] == {"type": KEPT, "message": KEPT}
    assert data["steps"][0]["messages"][0] == {"role": KEPT, "content": KEPT, "name": KEPT, "tool_calls": []}


def test_show_json_reads_back_as_the_same_trace(tmp_path: Path) -> None:
    """An export re-imported is the same trace: the text survives the round trip through a file."""
    db = tmp_path / "t.db"
    store_traces(db, text_trace())[0].close()
    code, out = cli("show", "trc_text", "--db", str(db), "--json")
    assert code == 0
    exported = tmp_path / "exported.json"
    exported.write_text(out, encoding="utf-8")
    db2 = tmp_path / "t2.db"
    code, _ = cli("ingest", str(exported), "--db", str(db2))
    assert code == 0
    again = show_json(db2, "trc_text")
    first = show_json(db, "trc_text")
    for key in ("input", "output", "prompt", "metadata", "user_id", "tags", "name"):
        assert again[key] == first[key], key
    assert [s["result"] if "result" in s else None for s in again["steps"]] == [
        s["result"] if "result" in s else None for s in first["steps"]]


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def test_eval_case_keeps_the_text_and_its_file_escapes_controls(tmp_path: Path) -> None:
    store, _ = store_traces(tmp_path / "t.db", text_trace())
    data, text = case_of(store.get_trace("trc_text"))
    store.close()
    # The case holds the user's request and the failed tool's result as given (nothing here looks like a secret).
    assert any(m.get("content") == KEPT for m in data["input"])
    assert data["tool_results"][0]["result"] == KEPT
    # The YAML file reads back as the same data, and holds no raw C0/C1 control, NUL or ESC: YAML escapes them
    # ("\e", "\0", "\x9B"), so `cat` or a diff of the file cannot act on the terminal.
    assert yaml.safe_load(text) == data
    controls = [c for c in unsafe_in(text) if int(c[2:], 16) < 0x200B]
    assert controls == [], controls
    assert "\\e[31mred\\e[0m" in text and "\\0" in text


def test_invalid_utf8_in_a_file_is_replaced_visibly_and_the_rest_imported(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    good = b'{"id": "trc_ok", "input": "fine", "steps": []}\n'
    bad = b'{"id": "trc_bad\xff", "input": "caf\xe9 \xc3\x28 \xed\xa0\x80 end", "steps": []}\n'
    path.write_bytes(good + bad + good.replace(b"trc_ok", b"trc_ok2"))
    db = tmp_path / "u.db"
    code, out = cli("ingest", str(path), "--db", str(db))
    assert code == 0, out
    assert "Imported 3 traces" in out
    data = show_json(db, "trc_bad")
    assert data["id"] == "trc_bad\ufffd"
    assert data["input"] == "caf\ufffd \ufffd( \ufffd\ufffd\ufffd end"
    code, listing = cli("ls", "--db", str(db))
    assert code == 0 and "trc_bad\ufffd" in listing and unsafe_in(listing) == []
