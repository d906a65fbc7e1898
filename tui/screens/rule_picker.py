"""A modal listing the rules that found something in the store, with trace counts; it returns the rule filter."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rich.cells import cell_len
from rich.text import Text
from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from store.db import Store
from store.rules import RULES
from tui.format import one_line, scrub
from tui.trace_text import SEVERITY_STYLE
from tui.workers import ReportsWorkerFailures

RuleRow = tuple[str, int]  # (rule ID, traces with at least one finding of it)

ID_WIDTH = 32  # cells for a rule ID at most (the longest built-in one has 24)
TITLE_WIDTH = 44  # cells for its title; longer ones are cut with "…"
MIN_TITLE = 10  # cells below which the title is left out rather than cut to nothing


def rule_trace_counts(store: Store) -> list[RuleRow]:
    """Each rule with findings in the store and the number of traces it found something in, most traces first.

    The store has no public method for this; one grouped query over the `findings_rule` index (rule_id, trace_id)
    answers it without reading a trace, where counting each rule through `count_traces(TraceFilter(rule=...))`
    would take a query per rule and miss rule IDs written by another version of loupe."""
    with store._lock:
        rows = store.conn.execute(
            "SELECT rule_id, count(DISTINCT trace_id) FROM findings GROUP BY rule_id"
        ).fetchall()
    return sorted(((str(r[0]), int(r[1])) for r in rows), key=lambda r: (-r[1], r[0]))


def rule_label(rule_id: str, count: int, id_width: int, width: int | None = None) -> Text:
    """One option: the rule ID (coloured by its default severity), the trace count, then the title, cut to fit
    in `width` cells (the option list wraps a longer line) or left out where there is no room for it. A rule this
    loupe does not know (from a store another version wrote) is said to be one in place of the title."""
    rule = RULES.get(rule_id)
    label = Text(no_wrap=True, overflow="ellipsis")
    shown = one_line(rule_id, ID_WIDTH)
    label.append(shown, style=SEVERITY_STYLE.get(rule.severity, "bold") if rule else "bold")
    label.append(" " * max(id_width - cell_len(shown), 0))
    label.append(f"{count:>7,} trace{'s' if count != 1 else ' '}", style="bold" if count else "dim")
    title = one_line(rule.title, TITLE_WIDTH) if rule else "(a rule this loupe does not know)"
    room = TITLE_WIDTH + 2 if width is None else width - label.cell_len
    if room >= MIN_TITLE + 2:
        label.append("  ")
        label.append(one_line(title, room - 2), style="dim")
    return scrub(label)


@dataclass(frozen=True)
class RuleChoice:
    """What the picker returns: the rule to filter by, or None for all rules."""

    rule: str | None


class RulePicker(ReportsWorkerFailures, ModalScreen[RuleChoice | None]):
    """Pick one rule (or all). Dismisses with the choice, or None if cancelled."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="rules.cancel"),
    ]

    @dataclass
    class _Loaded(Message):
        rows: list[RuleRow]

    def __init__(self, store: Store, current: str | None = None) -> None:
        super().__init__()
        self.store = store
        self.current = current
        self.values: list[str | None] = []  # the rule of each option, by option index; None: all rules
        self._rows: list[RuleRow] = []
        self._id_width = 0

    def compose(self) -> ComposeResult:
        with Vertical(id="rule-dialog"):
            yield Static(Text("Only traces where this rule found something", style="bold"), id="rule-title")
            yield OptionList(Option(Text("loading…", style="dim"), disabled=True), id="rule-options")
            yield Static(Text("enter select · escape cancel", style="dim"), id="rule-help")

    def on_mount(self) -> None:
        self._load()

    @work(thread=True, exclusive=True, group="rules", exit_on_error=False, description="counting findings by rule")
    def _load(self) -> None:
        self.post_message(self._Loaded(rule_trace_counts(self.store)))

    def on_rule_picker__loaded(self, message: _Loaded) -> None:
        options = self.query_one("#rule-options", OptionList)
        options.clear_options()
        rows = list(message.rows)
        if self.current is not None and self.current not in {r for r, _ in rows}:
            # The rule in use finds nothing now (the rules were run again): still listed, so the choice shows.
            rows.append((self.current, 0))
        self._rows = rows
        self._id_width = max([len("All rules"), *(cell_len(one_line(r, ID_WIDTH)) for r, _ in rows)])
        room = self._room()
        entries = [Option(Text("All rules", style="bold"))]
        self.values = [None]
        highlight = 0
        for rule_id, count in rows:
            if rule_id == self.current:
                highlight = len(self.values)
            self.values.append(rule_id)
            entries.append(Option(rule_label(rule_id, count, self._id_width, room)))
        if not rows:
            entries.append(Option(Text("no rule has found anything in this store", style="dim"), disabled=True))
        options.add_options(entries)
        options.highlighted = highlight
        options.focus()
        if room is None:  # not laid out yet
            self.call_after_refresh(self._fit_labels)

    def _room(self) -> int | None:
        width = self.query_one("#rule-options", OptionList).scrollable_content_region.width
        # Less one cell for the scrollbar that relabelling may bring (a taller list on a short screen).
        return width - 1 if width > 0 else None

    def on_resize(self, event: events.Resize) -> None:
        # The dialog is a share of the screen: the titles are cut again once it has its new width.
        self.call_after_refresh(self._fit_labels)

    def _fit_labels(self) -> None:
        options = self.query_one("#rule-options", OptionList)
        room = self._room()
        for i, (rule_id, count) in enumerate(self._rows, start=1):
            if i < options.option_count:
                options.replace_option_prompt_at_index(i, rule_label(rule_id, count, self._id_width, room))

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if 0 <= event.option_index < len(self.values):
            self.dismiss(RuleChoice(self.values[event.option_index]))

    def action_cancel(self) -> None:
        self.dismiss(None)
