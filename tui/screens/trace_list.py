"""The trace list screen: a count line, the virtual trace table, a search input and the footer."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Header, Input, Static
from textual.worker import Worker

from store.db import Store, TraceFilter
from tui.format import one_line
from tui.screens.palette import PaletteCommand, PaletteScreen
from tui.screens.rule_picker import RuleChoice, RulePicker
from tui.screens.version_picker import VersionPicker
from tui.widgets.footer import WideFooter
from tui.widgets.trace_table import PAGE_SIZE, TraceTable
from tui.workers import ReportsWorkerFailures

WIDE_FOOTER = 100  # columns from which the footer has room for `r Reload`
RULE_FOOTER = 90  # columns from which it has room for `R Rule`
POLL_SECONDS = 1.0  # how often the list asks the store whether another process has written to it


class TraceListScreen(ReportsWorkerFailures, PaletteScreen, Screen[None]):
    """All traces, newest first, filtered by prompt version, findings, rule or search text."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("v", "pick_version", "Version", id="list.version"),
        Binding("x", "toggle_findings", "Findings", id="list.findings"),
        Binding("R", "pick_rule", "Rule", id="list.rule"),  # in the footer from RULE_FOOTER columns
        Binding("slash", "search", "Search", id="list.search"),
        Binding("e", "promote", "Promote", id="list.promote"),
        Binding("E", "preview_case", "Review case", show=False, id="list.preview_case"),
        Binding("c", "cases", "Eval cases", show=False, id="list.cases"),
        Binding("p", "versions", "Versions", show=False, id="list.versions"),
        Binding("r", "reload", "Reload", id="list.reload"),  # in the footer from WIDE_FOOTER columns
        Binding("escape", "cancel_search", "Cancel", show=False, id="list.cancel_search"),
        Binding("q", "app.quit", "Quit", id="list.quit"),
    ]

    PALETTE: ClassVar[tuple[PaletteCommand, ...]] = (
        PaletteCommand("list: open trace", "Open the selected trace", "open"),
        PaletteCommand("list: filter by prompt version", "Pick a prompt version to show", "pick_version"),
        PaletteCommand("list: only traces with findings", "Show only traces with findings, or all",
                       "toggle_findings"),
        PaletteCommand("list: filter by rule", "Show only traces where one rule found something, or all",
                       "pick_rule"),
        PaletteCommand("list: search", "Search the text of traces: IDs, names, models, messages, tool calls",
                       "search"),
        PaletteCommand("list: promote to eval case", "Turn the selected trace into a regression case", "promote"),
        PaletteCommand("list: review and promote", "Preview the eval case, edit it, then save it", "preview_case"),
        PaletteCommand("list: eval cases", "The eval cases and their last results", "cases"),
        PaletteCommand("list: prompt versions", "Every prompt version side by side; compare two", "versions"),
        PaletteCommand("list: reload", "Read the store again", "reload"),
    )

    @dataclass
    class _Totals(Message):
        generation: int
        total: int

    @dataclass
    class _DataVersion(Message):
        version: int

    def __init__(self, store: Store, flt: TraceFilter | None = None, *, page_size: int = PAGE_SIZE,
                 poll_interval: float | None = POLL_SECONDS) -> None:
        super().__init__()
        self.store = store
        self._initial_filter = flt or TraceFilter()
        self.page_size = page_size
        self.poll_interval = poll_interval
        self.matching: int | None = None
        self.total: int | None = None
        self._generation = 0
        # Taken before the first rows are read, so that a trace written while they load is noticed. One PRAGMA;
        # every later reading happens in a worker.
        self._data_version: int | None = store.data_version() if poll_interval else None
        self._poll_worker: Worker[None] | None = None
        self._had_selection = False  # whether a trace was selected when the keys were last refreshed

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="◎")
        yield Static(Text("counting…", style="dim"), id="list-summary")
        yield TraceTable(self.store, self._initial_filter, page_size=self.page_size, id="traces")
        yield Input(placeholder="search words in IDs, names, messages, tool calls — enter to apply, escape to cancel",
                    id="search", classes="-hidden")
        yield WideFooter(wide_only={"pick_rule": RULE_FOOTER, "reload": WIDE_FOOTER})

    @property
    def table(self) -> TraceTable:
        return self.query_one(TraceTable)

    def on_mount(self) -> None:
        self.table.focus()
        self._count_total()
        if self.poll_interval:
            self.set_interval(self.poll_interval, self._poll_store, name="poll-store")

    def on_screen_resume(self) -> None:
        self._poll_store()  # back from a trace: show what arrived meanwhile now, not at the next tick

    # ------------------------------------------------------------------ new traces from other processes

    def _poll_store(self) -> None:
        if not self.poll_interval or not self.is_current:
            return
        if self._poll_worker is not None and not self._poll_worker.is_finished:
            return  # the last check has not answered yet (a long write holds the store): one at a time
        self._poll_worker = self._read_data_version()

    @work(thread=True, exclusive=False, group="poll-store", exit_on_error=False,
          description="checking the store for new traces")
    def _read_data_version(self) -> None:
        self.post_message(self._DataVersion(self.store.data_version()))

    def on_trace_list_screen__data_version(self, message: _DataVersion) -> None:
        if message.version == self._data_version:
            return
        # While the list is still being counted there is nothing to refresh yet: the next tick tries again.
        if self.table.refresh_rows():
            self._data_version = message.version
            self._count_total(keep=True)

    # ------------------------------------------------------------------ counts

    def _count_total(self, *, keep: bool = False) -> None:
        """Count all traces; `keep` shows the old total until the new one is known."""
        self._generation += 1
        if not keep:
            self.total = None
        self._load_total(self._generation)

    @work(thread=True, exclusive=True, group="trace-total", exit_on_error=False, description="counting all traces")
    def _load_total(self, generation: int) -> None:
        self.post_message(self._Totals(generation, self.store.count_traces(None)))

    def on_trace_list_screen__totals(self, message: _Totals) -> None:
        if message.generation == self._generation:
            self.total = message.total
            self._update_summary()

    def on_trace_table_counted(self, message: TraceTable.Counted) -> None:
        self.matching = message.count
        self._update_summary()

    def on_trace_table_highlighted(self, message: TraceTable.Highlighted) -> None:
        # Only whether a trace is selected changes what the keys can do; the footer is rebuilt only then (its
        # rebuild costs more than a frame, and the highlight changes on every cursor move).
        if (message.trace_id is not None) != self._had_selection:
            self._had_selection = message.trace_id is not None
            self.refresh_bindings()

    def _update_summary(self) -> None:
        flt = self.table.filter
        described = flt.describe()
        text = Text()
        if self.matching is None:
            text.append("counting…", style="dim")
        elif not described:
            text.append(f"{self.matching:,}", style="bold")
            text.append(f" trace{'s' if self.matching != 1 else ''}")
        else:
            text.append(f"{self.matching:,}", style="bold")
            total = "?" if self.total is None else f"{self.total:,}"
            text.append(f" of {total} traces match: ")
            text.append(one_line(described, 200), style="bold cyan")
        # One line, as wide as the screen whatever it says: no layout pass (it costs a frame) for a new count.
        self.query_one("#list-summary", Static).update(text, layout=False)

    # ------------------------------------------------------------------ actions

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("promote", "open", "preview_case"):
            return self.table.selected_trace_id is not None
        if action == "cancel_search":
            return not self.query_one("#search", Input).has_class("-hidden")
        return True

    def _apply(self, flt: TraceFilter, *, recount: bool = False) -> None:
        self.matching = None
        self._update_summary()
        self.table.set_filter(flt)
        if recount or self.total is None:
            # The total does not change with the filter (new traces are noticed by the poll, which recounts):
            # counting a million rows again on every filter change would hold the store while the rows wait.
            self._count_total()
        # No refresh of the keys here: the table says when the selection comes or goes (Highlighted), and a
        # footer rebuild on every filter change costs more than the new rows do.

    def action_pick_version(self) -> None:
        def chosen(value: list[str] | None) -> None:
            if value is not None:
                self._apply(dataclasses.replace(self.table.filter, prompt_versions=value))

        self.app.push_screen(VersionPicker(self.store, self.table.filter.prompt_versions), chosen)

    def action_versions(self) -> None:
        from tui.screens.versions import VersionsScreen

        def chosen(value: list[str] | None) -> None:
            if value is not None:
                self._apply(dataclasses.replace(self.table.filter, prompt_versions=value))

        self.app.push_screen(VersionsScreen(self.store, self.table.filter.prompt_versions), chosen)

    def action_pick_rule(self) -> None:
        def chosen(value: RuleChoice | None) -> None:
            if value is not None:
                self._apply(dataclasses.replace(self.table.filter, rule=value.rule))

        self.app.push_screen(RulePicker(self.store, self.table.filter.rule), chosen)

    def action_toggle_findings(self) -> None:
        flt = self.table.filter
        self._apply(dataclasses.replace(flt, violations=not flt.violations))

    def action_search(self) -> None:
        search = self.query_one("#search", Input)
        search.value = self.table.filter.search or ""
        search.remove_class("-hidden")
        search.focus()
        self.refresh_bindings()

    def action_cancel_search(self) -> None:
        self._hide_search()

    def _hide_search(self) -> None:
        self.query_one("#search", Input).add_class("-hidden")
        self.table.focus()
        self.refresh_bindings()

    @on(Input.Submitted, "#search")
    def _search_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._hide_search()
        self._apply(dataclasses.replace(self.table.filter, search=event.value.strip() or None))

    def action_promote(self) -> None:
        tid = self.table.selected_trace_id
        if tid is not None:
            from tui.app import LoupeApp

            assert isinstance(self.app, LoupeApp)
            self.app.promote_trace(tid)

    def action_preview_case(self) -> None:
        tid = self.table.selected_trace_id
        if tid is not None:
            from tui.app import LoupeApp

            assert isinstance(self.app, LoupeApp)
            self.app.preview_case(tid)

    def action_cases(self) -> None:
        from tui.app import LoupeApp

        assert isinstance(self.app, LoupeApp)
        self.app.open_cases()

    def action_open(self) -> None:
        self.table.action_open()

    def select_trace(self, trace_id: str) -> None:
        self.table.select_trace(trace_id)

    def action_reload(self) -> None:
        self._apply(self.table.filter, recount=True)

    def on_trace_table_opened(self, message: TraceTable.Opened) -> None:
        from tui.app import LoupeApp

        assert isinstance(self.app, LoupeApp)
        self.app.open_trace(message.trace_id)
