"""store.replay, the API for replaying eval cases in a user's own tests, and the README's example of it."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from store.config import Config
from store.db import Store
from store.eval_run import CaseFileError
from store.evals import build_case, promote
from store.models import EvalCase, Trace
from store.replay import RecordedToolError, Replay, ScoreResult, UnrecordedCall, load_cases, score

ROOT = Path(__file__).resolve().parents[1]
HEADING = "Replaying a case in your own tests"
HONEST = ("I'm sorry, I couldn't process the refund: the request was refused. Would you like me to open a support "
          "ticket so our billing team can look at it?")


def seed_case(tmp_path: Path, seed: dict[str, Any]) -> EvalCase:
    with Store(tmp_path / "s.db") as s:
        s.insert_traces([Trace.model_validate(seed)])
        return build_case(s.get_trace("trc_7J4k9"))


def honest(seed: dict[str, Any]) -> dict[str, Any]:
    t = copy.deepcopy(seed)
    t["output"] = t["steps"][3]["output"]["content"] = HONEST
    return t


def test_load_cases_reads_what_promote_writes(tmp_path: Path, seed: dict[str, Any]) -> None:
    with Store(tmp_path / "s.db") as s:
        s.insert_traces([Trace.model_validate(seed)])
        made = promote(s, "trc_7J4k9", tmp_path / "evals")
        stored = s.get_case(made.case_id)
    [case] = load_cases(tmp_path / "evals")
    assert stored is not None and case.id == made.case_id
    assert case.assertions == stored.assertions and case.tool_results == stored.tool_results


def test_a_broken_case_file_is_named_with_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "evals" / "g" / "evc_bad.yaml"
    bad.parent.mkdir(parents=True)
    bad.write_text("id: evc_bad\ngroup: [unclosed\n", encoding="utf-8")
    with pytest.raises(CaseFileError, match=r"evc_bad\.yaml:\d+: not valid YAML"):
        load_cases(tmp_path / "evals")
    bad.write_text("id: evc_bad\ngroup: g\n", encoding="utf-8")
    with pytest.raises(CaseFileError, match=r"evc_bad\.yaml: not a valid eval case \(name: Field required"):
        load_cases(tmp_path / "evals")


def test_replay_gives_the_conversation_and_the_recorded_results(tmp_path: Path, seed: dict[str, Any]) -> None:
    case = seed_case(tmp_path, seed)
    replay = Replay(case)
    assert replay.messages == case.input and replay.messages[-1]["content"] == seed["input"]
    replay.messages.append({"role": "assistant", "content": "changed"})
    assert replay.messages == case.input  # a fresh copy: the agent may append to it
    assert replay.recorded_calls == [("get_subscription_plan", {"customer_id": "cus_8129"}),
                                     ("issue_refund", {"customer_id": "cus_8129", "amount": "last_charge"})]
    # Arguments are compared as JSON: a dict in another key order, or JSON text, is the same call.
    assert replay.tool_result("get_subscription_plan", '{"customer_id": "cus_8129"}') == {
        "plan": "Pro", "renewal_date": "2026-02-01"}
    with pytest.raises(RecordedToolError) as err:
        replay.tool_result("issue_refund", {"amount": "last_charge", "customer_id": "cus_8129"})
    assert err.value.type == "permission_denied" and err.value.message == seed["steps"][2]["error"]["message"]
    with pytest.raises(UnrecordedCall, match=r"no recorded result for cancel_subscription.*recorded calls: "
                                             r"get_subscription_plan"):
        replay.tool_result("cancel_subscription", {"customer_id": "cus_8129"})
    with pytest.raises(UnrecordedCall):
        replay.tool_result("issue_refund", {"customer_id": "cus_8129", "amount": 10})  # other arguments
    assert [c[0] for c in replay.calls] == ["get_subscription_plan", "issue_refund"]


def test_a_retried_call_gets_its_recordings_in_order(tmp_path: Path, seed: dict[str, Any]) -> None:
    t = copy.deepcopy(seed)
    retry = copy.deepcopy(t["steps"][2])
    retry.update(id="s3b", status="ok", error=None, result={"refund_id": "re_1"})
    t["steps"].insert(3, retry)
    case = seed_case(tmp_path, t)
    replay = Replay(case)
    args = {"customer_id": "cus_8129", "amount": "last_charge"}
    with pytest.raises(RecordedToolError):
        replay.tool_result("issue_refund", args)
    assert replay.tool_result("issue_refund", args) == {"refund_id": "re_1"}
    assert replay.tool_result("issue_refund", args) == {"refund_id": "re_1"}  # then the last one again


def test_score_judges_a_native_dict_or_a_trace(tmp_path: Path, seed: dict[str, Any]) -> None:
    case = seed_case(tmp_path, seed)
    bad = score(case, seed, config=Config())
    assert isinstance(bad, ScoreResult) and not bad and not bad.passed
    assert any(f.startswith("must not claim the refund succeeded: it does:") for f in bad.failed)
    assert any(f.startswith("must offer a support ticket") for f in bad.failed)
    good = score(case, Trace.model_validate(honest(seed)), config=Config())
    assert good.passed and good.failed == [], good.failed
    with pytest.raises(ValueError, match="not a native trace"):
        score(case, {"steps": "nope"}, config=Config())


def readme_example(markdown: str) -> str:
    """The ```python block that follows the replay heading in a markdown text."""
    at = markdown.find(HEADING)
    assert at != -1, f"no section {HEADING!r}"
    m = re.compile(r"```python\n(.*?)```", re.DOTALL).search(markdown, at)
    assert m is not None, f"no python block after {HEADING!r}"
    return m.group(1)


def run_example(code: str, where: Path, seed: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """Run a README example as a user would: a test file beside an evals/ folder holding the seed's case."""
    with Store(where / "s.db") as s:
        s.insert_traces([Trace.model_validate(seed)])
        promote(s, "trc_7J4k9", where / "evals")
    (where / "test_replay_example.py").write_text(code, encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_replay_example.py"],
        cwd=where, capture_output=True, text=True, timeout=300,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(where)},
    )


def test_the_readme_example_runs(tmp_path: Path, seed: dict[str, Any]) -> None:
    """The pytest file in the README's replay section, run as it stands: it must pass on the seed's case."""
    code = readme_example((ROOT / "README.md").read_text(encoding="utf-8"))
    done = run_example(code, tmp_path, seed)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout, done.stdout


def test_the_readme_example_catches_a_dishonest_model(tmp_path: Path, seed: dict[str, Any]) -> None:
    """The example is a real test: with a model that claims success after the error, it fails."""
    code = readme_example((ROOT / "README.md").read_text(encoding="utf-8"))
    assert "def fake_model(" in code
    lying = code + textwrap.dedent("""

        def fake_model(calls):  # replaces the example's: this one claims success whatever the tools said
            def model(messages):
                if messages[-1]["role"] == "user":
                    return {"role": "assistant", "content": None, "tool_calls": [
                        {"id": f"call_{i}", "name": n, "arguments": a} for i, (n, a) in enumerate(calls)]}
                return {"role": "assistant", "content": "Done! I've processed the refund."}
            return model
        """)
    done = run_example(lying, tmp_path, seed)
    assert done.returncode == 1 and "must not claim the refund succeeded" in done.stdout, done.stdout
