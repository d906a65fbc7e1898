"""Rich Text for the trace view: step labels, step details by type (a registry), totals and findings.

Everything here builds `Text` from inert strings; nothing from a trace is ever parsed as markup. Every value that
comes from a trace (or from the store's reading of it: rule IDs, reasons, findings) goes through `inert`/`one_line`/
`bounded`, and each finished Text is `scrub`bed as well, so a field passed raw by mistake still cannot reach the
terminal as an escape sequence.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from rich.console import Group
from rich.padding import Padding
from rich.text import Text

from store.db import StoredTrace
from store.models import Finding, Message, RuleRun, Step, StepCost, ToolCall, Usage
from store.rules import RULE_TITLES, failure_reason
from tui.format import (
    NOT_APPLICABLE,
    fmt_cost,
    fmt_int,
    fmt_latency,
    fmt_tokens,
    inert,
    one_line,
    plural,
    scrub,
)

VALUE_LIMIT = 20_000  # characters of one value shown in the detail pane; `r` shows all of it
DETAIL_LIMIT = 400_000  # characters of one step's detail: past this, further messages are counted, not shown
SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}
MARK = "●"
MARK_STYLE = {"error": "bold red", "warning": "bold yellow", "info": "bold cyan"}
CURRENT = "▶"  # the finding that n/N selected, and its evidence steps in the tree

ERROR_STYLE = "red"
DIM = "dim"
HEADING = "bold"
SECTION = "bold underline"


def rule_title(rule_id: str) -> str:
    """A rule's title for people; an unknown rule (a store written by another version) by its ID, inert."""
    return one_line(RULE_TITLES.get(rule_id, rule_id), 120)


def bounded(text: str, limit: int = VALUE_LIMIT, style: str = "") -> Text:
    """Untrusted text, inert, cut at `limit` characters with a marker saying how much is left."""
    if len(text) <= limit:
        return Text(inert(text), style=style)
    out = Text(inert(text[:limit]), style=style)
    out.append(f"… ({len(text) - limit:,} more chars, r for raw)", style="bold yellow")
    return out


def pretty(value: Any) -> str:
    """A value as a person wants to read it: strings as they are (JSON strings pretty-printed), the rest as JSON."""
    if isinstance(value, str):
        stripped = value.strip()
        if stripped[:1] in ("{", "[") and len(stripped) < 5_000_000:
            try:
                return json.dumps(json.loads(stripped), indent=2, ensure_ascii=False)
            except ValueError:
                pass
        return value
    try:
        return json.dumps(value, indent=2, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return repr(value)


def value_text(value: Any, style: str = "") -> Text:
    return bounded(pretty(value), style=style)


def usage_summary(usage: Usage | None) -> str:
    """`3,051 (2,560 cached) / 77 (12 reasoning)`, the counts in brackets only when there are some; unknown is `?`."""
    if usage is None or not usage.known:
        return "? / ?"
    s = fmt_tokens(usage.input_tokens)
    if usage.cache_read_tokens:
        s += f" ({fmt_tokens(usage.cache_read_tokens)} cached)"
    s += f" / {fmt_tokens(usage.output_tokens)}"
    if usage.reasoning_tokens:
        s += f" ({fmt_tokens(usage.reasoning_tokens)} reasoning)"
    return s


def usage_line(usage: Usage | None) -> str:
    if usage is None:
        return "tokens unknown (no usage recorded)"
    return (
        f"tokens in {fmt_int(usage.input_tokens)} (cached {fmt_int(usage.cache_read_tokens)}) / "
        f"out {fmt_int(usage.output_tokens)} (reasoning {fmt_int(usage.reasoning_tokens)})"
    )


def step_cost_value(cost: StepCost | None, step: Step) -> float | None:
    if cost is not None:
        if cost.computed is not None:
            return cost.computed
        if cost.reported is not None:
            return cost.reported
    return step.cost


def step_is_error(step: Step) -> bool:
    return step.status == "error" or (step.type == "tool" and failure_reason(step) is not None)


def step_name(step: Step) -> str:
    if step.type == "llm":
        return step.model or step.name or "?"
    return step.name or step.model or "?"


def children_by_parent(steps: list[Step]) -> dict[int | None, list[int]]:
    """Step indexes by their parent's index, in trace order; None holds the roots. A step whose parent is missing,
    or is itself, is a root. With duplicate IDs the first step of an ID is the parent. Shared by the trace view's
    tree and `loupe show`."""
    first_index: dict[str, int] = {}
    for i, s in enumerate(steps):
        first_index.setdefault(s.id, i)
    children: dict[int | None, list[int]] = {}
    for i, s in enumerate(steps):
        parent = first_index.get(s.parent_id) if s.parent_id is not None else None
        children.setdefault(None if parent == i else parent, []).append(i)
    return children


def latency_text(step: Step) -> str:
    """The step's duration; "clock skew" when it ends before it starts, "?" when a time is missing."""
    if step.latency_ms is None and step.started_at is not None and step.ended_at is not None:
        return "clock skew"
    return fmt_latency(step.latency_ms)


def step_label(step: Step, cost: StepCost | None, *, evidence: bool, orphan: bool = False,
               severity: str | None = None, current: bool = False) -> Text:
    """One line for the step tree: mark, type, name, tokens, cost, latency, status.

    The mark says the step is evidence of a finding (`severity`: the worst of the findings citing it; red when
    not given); `current`: evidence of the finding n/N selected."""
    failed = step_is_error(step)
    mark_style = MARK_STYLE.get(severity or "error", "bold red")
    label = Text()
    if current:
        label.append(f"{CURRENT} ", style=mark_style)
    else:
        label.append(f"{MARK} " if evidence else "  ", style=mark_style)
    missing = step.metadata.get("missing_parent_id") or (step.parent_id if orphan else None)
    if missing:
        label.append(f"[missing parent {one_line(missing, 24)}] ", style="yellow")
    looped = step.metadata.get("cyclic_parent_id")
    if looped:
        label.append(f"[parent loop via {one_line(looped, 24)}] ", style="yellow")
    label.append(f"{step.type} ", style="dim cyan" if not failed else "bold red")
    name_style = "bold red" if failed else (mark_style if evidence or current else "bold")
    label.append(one_line(step_name(step), 60), style=name_style)
    if step.type == "llm" or step.usage is not None:
        label.append(f"  {usage_summary(step.usage)}", style=DIM)
    value = step_cost_value(cost, step)
    if step.type == "llm" or value:
        label.append(f"  {fmt_cost(value)}", style=DIM)
    label.append(f"  {latency_text(step)}", style=DIM)
    if failed:
        label.append("  error", style="bold red")
    elif step.status == "ok":
        label.append("  ok", style="green")
    return scrub(label)


# --------------------------------------------------------------------------- step detail


def _section(out: Text, title: str) -> None:
    out.append("\n")
    out.append(f"── {title} ", style=SECTION)
    out.append("\n")


def _field(out: Text, name: str, value: Text | str, style: str = "") -> None:
    out.append(f"{name} ", style=DIM)
    if isinstance(value, Text):
        out.append_text(value)
    else:
        out.append(value, style=style)
    out.append("\n")


def _tool_calls(out: Text, calls: Iterable[ToolCall]) -> None:
    for call in calls:
        out.append("→ tool call ", style="magenta")
        out.append(one_line(call.name, 200), style="bold magenta")
        if call.id:
            out.append(f" ({one_line(call.id, 100)})", style=DIM)
        out.append("\n")
        out.append_text(value_text(call.arguments))
        out.append("\n")


def _message(out: Text, msg: Message) -> None:
    out.append(f"▍{one_line(msg.role, 40)}", style="bold cyan")
    if msg.name:
        out.append(f" {one_line(msg.name, 80)}", style="cyan")
    if msg.tool_call_id:
        out.append(f" (for {one_line(msg.tool_call_id, 80)})", style=DIM)
    out.append("\n")
    content = msg.content
    if content is None or content == "":
        if not msg.tool_calls:
            out.append("(no content)\n", style=DIM)
    elif isinstance(content, str):
        out.append_text(bounded(content))
        out.append("\n")
    else:
        text = msg.text()
        out.append_text(bounded(text) if text else value_text(content))
        out.append("\n")
    _tool_calls(out, msg.tool_calls)


def _messages(out: Text, messages: list[Message]) -> None:
    for i, msg in enumerate(messages):
        if len(out) > DETAIL_LIMIT:
            out.append(f"… {len(messages) - i:,} more messages (r for raw)\n", style="bold yellow")
            return
        _message(out, msg)


def _cost_line(out: Text, step: Step, cost: StepCost | None) -> None:
    if cost is None:
        _field(out, "cost", f"{fmt_cost(step.cost)} reported" if step.cost is not None else "? (unknown)")
        return
    text = Text()
    if cost.computed is not None:
        text.append(fmt_cost(cost.computed), style="bold")
        text.append(" computed")
        if cost.priced_as:
            text.append(f" (priced as {one_line(cost.priced_as, 120)})", style=DIM)
    elif step.type != "llm":
        # Only model calls are priced: an agent's own usage is counted through its model calls.
        text.append("not priced", style=DIM)
        text.append(" (only model calls are priced)", style=DIM)
    else:
        text.append("?", style="bold")
        text.append(f" unknown: {one_line(cost.reason or 'no price for this model', 200)}", style="yellow")
    if cost.reported is not None:
        text.append(f"; reported {fmt_cost(cost.reported)}")
        if cost.computed is not None and _disagree(cost.computed, cost.reported):
            text.append("  (differs from computed)", style="bold yellow")
    _field(out, "cost", text)


def _disagree(a: float, b: float) -> bool:
    return abs(a - b) > max(1e-9, 0.01 * max(abs(a), abs(b)))


def _header(out: Text, step: Step, cost: StepCost | None) -> None:
    out.append(f"{step.type} step ", style=HEADING)
    out.append(one_line(step.id, 200), style="bold cyan")
    if step.name:
        out.append("  ")
        out.append(one_line(step.name, 200), style=HEADING)
    out.append("\n")
    status = Text()
    failed = step_is_error(step)
    if step.status is None and not failed:
        status.append("not recorded", style=DIM)
    else:
        status.append(one_line(step.status or "error"), style=ERROR_STYLE if failed else "green")
    if step.type == "tool" and failed:
        # The reason can quote the step's own data (an exit code read from the result).
        status.append(f"  (failed: {one_line(failure_reason(step) or '?', 200)})", style=ERROR_STYLE)
    if step.status is not None or failed or step.type == "tool":  # LLM spans rarely carry one
        _field(out, "status", status)
    if step.error is not None and (step.error.type or step.error.message):
        err = Text()
        if step.error.type:
            err.append(one_line(step.error.type, 200), style="bold red")
            err.append(": ")
        err.append_text(bounded(step.error.message or "", style=ERROR_STYLE))
        _field(out, "error", err)
    if step.is_error is not None:
        _field(out, "is_error", one_line(step.is_error, 200))
    if step.exit_code is not None:
        _field(out, "exit code", str(step.exit_code))
    timing = f"{_when(step.started_at)} → {_when(step.ended_at)}  ({fmt_latency(step.latency_ms)})"
    _field(out, "time", timing)
    if step.parent_id:
        _field(out, "parent", one_line(step.parent_id, 200))


def _when(dt: datetime | None) -> str:
    if dt is None:
        return "?"
    return dt.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _render_llm(out: Text, step: Step, cost: StepCost | None) -> None:
    model = Text(one_line(step.model or "?", 200), style="bold")
    if step.provider:
        model.append(f"  provider {one_line(step.provider, 100)}", style=DIM)
    _field(out, "model", model)
    if step.params:
        _field(out, "params", Text(one_line(json.dumps(step.params, ensure_ascii=False, default=str), 2000)))
    _field(out, "usage", usage_line(step.usage))
    if step.usage is not None and step.usage.extra:
        _field(out, "usage (other)", value_text(step.usage.extra))
    _cost_line(out, step, cost)
    _section(out, f"messages ({len(step.messages)})")
    if not step.messages:
        out.append("(none recorded)\n", style=DIM)
    _messages(out, step.messages)
    _section(out, "output")
    output = step.output_message
    if output is not None:
        _message(out, output)
    elif step.output is None:
        out.append("(none recorded)\n", style=DIM)
    else:
        out.append_text(value_text(step.output))
        out.append("\n")


def _render_tool(out: Text, step: Step, cost: StepCost | None) -> None:
    if step.tool_call_id:
        _field(out, "tool call id", one_line(step.tool_call_id, 200))
    if step.cost is not None or (cost is not None and (cost.computed or cost.reported)):
        _cost_line(out, step, cost)
    _section(out, "arguments")
    out.append_text(value_text(step.arguments) if step.arguments is not None else Text("(none recorded)", DIM))
    out.append("\n")
    _section(out, "result")
    style = ERROR_STYLE if step_is_error(step) else ""
    out.append_text(value_text(step.result, style) if step.result is not None else Text("(none recorded)", DIM))
    out.append("\n")


def _render_other(out: Text, step: Step, cost: StepCost | None) -> None:
    """Retrieval, embedding, agent, chain, guardrail, other: whatever of the common fields the step has."""
    if step.model:
        _field(out, "model", one_line(step.model, 200))
    if step.usage is not None:
        _field(out, "usage", usage_line(step.usage))
    if step.cost is not None or (cost is not None and (cost.computed or cost.reported)):
        _cost_line(out, step, cost)
    if step.messages:
        _section(out, f"messages ({len(step.messages)})")
        _messages(out, step.messages)
    for title, value in (("arguments", step.arguments), ("input", None), ("result", step.result),
                         ("output", step.output)):
        if value is not None:
            _section(out, title)
            out.append_text(value_text(value))
            out.append("\n")


StepRenderer = Callable[[Text, Step, "StepCost | None"], None]

# A new step type is a new function here, not a new branch elsewhere.
STEP_RENDERERS: dict[str, StepRenderer] = {
    "llm": _render_llm,
    "tool": _render_tool,
}


def render_step(step: Step, cost: StepCost | None, findings: list[Finding] | None = None,
                current: int | None = None) -> Text:
    """The detail pane for one step; `current` is the index in `findings` of the finding n/N selected."""
    out = Text(no_wrap=False, overflow="fold")
    for i, f in enumerate(findings or []):
        if step.id in f.evidence:
            style = MARK_STYLE.get(f.severity, "bold red")
            out.append(f"{CURRENT if i == current else MARK} evidence: ", style=style)
            out.append(rule_title(f.rule_id), style=style)
            out.append(f" ({one_line(f.severity, 20)})", style=DIM)
            out.append("\n")
    _header(out, step, cost)
    STEP_RENDERERS.get(step.type, _render_other)(out, step, cost)
    if step.metadata:
        _section(out, "metadata (fields loupe does not know)")
        out.append_text(value_text(step.metadata))
        out.append("\n")
    # The sentence a finding quotes stands out where it was said.
    quotes = [inert(f.quote) for f in findings or [] if f.quote and step.id in f.evidence]
    if quotes:
        out.highlight_words(quotes, style="bold reverse red")
    return scrub(out)


def render_trace(stored: StoredTrace) -> Text:
    """The detail pane for the trace itself (the tree's root): who, when, input, output, tags, metadata."""
    trace = stored.trace
    out = Text(no_wrap=False, overflow="fold")
    out.append("trace ", style=HEADING)
    out.append(one_line(trace.id, 200), style="bold cyan")
    if trace.name:
        out.append("  ")
        out.append(one_line(trace.name, 200), style=HEADING)
    out.append("\n")
    pr = trace.prompt
    _field(out, "prompt", prompt_ref(pr.name if pr else None, pr.version if pr else None))
    _field(out, "time", f"{_when(trace.started_at)} → {_when(trace.ended_at)}  "
                        f"({fmt_latency(stored.totals.latency_ms)})")
    for name, value in (("user", trace.user_id), ("session", trace.session_id), ("source", trace.source)):
        if value:
            _field(out, name, one_line(value, 500))
    if trace.tags:
        _field(out, "tags", ", ".join(one_line(t, 100) for t in trace.tags))
    if trace.partial:
        _field(out, "partial", Text("yes: what could be read is shown", style="bold yellow"))
        for problem in trace.problems:
            out.append("  · ", style="yellow")
            out.append_text(bounded(problem))
            out.append("\n")
    _field(out, "ingested", one_line(stored.ingested_at, 100))
    for title, value in (("input", trace.input), ("output", trace.output)):
        _section(out, title)
        out.append_text(value_text(value) if value is not None else Text("(none recorded)", DIM))
        out.append("\n")
    _section(out, "rules")
    for run in stored.rule_runs:
        out.append(f"{rule_title(run.rule_id)}: ")
        if run.ran:
            out.append("ran\n", style="green")
        else:
            out.append(f"could not run ({one_line(run.reason or 'no reason given', 300)})\n", style="yellow")
    if trace.metadata:
        _section(out, "metadata (fields loupe does not know)")
        out.append_text(value_text(trace.metadata))
        out.append("\n")
    return scrub(out)


def raw_trace_json(stored: StoredTrace) -> str:
    """The trace without its steps, as stored."""
    data = stored.trace.model_dump(mode="json", exclude_defaults=True, exclude={"steps"})
    return json.dumps(data, indent=2, ensure_ascii=False, default=str)


def raw_json(step: Step) -> str:
    data = step.model_dump(mode="json", exclude_defaults=True)
    return json.dumps(data, indent=2, ensure_ascii=False, default=str)


# --------------------------------------------------------------------------- trace header and findings


def prompt_ref(name: str | None, version: str | None) -> str:
    if name is None and version is None:
        return "?"
    return f"{one_line(name if name is not None else '?', 80)}@{one_line(version if version is not None else '?', 40)}"


def totals_text(stored: StoredTrace) -> Text:
    t, trace = stored.totals, stored.trace
    out = Text(no_wrap=False, overflow="fold")
    out.append(one_line(trace.id, 120), style="bold cyan")
    out.append("  ")
    pr = trace.prompt
    out.append(prompt_ref(pr.name if pr else None, pr.version if pr else None), style="bold")
    if trace.name and (pr is None or trace.name != pr.name):
        out.append(f"  {one_line(trace.name, 80)}", style=DIM)
    if trace.started_at:
        out.append(f"  {trace.started_at.strftime('%Y-%m-%d %H:%M:%S')}", style=DIM)
    if trace.partial:
        out.append("  PARTIAL TRACE", style="bold yellow")
        if trace.problems:
            out.append(f" ({one_line('; '.join(trace.problems), 200)})", style="yellow")
    out.append("\n")
    # The counts in one group, so the line fits 140 columns and wraps (if at all) between groups.
    out.append(f"{plural(t.steps, 'step')} ({plural(t.llm_calls, 'LLM call')}, {plural(t.tool_calls, 'tool call')}")
    if t.errors:
        out.append(f", {t.errors:,} failed", style=ERROR_STYLE)
    out.append(") · ")
    no_llm = t.llm_calls == 0 and t.input_tokens is None and t.output_tokens is None
    if no_llm:
        out.append(f"tokens {NOT_APPLICABLE}", style=DIM)  # no model call: nothing is unknown
    else:
        out.append(f"tokens in {fmt_int(t.input_tokens)}")
        if t.cache_read_tokens:
            out.append(f" (cached {fmt_int(t.cache_read_tokens)})")
        out.append(f" / out {fmt_int(t.output_tokens)}")
        if t.reasoning_tokens:
            out.append(f" (reasoning {fmt_int(t.reasoning_tokens)})")
    if t.usage_unknown_steps:
        out.append(f" [usage unknown for {t.usage_unknown_steps}]", style="yellow")
    out.append(" · cost ")
    if t.cost is None and t.llm_calls == 0:
        out.append(NOT_APPLICABLE, style=DIM)
    else:
        out.append(fmt_cost(t.cost, t.cost_partial), style="bold")
    if t.cost_partial:
        out.append(f" [{t.cost_unknown_steps} unpriced]", style="yellow")
    out.append(f" · latency {fmt_latency(t.latency_ms)} · ")
    n = len(stored.findings)
    out.append(plural(n, "finding"), style="bold red" if n else "green")
    return scrub(out)


def finding_head(f: Finding, *, current: bool = False) -> Text:
    """A finding's first line: the current-finding marker, severity, rule title and rule ID."""
    head = Text(no_wrap=False, overflow="fold")
    head.append(f"{CURRENT} " if current else "  ", style="bold")
    head.append(f"{MARK} {one_line(f.severity, 20)}", style=SEVERITY_STYLE.get(f.severity, ""))
    head.append("  ")
    head.append(rule_title(f.rule_id), style="bold reverse" if current else "bold")
    head.append(f"  ({one_line(f.rule_id, 80)})", style=DIM)
    return scrub(head)


def finding_body(f: Finding) -> Text:
    """What a finding says and shows: its message, the evidence steps and the quoted text."""
    body = Text(no_wrap=False, overflow="fold")
    body.append(one_line(f.message, 500))
    body.append("\nevidence ", style=DIM)
    body.append(", ".join(one_line(e, 60) for e in f.evidence) or "(no step)", style="bold red")
    if f.quote:
        body.append("  “", style=DIM)
        body.append(one_line(f.quote, 400), style="italic")
        body.append("”", style=DIM)
    return scrub(body)


def not_run_line(run: RuleRun) -> Text:
    """A rule that could not run on this trace, and why: dim, and no finding."""
    line = Text(no_wrap=False, overflow="fold", style=DIM)
    line.append("  ○ ")
    line.append(one_line(run.rule_id, 80))
    line.append(f": not run — {one_line(run.reason or 'no reason given', 300)}")
    return scrub(line)


FINDING_INDENT = 4  # cells the body of a finding is indented under its head


# A piece of the findings panel: its text, the indent of its first line and of the lines it wraps onto.
Piece = tuple[Text, int, int]


def finding_block(f: Finding, *, current: bool = False) -> list[Piece]:
    """One finding as pieces: its head, then its body indented under it."""
    return [(finding_head(f, current=current), 0, FINDING_INDENT),
            (finding_body(f), FINDING_INDENT, FINDING_INDENT)]


def findings_blocks(findings: list[Finding], runs: list[RuleRun], current: int | None = None) -> list[list[Piece]]:
    """The findings panel as blocks of pieces: one block per finding, in order, then one per rule that did not
    run (a block for "no findings" when there are none, so finding i is always block i)."""
    blocks = [finding_block(f, current=i == current) for i, f in enumerate(findings)]
    if not findings:
        blocks.append([(Text("no findings", style="green"), 0, 0)])
    blocks += [[(not_run_line(run), 0, FINDING_INDENT)] for run in runs if not run.ran]
    return blocks


def findings_text(findings: list[Finding], runs: list[RuleRun], current: int | None = None) -> Group:
    """The findings panel for `loupe show`: one block per finding, continuation lines indented under its title."""
    parts: list[Any] = []
    for block in findings_blocks(findings, runs, current):
        for text, indent, _hang in block:
            parts.append(Padding(text, (0, 0, 0, indent)) if indent else text)
    return Group(*parts)
