"""Rich output for the plain commands (`ls`, `show`): no Textual on this path, and trace text never parsed as markup."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.text import Text
from rich.tree import Tree

from store.db import StoredTrace
from store.models import Step, StepCost, TraceSummary
from store.rules import RULE_TITLES

from .format import fmt_cost, fmt_int, fmt_latency, fmt_time, fmt_tokens, one_line, plural, safe_text

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}
PREVIEW_CHARS = 2000


def _console() -> Console:
    console = Console(highlight=False, emoji=False, markup=False, soft_wrap=False)
    if not console.is_terminal and console.width < 160:
        console.width = 160  # piped output: room for a whole step line rather than wrapping at 80
    return console


def prompt_label(name: str | None, version: str | None) -> str:
    if not name and not version:
        return "-"
    return f"{name or '?'}@{version or '(no version)'}"


def summary_line(row: TraceSummary) -> Text:
    t = Text(no_wrap=True, overflow="ellipsis")
    t.append(fmt_time(row.started_at), "dim")
    t.append("  ")
    t.append(one_line(row.id, 34).ljust(12), "bold")
    t.append("  ")
    t.append(one_line(prompt_label(row.prompt_name, row.prompt_version), 28).ljust(18))
    t.append("  ")
    t.append(one_line(row.model or "-", 24).ljust(14))
    t.append(f"  {row.steps:>3} steps  ")
    t.append(f"{fmt_tokens(row.input_tokens):>7}/{fmt_tokens(row.output_tokens):<6}")
    t.append(f"  {fmt_cost(row.cost, row.cost_partial):>10}  {fmt_latency(row.latency_ms):>7}  ")
    t.append(f"{row.status:<5}", "red" if row.status == "error" else "green")
    if row.findings:
        t.append(f"  {row.findings} finding{'s' * (row.findings != 1)}", SEVERITY_STYLE.get(row.worst_severity or "", ""))
    if row.partial:
        t.append("  partial", "magenta")
    return t


def print_trace_lines(rows: Iterable[TraceSummary], limit: int | None) -> None:
    console = _console()
    n = 0
    for row in rows:
        if limit is not None and n >= limit:
            break
        console.print(summary_line(row), soft_wrap=True)
        n += 1
    if n == 0:
        console.print(Text("No traces match.", "dim"))


def usage_text(step: Step) -> Text:
    """tokens in (cached) / out (reasoning); "?" where unknown."""
    u = step.usage
    if u is None or not u.known:
        return Text("tokens ?", "dim")
    t = Text()
    t.append(fmt_tokens(u.input_tokens))
    if u.cache_read_tokens:
        t.append(f" ({fmt_tokens(u.cache_read_tokens)} cached)", "dim")
    t.append(" / ")
    t.append(fmt_tokens(u.output_tokens))
    if u.reasoning_tokens:
        t.append(f" ({fmt_tokens(u.reasoning_tokens)} reasoning)", "dim")
    return t


def cost_text(cost: StepCost | None) -> str:
    if cost is None:
        return "?"
    if cost.computed is not None:
        return fmt_cost(cost.computed)
    if cost.reported is not None:
        return fmt_cost(cost.reported) + " (reported)"
    return "?"


def step_label(step: Step, cost: StepCost | None, marked: bool) -> Text:
    t = Text(no_wrap=True, overflow="ellipsis")
    if marked:
        t.append("● ", "bold red")
    t.append(f"{step.type:<5} ", "bold cyan" if step.type == "llm" else "bold magenta" if step.type == "tool" else "bold")
    label = step.model if step.type == "llm" and step.model else step.name or step.id
    t.append(one_line(label or "-", 48))
    if step.type == "llm":
        t.append("  ")
        t.append_text(usage_text(step))
        t.append(f"  {cost_text(cost)}")
    t.append(f"  {fmt_latency(step.latency_ms)}", "dim")
    from store.rules import failure_reason

    failed = step.status == "error" or (step.type == "tool" and failure_reason(step) is not None)
    if failed:
        err = step.error.type if step.error and step.error.type else "error"
        t.append("  ✗ " + one_line(err, 40), "bold red")
    elif step.status == "ok" or step.type == "tool":
        t.append("  ✓", "green")
    return t


def build_step_tree(stored: StoredTrace, root: Tree, marked: set[str]) -> None:
    """Steps as a tree by parent, in order; iterative so a deep chain cannot hit the recursion limit."""
    steps = stored.trace.steps
    ids = {s.id for s in steps}
    children: dict[str | None, list[Step]] = {}
    for s in steps:
        parent = s.parent_id if s.parent_id in ids and s.parent_id != s.id else None
        children.setdefault(parent, []).append(s)
    stack: list[tuple[Tree, Step]] = [(root, s) for s in reversed(children.get(None, []))]
    placed: set[str] = set()
    while stack:
        node, step = stack.pop()
        if step.id in placed:
            continue  # a cycle in the parent links
        placed.add(step.id)
        child = node.add(step_label(step, stored.costs.get(step.id), step.id in marked))
        for c in reversed(children.get(step.id, [])):
            stack.append((child, c))
    for s in steps:  # steps only reachable through a cycle
        if s.id not in placed:
            placed.add(s.id)
            root.add(step_label(s, stored.costs.get(s.id), s.id in marked))


def totals_text(stored: StoredTrace) -> Text:
    tt = stored.totals
    t = Text()
    t.append("tokens ")
    t.append(fmt_int(tt.input_tokens), "bold")
    if tt.cache_read_tokens:
        t.append(f" ({fmt_int(tt.cache_read_tokens)} cached)")
    t.append(" in / ")
    t.append(fmt_int(tt.output_tokens), "bold")
    if tt.reasoning_tokens:
        t.append(f" ({fmt_int(tt.reasoning_tokens)} reasoning)")
    t.append(" out")
    if tt.usage_unknown_steps:
        t.append(f" (+ {tt.usage_unknown_steps} LLM step{'s' * (tt.usage_unknown_steps != 1)} without usage)", "yellow")
    t.append("   cost ")
    t.append(fmt_cost(tt.cost), "bold")
    if tt.cost_unknown_steps:
        t.append(f" partial: {tt.cost_unknown_steps} step{'s' * (tt.cost_unknown_steps != 1)} unknown", "yellow")
    t.append("   latency ")
    t.append(fmt_latency(tt.latency_ms), "bold")
    t.append(f"   {plural(tt.steps, 'step')} ({tt.llm_calls} LLM, {tt.tool_calls} tool)")
    t.append("   findings ")
    t.append(str(tt.findings), "bold red" if tt.findings else "bold green")
    return t


def findings_renderables(stored: StoredTrace) -> list[Text]:
    out = []
    for f in stored.findings:
        t = Text()
        t.append(f"{f.severity.upper():<7} ", SEVERITY_STYLE.get(f.severity, ""))
        t.append(RULE_TITLES.get(f.rule_id, f.rule_id), "bold")
        t.append(f"  [{f.rule_id}]", "dim")
        t.append("\n        ")
        t.append_text(safe_text(f.message))
        t.append("\n        evidence: " + ", ".join(one_line(e, 40) for e in f.evidence), "dim")
        if f.quote:
            t.append("\n        quote: ")
            t.append_text(safe_text(f"“{f.quote}”", "italic"))
        out.append(t)
    for run in stored.rule_runs:
        if not run.ran:
            out.append(Text(f"NOT RUN {run.rule_id}: {run.reason}", "dim"))
    return out


def _preview(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False, default=str)
    if len(text) > PREVIEW_CHARS:
        text = text[:PREVIEW_CHARS] + f"… ({len(text) - PREVIEW_CHARS:,} more chars)"
    return text


def step_details(step: Step, cost: StepCost | None) -> Text:
    """The plain-text detail of a step, for `show`: messages, tool calls, arguments, results, errors."""
    t = Text()

    def line(label: str, value: Any, style: str = "") -> None:
        t.append(f"    {label}: ", "dim")
        t.append_text(safe_text(_preview(value).replace("\n", "\n      "), style))
        t.append("\n")

    if step.type == "llm":
        if step.provider or step.params:
            line("model", f"{step.model or '?'} ({step.provider or '?'}) {json.dumps(step.params)}")
        if cost is not None and cost.computed is None and cost.reason:
            line("cost", f"unknown: {cost.reason}")
        elif cost is not None and cost.computed is not None and cost.reported is not None:
            line("cost", f"{fmt_cost(cost.computed)} computed, {fmt_cost(cost.reported)} reported")
        for m in step.messages:
            line(m.role, m.text() or (m.tool_calls and "(tool calls)") or "")
        out = step.output_message
        if out is not None:
            if out.text():
                line("→ " + out.role, out.text())
            for tc in out.tool_calls:
                line("→ tool call", f"{tc.name}({json.dumps(tc.arguments, ensure_ascii=False)})")
    elif step.type == "tool":
        line("arguments", step.arguments)
        if step.result is not None:
            line("result", step.result)
    if step.error is not None:
        line("error", f"{step.error.type or ''} {step.error.message or ''}".strip(), "red")
    return t


def print_trace(stored: StoredTrace) -> None:
    console = _console()
    trace = stored.trace
    head = Text()
    head.append(one_line(trace.id), "bold")
    head.append("  ")
    head.append(one_line(trace.name or "-"))
    head.append("  prompt ")
    head.append(one_line(prompt_label(trace.prompt.name if trace.prompt else None,
                                      trace.prompt.version if trace.prompt else None)))
    if trace.started_at:
        head.append("  " + trace.started_at.isoformat(), "dim")
    if trace.partial:
        head.append("  PARTIAL: " + "; ".join(one_line(p, 80) for p in trace.problems[:3]), "bold magenta")
    console.print(head)
    console.print(totals_text(stored))
    if stored.findings or any(not r.ran for r in stored.rule_runs):
        console.print(Panel(Group(*findings_renderables(stored)), title="findings", title_align="left",
                            border_style="red" if stored.findings else "dim"))
    marked = {e for f in stored.findings for e in f.evidence}
    tree = Tree(Text("steps", "bold"))
    build_step_tree(stored, tree, marked)
    console.print(tree)
    console.print(Text("details", "bold"))
    for step in trace.steps:
        label = step_label(step, stored.costs.get(step.id), step.id in marked)
        console.print(Text("  " + one_line(step.id, 40) + "  ", "dim") + label)
        details = step_details(step, stored.costs.get(step.id))
        if details:
            console.print(details, end="")


def trace_json(stored: StoredTrace) -> dict[str, Any]:
    """`show --json`: the trace in the native format, plus totals, per-step costs and findings."""
    data = stored.trace.model_dump(mode="json", exclude_none=True)
    for step in data.get("steps", []):
        c = stored.costs.get(step["id"])
        if c is not None and step.get("type") == "llm":
            step["cost_computed"] = c.computed
            if c.computed is None:
                step["cost_unknown_reason"] = c.reason
    data["totals"] = stored.totals.model_dump(mode="json") | {"cost_partial": stored.totals.cost_partial}
    data["findings"] = [f.model_dump(mode="json") for f in stored.findings]
    data["rules_not_run"] = [r.model_dump(mode="json") for r in stored.rule_runs if not r.ran]
    return data
