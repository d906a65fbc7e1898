"""Promotion with a review step: config-driven masking and groups, typed assertions, the E preview, the cases screen."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from textual.widgets import DataTable, Input, SelectionList, Static

from store.config import parse_config
from store.db import EvalResultRow, Store
from store.evals import build_case, parse_assertion, promote
from store.masking import Masker
from store.models import Trace
from tui.app import make_app
from tui.screens.case_preview import CasePreview
from tui.screens.cases import CasesScreen
from tui.screens.trace_view import TraceViewScreen

from .test_tui import build_store, screen_text, settle

CONFIG = parse_config({
    "masking": {"patterns": [r"cus_\w+"]},
    "evals": {"escalation_tool": "create_support_ticket", "groups": {"success-after-tool-error": "Billing escalation"}},
})


@pytest.fixture(autouse=True)
def _empty_cwd(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


def _seed_store(tmp_path: Path, seed: dict[str, Any]) -> Store:
    store = Store(tmp_path / "c.db")
    store.insert_traces([Trace.model_validate(copy.deepcopy(seed))])
    return store


# --------------------------------------------------------------------------- store side


def test_configured_patterns_mask_ids_everywhere_and_the_store_keeps_the_original(tmp_path: Path,
                                                                                  seed: dict[str, Any]) -> None:
    store = _seed_store(tmp_path, seed)
    case = build_case(store.get_trace("trc_7J4k9"), config=CONFIG)
    dumped = yaml.safe_dump(case.model_dump(mode="json"))
    assert "cus_8129" not in dumped
    refund = next(r for r in case.tool_results if r["tool"] == "issue_refund")
    plan = next(r for r in case.tool_results if r["tool"] == "get_subscription_plan")
    # One value, one placeholder, across tool results.
    assert refund["arguments"]["customer_id"] == plan["arguments"]["customer_id"] == "<ID_1>"
    assert "cus_8129" in store.get_trace("trc_7J4k9").trace.model_dump_json()
    # Without the pattern the ID is left as it is.
    assert "cus_8129" in yaml.safe_dump(build_case(store.get_trace("trc_7J4k9")).model_dump(mode="json"))


def test_config_sets_the_group_and_the_escalation_tool_assertion(tmp_path: Path, seed: dict[str, Any]) -> None:
    store = _seed_store(tmp_path, seed)
    case = build_case(store.get_trace("trc_7J4k9"), config=CONFIG)
    assert case.group == "Billing escalation"
    calls = [a for a in case.assertions if a.type == "must-call"]
    assert [a.value for a in calls] == ["create_support_ticket"]
    assert "create_support_ticket" in case.expected
    plain = build_case(store.get_trace("trc_7J4k9"))
    assert plain.group == "Tool failure handling"
    assert not any(a.type == "must-call" for a in plain.assertions)


def test_masker_keeps_chosen_values_and_lists_what_it_masked() -> None:
    m = Masker([r"cus_\w+"], keep=frozenset({"bob@example.com"}))
    out = m.text("mail alice@example.com or bob@example.com about cus_1 and cus_2, cus_1 again")
    assert out == "mail <EMAIL_1> or bob@example.com about <ID_1> and <ID_2>, <ID_1> again"
    # Configured patterns run first, so the IDs are seen first.
    assert m.masked() == [("<ID_1>", "cus_1"), ("<ID_2>", "cus_2"), ("<EMAIL_1>", "alice@example.com")]
    assert Masker(builtin=False).text("alice@example.com") == "alice@example.com"


@pytest.mark.parametrize(("typed", "kind", "value", "options"), [
    ("contains ticket", "contains", ["ticket"], {"any": True, "case_insensitive": True}),
    ("not-contains /refund(ed)? done/", "not-contains", ["refund(ed)? done"],
     {"any": True, "case_insensitive": True, "regex": True}),
    ('must-call create_ticket {"priority": "high"}', "must-call", "create_ticket",
     {"arguments": {"priority": "high"}}),
    ("must-not-call issue_refund", "must-not-call", "issue_refund", {}),
    ("no-finding *", "no-finding", "*", {}),
    ("max-cost 0.05", "max-cost", 0.05, {}),
    ("max-latency 3", "max-latency-seconds", 3.0, {}),
    ("max-tokens 5000", "max-tokens", 5000, {}),
])
def test_typed_assertions(typed: str, kind: str, value: Any, options: dict[str, Any]) -> None:
    a = parse_assertion(typed)
    assert (a.type, a.value, a.options) == (kind, value, options)
    assert a.description


@pytest.mark.parametrize(("typed", "says"), [
    ("shout loudly", "unknown assertion type"),
    ("contains", "needs a value"),
    ("max-cost cheap", "needs a number"),
    ("max-cost -1", "0 or more"),
    ("max-tokens 2.5", "whole number"),
    ("must-call t [1]", "JSON object"),
    ("contains /[/", "not a regular expression"),
])
def test_typed_assertions_refused_with_a_reason(typed: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_assertion(typed)


def test_promote_saves_an_edited_case_once(tmp_path: Path, seed: dict[str, Any]) -> None:
    store = _seed_store(tmp_path, seed)
    case = build_case(store.get_trace("trc_7J4k9"), config=CONFIG)
    edited = case.model_copy(update={"group": "Refunds", "assertions": [parse_assertion("contains ticket")]})
    result = promote(store, "trc_7J4k9", tmp_path / "evals", case=edited)
    assert result.created and result.path == tmp_path / "evals" / "refunds" / f"{case.id}.yaml"
    data = yaml.safe_load(result.path.read_text())
    assert data["group"] == "Refunds" and [a["type"] for a in data["assertions"]] == ["contains"]
    again = promote(store, "trc_7J4k9", tmp_path / "evals", config=CONFIG)
    assert not again.created and again.case_id == case.id


# --------------------------------------------------------------------------- the TUI


async def test_E_previews_edits_and_saves_the_case(tmp_path: Path) -> None:
    store = build_store(tmp_path / "loupe.db")
    evals = tmp_path / "evals"
    app = make_app(store, evals_dir=evals, config=CONFIG, poll_interval=None)
    async with app.run_test(size=(140, 50)) as pilot:
        await settle(pilot)
        await pilot.press("E")
        await settle(pilot)
        preview = app.screen
        assert isinstance(preview, CasePreview)
        assert preview.query_one("#preview-group", Input).value == "Billing escalation"
        masked = preview.query_one("#preview-masked", SelectionList)
        assert "cus_8129" in [masked.get_option_at_index(i).value for i in range(masked.option_count)]
        assert list(evals.rglob("*.yaml")) == []  # nothing written before saving
        # Add an assertion, leave the first derived one out, keep the customer ID unmasked, rename the group.
        preview.query_one("#preview-add", Input).focus()
        await pilot.press(*"max-cost 0.01", "enter")
        assertions = preview.query_one("#preview-assertions", SelectionList)
        assertions.deselect(0)
        masked.focus()
        masked.highlighted = 0
        await pilot.press("space")
        await settle(pilot)
        group = preview.query_one("#preview-group", Input)
        group.value = "Refunds"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert not isinstance(app.screen, CasePreview)
    files = list(evals.rglob("*.yaml"))
    assert [f.parent.name for f in files] == ["refunds"]
    data = yaml.safe_load(files[0].read_text())
    types = [a["type"] for a in data["assertions"]]
    assert types[-1] == "max-cost" and data["assertions"][-1]["value"] == 0.01
    assert "not-claims-success" != types[0]  # the first derived assertion was left out
    assert "cus_8129" in files[0].read_text()  # kept as it is, by choice
    store.close()


async def test_E_then_escape_writes_nothing_and_shows_already_a_case(tmp_path: Path) -> None:
    store = build_store(tmp_path / "loupe.db")
    evals = tmp_path / "evals"
    app = make_app(store, evals_dir=evals, config=CONFIG, poll_interval=None)
    async with app.run_test(size=(140, 50)) as pilot:
        await settle(pilot)
        await pilot.press("E")
        await settle(pilot)
        await pilot.press("escape")
        await settle(pilot)
        assert list(evals.rglob("*.yaml")) == []
        await pilot.press("e")
        await settle(pilot)
        assert len(list(evals.rglob("*.yaml"))) == 1
        await pilot.press("E")
        await settle(pilot)
        status = app.screen.query_one("#preview-status", Static)
        assert "Already a case" in str(status.render())
    store.close()


async def test_cases_screen_lists_cases_with_last_results_and_opens_the_source(tmp_path: Path) -> None:
    store = build_store(tmp_path / "loupe.db")
    result = promote(store, "trc_7J4k9", tmp_path / "evals")
    store.save_eval_results("run1", "2026-02-01T00:00:00Z", [
        EvalResultRow(result.case_id, "Tool failure handling", "support_agent", "v6", "trc_t0001", "pass"),
        EvalResultRow(result.case_id, "Tool failure handling", "support_agent", "v7", "trc_t0002", "fail",
                      {"failed": ["must not claim the refund succeeded"]}),
    ])
    app = make_app(store, evals_dir=tmp_path / "evals", poll_interval=None)
    async with app.run_test(size=(150, 45)) as pilot:
        await settle(pilot)
        await pilot.press("c")
        await settle(pilot)
        assert isinstance(app.screen, CasesScreen)
        table = app.screen.query_one(DataTable)
        assert table.row_count == 1
        text = screen_text(app)
        assert result.case_id in text and "v7 fail" in text and "v6 pass" in text
        assert "must not claim the refund succeeded" in text
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, TraceViewScreen) and app.screen.trace_ref == "trc_7J4k9"
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, CasesScreen)
        await pilot.press("escape")
        await settle(pilot)
        assert not isinstance(app.screen, CasesScreen)
    store.close()


async def test_cases_screen_when_there_are_none(tmp_path: Path) -> None:
    store = build_store(tmp_path / "loupe.db")
    app = make_app(store, evals_dir=tmp_path / "evals", poll_interval=None)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        await pilot.press("c")
        await settle(pilot)
        assert "No eval cases yet" in screen_text(app)
        assert app.screen.check_action("open_source", ()) is False
    store.close()


# --------------------------------------------------------------------------- found by a tester


def test_secrets_in_keys_params_and_stripe_keys_are_masked(tmp_path: Path, seed: dict[str, Any]) -> None:
    t = copy.deepcopy(seed)
    t["steps"][0]["messages"][-1]["content"] = "Refund me. My key is sk_live_51HxYzAbCdEfGhIjKlMnOp"
    t["steps"][0]["params"]["tools"] = [{"type": "function", "function": {
        "name": "issue_refund", "description": "admin key sk-proj-ZZZZYYYYXXXXWWWWVVVVUUUUTTTTSSSS1234 bob@corp.example",
        "parameters": {"type": "object"}}}]
    t["steps"][1]["arguments"] = {"alice@example.com": "x"}
    store = _seed_store(tmp_path, t)
    case = build_case(store.get_trace("trc_7J4k9"))
    dumped = yaml.safe_dump(case.model_dump(mode="json"))
    for secret in ("sk_live_51Hx", "sk-proj-ZZZ", "bob@corp.example", "alice@example.com"):
        assert secret not in dumped, secret
    assert case.tools and case.tools[0]["function"]["name"] == "issue_refund"  # kept, once, under tools
    assert "tools" not in case.model.get("params", {})


def test_tool_definitions_given_as_json_text_are_read(tmp_path: Path, seed: dict[str, Any]) -> None:
    t = copy.deepcopy(seed)
    t["steps"][0].setdefault("metadata", {})["tool_definitions"] = (
        '[{"type": "function", "function": {"name": "issue_refund", "parameters": {"type": "object"}}}]')
    store = _seed_store(tmp_path, t)
    case = build_case(store.get_trace("trc_7J4k9"))
    assert [d["function"]["name"] for d in case.tools] == ["issue_refund"]


def test_one_value_one_placeholder_however_it_is_written() -> None:
    m = Masker()
    out = m.text("4111-1111-1111-1111, 4111111111111111, 4111 1111 1111 1111; alice.smith@example.com, "
                 "ALICE.SMITH@EXAMPLE.COM; +1 (415) 555-0132, +1 415 555 0132")
    assert out == "<CARD_1>, <CARD_1>, <CARD_1>; <EMAIL_1>, <EMAIL_1>; <PHONE_1>, <PHONE_1>"


def test_a_committed_case_file_is_never_overwritten_nor_duplicated(tmp_path: Path, seed: dict[str, Any]) -> None:
    store = _seed_store(tmp_path, seed)
    evals = tmp_path / "evals"
    case = build_case(store.get_trace("trc_7J4k9"))
    # A teammate's edited file for the same failure, in a fresh store: kept as it is.
    mine = evals / "billing" / f"{case.id}.yaml"
    mine.parent.mkdir(parents=True)
    mine.write_text("name: HAND EDITED by teammate\n")
    result = promote(store, "trc_7J4k9", evals)
    assert not result.created and result.path == mine
    assert mine.read_text() == "name: HAND EDITED by teammate\n"
    assert list(evals.rglob("*.yaml")) == [mine]
    # Promoted again after the file moved to another group: found there, not written a second time.
    moved = evals / "refunds" / mine.name
    moved.parent.mkdir()
    mine.rename(moved)
    again = promote(store, "trc_7J4k9", evals)
    assert not again.created and not again.restored and again.path == moved
    assert list(evals.rglob("*.yaml")) == [moved]


def test_an_evals_dir_that_is_a_file_is_refused(tmp_path: Path, seed: dict[str, Any]) -> None:
    from typer.testing import CliRunner

    from store.evals import EvalsDirError
    from tui.cli import app

    store = _seed_store(tmp_path, seed)
    efile = tmp_path / "efile"
    efile.write_text("not a folder")
    with pytest.raises(EvalsDirError, match="not a folder"):
        promote(store, "trc_7J4k9", efile)
    store.close()
    runner = CliRunner()
    for args in (["promote", "trc_7J4k9"], ["evals", "list"], ["evals", "run", "--prompt-version", "v7"]):
        result = runner.invoke(app, [*args, "--db", str(tmp_path / "c.db"), "--evals-dir", str(efile)])
        assert result.exit_code == 3, (args, result.output)
        assert "not a folder" in result.output
    assert efile.read_text() == "not a folder"


def test_expected_behaviour_says_each_thing_once(tmp_path: Path, seed: dict[str, Any]) -> None:
    store = _seed_store(tmp_path, seed)
    case = build_case(store.get_trace("trc_7J4k9"))
    assert case.expected.count("not claim the refund succeeded") == 1


def test_replayed_runs_are_judged_as_the_case_prompt(tmp_path: Path, seed: dict[str, Any]) -> None:
    from store.replay import score

    store = _seed_store(tmp_path, seed)
    case = build_case(store.get_trace("trc_7J4k9"))
    config = parse_config({"rules": {"budget-exceeded": {"budgets": {"support_agent": {"model_calls": 5}}}}})
    case = case.model_copy(update={"assertions": [parse_assertion("no-finding budget-exceeded")]})
    run = {"id": "replay", "output": "ok", "steps": [
        {"id": "s1", "type": "llm", "output": {"role": "assistant", "content": "ok"}}]}
    result = score(case, run, config=config)
    assert result.passed, result.failed  # the budget rule ran: the run has the case's prompt


async def test_cases_screen_shows_the_committed_cases_like_evals_list(tmp_path: Path) -> None:
    store = build_store(tmp_path / "loupe.db")
    made = promote(store, "trc_7J4k9", tmp_path / "evals")
    other = build_store(tmp_path / "other.db")  # a teammate's fresh store: no cases in it, the files are there
    app = make_app(other, evals_dir=tmp_path / "evals", poll_interval=None)
    async with app.run_test(size=(150, 45)) as pilot:
        await settle(pilot)
        await pilot.press("c")
        await settle(pilot)
        text = screen_text(app)
        assert made.case_id in text and "from" in text and "evals" in text
    store.close()
    other.close()
