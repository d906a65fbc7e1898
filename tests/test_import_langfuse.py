"""The Langfuse importer: two real exports checked against Langfuse's own usage, cost and messages, and broken input.

Usage convention (what the oracle tests compare): Langfuse keeps usage types disjoint, so loupe's input_tokens is
usageDetails "input" plus every input part (input_cached_tokens, input_cache_creation, cache_read_input_tokens...)
and output_tokens is "output" plus every output part (output_reasoning_tokens...), unless the source's own total
shows its input or output already included them. That is also how Langfuse derives inputUsage and outputUsage.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from store.db import Store
from store.importers import detect_format, ingest_paths
from store.importers.base import ImportResult
from store.importers.langfuse import read_langfuse, usage_from_details
from store.models import Trace
from store.pricing import default_pricer
from store.rules import failure_reason
from tests.conftest import REAL, needs_real
from tui.cli import app

LANGFUSE = REAL / "langfuse"
MICROSOFT = LANGFUSE / "microsoft-agent-2025-12-17.trace.json"
PYDANTIC = LANGFUSE / "pydantic-ai-tools-2025-12-04.trace.json"
REAL_EXPORTS = [pytest.param(MICROSOFT, id="microsoft-agent"), pytest.param(PYDANTIC, id="pydantic-ai")]
TYPES = {"GENERATION": "llm", "AGENT": "agent", "TOOL": "tool"}


def read(path: Path) -> tuple[list[Trace], ImportResult]:
    result = ImportResult()
    return list(read_langfuse(path, result)), result


def observations(path: Path) -> list[dict[str, Any]]:
    return list(json.loads(path.read_text(encoding="utf-8"))["observations"])


def generations(path: Path) -> list[dict[str, Any]]:
    return [o for o in observations(path) if o["type"] == "GENERATION"]


def obs(obs_id: str | None, obs_type: str = "GENERATION", parent: str | None = None, **fields: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"traceId": "t1", "type": obs_type, "name": f"{obs_type.lower()} {obs_id}",
                           "parentObservationId": parent, "startTime": "2026-01-14T10:00:00.000Z",
                           "endTime": "2026-01-14T10:00:01.000Z", "level": "DEFAULT", "statusMessage": None}
    if obs_id is not None:
        out["id"] = obs_id
    out.update(fields)
    return out


def export(trace_id: str = "t1", *observation_list: dict[str, Any], **trace_fields: Any) -> dict[str, Any]:
    head: dict[str, Any] = {"id": trace_id, "name": "support_agent", "timestamp": "2026-01-14T10:00:00.000Z", "tags": [],
            "userId": None, "sessionId": None, "input": None, "output": None, "metadata": {}}
    head.update(trace_fields)
    return {"trace": head, "observations": [{**o, "traceId": trace_id} for o in observation_list]}


def llm_call(obs_id: str, parent: str | None = None, **fields: Any) -> dict[str, Any]:
    return obs(obs_id, "GENERATION", parent, model="gpt-4o-mini",
               input=[{"role": "user", "content": "Cancel my subscription."}],
               output={"role": "assistant", "content": "Done."},
               usageDetails={"input": 100, "output": 10, "total": 110}, **fields)


# --- the real exports -------------------------------------------------------------------------------------------


@needs_real
@pytest.mark.parametrize("path", REAL_EXPORTS)
def test_real_export_steps_types_and_parent_links(path: Path) -> None:
    traces, result = read(path)
    assert result.problems == [] and not result.skipped
    assert len(traces) == 1
    trace = traces[0]
    source = observations(path)
    assert trace.id == json.loads(path.read_text())["trace"]["id"] and not trace.partial
    steps = {s.id: s for s in trace.steps}
    assert sorted(steps) == sorted(o["id"] for o in source)
    for o in source:
        step = steps[o["id"]]
        if o["type"] in TYPES:
            assert step.type == TYPES[o["type"]], o["id"]
        else:
            # SPAN: an agent run (it names its agent), a chain (it has children) or another kind, never an LLM call.
            assert o["type"] == "SPAN" and step.type in ("agent", "chain", "other"), o["id"]
        assert step.parent_id == o["parentObservationId"]
        assert step.name is not None
    roots = [o["id"] for o in source if o["parentObservationId"] is None]
    assert [s.id for s in trace.steps if s.parent_id is None] == roots
    # Parents come before their children, and steps run in start order.
    position = {s.id: i for i, s in enumerate(trace.steps)}
    assert all(position[s.parent_id] < position[s.id] for s in trace.steps if s.parent_id)
    starts = [s.started_at for s in trace.steps]
    assert starts == sorted(starts)  # type: ignore[type-var]


@needs_real
@pytest.mark.parametrize("path", REAL_EXPORTS)
def test_real_export_usage_per_generation_equals_langfuse(path: Path) -> None:
    traces, _ = read(path)
    steps = {s.id: s for s in traces[0].steps}
    for o in generations(path):
        usage = steps[o["id"]].usage
        assert usage is not None
        details = o["usageDetails"]
        in_parts = sum(v for k, v in details.items() if k.startswith(("input_", "cache")))
        out_parts = sum(v for k, v in details.items() if k.startswith("output_"))
        assert usage.input_tokens == details["input"] + in_parts == o["inputUsage"]
        assert usage.output_tokens == details["output"] + out_parts == o["outputUsage"]
        assert usage.input_tokens is not None and usage.output_tokens is not None
        assert usage.input_tokens + usage.output_tokens == details["total"] == o["totalUsage"]
        assert usage.inconsistency is None
        assert steps[o["id"]].cost == o["costDetails"]["total"]  # the reported cost, kept apart from loupe's


@needs_real
@pytest.mark.parametrize("path", REAL_EXPORTS)
def test_real_export_totals_are_the_sum_of_generations(path: Path, tmp_path: Path) -> None:
    store = Store(tmp_path / "loupe.db")
    report = ingest_paths(store, [path])
    assert report.problems == [] and report.counts.traces == 1
    gens = generations(path)
    trace_id = json.loads(path.read_text())["trace"]["id"]
    totals = store.get_trace(trace_id).totals
    assert totals.llm_calls == len(gens)
    assert totals.input_tokens == sum(o["inputUsage"] for o in gens)
    assert totals.output_tokens == sum(o["outputUsage"] for o in gens)
    assert totals.tool_calls == sum(o["type"] == "TOOL" for o in observations(path))


@needs_real
def test_microsoft_agent_usage_is_kept_but_not_added_to_its_generations(tmp_path: Path) -> None:
    agent = next(o for o in observations(MICROSOFT) if o["type"] == "AGENT")
    assert agent["usageDetails"] == {"input": 44, "output": 180, "total": 224}  # what would be double counted
    store = Store(tmp_path / "loupe.db")
    ingest_paths(store, [MICROSOFT])
    stored = store.get_trace("8e419d3288419b5d944270505640e183")
    step = next(s for s in stored.trace.steps if s.id == agent["id"])
    assert step.type == "agent" and step.usage is not None
    assert (step.usage.input_tokens, step.usage.output_tokens) == (44, 180)
    # 77 + 216 in and 86 + 20 out from the two generations; not 337 / 286 with the agent's own count on top.
    assert (stored.totals.input_tokens, stored.totals.output_tokens) == (293, 106)
    assert stored.totals.cost == pytest.approx(0.00019125 + 0.000094)


def langfuse_tier(model_name: str) -> dict[str, float]:
    """The default-tier prices per token Langfuse's own table has for a model."""
    table = json.loads((LANGFUSE / "default-model-prices.json").read_text())
    model = next(m for m in table if re.match(m["matchPattern"], model_name))
    return dict(next(t for t in model["pricingTiers"] if t["isDefault"])["prices"])


def langfuse_price(o: dict[str, Any]) -> float:
    """What Langfuse's own price table gives for an observation's usage details (each usage type at its price)."""
    prices = langfuse_tier(o["model"])
    return sum(n * prices.get(k, 0.0) for k, n in o["usageDetails"].items() if k != "total")


@needs_real
@pytest.mark.parametrize("path", REAL_EXPORTS)
def test_real_export_costs_match_langfuse(path: Path, tmp_path: Path) -> None:
    store = Store(tmp_path / "loupe.db")
    ingest_paths(store, [path])
    stored = store.get_trace(json.loads(path.read_text())["trace"]["id"])
    for o in generations(path):
        theirs = o["costDetails"]["total"]
        # Langfuse's reported figure is its price table applied to its usage details: the oracle is self-consistent.
        assert langfuse_price(o) == pytest.approx(theirs, rel=1e-6)
        cost = stored.costs[o["id"]]
        assert cost.reported == theirs
        ours = cost.computed
        assert ours is not None, cost.reason
        if abs(ours - theirs) > 0.02 * theirs:
            # Not silently tolerated: a larger gap must be the two price tables disagreeing on this model, each
            # figure being its own table's price for the same usage.
            rate = default_pricer().rate(o["model"])
            step = next(s for s in stored.trace.steps if s.id == o["id"])
            usage = step.usage
            assert rate is not None and rate.input is not None and rate.output is not None
            assert usage is not None and usage.input_tokens is not None and usage.output_tokens is not None
            assert not usage.cache_read_tokens and not usage.cache_write_tokens
            assert ours == pytest.approx((usage.input_tokens * rate.input + usage.output_tokens * rate.output) / 1e6)
            tier = langfuse_tier(o["model"])
            assert (rate.input / 1e6, rate.output / 1e6) != (tier["input"], tier["output"])


@needs_real
def test_microsoft_messages_match_langfuse_chatml_oracle() -> None:
    oracle = json.loads((LANGFUSE / "microsoft-agent-2025-12-17.chatml.json").read_text())
    traces, _ = read(MICROSOFT)
    steps = {s.id: s for s in traces[0].steps}

    def args(a: Any) -> Any:
        return json.loads(a) if isinstance(a, str) else a

    def norm(m: dict[str, Any]) -> dict[str, Any]:
        out = {"role": m["role"], "content": m.get("content")}
        calls = [{"id": c.get("id"), "name": c["name"], "arguments": args(c.get("arguments"))}
                 for c in m.get("tool_calls") or []]
        if calls:
            out["tool_calls"] = calls
        if m.get("tool_call_id"):
            out["tool_call_id"] = m["tool_call_id"]
        return out

    checked = 0
    for obs_id, expected in oracle.items():
        step = steps[obs_id]
        if not expected["input"]["success"]:
            # Langfuse found no messages (the tool's arguments): neither does loupe; they are the arguments.
            assert step.type == "tool" and step.messages == [] and step.arguments == {"location": "Tokyo, Japan"}
            assert step.result == "The weather in Tokyo, Japan is stormy with a high of 23°C."
            continue
        assert [norm(m.model_dump()) for m in step.messages] == [norm(m) for m in expected["input"]["data"]]
        output = step.output if isinstance(step.output, list) else [step.output]
        assert [norm(m) for m in output] == [norm(m) for m in expected["output"]["data"]]
        checked += 1
    assert checked == 3
    trace = traces[0]
    assert trace.input == "What's the weather in Tokyo?"
    assert trace.output == "Current conditions in Tokyo, Japan: stormy, high around 23°C."
    assert trace.metadata["langfuse"]["input"][0]["role"] == "system"  # the whole list is kept beside


@needs_real
def test_pydantic_ai_tool_answers_become_tool_messages() -> None:
    traces, _ = read(PYDANTIC)
    trace = traces[0]
    steps = {s.id: s for s in trace.steps}
    second = steps["00d2804abb764b1b"]
    answers = [m for m in second.messages if m.role == "tool"]
    assert [m.name for m in answers] == ["get_pun_suggestion", "get_dad_joke_suggestion", "get_one_liner_suggestion"]
    assert answers[0].tool_call_id == "call_X0OSgjUukT5inyEQvuZQnHrk" and answers[0].text().startswith("Pun idea")
    tool = steps["99ec63d0b5ecdbf5"]
    assert (tool.name, tool.tool_call_id) == ("get_pun_suggestion", "call_X0OSgjUukT5inyEQvuZQnHrk")
    assert tool.metadata["span_name"] == "running tool: get_pun_suggestion"
    assert steps["eb0cc14cf7943ad5"].params == {"temperature": 0}
    assert trace.output == "Why do programmers hate nature?  \nIt has too many bugs!"
    assert trace.tags == ["example", "joke-generator"] and trace.metadata["topic"] == "programming"


@needs_real
def test_real_files_are_detected_as_langfuse() -> None:
    assert detect_format(MICROSOFT) == detect_format(PYDANTIC) == "langfuse"


@needs_real
def test_cli_ingest_and_show_json(tmp_path: Path) -> None:
    runner = CliRunner()
    db = str(tmp_path / "cli.db")
    ingested = runner.invoke(app, ["ingest", str(MICROSOFT), "--db", db])
    assert ingested.exit_code == 0, ingested.output
    shown = runner.invoke(app, ["show", "8e419d32", "--db", db, "--json"])
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.output)
    assert data["id"] == "8e419d3288419b5d944270505640e183"
    assert [(s["id"], s["type"]) for s in data["steps"]] == [
        ("4cd6caa32861956a", "agent"), ("2406e8343fd49c0e", "llm"), ("a2de97aac476c036", "tool"),
        ("b0913e7cd82d72b8", "llm")]
    assert data["totals"]["input_tokens"] == 293 and data["totals"]["output_tokens"] == 106
    assert data["steps"][1]["cost_computed"] == pytest.approx(0.00019125)


# --- usage conversion -------------------------------------------------------------------------------------------


def test_anthropic_style_cache_outside_input_is_added() -> None:
    usage = usage_from_details({"input": 12, "cache_read_input_tokens": 3000, "cache_creation_input_tokens": 500,
                                "output": 80})
    assert usage is not None
    assert (usage["input_tokens"], usage["cache_read_tokens"], usage["cache_write_tokens"]) == (3512, 3000, 500)
    assert usage["output_tokens"] == 80


def test_langfuse_normalised_cache_keys_are_added_back() -> None:
    # Langfuse's own OTel test: gen_ai.usage.input_tokens 48183 stored as input 2 + cached 47105 + writes 1076.
    usage = usage_from_details({"input": 2, "input_cached_tokens": 47105, "input_cache_creation": 0,
                                "input_cache_creation_1h": 1076, "output": 714})
    assert usage is not None
    assert (usage["input_tokens"], usage["cache_read_tokens"], usage["cache_write_tokens"]) == (48183, 47105, 1076)


def test_cached_inside_input_is_not_added_twice_when_the_total_says_so() -> None:
    usage = usage_from_details({"input": 600, "input_cached_tokens": 500, "output": 40, "total": 640})
    assert usage is not None and (usage["input_tokens"], usage["cache_read_tokens"]) == (600, 500)
    # The same counts with a total over all of them: the input excluded the cache.
    usage = usage_from_details({"input": 600, "input_cached_tokens": 500, "output": 40, "total": 1140})
    assert usage is not None and usage["input_tokens"] == 1100


def test_input_smaller_than_its_cache_never_goes_negative() -> None:
    # The total claims the input included the cache, which can't be: the cache is added, nothing subtracted.
    usage = usage_from_details({"input": 5, "cache_read_input_tokens": 50, "output": 1, "total": 6})
    assert usage is not None
    assert (usage["input_tokens"], usage["cache_read_tokens"], usage["output_tokens"]) == (55, 50, 1)


def test_reasoning_outside_output_is_added() -> None:
    # Langfuse's own example: output_tokens 600 with 500 reasoning stored as output 100 + reasoning 500.
    usage = usage_from_details({"input": 100, "output": 100, "output_reasoning_tokens": 500, "total": 700})
    assert usage is not None and (usage["output_tokens"], usage["reasoning_tokens"]) == (600, 500)
    usage = usage_from_details({"input": 100, "output": 600, "reasoning": 500, "total": 700})
    assert usage is not None and (usage["output_tokens"], usage["reasoning_tokens"]) == (600, 500)


def test_unknown_usage_keys_are_kept_in_extra() -> None:
    usage = usage_from_details({"input": 10, "output": 5, "input_audio": 4, "image": 2})
    assert usage is not None
    assert usage["input_tokens"] == 14 and usage["extra"] == {"input_audio": 4, "image": 2}
    # The same count under two names is one count, not a part of itself.
    twice = usage_from_details({"input": 10, "input_tokens": 10, "output": 5, "output_tokens": 6})
    assert twice is not None and (twice["input_tokens"], twice["output_tokens"]) == (10, 5)
    assert twice["extra"] == {"output_tokens": 6}
    only_total = usage_from_details({"total": 50})
    assert only_total is not None and "input_tokens" not in only_total and only_total["extra"] == {"total": 50}


# --- synthetic files ---------------------------------------------------------------------------------------------


def write_lines(path: Path, *docs: Any) -> Path:
    path.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    return path


def test_json_lines_with_two_exports(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "lf.jsonl", export("t1", llm_call("a")), export("t2", llm_call("b")))
    assert detect_format(path) == "langfuse"
    traces, result = read(path)
    assert result.problems == []
    assert [(t.id, [s.id for s in t.steps]) for t in traces] == [("t1", ["a"]), ("t2", ["b"])]
    assert traces[1].source == f"{path}:2"
    step = traces[0].steps[0]
    assert step.usage is not None and (step.usage.input_tokens, step.usage.output_tokens) == (100, 10)
    assert step.messages[0].content == "Cancel my subscription." and step.output == {"role": "assistant",
                                                                                   "content": "Done."}


def test_a_list_of_exports(tmp_path: Path) -> None:
    path = tmp_path / "lf.json"
    path.write_text(json.dumps([export("t1", llm_call("a")), export("t2", llm_call("b"))], indent=2))
    assert detect_format(path) == "langfuse"
    traces, result = read(path)
    assert result.problems == []
    assert [t.id for t in traces] == ["t1", "t2"]


def test_error_level_tool_is_a_failed_tool_step(tmp_path: Path) -> None:
    tool = obs("tool1", "TOOL", "agent1", input='{"customer_id": "cus_8129"}', output=None, level="ERROR",
               statusMessage="permission denied: agent role may not issue refunds")
    path = write_lines(tmp_path / "lf.jsonl", export("t1", obs("agent1", "AGENT"), tool))
    traces, result = read(path)
    assert result.problems == []
    step = next(s for s in traces[0].steps if s.id == "tool1")
    assert step.type == "tool" and step.status == "error" and step.arguments == {"customer_id": "cus_8129"}
    assert step.error is not None and step.error.message == "permission denied: agent role may not issue refunds"
    assert failure_reason(step) is not None
    store = Store(tmp_path / "loupe.db")
    ingest_paths(store, [path])
    assert store.get_trace("t1").totals.errors == 1


def test_anthropic_usage_in_an_export_converts_and_prices(tmp_path: Path) -> None:
    call = obs("g1", model="claude-3-5-sonnet-20241022",
               usageDetails={"input": 12, "cache_read_input_tokens": 3000, "cache_creation_input_tokens": 500,
                             "output": 80, "total": 3592},
               metadata={"attributes": {"gen_ai.system": "anthropic"}})
    path = write_lines(tmp_path / "lf.jsonl", export("t1", call))
    traces, _ = read(path)
    step = traces[0].steps[0]
    assert step.provider == "anthropic" and step.usage is not None
    assert (step.usage.input_tokens, step.usage.cache_read_tokens, step.usage.cache_write_tokens) == (3512, 3000, 500)
    assert step.usage.inconsistency is None
    assert step.metadata["langfuse"]["usageDetails"]["input"] == 12  # the source's own counts are kept
    store = Store(tmp_path / "loupe.db")
    ingest_paths(store, [path])
    stored = store.get_trace("t1")
    assert stored.totals.input_tokens == 3512 and stored.totals.cache_read_tokens == 3000
    assert stored.costs["g1"].computed is not None and stored.costs["g1"].computed > 0


def test_agent_usage_beside_its_generation_is_not_double_counted(tmp_path: Path) -> None:
    agent = obs("agent1", "AGENT", usageDetails={"input": 5000, "output": 900, "total": 5900}, model="gpt-4o-mini",
                costDetails={"total": 0.5})
    path = write_lines(tmp_path / "lf.jsonl", export("t1", agent, llm_call("g1", "agent1")))
    store = Store(tmp_path / "loupe.db")
    ingest_paths(store, [path])
    stored = store.get_trace("t1")
    step = next(s for s in stored.trace.steps if s.id == "agent1")
    assert step.type == "agent" and step.usage is not None and step.usage.input_tokens == 5000
    assert (stored.totals.input_tokens, stored.totals.output_tokens, stored.totals.llm_calls) == (100, 10, 1)
    assert stored.totals.cost is not None and stored.totals.cost < 0.5


def test_malformed_observation_is_reported_and_the_rest_imports(tmp_path: Path) -> None:
    bad = obs(None, "TOOL", "g1")
    broken = export("t2", llm_call("g1"), obs("s1", "SPAN"), obs("e1", "EVENT", endTime=None),
                    bad, obs("g2", startTime="yesterday", usageDetails={"input": -3, "output": 4}))
    path = write_lines(tmp_path / "lf.jsonl", export("t1", llm_call("a")), broken)
    traces, result = read(path)
    assert [t.id for t in traces] == ["t1", "t2"]
    assert not traces[0].partial
    trace = traces[1]
    assert trace.partial
    where = {(p.file, p.line, p.field) for p in result.problems}
    assert (str(path), 2, "observations.3.id") in where
    assert (str(path), 2, "observations.4.startTime") in where
    assert (str(path), 2, "observations.4.usageDetails.input") in where
    assert any("observations.3.id" in p for p in trace.problems)
    ids = [s.id for s in trace.steps]
    assert {"g1", "s1", "e1", "g2", "observation-3"} == set(ids)  # the nameless observation is kept, named
    g2 = next(s for s in trace.steps if s.id == "g2")
    assert g2.usage is not None and g2.usage.input_tokens is None and g2.usage.output_tokens == 4
    event = next(s for s in trace.steps if s.id == "e1")
    assert event.type == "other" and event.ended_at == event.started_at


def test_problems_in_a_pretty_printed_export_name_the_observation_line(tmp_path: Path) -> None:
    doc = export("t1", llm_call("a"), obs(None, "SPAN"))
    path = tmp_path / "lf.json"
    text = json.dumps([export("t0", llm_call("z")), doc], indent=2)
    path.write_text(text)
    traces, result = read(path)
    assert [t.id for t in traces] == ["t0", "t1"] and traces[1].partial
    [problem] = result.problems
    assert problem.field == "[1].observations.1.id"
    # The line of the nameless observation's opening brace.
    second_obs = [i for i, line in enumerate(text.splitlines(), start=1) if line.strip() == "{"]
    assert problem.line in second_obs and text.splitlines()[problem.line - 1].strip() == "{"
    assert '"type": "SPAN"' in "\n".join(text.splitlines()[problem.line:problem.line + 4])


def test_bad_lines_and_records_are_reported_the_rest_imports(tmp_path: Path) -> None:
    path = tmp_path / "lf.jsonl"
    path.write_text(json.dumps(export("t1", llm_call("a"))) + "\n{not json\n" + json.dumps({"hello": 1}) + "\n"
                    + json.dumps({"trace": "nope", "observations": []}) + "\n"
                    + json.dumps(export("t2", llm_call("b"))) + "\n")
    traces, result = read(path)
    assert [t.id for t in traces] == ["t1", "t2"]
    assert [(p.line, p.field) for p in result.problems] == [(2, None), (4, "trace")]
    assert result.skipped["not a Langfuse trace export"] == 1


def test_trace_fields_prompt_and_string_encoded_values(tmp_path: Path) -> None:
    call = llm_call("g1", promptName="support_agent", promptVersion=7, modelParameters={"temperature": "0.2"},
                    costDetails={"input": 0.001, "output": 0.002})
    head = {"userId": "usr_1", "sessionId": "sess_1", "tags": ["billing"],
            "metadata": json.dumps({"team": "support"}), "input": json.dumps(json.dumps({"question": "refund?"})),
            "output": json.dumps("Refunded."), "release": "v7"}
    traces, result = read(write_lines(tmp_path / "lf.jsonl", export("t1", call, **head)))
    assert result.problems == []
    trace = traces[0]
    assert trace.prompt is not None and (trace.prompt.name, trace.prompt.version) == ("support_agent", "7")
    assert (trace.user_id, trace.session_id, trace.tags) == ("usr_1", "sess_1", ["billing"])
    assert trace.input == {"question": "refund?"} and trace.output == "Refunded."
    assert trace.metadata["team"] == "support" and trace.metadata["langfuse"]["release"] == "v7"
    step = trace.steps[0]
    assert step.params == {"temperature": "0.2"} and step.cost == pytest.approx(0.003)
    assert step.metadata["langfuse"]["promptName"] == "support_agent"


def test_bare_api_trace_with_observations_inside(tmp_path: Path) -> None:
    # GET /api/public/traces/{id} returns the trace with its observations (and scores) inside.
    doc = {**export("t1")["trace"], "observations": [{**llm_call("a"), "traceId": "t1"}], "scores": [{"value": 1}]}
    path = tmp_path / "api.json"
    path.write_text(json.dumps(doc, indent=2))
    traces, result = read(path)
    assert result.problems == []
    assert [s.id for s in traces[0].steps] == ["a"] and traces[0].metadata["langfuse"]["scores"] == [{"value": 1}]


def test_openai_completion_output_and_plain_string_prompt(tmp_path: Path) -> None:
    call = obs("g1", model="gpt-4o-mini", input="Say hi",
               output={"id": "chatcmpl-1", "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                   "role": "assistant", "content": None,
                   "tool_calls": [{"id": "c1", "type": "function",
                                   "function": {"name": "greet", "arguments": "{\"who\": \"you\"}"}}]}}]})
    traces, _ = read(write_lines(tmp_path / "lf.jsonl", export("t1", call)))
    step = traces[0].steps[0]
    assert [(m.role, m.content) for m in step.messages] == [("user", "Say hi")]
    assert step.output["tool_calls"] == [{"id": "c1", "name": "greet", "arguments": {"who": "you"}}]
    assert step.output["finish_reason"] == "tool_calls" and step.metadata["response"] == {"id": "chatcmpl-1"}


def test_missing_parent_is_shown_as_root_and_cycles_are_cut(tmp_path: Path) -> None:
    doc = export("t1", obs("a", "SPAN", "ghost"), obs("b", "SPAN", "c"), obs("c", "SPAN", "b"))
    traces, _ = read(write_lines(tmp_path / "lf.jsonl", doc))
    steps = {s.id: s for s in traces[0].steps}
    assert steps["a"].parent_id is None and steps["a"].metadata["missing_parent_id"] == "ghost"
    assert [s.parent_id for s in (steps["b"], steps["c"])].count(None) == 1
