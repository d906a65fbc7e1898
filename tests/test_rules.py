"""The headline rule: success claimed after a tool error, from structured failure signals only."""

from __future__ import annotations

from typing import Any

import pytest

from store.models import Trace
from store.rules import claimed_success, run_rules, success_after_tool_error

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
    assert [r.rule_id for r in result.runs] == ["success-after-tool-error"]
    assert len(result.findings) == 1
