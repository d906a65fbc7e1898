"""Rich output for the plain commands (`ls`, `show`): no Textual on this path, and trace text never parsed as markup."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.rule import Rule
from rich.text import Text
from rich.tree import Tree

from store.db import StoredTrace
from store.models import TraceSummary

from .format import (
    NOT_APPLICABLE,
    UNKNOWN,
    fmt_latency,
    fmt_time,
    one_line,
    plural,
    scrub,
    stdout_console,
    summary_cost,
    summary_tokens,
)
from .trace_text import children_by_parent, findings_text, render_step, render_trace, step_label, totals_text

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def _console() -> Console:
    console = stdout_console(soft_wrap=False)
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
    t.append(f"  {row.steps:>3} step{'s' if row.steps != 1 else ' '}  ")
    tokens_in, tokens_out = summary_tokens(row)
    t.append(f"{tokens_in:>8}/{tokens_out:<7}")
    cost = summary_cost(row)
    t.append(f"  {cost:>10}", "dim" if cost in (UNKNOWN, NOT_APPLICABLE) else "")
    t.append(f"  {fmt_latency(row.latency_ms):>7}  ")
    t.append(f"{one_line(row.status, 8):<5}", "red" if row.status == "error" else "green")
    if row.findings:
        t.append(f"  {plural(row.findings, 'finding')}", SEVERITY_STYLE.get(row.worst_severity or "", ""))
    if row.partial:
        t.append("  partial", "magenta")
    return scrub(t)


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


def build_step_tree(stored: StoredTrace, root: Tree, marked: set[str]) -> None:
    """Steps as a tree by parent, in order; iterative so a deep chain cannot hit the recursion limit."""
    steps = stored.trace.steps
    ids = {s.id for s in steps}
    children = children_by_parent(steps)
    stack: list[tuple[Tree, int]] = [(root, i) for i in reversed(children.get(None, []))]
    placed: set[int] = set()

    def label(i: int) -> Text:
        step = steps[i]
        orphan = step.parent_id is not None and step.parent_id not in ids
        return step_label(step, stored.costs.get(step.id), evidence=step.id in marked, orphan=orphan)

    while stack:
        node, i = stack.pop()
        if i in placed:
            continue  # a cycle in the parent links
        placed.add(i)
        child = node.add(label(i))
        for c in reversed(children.get(i, [])):
            stack.append((child, c))
    for i in range(len(steps)):  # steps only reachable through a cycle
        if i not in placed:
            placed.add(i)
            root.add(label(i))


def print_trace(stored: StoredTrace) -> None:
    """`loupe show`: the same header, findings, trace detail, tree and step details as the TUI's trace view."""
    console = _console()
    console.print(totals_text(stored))
    if stored.findings or any(not r.ran for r in stored.rule_runs):
        console.print(Panel(findings_text(stored.findings, stored.rule_runs), title="findings",
                            title_align="left", border_style="red" if stored.findings else "dim"))
    # What the TUI shows on the tree's root: input, output, user, session, tags, rules, unknown metadata.
    console.print(Rule(Text("trace", "dim"), align="left", style="dim"))
    console.print(render_trace(stored))
    marked = {e for f in stored.findings for e in f.evidence}
    tree = Tree(Text("steps", "bold"))
    build_step_tree(stored, tree, marked)
    console.print(tree)
    for step in stored.trace.steps:
        console.print(Rule(Text(f"step {one_line(step.id, 60)}", "dim"), align="left", style="dim"))
        console.print(render_step(step, stored.costs.get(step.id), stored.findings))


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
