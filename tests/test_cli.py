"""The command line, driven with typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.conftest import make_trace
from tui import cli

runner = CliRunner()


def _write(path: Path, traces: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(t) + "\n" for t in traces))
    return path


@pytest.fixture
def ingested(tmp_path: Path, seed: dict) -> Path:
    f = _write(tmp_path / "t.jsonl", [seed] + [make_trace(i, "v6") for i in range(3)])
    result = runner.invoke(cli.app, ["ingest", str(f)])
    assert result.exit_code == 0, result.output
    assert "Imported 4 traces (7 steps)" in result.output
    return f


def test_ingest_twice_updates_and_never_duplicates(ingested: Path) -> None:
    result = runner.invoke(cli.app, ["ingest", str(ingested)])
    assert result.exit_code == 0, result.output
    assert "4 already stored, updated" in result.output
    out = runner.invoke(cli.app, ["ls", "--json"])
    assert len(json.loads(out.output)) == 4


def test_ls_json_is_newest_first_and_filters(ingested: Path) -> None:
    rows = json.loads(runner.invoke(cli.app, ["ls", "--json"]).output)
    assert rows[0]["id"] == "trc_7J4k9"
    assert [r["started_at"] for r in rows] == sorted((r["started_at"] for r in rows), reverse=True)
    v7 = json.loads(runner.invoke(cli.app, ["ls", "--json", "--prompt-version", "v7"]).output)
    assert [r["id"] for r in v7] == ["trc_7J4k9"]
    assert v7[0]["findings"] == 3 and v7[0]["cost_partial"] is False
    bad = json.loads(runner.invoke(cli.app, ["ls", "--json", "--violations"]).output)
    assert [r["id"] for r in bad] == ["trc_7J4k9"]
    text = runner.invoke(cli.app, ["ls", "--limit", "2"])
    assert text.exit_code == 0 and len(text.output.strip().splitlines()) == 2


def test_show_prints_steps_totals_and_the_finding(ingested: Path) -> None:
    result = runner.invoke(cli.app, ["show", "trc_7J"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "success claimed after a tool error" in out
    assert "I've canceled your subscription and processed the refund." in out
    assert "issue_refund" in out and "permission_denied" in out
    assert "2,842" in out and "5,962" in out  # first call's input, and the trace's total input


def test_show_json_is_native_trace_plus_totals_and_findings(ingested: Path) -> None:
    data = json.loads(runner.invoke(cli.app, ["show", "trc_7J4k9", "--json"]).output)
    assert data["id"] == "trc_7J4k9" and len(data["steps"]) == 4
    assert data["totals"]["input_tokens"] == 2842 + 3120
    assert data["totals"]["cost"] > 0
    f = data["findings"][0]
    assert f["rule_id"] == "success-after-tool-error" and f["evidence"] == ["s3", "s4"]


def test_unknown_and_ambiguous_ids(ingested: Path) -> None:
    unknown = runner.invoke(cli.app, ["show", "trc_zzz"])
    assert unknown.exit_code == 1
    assert "no trace with ID 'trc_zzz'" in unknown.output
    ambiguous = runner.invoke(cli.app, ["show", "trc_t"])
    assert ambiguous.exit_code == 1
    assert "trc_t0000" in ambiguous.output and "trc_t0002" in ambiguous.output


def test_bare_id_and_filters_open_the_tui(ingested: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(cli, "_run_tui", lambda store, tid, flt: calls.append((tid, flt.prompt_versions)))
    assert runner.invoke(cli.app, ["trc_7J4k9"]).exit_code == 0
    assert runner.invoke(cli.app, ["open", "trc_7J"]).exit_code == 0
    assert runner.invoke(cli.app, ["--prompt-version", "v7"]).exit_code == 0
    assert runner.invoke(cli.app, ["open", "--prompt-version", "v7"]).exit_code == 0
    assert runner.invoke(cli.app, []).exit_code == 0
    assert calls == [("trc_7J4k9", []), ("trc_7J4k9", []), (None, ["v7"]), (None, ["v7"]), (None, [])]
    missing = runner.invoke(cli.app, ["trc_nothere"])
    assert missing.exit_code == 1 and len(calls) == 5


def test_promote_from_the_shell(ingested: Path, tmp_path: Path) -> None:
    evals = tmp_path / "ev"
    first = runner.invoke(cli.app, ["promote", "trc_7J", "--evals-dir", str(evals)])
    assert first.exit_code == 0, first.output
    assert "Eval case evc_" in first.output
    second = runner.invoke(cli.app, ["promote", "trc_7J4k9", "--evals-dir", str(evals)])
    assert "Already a case" in second.output
    assert len(list(evals.rglob("*.yaml"))) == 1


def test_bad_lines_are_reported_by_file_line_and_field_and_the_rest_imports(tmp_path: Path) -> None:
    good = json.dumps(make_trace(1))
    bad_field = json.dumps(make_trace(2, started_at="yesterday-ish"))
    f = tmp_path / "mixed.jsonl"
    f.write_text(good + "\n{not json\n" + bad_field + "\n" + json.dumps(make_trace(3)) + "\n")
    result = runner.invoke(cli.app, ["ingest", str(f)])
    assert result.exit_code == 3
    assert f"{f}:2: invalid JSON" in result.output
    assert f"{f}:3: started_at" in result.output and "left out" in result.output
    # The line with a bad field is still stored, without that field, and marked partial.
    assert "Imported 3 traces" in result.output
    data = json.loads(runner.invoke(cli.app, ["show", "trc_t0002", "--json"]).output)
    assert data["partial"] is True and "started_at" not in data and len(data["steps"]) == 1


def test_a_bad_step_keeps_the_trace_marked_partial(tmp_path: Path) -> None:
    t = make_trace(4)
    t["steps"].append({"id": "b", "type": "not-a-type"})
    f = _write(tmp_path / "p.jsonl", [t])
    result = runner.invoke(cli.app, ["ingest", str(f)])
    assert result.exit_code == 3
    assert f"{f}:1: steps.1.type" in result.output
    data = json.loads(runner.invoke(cli.app, ["show", "trc_t0004", "--json"]).output)
    assert data["partial"] is True and len(data["steps"]) == 2
    assert data["steps"][1]["type"] == "other"  # the bad type left out, the step kept
    assert any("steps.1.type" in p for p in data["problems"])


def test_unreadable_inputs_exit_3(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    result = runner.invoke(cli.app, ["ingest", str(empty), str(tmp_path / "missing.jsonl")])
    assert result.exit_code == 3
    assert "the file is empty" in result.output and "no such file" in result.output


def test_wrong_format_names_what_the_file_looks_like(ingested: Path) -> None:
    result = runner.invoke(cli.app, ["ingest", str(ingested), "--format", "otlp"])
    assert result.exit_code == 3
    assert "looks like native" in result.output


def test_store_that_is_not_sqlite_exits_3(tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"\x00garbage" * 512)
    result = runner.invoke(cli.app, ["ls", "--db", str(bad)])
    assert result.exit_code == 3 and "not a traceloupe store" in result.output


HOSTILE = "[/] [bold]x[/bold] [link=https://e]y[/link] [@click=app.quit]q[/] \x1b[31mred\x1b[0m \x1b]8;;http://e\x07l\x1b]8;;\x07 \x1b]52;c;aGk=\x07 \u202eevil"


def test_trace_text_is_printed_literally_and_escapes_inert(tmp_path: Path) -> None:
    t = make_trace(7, name=HOSTILE, input=HOSTILE, output=HOSTILE, prompt={"name": HOSTILE, "version": HOSTILE})
    t["steps"][0]["messages"][0]["content"] = HOSTILE
    t["steps"][0]["model"] = HOSTILE
    t["steps"].append({"id": "tool[/]", "type": "tool", "name": HOSTILE, "arguments": {HOSTILE: HOSTILE},
                       "result": [HOSTILE], "status": "error", "error": {"type": HOSTILE, "message": HOSTILE}})
    f = _write(tmp_path / "h.jsonl", [t])
    assert runner.invoke(cli.app, ["ingest", str(f)]).exit_code == 0
    listed = runner.invoke(cli.app, ["ls"])
    assert listed.exit_code == 0 and "[/] [bold]x[/bold]" in listed.output and "\x1b" not in listed.output
    result = runner.invoke(cli.app, ["show", "trc_t0007"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "\x1b" not in out and "\u202e" not in out
    assert "[bold]x[/bold]" in out and "[@click=app.quit]q[/]" in out and "[link=https://e]y[/link]" in out
    assert "␛[31mred" in out and "<U+202E>evil" in out
    data = json.loads(runner.invoke(cli.app, ["show", "trc_t0007", "--json"]).output)
    assert data["name"] == HOSTILE  # --json keeps the exact text, escaped by JSON itself


def test_long_lines_lone_surrogates_and_huge_numbers_import_or_report(tmp_path: Path) -> None:
    long = make_trace(11)
    long["steps"][0]["output"]["content"] = "x" * 300_000  # a first line far longer than the format probe
    f = tmp_path / "odd.jsonl"
    surrogate = json.dumps(make_trace(12, name="bad \ud800 name"))
    assert "\\ud800" in surrogate
    huge = make_trace(13)
    huge["steps"][0]["usage"]["input_tokens"] = 2**63
    f.write_text(json.dumps(long) + "\n" + surrogate + "\n" + json.dumps(huge) + "\n")
    result = runner.invoke(cli.app, ["ingest", str(f)])
    assert "Imported 3 traces" in result.output, result.output
    assert f"{f}:3: steps.0.usage.input_tokens" in result.output
    assert result.exit_code == 3
    shown = json.loads(runner.invoke(cli.app, ["show", "trc_t0012", "--json"]).output)
    assert shown["name"] == "bad \ufffd name"
    huge_shown = json.loads(runner.invoke(cli.app, ["show", "trc_t0013", "--json"]).output)
    assert "input_tokens" not in huge_shown["steps"][0]["usage"] and huge_shown["partial"] is True


def test_show_json_reimports_as_the_same_trace(ingested: Path, tmp_path: Path) -> None:
    out = tmp_path / "one.json"
    out.write_text(runner.invoke(cli.app, ["show", "trc_7J4k9", "--json"]).output)
    db2 = tmp_path / "second.db"
    result = runner.invoke(cli.app, ["ingest", str(out), "--db", str(db2)])
    assert result.exit_code == 0, result.output
    again = json.loads(runner.invoke(cli.app, ["show", "trc_7J4k9", "--json", "--db", str(db2)]).output)
    original = json.loads(out.read_text())
    assert again == original


def test_stores_that_must_not_be_touched(tmp_path: Path) -> None:
    missing = runner.invoke(cli.app, ["ls", "--db", str(tmp_path / "no" / "x.db")])
    assert missing.exit_code == 3 and "no store there" in missing.output
    assert not (tmp_path / "no").exists()
    empty_id = runner.invoke(cli.app, ["show", ""])
    assert empty_id.exit_code == 2


def test_a_folder_imports_trace_files_and_passes_over_others(tmp_path: Path) -> None:
    folder = tmp_path / "dump"
    folder.mkdir()
    _write(folder / "a.jsonl", [make_trace(21)])
    (folder / "README.txt").write_text("notes")
    result = runner.invoke(cli.app, ["ingest", str(folder)])
    assert result.exit_code == 0, result.output
    assert "Imported 1 trace (1 step) from 1 file" in result.output


def test_schema_describes_the_native_format() -> None:
    import jsonschema

    from sample_traces import files

    result = runner.invoke(cli.app, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.output)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    lines = [json.loads(line) for f in files() for line in f.read_text().splitlines() if line.strip()]
    assert len(lines) >= 40
    for trace in lines:
        validator.validate(trace)
    bad = json.loads(json.dumps(lines[0]))
    bad["steps"][0]["type"] = "banana"
    assert not validator.is_valid(bad)
    assert not validator.is_valid({"name": "no id"})


def test_show_ls_and_json_keep_every_trace_field_inert(tmp_path: Path) -> None:
    from tests.test_tui import ALL, assert_inert, hostile_everywhere

    f = _write(tmp_path / "all.jsonl", [hostile_everywhere()])
    assert runner.invoke(cli.app, ["ingest", str(f)]).exit_code == 0
    shown = runner.invoke(cli.app, ["show", "trc_all"])
    assert shown.exit_code == 0, shown.output
    assert_inert(shown.output)
    out = shown.output
    assert "▍␛[2J␛]52;c;aGk=␇␀[bold]x[/bold]" in out  # a role, shown as text
    assert "exit code ␋␜7␟ in result" in out
    listed = runner.invoke(cli.app, ["ls"])
    assert listed.exit_code == 0
    assert_inert(listed.output, shown=False)
    assert "trc_all␛[2J" in listed.output
    as_json = runner.invoke(cli.app, ["show", "trc_all", "--json"])
    assert as_json.exit_code == 0
    for raw in ("\x1b", "\x00", "\x07"):
        assert raw not in as_json.output  # JSON escapes them
    data = json.loads(as_json.output)
    assert data["steps"][0]["messages"][0]["role"] == ALL and data["user_id"] == ALL  # exact, for scripts
    assert ALL in data["metadata"] and data["steps"][0]["usage"]["extra"] == {ALL: ALL}


def test_show_prints_the_trace_detail_between_findings_and_steps(ingested: Path) -> None:
    out = runner.invoke(cli.app, ["show", "trc_7J4k9"]).output
    lines = out.splitlines()

    def first(prefix: str) -> int:
        return next(i for i, line in enumerate(lines) if line.lstrip("│ ").startswith(prefix))

    findings, steps = first("● error"), lines.index("steps")
    for what in ("user usr_1", "── input", "── output", "── rules", "success claimed after a tool error: ran"):
        assert findings < first(what) < steps, what
    assert "Cancel my subscription and refund the last charge." in "\n".join(lines[findings:steps])


def test_show_prints_unknown_fields_tags_and_session(tmp_path: Path) -> None:
    t = make_trace(9, tags=["billing", "vip"], session_id="sess_42", bug_report="SUP-2291")
    f = _write(tmp_path / "m.jsonl", [t])
    assert runner.invoke(cli.app, ["ingest", str(f)]).exit_code == 0
    out = runner.invoke(cli.app, ["show", "trc_t0009"]).output
    assert "tags billing, vip" in out and "session sess_42" in out
    assert "metadata (fields loupe does not know)" in out and '"bug_report": "SUP-2291"' in out


def test_ls_marks_partial_token_sums_and_traces_without_llm_calls(tmp_path: Path) -> None:
    traces = [
        {"id": "trc_tools_only", "started_at": "2026-01-22T00:00:01Z",
         "steps": [{"id": "t", "type": "tool", "name": "search", "status": "ok"}]},
        {"id": "trc_half_usage", "started_at": "2026-01-22T00:00:02Z",
         "steps": [{"id": "a", "type": "llm", "model": "gpt-4o-mini", "usage": {"input_tokens": 1200, "output_tokens": 30}},
                   {"id": "b", "type": "llm", "model": "gpt-4o-mini"}]},
    ]
    f = _write(tmp_path / "tok.jsonl", traces)
    assert runner.invoke(cli.app, ["ingest", str(f)]).exit_code == 0
    lines = {line.split()[2]: line for line in runner.invoke(cli.app, ["ls"]).output.splitlines()}
    assert "1,200+/30+" in lines["trc_half_usage"] and "$" in lines["trc_half_usage"]
    tools = lines["trc_tools_only"]
    assert " -/- " in tools and "?/?" not in tools
    assert tools.split("-/-")[1].split()[0] == "-"  # the cost: nothing unknown either


def test_orphans_and_clock_skew_are_said_not_hidden(tmp_path: Path) -> None:
    t = make_trace(31)
    t["steps"].append({"id": "lost", "parent_id": "gone", "type": "tool", "name": "lookup", "status": "ok",
                       "started_at": "2026-01-02T00:00:05Z", "ended_at": "2026-01-02T00:00:01Z"})
    t["steps"].append({"id": "zero", "type": "other", "started_at": 0, "ended_at": 0})
    f = _write(tmp_path / "o.jsonl", [t])
    assert runner.invoke(cli.app, ["ingest", str(f)]).exit_code == 0
    out = runner.invoke(cli.app, ["show", "trc_t0031"]).output
    assert "[missing parent gone]" in out and "clock skew" in out
    data = json.loads(runner.invoke(cli.app, ["show", "trc_t0031", "--json"]).output)
    zero = next(s for s in data["steps"] if s["id"] == "zero")
    assert "started_at" not in zero and "ended_at" not in zero  # 0 is unknown, not 1970


def test_ingest_runs_the_rules_with_the_working_directory_config(
    tmp_path: Path, seed: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    f = _write(tmp_path / "s.jsonl", [seed])
    (tmp_path / "loupe.toml").write_text('[rules.tool-error]\nenabled = false\n')
    assert runner.invoke(cli.app, ["ingest", str(f)]).exit_code == 0
    rules = {f["rule_id"] for f in json.loads(runner.invoke(cli.app, ["show", "trc_7J4k9", "--json"]).output)["findings"]}
    assert "success-after-tool-error" in rules and "tool-error" not in rules
    (tmp_path / "loupe.toml").write_text('[rules.tool-eror]\nenabled = false\n')
    bad = runner.invoke(cli.app, ["ingest", str(f)])
    assert bad.exit_code == 3 and "tool-eror" in bad.output


def test_deep_nesting_and_implausible_numbers_never_lose_the_file(tmp_path: Path) -> None:
    deep_result = json.loads("[" * 200 + "]" * 200)
    lines = [
        json.dumps(make_trace(41)),
        json.dumps(make_trace(42, steps=[{"id": "t", "type": "tool", "name": "x", "result": deep_result}])),
        '{"id": "deep", "x": ' + "[" * 5000 + "]" * 5000 + "}",
        json.dumps(make_trace(43, started_at=1e300, ended_at="9999-12-31T23:59:59Z")),
    ]
    f = tmp_path / "hard.jsonl"
    f.write_text("\n".join(lines) + "\n")
    result = runner.invoke(cli.app, ["ingest", str(f)])
    assert result.exit_code == 3
    assert "Imported 3 traces" in result.output
    assert f"{f}:3: JSON nested too deeply" in result.output
    assert f"{f}:4: started_at" in result.output and "plausible" in result.output
    shown = runner.invoke(cli.app, ["show", "trc_t0042"])
    assert shown.exit_code == 0, shown.output
    t43 = json.loads(runner.invoke(cli.app, ["show", "trc_t0043", "--json"]).output)
    assert "ended_at" not in t43 and t43["totals"]["latency_ms"] < 10_000  # no duration of centuries


def _otlp(*spans: dict) -> str:
    return json.dumps({"resourceSpans": [{"resource": {"attributes": []}, "scopeSpans": [{"spans": list(spans)}]}]})


def _otlp_span(sid: str, parent: str, start: int, end: int | None, name: str) -> dict:
    span = {"traceId": "ab" * 16, "spanId": sid, "parentSpanId": parent, "name": name,
            "startTimeUnixNano": str(start)}
    if end is not None:
        span["endTimeUnixNano"] = str(end)
    return span


def test_parts_of_one_trace_count_once_and_keep_the_roots_name(tmp_path: Path) -> None:
    t0 = 1_768_000_000 * 10**9
    root = tmp_path / "root.json"
    root.write_text(_otlp(_otlp_span("00000000000000a1", "", t0, t0 + 9 * 10**9, "workflow"),
                          _otlp_span("00000000000000d1", "00000000000000a1", t0, None, "child"),
                          _otlp_span("00000000000000d1", "00000000000000a1", t0, t0 + 10**9, "child")))
    child = tmp_path / "child.json"
    child.write_text(_otlp(_otlp_span("00000000000000c1", "00000000000000a1", t0 + 2, t0 + 3, "late child")))
    result = runner.invoke(cli.app, ["ingest", str(root), str(child)])
    assert result.exit_code == 0, result.output
    assert "Imported 1 trace (" in result.output and "updated" not in result.output
    data = json.loads(runner.invoke(cli.app, ["show", "ab" * 16, "--json"]).output)
    assert data["name"] == "workflow"
    ids = [s["id"] for s in data["steps"]]
    assert sorted(ids) == ["00000000000000a1", "00000000000000c1", "00000000000000d1"]  # the span sent twice, once
    assert next(s for s in data["steps"] if s["id"] == "00000000000000d1").get("ended_at")


def test_unknown_rule_is_a_usage_error_and_every_command_takes_db(ingested: Path) -> None:
    assert runner.invoke(cli.app, ["ls", "--rule", "typo-rule"]).exit_code == 2
    assert runner.invoke(cli.app, ["check", "--rule", "typo-rule"]).exit_code == 2
    assert runner.invoke(cli.app, ["ls", "--rule", "success-after-tool-error"]).exit_code == 0
    assert runner.invoke(cli.app, ["rules", "--db", "x.db"]).exit_code == 0
    assert runner.invoke(cli.app, ["schema", "--db", "x.db"]).exit_code == 0


def test_latencies_of_hours_and_days_stay_short() -> None:
    from tui.format import fmt_latency

    assert fmt_latency(850) == "850ms"
    assert fmt_latency(3_720) == "3.72s"
    assert fmt_latency(9.4 * 60_000) == "9.4m"
    assert fmt_latency(2.5 * 3_600_000) == "2.5h"
    assert fmt_latency(393 * 86_400_000) == "393.0d"


def test_a_reader_that_leaves_early_is_not_an_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    db = tmp_path / "p.db"
    ROOT_SAMPLES = Path(__file__).resolve().parents[1] / "sample_traces"
    code = ("import sys; from tui.cli import main; sys.argv = ['loupe', 'ingest', sys.argv[1], '--db', sys.argv[2]]; "
            "main()")
    subprocess.run([sys.executable, "-c", code, str(ROOT_SAMPLES), str(db)], check=True, capture_output=True,
                   cwd=Path(__file__).resolve().parents[1])
    ls = subprocess.Popen([sys.executable, "-c", "import sys; from tui.cli import main; "
                           "sys.argv = ['loupe', 'ls', '--db', sys.argv[1]]; main()", str(db)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=Path(__file__).resolve().parents[1])
    assert ls.stdout is not None
    ls.stdout.readline()
    ls.stdout.close()  # like `| head -1`
    _, err = ls.communicate()
    assert ls.returncode == 0, err
    assert b"Traceback" not in err and b"BrokenPipe" not in err


def test_a_read_command_leaves_an_empty_file_alone(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tui.cli import app

    empty = tmp_path / "zero.db"
    empty.write_bytes(b"")
    result = CliRunner().invoke(app, ["ls", "--db", str(empty)])
    assert result.exit_code == 3 and "empty file" in result.output
    assert empty.read_bytes() == b""


def test_sigterm_stops_an_ingest_waiting_on_a_fifo(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    fifo = tmp_path / "traces.fifo"
    os.mkfifo(fifo)
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from tui.cli import main; "
                             "sys.argv = ['loupe', 'ingest', sys.argv[1], '--db', sys.argv[2]]; main()",
                             str(fifo), str(tmp_path / "f.db")], stderr=subprocess.PIPE,
                            cwd=Path(__file__).resolve().parents[1])
    time.sleep(1.5)  # blocked opening the FIFO: no writer
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("ingest did not stop on SIGTERM while waiting for a FIFO's writer") from None
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert b"interrupted" in err


def test_a_reader_leaving_early_keeps_a_failed_check_failed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    import tui.check_cmd
    from tui.cli import app

    samples = Path(__file__).resolve().parents[1] / "sample_traces"
    db = str(tmp_path / "v.db")
    runner = CliRunner()
    assert runner.invoke(app, ["ingest", str(samples), "--db", db]).exit_code == 0

    def reader_left(*args: object, **kwargs: object) -> None:
        raise BrokenPipeError

    monkeypatch.setattr(tui.check_cmd, "_print_report", reader_left)
    monkeypatch.setattr("os.dup2", lambda *a: None)  # the runner's stdout is not a real file
    result = runner.invoke(app, ["check", "--db", db])
    assert result.exit_code == 1, result.output  # the seed trace has error findings: still a failure
    assert "Traceback" not in result.output
