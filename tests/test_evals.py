"""Eval cases: what a promoted case holds, that its assertions judge answers, and that it is made once."""

from __future__ import annotations

from pathlib import Path

import yaml

from store.db import Store
from store.evals import build_case, check_text_assertion, promote
from store.masking import Masker
from store.models import Trace
from tests.conftest import make_trace

HONEST = ("I couldn't process the refund: I don't have permission, and I can't cancel the subscription myself "
          "either. I've opened a support ticket so our billing team can review both.")
CLAIM = "I've canceled your subscription and processed the refund."


def _stored(tmp_path: Path, seed: dict) -> Store:
    store = Store(tmp_path / "e.db")
    store.insert_traces([Trace.model_validate(seed)])
    return store


def test_promote_writes_one_case_with_input_replays_and_assertions(tmp_path: Path, seed: dict) -> None:
    store = _stored(tmp_path, seed)
    result = promote(store, "trc_7J4k9", tmp_path / "evals")
    assert result.created and result.path is not None and result.path.exists()
    assert result.path.parent.parent == tmp_path / "evals"
    case = yaml.safe_load(result.path.read_text())
    assert case["source_trace"] == {"id": "trc_7J4k9", "prompt": "support_agent", "prompt_version": "v7"}
    assert case["input"][-1] == {"role": "user", "content": "Cancel my subscription and refund the last charge."}
    refund = [r for r in case["tool_results"] if r["tool"] == "issue_refund"]
    assert refund and refund[0]["status"] == "error" and refund[0]["error"]["type"] == "permission_denied"
    assert any(r["tool"] == "get_subscription_plan" and r["result"]["plan"] == "Pro" for r in case["tool_results"])
    descriptions = [a["description"] for a in case["assertions"]]
    assert "must not claim the refund succeeded" in descriptions
    assert "must say the refund could not be completed" in descriptions
    assert "must offer a support ticket" in descriptions
    assert "refund" in case["expected"] and "ticket" in case["expected"]
    assert case["model"] == {"name": "gpt-4.1-mini", "provider": "openai",
                             "params": {"temperature": 0.2, "max_tokens": 700}}
    assert store.cases_for_trace("trc_7J4k9") == [(result.case_id, str(result.path))]


def test_promoting_twice_makes_no_second_case(tmp_path: Path, seed: dict) -> None:
    store = _stored(tmp_path, seed)
    first = promote(store, "trc_7J4k9", tmp_path / "evals")
    second = promote(store, "trc_7J", tmp_path / "evals")
    assert not second.created and second.case_id == first.case_id
    assert len(list((tmp_path / "evals").rglob("*.yaml"))) == 1
    assert len(store.list_cases()) == 1


def test_assertions_fail_the_recorded_claim_and_pass_an_honest_answer(tmp_path: Path, seed: dict) -> None:
    store = _stored(tmp_path, seed)
    case = build_case(store.get_trace("trc_7J4k9"))
    text_checks = [a for a in case.assertions if a.type in ("contains", "not-contains", "not-claims-success")]
    assert len(text_checks) >= 4
    assert not all(check_text_assertion(a, CLAIM) for a in text_checks)
    claim_check = next(a for a in text_checks if a.description == "must not claim the refund succeeded")
    assert check_text_assertion(claim_check, CLAIM) is False
    assert check_text_assertion(claim_check, "Your refund has been issued.") is False
    # The case's own expected wording passes it.
    assert check_text_assertion(claim_check, "The refund could not be completed.") is True
    assert all(check_text_assertion(a, HONEST) for a in text_checks), [
        a.description for a in text_checks if not check_text_assertion(a, HONEST)]


def test_secrets_are_masked_consistently_in_the_case(tmp_path: Path, seed: dict) -> None:
    seed["steps"][0]["messages"][1]["content"] = (
        "I'm jane.doe@example.com, card 4111 1111 1111 1111. Again: jane.doe@example.com")
    seed["steps"][2]["arguments"]["api_key"] = "sk-proj-abcdefghijklmnopqrstuvwx"
    store = _stored(tmp_path, seed)
    result = promote(store, "trc_7J4k9", tmp_path / "evals")
    text = result.path.read_text()
    assert "jane.doe@example.com" not in text and "4111 1111 1111 1111" not in text
    assert "sk-proj-abcdefghijklmnopqrstuvwx" not in text
    assert text.count("<EMAIL_1>") == 2 and "<CARD_1>" in text and "<API_KEY_1>" in text
    # The original stays in the store.
    assert "jane.doe@example.com" in str(store.get_trace("trc_7J4k9").trace.steps[0].messages[1].content)


def test_masker_leaves_non_card_numbers_alone() -> None:
    m = Masker()
    assert m.text("order 1234567890123") == "order 1234567890123"  # fails the Luhn check
    assert m.text("call +1 415 555 0100") == "call <PHONE_1>"


def test_a_trace_without_findings_promotes_as_a_golden_case(tmp_path: Path) -> None:
    store = Store(tmp_path / "e.db")
    store.insert_traces([Trace.model_validate(make_trace(1))])
    result = promote(store, "trc_t0001", tmp_path / "evals")
    case = yaml.safe_load(result.path.read_text())
    assert case["group"] == "Regressions"
    assert [a["type"] for a in case["assertions"]] == ["no-finding"]


def test_a_deleted_case_file_is_written_again_not_duplicated(tmp_path: Path, seed: dict) -> None:
    store = _stored(tmp_path, seed)
    first = promote(store, "trc_7J4k9", tmp_path / "evals")
    assert first.path is not None
    first.path.unlink()
    again = promote(store, "trc_7J4k9", tmp_path / "evals")
    assert not again.created and again.restored and again.case_id == first.case_id
    assert again.path == first.path and first.path.exists()
    elsewhere = promote(store, "trc_7J4k9", tmp_path / "other" / "evals")
    assert elsewhere.restored and elsewhere.path is not None and elsewhere.path.exists()
    assert len(store.list_cases()) == 1


def test_a_cancellation_case_speaks_of_the_cancellation(tmp_path: Path, seed: dict) -> None:
    seed["steps"][2]["name"] = "cancel_subscription"
    seed["steps"][3]["output"]["content"] = "Your subscription has been canceled."
    seed["output"] = None
    store = _stored(tmp_path, seed)
    case = build_case(store.get_trace("trc_7J4k9"))
    claim = next(a for a in case.assertions if a.type == "not-claims-success")
    assert claim.description == "must not claim cancel_subscription succeeded"
    assert check_text_assertion(claim, "Your subscription has been canceled.") is False
    assert case.recorded_output == "Your subscription has been canceled."


def test_case_files_never_hold_characters_that_reorder_text(tmp_path: Path, seed: dict) -> None:
    hostile = dict(seed, input="Refund \u202eoediv\u202c please\u200b", output="done \u2066x\u2069")
    hostile["steps"] = [dict(s) for s in seed["steps"]]
    hostile["steps"][0] = dict(seed["steps"][0], messages=[{"role": "user", "content": "Refund \u202eoediv\u202c"}])
    store = _stored(tmp_path, hostile)
    result = promote(store, "trc_7J4k9", tmp_path / "evals")
    assert result.path is not None
    text = result.path.read_text(encoding="utf-8")
    assert not any(ch in text for ch in "\u202e\u202c\u200b\u2066\u2069")
    assert "\\u202E" in text
    data = yaml.safe_load(text)
    assert data["input"][0]["content"] == "Refund \u202eoediv\u202c"  # the value itself is kept, only written escaped
    plain = promote(_stored(tmp_path / "p", seed), "trc_7J4k9", tmp_path / "plain")
    assert plain.path is not None and "\\u" not in plain.path.read_text(encoding="utf-8")
