"""Replaying eval cases in your own tests: load cases, answer tool calls from the recording, score the result.

    from store.replay import Replay, RecordedToolError, load_cases, score

    for case in load_cases("evals"):
        replay = Replay(case)
        # run your agent on replay.messages, answering each tool call with replay.tool_result(name, arguments)
        # (a recorded failure is raised as RecordedToolError), then:
        result = score(case, trace)  # the finished run as a native trace (dict) or a Trace
        assert result.passed, result.failed

No model is called here and nothing is written: the recorded tool results stand in for the real tools, and the
case's assertions are judged the way `loupe evals run` judges them.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .config import Config, load_config
from .eval_run import derive, read_cases, score_trace
from .models import EvalCase, PromptRef, Trace
from .rules import json_or_value

__all__ = ["RecordedToolError", "Replay", "ScoreResult", "UnrecordedCall", "load_cases", "score"]


def load_cases(path: str | Path = "evals") -> list[EvalCase]:
    """Every eval case in a folder of case files (evals/<group>/<case-id>.yaml), in a stable order.

    A file that is not a valid case raises `store.eval_run.CaseFileError` naming the file and the field."""
    return read_cases(Path(path))


class RecordedToolError(Exception):
    """The recorded tool call failed: raise it where your tool would raise, with the recorded type and message."""

    def __init__(self, tool: str, arguments: Any, type: str | None, message: str | None) -> None:
        self.tool = tool
        self.arguments = arguments
        self.type = type
        self.message = message
        super().__init__(f"{tool} failed: {type or 'error'}: {message or '(no message)'}")


class UnrecordedCall(LookupError):
    """A tool call the recording has no result for: the agent asked for something the source trace never did."""

    def __init__(self, tool: str, arguments: Any, recorded: list[tuple[str, Any]]) -> None:
        self.tool = tool
        self.arguments = arguments
        self.recorded = recorded
        known = "; ".join(f"{t}({_canonical(a)})" for t, a in recorded) or "none"
        super().__init__(f"no recorded result for {tool}({_canonical(arguments)}); recorded calls: {known}")


def _parsed(value: Any) -> Any:
    value = json_or_value(value)
    if isinstance(value, str) and not value.strip():
        return {}  # some SDKs send "" for a tool without parameters
    return {} if value is None else value


def _canonical(value: Any) -> str:
    return json.dumps(_parsed(value), sort_keys=True, ensure_ascii=False, default=str)


class Replay:
    """One case, ready to run an agent on: its conversation, tools and model, and its recorded tool results."""

    def __init__(self, case: EvalCase) -> None:
        self.case = case
        self._served: dict[tuple[str, str], int] = {}
        self.calls: list[tuple[str, Any]] = []  # every tool call answered, in order

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The conversation up to the user's request (a fresh copy each time: the agent may append to it)."""
        return copy.deepcopy(self.case.input)

    @property
    def tools(self) -> list[Any]:
        """The tool definitions the source trace's model was given (empty when it recorded none)."""
        return copy.deepcopy(self.case.tools)

    @property
    def model(self) -> dict[str, Any]:
        """The source trace's model: name, provider and parameters."""
        return copy.deepcopy(self.case.model)

    @property
    def recorded_calls(self) -> list[tuple[str, Any]]:
        """(tool, arguments) of every recorded tool call, in the order they happened."""
        return [(str(r.get("tool")), copy.deepcopy(r.get("arguments"))) for r in self.case.tool_results]

    def tool_result(self, tool: str, arguments: Any = None) -> Any:
        """The recorded result of calling `tool` with `arguments` (a dict or JSON text; compared as JSON).

        A call recorded several times (a retry) gets the recordings in order, then the last one again. A
        recorded failure raises RecordedToolError; a call never recorded raises UnrecordedCall."""
        key = (tool, _canonical(arguments))
        matches = [r for r in self.case.tool_results
                   if r.get("tool") == tool and _canonical(r.get("arguments")) == key[1]]
        if not matches:
            raise UnrecordedCall(tool, arguments, self.recorded_calls)
        n = self._served.get(key, 0)
        self._served[key] = n + 1
        record = matches[min(n, len(matches) - 1)]
        self.calls.append((tool, copy.deepcopy(arguments)))
        if record.get("status") == "error":
            recorded = record.get("error")
            error: dict[str, Any] = recorded if isinstance(recorded, dict) else {}
            message = error.get("message")
            if message is None and record.get("result") is not None:
                message = _canonical(record.get("result"))  # a failure reported as data: the data says why
            raise RecordedToolError(tool, arguments, error.get("type"), message)
        return copy.deepcopy(record.get("result"))


@dataclass
class ScoreResult:
    passed: bool
    failed: list[str] = field(default_factory=list)  # "assertion description: why", one per failed assertion

    def __bool__(self) -> bool:
        return self.passed


def score(case: EvalCase, trace: Trace | dict[str, Any], *, config: Config | None = None) -> ScoreResult:
    """Judge a finished run against the case's assertions, as `loupe evals run` does. `trace` is a Trace or a
    native trace as a dict (`loupe schema` describes it); the rules run on it with `config` (default: loupe.toml
    in the working directory, else the defaults). An assertion that cannot be judged (unknown cost) fails."""
    if isinstance(trace, dict):
        try:
            trace = Trace.model_validate(trace)
        except ValidationError as exc:
            raise ValueError(f"not a native trace: {exc}") from None
    if trace.prompt is None and case.source_trace.get("prompt"):
        # A replayed run is the case's prompt unless it says otherwise: its budgets and promises apply.
        trace = trace.model_copy(update={"prompt": PromptRef(name=case.source_trace["prompt"],
                                                             version=case.source_trace.get("prompt_version"))})
    config = config if config is not None else load_config()
    passed, failed = score_trace(case, derive(trace, config), config=config)
    return ScoreResult(passed=passed, failed=failed)
