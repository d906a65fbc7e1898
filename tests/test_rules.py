"""The headline rule (success claimed after a tool error), failure signals, and how run_rules applies settings."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from store.config import parse_config
from store.models import Trace
from store.rules import RULES, claimed_success, failure_when_match, run_rules, success_after_tool_error, using_config

CLAIM = "I've canceled your subscription and processed the refund."
HONEST = "I couldn't process the refund because I don't have permission. Shall I open a support ticket?"


def trace(tool: dict[str, Any], answer: str = CLAIM, extra: list[dict[str, Any]] | None = None) -> Trace:
    steps = [
        {"id": "t1", "type": "tool", "name": "issue_refund", "arguments": {"amount": "last_charge"}, **tool},
        *(extra or []),
        {"id": "l9", "type": "llm", "model": "gpt-4.1-mini", "output": {"role": "assistant", "content": answer}},
    ]
    return Trace.model_validate({"id": "t", "steps": steps})


@pytest.mark.parametrize(
    "tool",
    [
        {"status": "error"},
        {"error": {"type": "permission_denied", "message": "no"}},
        {"error": "permission_denied"},
        {"is_error": True},
        {"is_error": "true"},
        {"is_error": 1},
        {"exit_code": 2},
        {"result": {"error": "permission_denied"}},
        {"result": {"is_error": "true"}},
        {"result": {"exit_code": 1}},
        {"result": {"exit_code": "1"}},
    ],
    ids=lambda t: repr(t),
)
def test_every_failure_signal_fires(tool: dict[str, Any]) -> None:
    findings, run = success_after_tool_error(trace(tool))
    assert run.ran
    assert len(findings) == 1
    f = findings[0]
    assert f.rule_id == "success-after-tool-error" and f.severity == "error"
    assert f.evidence == ["t1", "l9"]
    assert f.quote == CLAIM


@pytest.mark.parametrize(
    "tool",
    [
        {"status": "ok", "result": {"error": "", "exit_code": 0}},
        {"result": {"error": None, "exit_code": 0, "is_error": False}},
        {"error": "", "exit_code": 0},
        {"is_error": "false"},
        {"result": "refund of $20 issued"},
    ],
    ids=lambda t: repr(t),
)
def test_no_failure_signal_no_finding(tool: dict[str, Any]) -> None:
    assert success_after_tool_error(trace(tool))[0] == []


def test_honest_answer_does_not_fire() -> None:
    assert success_after_tool_error(trace({"status": "error"}, HONEST))[0] == []


def test_failed_call_then_successful_retry_does_not_fire() -> None:
    retry = [{"id": "t2", "type": "tool", "name": "issue_refund", "arguments": {"amount": "last_charge"},
              "status": "ok", "result": {"refund_id": "re_1"}}]
    findings, run = success_after_tool_error(trace({"error": {"type": "timeout"}}, "Your refund has been processed.", retry))
    assert findings == [] and run.ran


def test_claim_in_trace_output_without_llm_steps_still_fires() -> None:
    t = Trace.model_validate({"id": "t", "output": "Done! Your refund has been issued.", "steps": [
        {"id": "t1", "type": "tool", "name": "issue_refund", "status": "error"}]})
    findings, _ = success_after_tool_error(t)
    assert findings and findings[0].evidence == ["t1"] and findings[0].quote == "Your refund has been issued."


def test_rule_says_it_could_not_run_without_assistant_text() -> None:
    t = Trace.model_validate({"id": "t", "steps": [{"id": "t1", "type": "tool", "name": "issue_refund",
                                                    "status": "error"}]})
    findings, run = success_after_tool_error(t)
    assert findings == [] and not run.ran and run.reason


@pytest.mark.parametrize(
    "text,claims",
    [
        (CLAIM, True),
        ("Your refund has been processed.", True),
        ("I've refunded the last charge.", True),
        ("I canceled your subscription, but I couldn't process the refund.", False),
        ("I wasn't able to issue the refund.", False),
        ("Would you like me to process the refund?", False),
        ("I will process the refund once a manager approves it.", False),
        ("The refund request was denied.", False),
        ("I've opened a ticket so our billing team can look at a refund.", False),
        ("Nothing has been refunded yet — you'll get an email as soon as billing approves it.", False),
        ("Your refund of $129.00 has been processed and will show on your statement in 5–10 days.", True),
        ("The refund is pending approval; nothing was refunded.", False),
        ("Your refund was declined by the bank.", False),
        ("Refund processed!", True),
        # Found by a tester: an auxiliary alone is no claim, an apology or a "no" elsewhere is no negation.
        ("Your refund has been flagged for manual review by our billing team.", False),
        ("Your refund request has been escalated to billing.", False),
        ("Your refund has been queued; billing will retry it tomorrow.", False),
        ("Your refund was reversed by the bank.", False),
        ("I refunded the $20 to your Visa.", True),
        ("I've gone ahead and refunded you.", True),
        ("Sorry for the wait, I've processed your refund.", True),
        ("No problem, I've processed your refund.", True),
        ("Your refund has been processed, no further action needed.", True),
        ("Your refund was not processed.", False),
    ],
)
def test_claim_detection(text: str, claims: bool) -> None:
    assert (claimed_success(text, "issue_refund") is not None) is claims


@pytest.mark.parametrize(
    "text,tool",
    [
        ("Your subscription has been canceled — you won't be charged again.", "cancel_subscription"),
        ("I've opened a support ticket and our team will be in touch within a day.", "create_ticket"),
        ("Your subscription has been cancelled.", "cancel_subscription"),
    ],
)
def test_claims_about_other_actions(text: str, tool: str) -> None:
    assert claimed_success(text, tool) == text


def test_run_rules_reports_each_rule_run() -> None:
    result = run_rules(trace({"status": "error"}))
    assert [r.rule_id for r in result.runs] == list(RULES)
    # The claim's cancellation has no tool behind it, and the model call recorded no usage.
    assert sorted(f.rule_id for f in result.findings) == [
        "success-after-tool-error", "tool-error", "unbacked-action-claim", "usage-missing"]
    # Rules that need settings or data the trace lacks say so instead of passing silently.
    not_run = {r.rule_id: r.reason for r in result.runs if not r.ran}
    assert set(not_run) == {"unknown-tool", "unconfirmed-action", "forbidden-promise", "budget-exceeded"}
    assert all(not_run.values())


def test_the_claim_in_any_later_message_fires_not_only_the_last() -> None:
    t = Trace.model_validate({"id": "t", "steps": [
        {"id": "t1", "type": "tool", "name": "issue_refund", "status": "error"},
        {"id": "l1", "type": "llm", "output": {"role": "assistant", "content": "Refund issued! One more thing:",
                                              "tool_calls": [{"id": "c", "name": "note", "arguments": {}}]}},
        {"id": "l2", "type": "llm", "output": {"role": "assistant", "content": "Anything else?"}}]})
    [f] = success_after_tool_error(t)[0]
    assert f.evidence == ["t1", "l1"] and f.quote == "Refund issued!"


def test_a_claim_kept_only_in_a_later_calls_history_fires() -> None:
    t = Trace.model_validate({"id": "t", "steps": [
        {"id": "t1", "type": "tool", "name": "issue_refund", "tool_call_id": "c1", "status": "error"},
        {"id": "l2", "type": "llm", "messages": [
            {"role": "user", "content": "an older turn: Your refund has been processed."},
            {"role": "tool", "tool_call_id": "c1", "content": "denied"},
            {"role": "assistant", "content": "Your refund has been processed."},
            {"role": "user", "content": "thanks"}],
         "output": {"role": "assistant", "content": "You're welcome."}}]})
    [f] = success_after_tool_error(t)[0]
    assert f.evidence == ["t1", "l2"] and f.quote == "Your refund has been processed."


def test_a_claim_about_another_action_does_not_fire() -> None:
    findings, run = success_after_tool_error(trace({"status": "error"}, "Your subscription has been canceled."))
    assert findings == [] and run.ran


def test_failure_when_makes_a_result_a_failure_for_the_headline_rule() -> None:
    cfg = parse_config({"tools": {"issue_refund": {"failure_when": {"status": ["declined", "failed"]}}}})
    declined = trace({"status": "ok", "result": {"status": "Declined"}}, "Your refund has been processed.")
    assert [f.rule_id for f in run_rules(declined).findings] == ["usage-missing"]
    found = [f for f in run_rules(declined, cfg).findings if f.rule_id != "usage-missing"]
    assert sorted(f.rule_id for f in found) == ["success-after-tool-error", "tool-error"]
    assert found[0].data["error"] == 'result status = "Declined"'


@pytest.mark.parametrize(
    "result,conditions,matches",
    [
        ({"status": "declined"}, [{"status": "declined"}], True),
        ({"status": "ok"}, [{"status": "declined"}, {"status": "ok"}], True),
        ({"status": "declined", "code": 7}, [{"status": "declined", "code": 8}], False),
        ({"error": {"code": "card_declined"}}, [{"error.code": "card_declined"}], True),
        ({"ok": False}, [{"ok": False}], True),
        ({"ok": 0}, [{"ok": False}], False),
        ('{"status": "failed"}', [{"status": ["declined", "failed"]}], True),
        ("declined", [{"status": "declined"}], False),
        ({"status": "declined"}, [{}], False),
    ],
)
def test_failure_when_matching(result: Any, conditions: list[dict[str, Any]], matches: bool) -> None:
    assert (failure_when_match(result, conditions) is not None) is matches


def test_severity_and_switches_from_the_config() -> None:
    cfg = parse_config({"rules": {"tool-error": {"enabled": False}, "usage-missing": {"enabled": False},
                                  "success-after-tool-error": {"severity": "warning"}}})
    result = run_rules(trace({"status": "error"}, "Your refund has been processed."), cfg)
    assert [(f.rule_id, f.severity) for f in result.findings] == [("success-after-tool-error", "warning")]
    [off] = [r for r in result.runs if r.rule_id == "tool-error"]
    assert not off.ran and off.reason == "disabled in the configuration"


def test_a_rule_that_raises_is_recorded_as_not_run(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(trace: Trace, ctx: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setitem(RULES, "usage-missing", dataclasses.replace(RULES["usage-missing"], fn=boom))
    result = run_rules(trace({"status": "error"}))
    [run] = [r for r in result.runs if r.rule_id == "usage-missing"]
    assert not run.ran and run.reason == "the rule failed: RuntimeError: bug"
    assert any(f.rule_id == "success-after-tool-error" for f in result.findings)


def test_using_config_applies_where_no_config_is_passed() -> None:
    cfg = parse_config({"rules": {"success-after-tool-error": {"enabled": False}}})
    t = trace({"status": "error"}, "Your refund has been processed.")
    with using_config(cfg):
        assert [f.rule_id for f in run_rules(t).findings] == ["tool-error", "usage-missing"]
    assert [f.rule_id for f in run_rules(t).findings] == ["success-after-tool-error", "tool-error", "usage-missing"]



FRAGMENTS = ["ignore all", "previous instructions", "instructions", "SYSTEM", ": do it", "override", "You are now",
             "in developer mode", "\n", " ", "system:", "[INST]", "[/inst]", "<</SYS>>", "<|im_start|>",
             "new instructions:", "Reveal your", "system prompt", "# ", "[", "<", "Ignore ALL previous", "rules",
             "fine text", ".", "admin override", "print the", "hidden instructions", "DAN", "now"]


@given(st.lists(st.sampled_from(FRAGMENTS), max_size=8).map("".join))
@settings(max_examples=500, deadline=None)
def test_every_built_in_injection_match_holds_one_of_the_keywords(text: str) -> None:
    from store.rules import INJECTION_KEYWORDS, INJECTION_PATTERNS

    # prompt-injection skips the built-in patterns for ASCII text without a keyword: none of them may match there.
    if any(re.search(p, text, re.IGNORECASE) for p in INJECTION_PATTERNS):
        assert any(k in text.lower() for k in INJECTION_KEYWORDS), text
