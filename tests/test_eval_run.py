"""The offline eval runner: matching cases to traces by request, scoring every assertion type, gates, records."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from sample_traces import generate
from store.config import Config, parse_config
from store.db import Store
from store.eval_run import (
    EvalRunError,
    Rate,
    derive,
    load_cases_for_run,
    normalise,
    run_evals,
    score_trace,
)
from store.evals import build_case, case_yaml, promote
from store.importers import ingest_paths
from store.models import Assertion, EvalCase, Trace
from tests.conftest import make_trace

SAMPLES = Path(generate.__file__).with_name("support_agent.jsonl")
HONEST = ("I'm sorry, I couldn't process the refund: the request was refused. Would you like me to open a support "
          "ticket so our billing team can look at it?")


def honest(seed: dict[str, Any], trace_id: str = "trc_honest", version: str = "v6") -> dict[str, Any]:
    """The seed's request handled honestly: same calls, same refusal, an answer that says so."""
    t = copy.deepcopy(seed)
    t["id"] = trace_id
    t["prompt"] = {"name": "support_agent", "version": version}
    t["output"] = t["steps"][3]["output"]["content"] = HONEST
    return t


def stored_with(tmp_path: Path, *traces: dict[str, Any]) -> Store:
    s = Store(tmp_path / "s.db")
    s.insert_traces([Trace.model_validate(t) for t in traces])
    return s


def seed_case(store: Store) -> EvalCase:
    return build_case(store.get_trace("trc_7J4k9"))


# ------------------------------------------------------------------------------------------------ the run


def test_the_seed_case_fails_on_its_version_and_passes_on_an_honest_one(tmp_path: Path, seed: dict) -> None:
    with stored_with(tmp_path, seed, honest(seed)) as s:
        case = seed_case(s)
        report = run_evals(s, "v7", "v6", cases=[case])
    [cand] = report.results_for("v7")
    [base] = report.results_for("v6")
    assert (cand.status, cand.trace_id, cand.traces) == ("fail", "trc_7J4k9", ["trc_7J4k9"])
    assert "must not claim the refund succeeded: it does: \"I've canceled your subscription and processed the " \
           "refund.\"" in cand.failed
    assert any(f.startswith("must offer a support ticket: the answer has none of") for f in cand.failed)
    assert any(f.startswith("no finding of rule success-after-tool-error: The assistant claims issue_refund")
               for f in cand.failed)
    assert (base.status, base.trace_id, base.failed) == ("pass", "trc_honest", [])
    [group] = report.groups
    assert (group.group, group.cases, group.gate) == ("Tool failure handling", 1, 0.9)
    assert group.candidate == Rate(passed=0, run=1, not_run=0) and group.baseline == Rate(passed=1, run=1)
    assert not group.passed and "worse than the baseline" in group.note
    assert not report.passed


def test_an_unmatched_case_is_not_run_never_passed(tmp_path: Path, seed: dict) -> None:
    other = make_trace(1, "v8")  # another request entirely
    with stored_with(tmp_path, seed, other) as s:
        report = run_evals(s, "v8", cases=[seed_case(s)])
    [r] = report.results
    assert (r.status, r.trace_id, r.reason) == ("not run", None, "no trace of v8 was asked the case's request")
    [g] = report.groups
    assert g.candidate == Rate(passed=0, run=0, not_run=1) and g.candidate.rate is None
    assert not g.passed and g.note.startswith("not run")
    assert not report.passed  # nothing scored is no pass


def test_every_matching_trace_is_scored_and_all_must_pass(tmp_path: Path, seed: dict) -> None:
    again = honest(seed, "trc_again", "v7")
    with stored_with(tmp_path, seed, again) as s:
        report = run_evals(s, "v7", cases=[seed_case(s)])
    [r] = report.results
    assert sorted(r.traces) == ["trc_7J4k9", "trc_again"] and r.status == "fail"
    assert list(r.failed_by_trace) == ["trc_7J4k9"] and r.trace_id == "trc_7J4k9"
    assert all(f.startswith("trc_7J4k9: ") for f in r.failed)  # with several traces, each says which
    assert r.answers == {"trc_7J4k9": seed["output"]}


def test_requests_match_masked_case_folded_and_without_placeholder_numbers(tmp_path: Path, seed: dict) -> None:
    config = parse_config({"masking": {"patterns": [r"cus_\w+"]}})
    asked = "Refund  cus_8129 please, mail me at ana@example.com"
    seed["steps"][0]["messages"][1]["content"] = asked
    with stored_with(tmp_path, seed) as s:
        case = seed_case(s)
        # The case was written with other placeholder numbers (masked in another order) and other spacing.
        case.input[-1]["content"] = "REFUND <ID_3> please,\nmail me at <EMAIL_2>"
        assert normalise(asked, config) == normalise(case.input[-1]["content"], config)
        assert normalise(asked, config) == "refund <id> please, mail me at <email>"
        [r] = run_evals(s, "v7", cases=[case], config=config, record=False).results
        assert r.traces == ["trc_7J4k9"]
        # Without the pattern the customer ID is not masked on the trace's side: a different request.
        [r] = run_evals(s, "v7", cases=[case], config=Config(), record=False).results
        assert r.status == "not run"


def test_a_trace_of_another_prompt_with_the_same_request_is_not_matched(tmp_path: Path, seed: dict) -> None:
    other = honest(seed, "trc_billing", "v7")
    other["prompt"] = {"name": "billing_bot", "version": "v7"}
    with stored_with(tmp_path, seed, other) as s:
        [r] = run_evals(s, "v7", cases=[seed_case(s)], record=False).results
        assert r.traces == ["trc_7J4k9"]
        # The case is support_agent's: out of scope for billing_bot, neither run nor counted as "not run".
        assert run_evals(s, "billing_bot@v7", cases=[seed_case(s)], record=False).results == []


def test_results_are_recorded_for_each_version(tmp_path: Path, seed: dict) -> None:
    with stored_with(tmp_path, seed, honest(seed)) as s:
        case = seed_case(s)
        report = run_evals(s, "support_agent@v7", "v6", cases=[case])
        assert report.run_id is not None
        rows = {r.prompt_version: r for r in s.last_eval_results(case.id)}
        assert set(rows) == {"v7", "v6"}
        assert (rows["v7"].status, rows["v7"].trace_id, rows["v7"].prompt_name) == ("fail", "trc_7J4k9",
                                                                                   "support_agent")
        assert rows["v7"].data["failed"] and rows["v6"].status == "pass"
        assert s.eval_pass_rates() == {("support_agent", "v7"): (0, 1), ("support_agent", "v6"): (1, 1)}
        run_evals(s, "v8", cases=[case])  # not run on v8: recorded, but not counted as run
        assert s.eval_pass_rates()[("support_agent", "v7")] == (0, 1)
        assert ("support_agent", "v8") not in s.eval_pass_rates()
        assert {r.prompt_version: r.status for r in s.last_eval_results(case.id)}["v8"] == "not run"
        run_evals(s, "v7", cases=[case], record=False)
        assert len(s.last_eval_results(case.id)) == 3


def test_gates_and_required_groups_come_from_the_config(tmp_path: Path, seed: dict) -> None:
    golden = make_trace(1, "v7")
    with stored_with(tmp_path, seed, golden) as s:
        failing = seed_case(s)
        passing = build_case(s.get_trace("trc_t0001"))
        assert passing.group == "Regressions"
        cases = [failing, passing]
        # Default: every group is required, so the failing group fails the run.
        report = run_evals(s, "v7", cases=cases, record=False)
        assert [(g.group, g.passed) for g in report.groups] == [("Tool failure handling", False),
                                                                 ("Regressions", True)]
        assert not report.passed
        only = parse_config({"evals": {"required": ["Regressions"]}})
        assert run_evals(s, "v7", cases=cases, config=only, record=False).passed
        lenient = parse_config({"evals": {"gates": {"Tool failure handling": 0.0}}})
        report = run_evals(s, "v7", cases=cases, config=lenient, record=False)
        assert report.groups[0].gate == 0.0 and report.passed
        # A required group without cases cannot pass.
        ghost = parse_config({"evals": {"required": ["Regressions", "Prompt injection"]}})
        report = run_evals(s, "v7", cases=cases, config=ghost, record=False)
        assert report.groups[-1].group == "Prompt injection" and report.groups[-1].note == "no cases"
        assert not report.passed


def test_no_cases_is_no_pass(tmp_path: Path, seed: dict) -> None:
    with stored_with(tmp_path, seed) as s:
        report = run_evals(s, "v7", cases=[])
    assert report.groups == [] and not report.passed


# ------------------------------------------------------------------------------------------------ replay runs


def test_a_replay_run_reads_traces_from_a_file_and_runs_the_rules_on_them(tmp_path: Path, seed: dict) -> None:
    with stored_with(tmp_path, seed) as s:
        case = seed_case(s)
        good = honest(seed, "trc_replay", "v8")
        path = tmp_path / "replay.jsonl"
        path.write_text(json.dumps(good) + "\n", encoding="utf-8")
        report = run_evals(s, "v8", "v7", cases=[case], traces_path=path)
        assert [(r.version, r.status, r.trace_id) for r in report.results] == [
            ("v8", "pass", "trc_replay"), ("v7", "fail", "trc_7J4k9")]
        assert report.passed and report.traces_path == str(path)
        assert s.count_traces() == 1  # a replay reads the file; it stores nothing
        # The rules run on the file's traces (no stored findings there): a false claim fails no-finding.
        lying = honest(seed, "trc_lying", "v8")
        lying["output"] = lying["steps"][3]["output"]["content"] = "Your refund has been processed; ticket 12."
        path.write_text(json.dumps(lying) + "\n", encoding="utf-8")
        [r] = run_evals(s, "v8", cases=[case], traces_path=path, record=False).results
        assert "no finding of rule success-after-tool-error: The assistant claims issue_refund succeeded, but " \
               "it failed (permission_denied)." in r.failed
        # Without a version every trace in the file is the candidate's, labelled by the file.
        report = run_evals(s, None, cases=[case], traces_path=path)
        assert report.candidate == str(path) and report.results[0].traces == ["trc_lying"]
        assert {r.prompt_version for r in s.last_eval_results(case.id)} == {"v8", "v7"}  # no version: not kept


def test_an_unreadable_replay_file_names_the_file(tmp_path: Path, seed: dict) -> None:
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"\x00\x01garbage")
    with stored_with(tmp_path, seed) as s, pytest.raises(EvalRunError, match="bad.bin"):
        run_evals(s, "v8", cases=[seed_case(s)], traces_path=bad)


# ------------------------------------------------------------------------------------------------ case sources


def test_the_yaml_files_are_the_source_when_there_are_any(tmp_path: Path, seed: dict) -> None:
    with stored_with(tmp_path, seed, make_trace(1, "v7")) as s:
        made = promote(s, "trc_7J4k9", tmp_path / "evals")
        cases, source = load_cases_for_run(s, tmp_path / "nowhere")
        assert [c.id for c in cases] == [made.case_id] and source == "the store"
        edited = seed_case(s).model_copy(update={"id": "evc_edited", "name": "edited in git"})
        (tmp_path / "evals" / "tool-failure-handling" / f"{made.case_id}.yaml").write_text(
            case_yaml(edited), encoding="utf-8")
        promote(s, "trc_t0001", tmp_path / "other")  # in the store, not in this evals/ folder
        cases, source = load_cases_for_run(s, tmp_path / "evals")
        assert [(c.id, c.name) for c in cases] == [("evc_edited", "edited in git")]
        assert source == f"{tmp_path / 'evals'}/"


# ------------------------------------------------------------------------------------------------ assertions


def judge(trace: dict[str, Any], *assertions: Assertion, config: Config | None = None,
          tools: list[Any] | None = None) -> tuple[bool, list[str]]:
    case = EvalCase(id="evc_t", group="g", name="n", source_trace={"id": "x"}, input=[], tool_results=[],
                    expected="", assertions=list(assertions), content_hash="h", created_at="",
                    tools=tools or [])
    return score_trace(case, derive(Trace.model_validate(trace), config or Config()), config=config)


def a(kind: str, value: Any = None, **options: Any) -> Assertion:
    return Assertion(type=kind, description=f"{kind} {value}", value=value, options=options)


@pytest.mark.parametrize(("assertion", "passes"), [
    (a("contains", ["ticket", "refund"], any=True), True),
    (a("contains", ["ticket", "refund"], any=False), False),  # "ticket" is not in the answer
    (a("contains", ["PROCESSED"]), False),  # case-sensitive unless asked
    (a("contains", ["PROCESSED"], case_insensitive=True), True),
    (a("contains", [r"process\w+ the ref"], regex=True), True),
    (a("not-contains", [r"\bprocessed\b"], regex=True), False),
    (a("not-contains", ["ticket"]), True),
    (a("not-claims-success", "issue_refund"), False),
    (a("not-claims-success", "cancel"), False),  # no cancel tool was called: nothing backs the claim
    (a("not-claims-success", "delete_account"), True),
])
def test_text_assertions_on_the_final_answer(seed: dict, assertion: Assertion, passes: bool) -> None:
    ok, failed = judge(seed, assertion)
    assert ok is passes, failed
    assert (failed == []) is passes


def test_a_claim_a_successful_call_backs_is_true_not_a_failure(seed: dict) -> None:
    seed["steps"][2].update(status="ok", error=None, result={"refund_id": "re_1"})
    assert judge(seed, a("not-claims-success", "issue_refund")) == (True, [])
    # get_subscription_plan succeeded, but it is not the cancellation the answer claims.
    ok, failed = judge(seed, a("not-claims-success", "cancel_subscription"))
    assert not ok and "it does: \"I've canceled" in failed[0]


def test_text_failures_say_what_was_missing_or_found(seed: dict) -> None:
    _, failed = judge(seed, a("contains", ["ticket", "sorry"], any=True),
                      a("contains", ["ticket", "refund"], any=False), a("not-contains", ["refund"]))
    assert failed == ['contains [\'ticket\', \'sorry\']: the answer has none of "ticket", "sorry"',
                      'contains [\'ticket\', \'refund\']: the answer lacks "ticket"',
                      'not-contains [\'refund\']: the answer has "refund"']


def test_tool_call_assertions(seed: dict) -> None:
    assert judge(seed, a("must-call", "issue_refund"))[0]
    assert judge(seed, a("must-call", "issue_refund", arguments={"amount": "last_charge"}))[0]  # a subset
    assert judge(seed, a("must-call", {"tool": "issue_refund", "arguments": '{"customer_id": "cus_8129"}'}))[0]
    ok, failed = judge(seed, a("must-call", "issue_refund", arguments={"amount": 10}))
    assert not ok and "issue_refund was called, never with the arguments {\"amount\": 10}" in failed[0]
    ok, failed = judge(seed, a("must-call", "create_ticket"))
    assert not ok and failed[0].endswith("create_ticket was not called")
    assert judge(seed, a("must-not-call", "cancel_subscription"))[0]
    ok, failed = judge(seed, a("must-not-call", "issue_refund"))
    assert not ok and failed[0].endswith("issue_refund was called 1 time")


def test_argument_subsets_match_masked_values(seed: dict) -> None:
    config = parse_config({"masking": {"patterns": [r"cus_\w+"]}})
    check = a("must-call", "issue_refund", arguments={"customer_id": "<ID_7>"})
    assert judge(seed, check, config=config)[0]
    assert not judge(seed, check)[0]  # unmasked, cus_8129 is not a placeholder


def test_no_finding_uses_the_findings_and_fails_when_the_rule_could_not_run(seed: dict) -> None:
    assert not judge(seed, a("no-finding", "success-after-tool-error"))[0]
    ok, failed = judge(seed, a("no-finding", "*"))
    assert not ok and failed[0].endswith("error findings: success-after-tool-error, unbacked-action-claim")
    assert judge(seed, a("no-finding", "retry-loop"))[0]
    ok, failed = judge(seed, a("no-finding", "budget-exceeded"))  # no budget configured: not judged
    assert not ok and "rule budget-exceeded could not run: no budget configured" in failed[0]
    ok, failed = judge(seed, a("no-finding", "no-such-rule"))
    assert not ok and "(no such rule)" in failed[0]


def test_limits_on_cost_latency_tokens_and_calls(seed: dict) -> None:
    assert judge(seed, a("max-cost", 1.0), a("max-latency-seconds", 4), a("max-input-tokens", 5962),
                 a("max-output-tokens", 202), a("max-tokens", 6164), a("max-model-calls", 2),
                 a("max-tool-calls", 2)) == (True, [])
    ok, failed = judge(seed, a("max-cost", 0.0001), a("max-latency-seconds", 3), a("max-input-tokens", 5961),
                       a("max-tokens", 6163), a("max-model-calls", 1), a("max-tool-calls", 1))
    assert not ok and len(failed) == 6
    assert failed[1].endswith("latency 3.72 s > 3 s") and failed[2].endswith("input tokens 5,962 > 5,961")
    assert failed[4].endswith("2 model calls > 1")


def test_unknown_cost_or_usage_fails_as_unknown_never_passes(seed: dict) -> None:
    seed["steps"][3]["model"] = "acme-finetune-2"  # no price for it: the trace's cost is unknown
    del seed["steps"][3]["usage"]
    ok, failed = judge(seed, a("max-cost", 100.0), a("max-output-tokens", 10_000), a("max-latency-seconds", 100))
    assert not ok and len(failed) == 2
    assert failed[0] == "max-cost 100.0: cannot be judged: the cost is unknown (1 model call without a known cost)"
    assert failed[1] == "max-output-tokens 10000: cannot be judged: output tokens unknown (1 model call without usage)"
    # A known part already over the limit is over, whatever the rest.
    ok, failed = judge(seed, a("max-input-tokens", 100))
    assert not ok and failed[0].endswith("input tokens 2,842+ > 100")
    del seed["steps"][0]["started_at"], seed["steps"][3]["ended_at"], seed["started_at"], seed["ended_at"]
    for st in seed["steps"]:
        st.pop("started_at", None)
        st.pop("ended_at", None)
    ok, failed = judge(seed, a("max-latency-seconds", 100))
    assert not ok and failed[0].endswith("cannot be judged: the latency is unknown")


def test_repeated_calls(seed: dict) -> None:
    again = copy.deepcopy(seed["steps"][2])
    seed["steps"].insert(3, {**again, "id": "s3b", "tool_call_id": None})
    seed["steps"].insert(4, {**again, "id": "s3c", "tool_call_id": None})
    assert judge(seed, a("max-repeated-calls", "issue_refund", max=3))[0]
    ok, failed = judge(seed, a("max-repeated-calls", "issue_refund", max=2))
    assert not ok and failed[0].endswith("issue_refund was called 3 times in a row with the same arguments")
    assert judge(seed, a("max-repeated-calls", "get_subscription_plan", max=1))[0]


def test_confirmation_before_a_call(seed: dict) -> None:
    seed["steps"][2]["name"] = "cancel_subscription"
    seed["steps"][0]["output"]["tool_calls"][1]["name"] = "cancel_subscription"
    ok, failed = judge(seed, a("must-confirm-before", "cancel_subscription"))
    assert not ok and "needs the user's confirmation" in failed[0]
    seed["steps"][0]["messages"] += [{"role": "assistant", "content": "Cancel your Pro plan now, are you sure?"},
                                     {"role": "user", "content": "Yes, go ahead."}]
    assert judge(seed, a("must-confirm-before", "cancel_subscription")) == (True, [])
    assert judge(seed, a("must-confirm-before", "delete_account")) == (True, [])  # never called


def test_valid_arguments_against_the_cases_schema(seed: dict) -> None:
    tools = [{"type": "function", "function": {"name": "issue_refund", "parameters": {
        "type": "object", "properties": {"amount": {"type": "number"}}, "required": ["amount"]}}}]
    ok, failed = judge(seed, a("valid-arguments", "issue_refund"), tools=tools)
    assert not ok and "amount: 'last_charge' is not of type 'number'" in failed[0]
    assert judge(seed, a("valid-arguments", "issue_refund"))[0]  # no schema: a JSON object is enough
    seed["steps"][2]["arguments"] = "{not json"
    seed["steps"][0]["output"]["tool_calls"][1]["arguments"] = "{not json"
    ok, failed = judge(seed, a("valid-arguments", "issue_refund"))
    assert not ok and "not valid JSON" in failed[0]


def test_an_unknown_assertion_type_or_an_empty_case_never_passes(seed: dict) -> None:
    ok, failed = judge(seed, a("sounds-nice"))
    assert not ok and failed == ["sounds-nice None: cannot be judged: unknown assertion type 'sounds-nice'"]
    for broken in (a("not-contains", ["(unclosed"], regex=True), a("max-cost", "cheap")):
        ok, failed = judge(seed, broken)  # a hand-edited case file: judged as not passing, never a crash
        assert not ok and ("not a regular expression" in failed[0] or "is not a number" in failed[0])
    assert judge(seed) == (False, ["the case has no assertions: nothing to judge"])
    seed.pop("output")
    seed["steps"][3]["output"] = {"role": "assistant", "content": None}
    ok, failed = judge(seed, a("not-contains", ["x"]))
    assert not ok and failed[0].endswith("no final answer recorded")


# ------------------------------------------------------------------------------------------------ the demo


def test_the_demo_gives_real_results(tmp_path: Path) -> None:
    """With the sample traces: the seed's case fails on v7 (two traces asked its request) and passes on v6."""
    with Store(tmp_path / "demo.db") as s:
        ingest_paths(s, [SAMPLES])
        promote(s, "trc_7J4k9", tmp_path / "evals")
        cases, _ = load_cases_for_run(s, tmp_path / "evals")
        report = run_evals(s, "v7", "v6", cases=cases)
    [cand] = report.results_for("v7")
    [base] = report.results_for("v6")
    assert cand.status == "fail" and len(cand.traces) == 2 and "trc_7J4k9" in cand.traces
    assert base.status == "pass" and len(base.traces) == 1
    assert not report.passed
