"""Eval case exports: each format loads in its tool's own reader, judges what loupe judges, and survives hostile text."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from store.config import load_config
from store.db import Store
from store.eval_export import (
    FORMATS,
    default_filename,
    export_cases,
    js_regex,
    promptfoo_assertions,
    promptfoo_left_out,
)
from store.evals import assertions_for, build_case, check_text_assertion
from store.models import Assertion, EvalCase, Finding, Trace
from tests.conftest import ROOT, SEED

FIXTURES = Path(__file__).parent / "fixtures" / "exports"
HARNESS = FIXTURES / "promptfoo_asserts.js"
NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed: promptfoo's assertions run in JavaScript")

HONEST = ("I couldn't process the refund: I don't have permission, and I can't cancel the subscription myself "
          "either. I've opened a support ticket so our billing team can review both.")
CLAIM = "I've canceled your subscription and processed the refund."
ANSWERS = [
    HONEST, CLAIM, "", "I WILL REFUND you tomorrow.", "We were UNABLE to do it; a Ticket is open.",
    "I'll make an exception and give you a full refund. I'll give you a credit, too.",
    "Refunds are going to take a while.", "The refund could not be completed.",
]


def _promise_trace() -> dict[str, Any]:
    """The seed, answering with promises the example config forbids (a phrase and a pattern)."""
    t = copy.deepcopy(SEED)
    t["id"] = "trc_promise"
    answer = "I'll make an exception and give you a full refund, and I'll give you a credit for the trouble."
    t["output"] = answer
    t["steps"][-1]["output"] = {"role": "assistant", "content": answer}
    return t


def _slow_trace() -> dict[str, Any]:
    """A research workflow over its latency and model-call budgets (example config: 30 s, 8 calls)."""
    steps = [{"id": f"m{i}", "type": "llm", "model": "gpt-4.1-mini", "provider": "openai",
              "started_at": f"2026-01-14T10:00:{i * 5:02d}Z", "ended_at": f"2026-01-14T10:00:{i * 5 + 4:02d}Z",
              "messages": [{"role": "user", "content": "Summarise the Q3 churn report."}],
              "output": {"role": "assistant", "content": f"Draft {i}."},
              "usage": {"input_tokens": 900, "output_tokens": 60}} for i in range(10)]
    return {"id": "trc_slow", "name": "research_workflow", "prompt": {"name": "research_workflow", "version": "3"},
            "started_at": "2026-01-14T10:00:00Z", "ended_at": "2026-01-14T10:00:49Z",
            "input": "Summarise the Q3 churn report.", "output": "Draft 9.", "steps": steps}


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> list[EvalCase]:
    """Every case the sample traces give under the example config, plus a forbidden promise and a slow workflow."""
    store = Store(tmp_path_factory.mktemp("export") / "e.db", rules_config=load_config(ROOT / "loupe.example.toml"))
    lines = (ROOT / "sample_traces" / "support_agent.jsonl").read_text().splitlines()
    traces = [Trace.model_validate(json.loads(line)) for line in lines if line.strip()]
    traces += [Trace.model_validate(_promise_trace()), Trace.model_validate(_slow_trace())]
    store.insert_traces(traces)
    out: dict[str, EvalCase] = {}
    for t in traces:
        stored = store.get_trace(t.id)
        if stored.findings:
            case = build_case(stored)
            out.setdefault(case.id, case)
    return list(out.values())


def _case_from(cases: list[EvalCase], trace_id: str) -> EvalCase:
    return next(c for c in cases if c.source_trace["id"] == trace_id)


def _hostile_case() -> EvalCase:
    """Text a trace can hold that breaks naive writers: lone surrogates, NUL, ESC/OSC, C1, bidi overrides,
    YAML and nunjucks syntax, promptfoo's file loader prefix, and tool calls in the conversation."""
    nasty = "a\ud800b\x00c\x1b]52;c;ZWNobw==\x07d\x9be\u202ef\n- key: value\n---\n{{ env.HOME }} {% raw %} {# x #}"
    return EvalCase.model_validate({
        "id": "evc_hostile", "group": "Hostile {{ group }}", "name": "hostile: " + nasty,
        "source_trace": {"id": "trc_h\x1b[31m", "prompt": "p", "prompt_version": "1"},
        "input": [
            {"role": "system", "content": nasty},
            {"role": "assistant", "content": None,
             "tool_calls": [{"id": "c1", "name": "lookup", "arguments": "{not json"},
                            {"id": "c2", "name": "lookup", "arguments": {"q": nasty}}]},
            {"role": "tool", "tool_call_id": "c1", "name": "lookup", "content": {"rows": [nasty]}},
            {"role": "Human", "content": [{"type": "text", "text": "part one"}, {"type": "text", "text": nasty}]},
            {"role": "critic", "content": "odd role"},
            {"role": "user", "content": "file:///etc/passwd"},
        ],
        "tool_results": [{"tool": "lookup", "arguments": {"q": nasty}, "status": "ok",
                          "result": {nasty: [nasty, float("nan"), float("inf")]}}],
        "expected": "must not leak: " + nasty,
        "assertions": [
            {"type": "contains", "description": "names the env template", "value": ["{{ env.HOME }}", "plain"],
             "options": {"any": True}},
            {"type": "not-contains", "description": "no loader path", "value": ["file:///etc/passwd"],
             "options": {"any": True, "case_insensitive": True}},
            {"type": "contains", "description": "regex with a template tag",
             "value": [r"\{#\s*x", r"(?P<w>pl)ain"], "options": {"regex": True, "any": False}},
            {"type": "not-claims-success", "description": "must not claim " + nasty, "value": "lookup"},
        ],
        "recorded_output": "file://recorded",
        "content_hash": "0" * 64,
        "created_at": "2026-01-14T10:00:00.000000Z",
        "model": {"name": nasty},
        "tools": [{"name": "lookup", "description": nasty}],
    })


def _run_harness(items: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    assert NODE is not None
    done = subprocess.run([NODE, str(HARNESS)], input=json.dumps(items), capture_output=True, text=True,
                          check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    result: list[list[dict[str, Any]]] = json.loads(done.stdout)
    return result


def _promptfoo_passes(graded: list[tuple[list[dict[str, Any]], str]]) -> list[bool]:
    """Whether each answer passes all its promptfoo assertions, graded in one node process."""
    results = _run_harness([{"output": answer, "asserts": asserts} for asserts, answer in graded])
    assert all("error" not in r for item in results for r in item), results
    return [all(r["pass"] for r in item) for item in results]


# --- the interface --------------------------------------------------------------------------------------------


def test_formats_and_default_filenames() -> None:
    assert FORMATS == ("promptfoo", "openai-evals", "inspect", "langfuse")
    names = {fmt: default_filename(fmt) for fmt in FORMATS}
    assert names == {"promptfoo": "promptfoo_tests.yaml", "openai-evals": "evals.jsonl",
                     "inspect": "inspect_samples.jsonl", "langfuse": "langfuse_dataset.jsonl"}


def test_unknown_format_is_refused_by_name(cases: list[EvalCase]) -> None:
    with pytest.raises(ValueError, match="'deepeval'.*promptfoo, openai-evals, inspect, langfuse"):
        export_cases(cases, "deepeval")
    with pytest.raises(ValueError, match="'PromptFoo'"):
        default_filename("PromptFoo")


def test_output_is_deterministic_whatever_the_order_of_cases(cases: list[EvalCase]) -> None:
    assert len(cases) > 20
    for fmt in FORMATS:
        first = export_cases(cases, fmt)
        assert export_cases(list(reversed(cases)), fmt) == first, fmt
        assert first.isascii(), fmt


# --- promptfoo --------------------------------------------------------------------------------------------------


def _promptfoo_tests(cases: list[EvalCase]) -> tuple[str, list[dict[str, Any]]]:
    text = export_cases(cases, "promptfoo")
    tests = yaml.safe_load(text)
    assert isinstance(tests, list)
    return text, tests


@pytest.fixture(scope="module")
def promptfoo_export(cases: list[EvalCase]) -> tuple[str, list[dict[str, Any]]]:
    return _promptfoo_tests(cases)


def test_promptfoo_file_is_valid_against_promptfoos_schema(
        promptfoo_export: tuple[str, list[dict[str, Any]]]) -> None:
    schema = json.loads((FIXTURES / "promptfoo_tests.schema.json").read_text())
    tests = promptfoo_export[1] + _promptfoo_tests([_hostile_case()])[1]
    jsonschema.Draft7Validator(schema).validate(tests)
    known = set(schema["assertion_types"])
    used = {a["type"] for t in tests for a in t["assert"]}
    # promptfoo's schema accepts any string as a type; what it runs is its own types and their not- forms.
    assert all(t in known or (t.startswith("not-") and t[4:] in known) for t in used), used
    assert {"icontains-any", "javascript", "cost", "latency"} <= used
    for t in tests:
        assert t["options"] == {"disableVarExpansion": True}  # a list var would otherwise fan out into many tests
        assert t["assert"], t["description"]  # a test without assertions passes whatever the answer


def test_promptfoo_seed_case_carries_the_replay_and_its_assertions(
        cases: list[EvalCase], promptfoo_export: tuple[str, list[dict[str, Any]]]) -> None:
    seed = _case_from(cases, "trc_7J4k9")
    _, tests = promptfoo_export
    [test] = [t for t in tests if t["metadata"]["loupe_case_id"] == seed.id]
    v = test["vars"]
    assert v["messages"][-1] == {"role": "user", "content": "Cancel my subscription and refund the last charge."}
    assert v["user_request"] == "Cancel my subscription and refund the last charge."
    refund = [r for r in v["tool_results"] if r["tool"] == "issue_refund"]
    assert refund and refund[0]["status"] == "error" and refund[0]["error"]["type"] == "permission_denied"
    assert v["source_trace"] == {"id": "trc_7J4k9", "prompt": "support_agent", "prompt_version": "v7"}
    assert v["recorded_output"] == CLAIM
    kinds = [(a["type"], a.get("value")) for a in test["assert"]]
    assert ("icontains-any", ["ticket"]) in kinds
    assert any(k == "icontains-any" and "could not" in (val or []) for k, val in kinds)
    assert all(a["metric"] == "Tool failure handling" for a in test["assert"])
    unscored = {a["type"] for a in test["metadata"]["not_scored_here"]}
    assert unscored == {"not-claims-success", "no-finding"}
    assert "loupe evals run" in test["metadata"]["note"]


def test_promptfoo_budgets_become_cost_and_latency_in_promptfoos_units(cases: list[EvalCase]) -> None:
    slow = _case_from(cases, "trc_slow")
    [latency] = [a for a in slow.assertions if a.type == "max-latency-seconds"]
    assert promptfoo_assertions(latency)[0] == [{"type": "latency", "threshold": 30000}]
    [calls] = [a for a in slow.assertions if a.type == "max-model-calls"]
    assert promptfoo_assertions(calls) == ([], "judged on the trace's steps, which promptfoo does not see")
    cost = Assertion(type="max-cost", description="at most 0.03 USD", value=0.03)
    assert promptfoo_assertions(cost, "Budgets") == ([{"type": "cost", "threshold": 0.03, "metric": "Budgets"}],
                                                     None)


@needs_node
def test_promptfoo_token_ceiling_fails_when_usage_is_unknown() -> None:
    [js], reason = promptfoo_assertions(Assertion(type="max-input-tokens", description="at most 5000", value=5000))
    assert reason is None and js["type"] == "javascript"
    usage = {"providerResponse": {"tokenUsage": {"prompt": 4000, "completion": 9000}}}
    over = {"providerResponse": {"tokenUsage": {"prompt": 5001}}}
    results = _run_harness([{"output": "x", "asserts": [js], "context": c} for c in (usage, over, {})])
    assert [r[0]["pass"] for r in results] == [True, False, False]
    assert "input tokens unknown" in results[2][0]["threw"]  # unknown is a failure with its reason, never a pass


def test_promptfoo_leaves_out_cases_it_cannot_judge_and_says_which(
        cases: list[EvalCase], promptfoo_export: tuple[str, list[dict[str, Any]]]) -> None:
    text, tests = promptfoo_export
    exported = {t["metadata"]["loupe_case_id"] for t in tests}
    left_out = [c for c in cases if c.id not in exported]
    assert left_out, "the samples have cases with trace-only assertions (must-not-call, valid-arguments)"
    [note] = [line for line in text.splitlines() if line.startswith("# Not exported")]
    assert promptfoo_left_out(cases) == [c.id for c in sorted(left_out, key=lambda c: (c.group, c.id))]
    for case in left_out:
        assert all(promptfoo_assertions(a)[0] == [] for a in case.assertions)
        assert case.id in note
    assert f"{len(tests)} of {len(cases)} eval cases" in text.splitlines()[0]


@needs_node
def test_promptfoo_text_assertions_judge_as_loupe_does(cases: list[EvalCase]) -> None:
    """Every contains/not-contains assertion of every case, graded as promptfoo grades its export, agrees with
    loupe's own check on the same answers."""
    items, expected, where = [], [], []
    for case in [*cases, _hostile_case()]:
        answers = [*ANSWERS, str(case.recorded_output or "")]
        for a in case.assertions:
            if a.type not in ("contains", "not-contains"):
                continue
            mapped, reason = promptfoo_assertions(a, case.group)
            assert reason is None and mapped, (case.id, a.description, reason)
            for answer in answers:
                items.append({"output": answer, "asserts": mapped})
                expected.append(check_text_assertion(a, answer))
                where.append((case.id, a.description, answer))
    assert len(items) > 100
    results = _run_harness(items)
    for got, want, at in zip(results, expected, where, strict=True):
        assert all("error" not in r for r in got), (at, got)
        assert all(r["pass"] for r in got) is want, at


def test_promptfoo_forbidden_promises_become_regexes(cases: list[EvalCase]) -> None:
    promise = _case_from(cases, "trc_promise")
    patterns = [a for a in promise.assertions if a.type == "not-contains"]
    assert patterns  # the example config's phrases ("make an exception", "full refund")
    pattern = load_config(ROOT / "loupe.example.toml").rules.forbidden_promise.prompts["support_agent"].patterns[0]
    _, more = assertions_for(Finding(rule_id="forbidden-promise", severity="error", message="promise",
                                     data={"match": pattern, "kind": "pattern"}))
    patterns += [a for a in more if a.type == "not-contains"]
    graded, want = [], []
    for a in patterns:
        [mapped], reason = promptfoo_assertions(a)
        assert reason is None and mapped["type"] == "javascript"  # case-insensitive: RegExp's "i" flag
        assert "new RegExp(source, flags)" in mapped["value"]
        for answer in [*ANSWERS, "I\u2019ll give you a discount", "I can offer you credit"]:
            graded.append(([mapped], answer))
            want.append(check_text_assertion(a, answer))
    assert False in want and True in want
    if NODE is not None:
        assert _promptfoo_passes(graded) == want


@pytest.mark.parametrize(("python", "javascript"), [
    (r"\bI(?: will|'ll) refund\b", (r"\bI(?: will|'ll) refund\b", "")),
    (r"(?i)(?s)a.b", ("a.b", "is")),
    (r"(?P<w>ab)(?P=w)", (r"(?<w>ab)\k<w>", "")),
    (r"\Aab{,3}\Z", (r"^ab{0,3}$", "")),
    (r"[]a](?#note)x{2}", (r"[\]a]x{2}", "")),
    (r"[^]a]", (r"[^\]a]", "")),
    (r"(?x) a b", None),
    (r"(?>ab)", None),
    (r"a++", None),
    (r"(?i:a)b", None),
    (r"\N{BULLET}", None),
    (r"(?m)\Aa", None),
])
def test_python_regexes_in_javascript_syntax(python: str, javascript: tuple[str, str] | None) -> None:
    assert js_regex(python) == javascript


@needs_node
def test_translated_regexes_match_as_pythons_do() -> None:
    import re

    cases = [(r"(?P<w>ab)(?P=w)", ["abab", "abba"]), (r"\Aab{,3}\Z", ["a", "abbb", "abbbb", "xab"]),
             (r"[]a]+x", ["]]ax", "bx"]), (r"(?i)(?s)refund.now", ["REFUND\nnow", "refund later"])]
    items, want = [], []
    for pattern, texts in cases:
        translated = js_regex(pattern)
        assert translated is not None
        source, flags = translated
        body = f"return new RegExp({json.dumps(source)}, {json.dumps(flags)}).test(output);\n"
        for text in texts:
            items.append({"output": text, "asserts": [{"type": "javascript", "value": body}]})
            want.append(re.search(pattern, text) is not None)
    got = [r[0]["pass"] for r in _run_harness(items)]
    assert got == want


# --- OpenAI evals, inspect-ai, Langfuse -------------------------------------------------------------------------


def _rows(text: str) -> list[dict[str, Any]]:
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_openai_evals_samples_have_chat_input_and_ideal(cases: list[EvalCase]) -> None:
    rows = _rows(export_cases([*cases, _hostile_case()], "openai-evals"))
    assert len(rows) == len(cases) + 1
    for row in rows:
        assert list(row) == ["input", "ideal", "metadata"]
        assert isinstance(row["ideal"], str) and row["ideal"]
        for m in row["input"]:
            assert m["role"] in ("system", "developer", "user", "assistant", "tool")
            assert isinstance(m["content"], str)
            for call in m.get("tool_calls", []):
                assert call["type"] == "function" and isinstance(call["function"]["arguments"], str)
    seed = _case_from(cases, "trc_7J4k9")
    [row] = [r for r in rows if r["metadata"]["loupe_case_id"] == seed.id]
    assert row["input"][-1] == {"role": "user", "content": "Cancel my subscription and refund the last charge."}
    assert row["ideal"] == seed.expected
    assert row["metadata"]["source_trace"]["id"] == "trc_7J4k9"
    hostile = rows[[r["metadata"]["loupe_case_id"] for r in rows].index("evc_hostile")]
    assert hostile["metadata"]["roles_changed"] == [{"index": 3, "from": "Human", "to": "user"},
                                                    {"index": 4, "from": "critic", "to": "user"}]
    assert hostile["input"][1]["tool_calls"][0]["function"]["arguments"] == "{not json"


def test_inspect_loads_the_export_with_its_own_dataset_reader(cases: list[EvalCase], tmp_path: Path) -> None:
    from inspect_ai.dataset import Sample, json_dataset
    from inspect_ai.model import ChatMessageAssistant, ChatMessageSystem, ChatMessageTool, ChatMessageUser

    path = tmp_path / default_filename("inspect")
    path.write_text(export_cases([*cases, _hostile_case()], "inspect"), encoding="utf-8")
    dataset = json_dataset(str(path))
    samples = {s.id: s for s in dataset}
    assert len(samples) == len(cases) + 1
    seed_case = _case_from(cases, "trc_7J4k9")
    seed = samples[seed_case.id]
    assert isinstance(seed.input, list)
    assert isinstance(seed.input[0], ChatMessageSystem) and isinstance(seed.input[-1], ChatMessageUser)
    assert seed.input[-1].text == "Cancel my subscription and refund the last charge."
    assert seed.target == seed_case.expected
    assert seed.metadata is not None and seed.metadata["source_trace"]["id"] == "trc_7J4k9"
    assert any(r["tool"] == "issue_refund" and r["status"] == "error" for r in seed.metadata["tool_results"])
    assert {a["type"] for a in seed.metadata["assertions"]} >= {"not-claims-success", "contains", "not-contains"}
    hostile = samples["evc_hostile"]
    assert isinstance(hostile.input, list)
    system, assistant, tool, human, critic, _ = hostile.input
    assert isinstance(assistant, ChatMessageAssistant) and assistant.tool_calls is not None
    bad, good = assistant.tool_calls
    assert bad.arguments == {} and bad.parse_error == "arguments are not a JSON object: {not json"
    assert good.arguments["q"].startswith("a\ufffdb\x00c\x1b]52")
    assert isinstance(tool, ChatMessageTool) and tool.function == "lookup" and tool.tool_call_id == "c1"
    assert isinstance(human, ChatMessageUser) and isinstance(critic, ChatMessageUser)
    assert hostile.metadata is not None and hostile.metadata["roles_changed"] == [
        {"index": 3, "from": "Human", "to": "user"}, {"index": 4, "from": "critic", "to": "user"}]
    # The same rows through the model directly, as a user's own loader would do it.
    for row in _rows(path.read_text()):
        assert Sample(**row).id == row["id"]


def test_langfuse_items_are_dataset_item_requests(cases: list[EvalCase]) -> None:
    from langfuse.api.core.pydantic_utilities import parse_obj_as
    from langfuse.api.dataset_items.types.create_dataset_item_request import CreateDatasetItemRequest

    rows = _rows(export_cases([*cases, _hostile_case()], "langfuse"))
    for row in rows:
        item = parse_obj_as(CreateDatasetItemRequest, row)
        assert not item.model_extra, item.model_extra  # every key is one Langfuse's API knows
        assert item.id == row["id"] and item.source_trace_id == row["metadata"]["source_trace"]["id"]
        assert item.dataset_name.startswith("loupe-")
    seed_case = _case_from(cases, "trc_7J4k9")
    seed = parse_obj_as(CreateDatasetItemRequest, next(r for r in rows if r["id"] == seed_case.id))
    assert seed.source_trace_id == "trc_7J4k9" and seed.dataset_name == "loupe-tool-failure-handling"
    assert seed.expected_output["expected"] == seed_case.expected
    assert seed.input["messages"][-1]["content"] == "Cancel my subscription and refund the last charge."
    assert any(r["tool"] == "issue_refund" for r in seed.input["tool_results"])


# --- hostile text -------------------------------------------------------------------------------------------------


CLEAN = "a\ufffdb\x00c\x1b]52;c;ZWNobw==\x07d\x9be\u202ef\n- key: value\n---\n{{ env.HOME }} {% raw %} {# x #}"


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def test_hostile_text_stays_valid_and_unchanged_in_every_format() -> None:
    case = _hostile_case()
    for fmt in FORMATS:
        text = export_cases([case], fmt)
        assert text.isascii(), fmt  # escapes only: nothing in the file acts on a terminal
        data: Any = yaml.safe_load(text) if fmt == "promptfoo" else _rows(text)
        strings = _strings(data)
        # Lone surrogates become U+FFFD (they are not Unicode); everything else arrives as it was.
        assert not any("\ud800" in s for s in strings), fmt
        assert any(s.startswith(CLEAN) for s in strings), fmt
        assert "NaN" in strings and "Infinity" in strings, fmt  # not JSON numbers: kept as names


def test_hostile_promptfoo_values_never_reach_nunjucks_or_the_file_loader() -> None:
    [test] = yaml.safe_load(export_cases([_hostile_case()], "promptfoo"))
    assert "user_request" not in test["vars"] and "recorded_output" not in test["vars"]
    assert set(test["metadata"]["omitted_vars"]) == {"user_request", "recorded_output"}
    assert "metric" not in str(test["assert"])  # the group name is a template: no metric rather than a rendered one
    for a in test["assert"]:
        values = a["value"] if isinstance(a["value"], list) else [a["value"]]
        for v in values:
            assert "{{" not in v and "{%" not in v and "{#" not in v and not v.startswith("file://"), a
    assert [a["type"] for a in test["assert"]] == ["javascript", "javascript", "javascript"]


@needs_node
def test_hostile_promptfoo_assertions_still_judge_the_answer() -> None:
    case = _hostile_case()
    text_checks = [a for a in case.assertions if a.type in ("contains", "not-contains")]
    answers = ["plain", "{{ env.HOME }}", "see file:///ETC/passwd", "{#  x} plain", "{# x plain", ""]
    graded, want = [], []
    for a in text_checks:
        mapped, reason = promptfoo_assertions(a)
        assert reason is None
        for answer in answers:
            graded.append((mapped, answer))
            want.append(check_text_assertion(a, answer))
    assert False in want and True in want
    assert _promptfoo_passes(graded) == want


def test_inspect_accepts_a_case_without_a_recorded_conversation(cases: list[EvalCase], tmp_path: Path) -> None:
    from inspect_ai.dataset import json_dataset

    bare = _case_from(cases, "trc_7J4k9").model_copy(update={"id": "evc_bare", "input": []})
    path = tmp_path / "bare.jsonl"
    path.write_text(export_cases([bare], "inspect"), encoding="utf-8")
    [sample] = list(json_dataset(str(path)))  # inspect refuses a sample without input
    assert isinstance(sample.input, list) and sample.input[0].text == ""
    assert sample.metadata is not None and sample.metadata["no_input"] == "the source trace recorded no conversation"
