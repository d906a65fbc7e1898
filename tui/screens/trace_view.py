"""The trace view: totals, the findings (n/N walk them), the steps as a tree and the selected step's detail."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Static, Tree
from textual.widgets.tree import TreeNode

from store.db import Store, StoredTrace
from store.models import SEVERITY_RANK
from tui.format import inert, one_line
from tui.screens.palette import PaletteCommand, PaletteScreen
from tui.screens.raw_view import RawJsonScreen, open_in_pager
from tui.trace_text import (
    children_by_parent,
    finding_block,
    findings_blocks,
    raw_json,
    raw_trace_json,
    render_step,
    render_trace,
    step_label,
    totals_text,
)
from tui.widgets.findings_panel import FindingsPanel
from tui.widgets.text_view import TextView
from tui.workers import ReportsWorkerFailures

# Steps nested deeper than this are not indented further: they are listed one under the other at this depth, each
# label starting with "…" and its real depth. This keeps every label on screen in the tree pane (Textual's Tree
# never scrolls sideways to the cursor) and keeps the Tree's recursive layout shallow for a 3,000-deep chain.
MAX_TREE_DEPTH = 6

TREE_CHROME = 2  # columns of the step tree that are not its lines: the border on its right and the scrollbar
TREE_MIN_WIDTH = 40
TREE_MAX_SHARE = 0.6  # of the screen's width
DETAIL_MIN_WIDTH = 40


def tree_width(content: int, screen: int) -> int:
    """The step tree's width: its widest line (whole step lines), but at most 60% of the screen and never so wide
    that the detail gets fewer than 40 columns; at least 40 columns itself."""
    return max(TREE_MIN_WIDTH, min(content + TREE_CHROME, int(screen * TREE_MAX_SHARE), screen - DETAIL_MIN_WIDTH))


TRACE_NODE = -1  # the data of the tree's root, which stands for the trace itself


class StepTree(Tree[int]):
    """The steps of one trace; each node's data is the step's index in `trace.steps` (the root's is TRACE_NODE)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select_cursor", "Expand/collapse", show=False, id="view.expand"),
        Binding("k", "cursor_up", "Up", show=False, id="view.up"),
        Binding("j", "cursor_down", "Down", show=False, id="view.down"),
    ]


def evidence_severity(stored: StoredTrace) -> dict[str, str]:
    """Each evidence step's ID and the worst severity among the findings that cite it."""
    worst: dict[str, str] = {}
    for f in stored.findings:
        for e in f.evidence:
            prior = worst.get(e)
            if prior is None or SEVERITY_RANK.get(f.severity, 0) > SEVERITY_RANK.get(prior, 0):
                worst[e] = f.severity
    return worst


def build_step_tree(tree: Tree[int], stored: StoredTrace, evidence: Mapping[str, str] | set[str],
                    depths: dict[int, int] | None = None) -> dict[int, TreeNode[int]]:
    """Fill `tree` with the steps by parent, in order, without recursion; returns the node of each step index.

    `evidence`: the IDs of the steps to mark, or a mapping from them to the severity of their mark. `depths`, if
    given, receives the real depth of each step listed at a smaller one (see MAX_TREE_DEPTH).
    Steps whose parent is missing go under the root; so do steps only reachable through a cycle of parent links.
    """
    steps = stored.trace.steps
    ids = {s.id for s in steps}
    children = children_by_parent(steps)
    severity = evidence if isinstance(evidence, Mapping) else {}

    nodes: dict[int, TreeNode[int]] = {}

    def place(start: list[int], under: TreeNode[int]) -> None:
        # (node to add to, step index, depth shown, real depth); the root's children are at depth 1.
        stack: list[tuple[TreeNode[int], int, int, int]] = [(under, i, 1, 1) for i in reversed(start)]
        while stack:
            parent_node, i, shown, real = stack.pop()
            if i in nodes:
                continue
            step = steps[i]
            orphan = step.parent_id is not None and step.parent_id not in ids
            label = step_label(step, stored.costs.get(step.id), evidence=step.id in evidence, orphan=orphan,
                               severity=severity.get(step.id))
            if real > shown:
                label = Text.assemble(depth_note(real), label)
                if depths is not None:
                    depths[i] = real
            kids = [k for k in children.get(i, []) if k not in nodes]
            # At the depth limit, children are listed after their parent, at its depth, instead of under it.
            nested = shown < MAX_TREE_DEPTH
            if kids and nested:
                node = parent_node.add(label, data=i, expand=True)
            else:
                node = parent_node.add_leaf(label, data=i)
            nodes[i] = node
            child_parent, child_shown = (node, shown + 1) if nested else (parent_node, shown)
            for k in reversed(kids):
                stack.append((child_parent, k, child_shown, real + 1))

    place(children.get(None, []), tree.root)
    leftovers = [i for i in range(len(steps)) if i not in nodes]
    if leftovers:
        place(leftovers, tree.root)
    return nodes


def depth_note(real: int) -> Text:
    """What starts the label of a step listed above its real depth."""
    return Text(f"…{real} ", style="dim")


class TraceViewScreen(ReportsWorkerFailures, PaletteScreen, Screen[str | None]):
    """One trace, step by step. Closes with the ID of the trace it showed (None if it could not load it)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="view.back"),
        Binding("n", "next_finding", "Next finding", id="view.next_finding"),
        Binding("N", "previous_finding", "Previous finding", show=False, id="view.previous_finding"),
        Binding("e", "promote", "Promote", id="view.promote"),
        Binding("E", "preview_case", "Review case", show=False, id="view.preview_case"),
        Binding("y", "copy_id", "Copy ID", id="view.copy_id"),
        Binding("r", "raw", "Raw", id="view.raw"),
        Binding("o", "pager", "Open in pager", show=False, id="view.pager"),
    ]

    PALETTE: ClassVar[tuple[PaletteCommand, ...]] = (
        PaletteCommand("view: next finding", "Select the next finding and its evidence steps", "next_finding"),
        PaletteCommand("view: previous finding", "Select the previous finding and its evidence steps",
                       "previous_finding"),
        PaletteCommand("view: promote to eval case", "Turn this trace into a regression case", "promote"),
        PaletteCommand("view: review and promote", "Preview the eval case, edit it, then save it", "preview_case"),
        PaletteCommand("view: copy trace ID", "Copy the trace ID to the clipboard", "copy_id"),
        PaletteCommand("view: raw JSON of step", "Show the selected step as stored", "raw"),
        PaletteCommand("view: open step in pager", "The selected step as stored, in $PAGER", "pager"),
        PaletteCommand("view: back to list", "Close this trace", "back"),
    )

    PANEL_MIN_LINES = 9  # the findings panel's max height, its border included: 9 rows, or a third of a taller screen
    PANEL_SHARE = 3

    @dataclass
    class _Loaded(Message):
        stored: StoredTrace

    @dataclass
    class _Missing(Message):
        error: str

    def __init__(self, store: Store, trace_ref: str) -> None:
        super().__init__()
        self.store = store
        self.trace_ref = trace_ref
        self.stored: StoredTrace | None = None
        self.nodes: dict[int, TreeNode[int]] = {}
        self.evidence: dict[str, str] = {}  # evidence step ID -> the worst severity citing it
        self._depths: dict[int, int] = {}
        # For each finding, the indices of its evidence steps that the trace holds, in the finding's order.
        self.finding_steps: list[list[int]] = []
        self.current: int | None = None  # the finding n/N selected

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="◎")
        yield Static(Text(f"loading {one_line(self.trace_ref, 80)}…", style="dim"), id="trace-totals")
        yield FindingsPanel(id="findings-panel")
        with Horizontal(id="trace-body"):
            yield StepTree(Text("trace", style="bold"), data=TRACE_NODE, id="steps")
            yield TextView(id="step-detail")
        yield Footer()

    @property
    def step_tree(self) -> StepTree:
        return self.query_one(StepTree)

    @property
    def findings_panel(self) -> FindingsPanel:
        return self.query_one(FindingsPanel)

    def on_mount(self) -> None:
        tree = self.step_tree
        tree.guide_depth = 3
        tree.focus()
        self._fit_panel()
        self._load(self.trace_ref)

    @work(thread=True, exclusive=True, group="trace-load", exit_on_error=False, description="loading the trace")
    def _load(self, ref: str) -> None:
        try:
            stored = self.store.get_trace(ref)
        except LookupError as exc:  # not found, or an ambiguous prefix
            self.post_message(self._Missing(str(exc)))
            return
        self.post_message(self._Loaded(stored))

    def on_trace_view_screen__missing(self, message: _Missing) -> None:
        self.app.notify(inert(message.error), title="Cannot open trace", severity="error", markup=False)
        self.action_back()

    def on_trace_view_screen__loaded(self, message: _Loaded) -> None:
        stored = message.stored
        self.stored = stored
        self.evidence = evidence_severity(stored)
        self.current = None
        self.query_one("#trace-totals", Static).update(totals_text(stored))
        self.findings_panel.set_blocks(findings_blocks(stored.findings, stored.rule_runs))
        tree = self.step_tree
        root_label = Text("trace ", style="bold")
        root_label.append(one_line(stored.trace.id, 80), style="bold cyan")
        tree.reset(root_label, TRACE_NODE)
        self._depths = {}
        self.nodes = build_step_tree(tree, stored, self.evidence, self._depths)
        tree.root.expand()
        first_index: dict[str, int] = {}
        for i, s in enumerate(stored.trace.steps):
            first_index.setdefault(s.id, i)
        self.finding_steps = [
            list(dict.fromkeys(first_index[e] for e in f.evidence if e in first_index)) for f in stored.findings
        ]
        _ = tree.last_line  # lay the tree out so the nodes have their lines
        self._fit_tree_width()
        tree.move_cursor(tree.root.children[0] if tree.root.children else tree.root)
        self.refresh_bindings()

    def _fit_tree_width(self) -> None:
        if self.stored is None:
            return  # the CSS width holds until there are lines to measure
        tree = self.step_tree
        tree.styles.width = tree_width(tree.virtual_size.width, self.size.width)

    def _fit_panel(self) -> None:
        """Room for more findings on a tall screen; 9 lines (then it scrolls) on a small one."""
        lines = max(self.PANEL_MIN_LINES, self.size.height // self.PANEL_SHARE)
        self.findings_panel.styles.max_height = lines  # its bottom border included

    def on_resize(self, event: events.Resize) -> None:
        self._fit_tree_width()
        self._fit_panel()

    # ------------------------------------------------------------------ selection

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted[int]) -> None:
        event.stop()
        self._show_step(event.node.data)
        self.refresh_bindings()

    def _show_step(self, index: int | None) -> None:
        if self.stored is None or index is None:
            return
        if index == TRACE_NODE:
            self.query_one(TextView).set_text(render_trace(self.stored))
            return
        step = self.stored.trace.steps[index]
        detail = render_step(step, self.stored.costs.get(step.id), self.stored.findings, self.current)
        self.query_one(TextView).set_text(detail)

    @property
    def selected_step_index(self) -> int | None:
        node = self.step_tree.cursor_node
        return node.data if node is not None else None

    def _move_to_step(self, index: int) -> None:
        node = self.step_tree.root if index == TRACE_NODE else self.nodes.get(index)
        if node is None:
            return
        parent = node.parent
        while parent is not None:
            parent.expand()
            parent = parent.parent
        tree = self.step_tree
        _ = tree.last_line  # lay the tree out again so the node's line is current
        if tree.cursor_node is node:
            self._show_step(index)  # the same step, evidence of another finding: its marks changed
        else:
            tree.move_cursor(node)
        tree.focus()

    def _relabel(self, finding: int | None) -> None:
        """Redraw the tree labels of one finding's evidence steps (it became, or stopped being, the current one)."""
        if self.stored is None or finding is None:
            return
        steps = self.stored.trace.steps
        ids = {s.id for s in steps}
        for i in self.finding_steps[finding]:
            node = self.nodes.get(i)
            if node is None:
                continue
            step = steps[i]
            label = step_label(step, self.stored.costs.get(step.id), evidence=step.id in self.evidence,
                               orphan=step.parent_id is not None and step.parent_id not in ids,
                               severity=self.evidence.get(step.id), current=i in self._current_steps())
            if i in self._depths:
                label = Text.assemble(depth_note(self._depths[i]), label)
            node.set_label(label)

    def _current_steps(self) -> list[int]:
        return self.finding_steps[self.current] if self.current is not None else []

    def select_finding(self, index: int) -> None:
        """Make finding `index` the current one: marked in the panel and in the tree, the cursor on its first
        evidence step (on the trace itself when it cites no step the trace holds)."""
        if self.stored is None or not 0 <= index < len(self.stored.findings):
            return
        previous, self.current = self.current, index
        panel = self.findings_panel
        if previous is not None:
            panel.replace_block(previous, finding_block(self.stored.findings[previous]))
        panel.replace_block(index, finding_block(self.stored.findings[index], current=True))
        self._relabel(previous)
        self._relabel(index)
        panel.show_block(index)
        steps = self.finding_steps[index]
        self._move_to_step(steps[0] if steps else TRACE_NODE)

    def _go_to_finding(self, step: int) -> None:
        if self.stored is None or not self.stored.findings:
            return
        count = len(self.stored.findings)
        if self.current is None:
            self.select_finding(0 if step > 0 else count - 1)
        else:
            self.select_finding((self.current + step) % count)

    def on_findings_panel_clicked(self, message: FindingsPanel.Clicked) -> None:
        message.stop()
        if self.stored is not None and message.index < len(self.stored.findings):
            self.select_finding(message.index)

    # ------------------------------------------------------------------ actions

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("next_finding", "previous_finding"):
            return self.stored is not None and bool(self.stored.findings)
        if action in ("promote", "copy_id", "preview_case"):
            return self.stored is not None
        if action in ("raw", "pager"):
            return self.stored is not None and self.selected_step_index is not None
        return True

    def action_next_finding(self) -> None:
        self._go_to_finding(+1)

    def action_previous_finding(self) -> None:
        self._go_to_finding(-1)

    def action_promote(self) -> None:
        if self.stored is None:
            return
        from tui.app import LoupeApp

        assert isinstance(self.app, LoupeApp)
        self.app.promote_trace(self.stored.trace.id)

    def action_preview_case(self) -> None:
        if self.stored is None:
            return
        from tui.app import LoupeApp

        assert isinstance(self.app, LoupeApp)
        self.app.preview_case(self.stored.trace.id)

    def action_copy_id(self) -> None:
        if self.stored is None:
            return
        tid = self.stored.trace.id
        self.app.copy_to_clipboard(tid)
        self.app.notify(f"Copied trace ID {one_line(tid, 120)}", markup=False)

    def action_raw(self) -> None:
        index = self.selected_step_index
        if self.stored is None or index is None:
            return
        if index == TRACE_NODE:
            self.app.push_screen(RawJsonScreen(f"trace {self.stored.trace.id}", raw_trace_json(self.stored)))
            return
        step = self.stored.trace.steps[index]
        self.app.push_screen(RawJsonScreen(f"step {step.id}", raw_json(step)))

    def action_pager(self) -> None:
        """The selected step (or the trace) as stored, every character of it, in $PAGER: for values too big for
        the detail pane, which shows a bounded preview."""
        index = self.selected_step_index
        if self.stored is None or index is None:
            return
        if index == TRACE_NODE:
            open_in_pager(self.app, f"trace {self.stored.trace.id}", raw_trace_json(self.stored))
            return
        step = self.stored.trace.steps[index]
        open_in_pager(self.app, f"step {step.id}", raw_json(step))

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 1 and self.app.screen is self:
            self.dismiss(self.stored.trace.id if self.stored is not None else None)
