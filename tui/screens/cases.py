"""The eval cases screen (`c`): every case, its source trace, and its last result per prompt version."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Header, Static

from store.db import EvalResultRow, Store
from tui.format import one_line, safe_text
from tui.screens.palette import PaletteCommand, PaletteScreen
from tui.widgets.footer import WideFooter
from tui.workers import ReportsWorkerFailures

if TYPE_CHECKING:
    from store.models import EvalCase

RESULT_STYLE = {"pass": "green", "fail": "bold red", "not run": "dim"}


def results_text(results: list[EvalResultRow], limit: int = 4) -> Text:
    """"v7 fail · v6 pass", newest first; "never run" when there are none."""
    if not results:
        return Text("never run", style="dim")
    text = Text()
    for i, r in enumerate(results[:limit]):
        if i:
            text.append(" · ", style="dim")
        text.append(one_line(r.prompt_version or "(no version)", 20))
        text.append(" ")
        text.append(r.status, style=RESULT_STYLE.get(r.status, ""))
    if len(results) > limit:
        text.append(f" +{len(results) - limit}", style="dim")
    return text


def case_detail(case: EvalCase, results: list[EvalResultRow]) -> Text:
    """The selected case in words: expectation, assertions and each version's last result with its reasons."""
    text = Text()
    text.append(one_line(case.name, 120), style="bold")
    text.append(f"   {case.id}   group ", style="dim")
    text.append(one_line(case.group, 60))
    text.append("\n")
    text.append(safe_text(case.expected))
    text.append("\n")
    for a in case.assertions:
        text.append("  • ", style="dim")
        text.append(a.type, style="cyan")
        text.append(" ")
        text.append(one_line(a.description, 160))
        text.append("\n")
    for r in results:
        text.append(one_line(f"{r.prompt_name or '(no prompt)'}@{r.prompt_version or '(no version)'}", 60))
        text.append("  ")
        text.append(r.status, style=RESULT_STYLE.get(r.status, ""))
        text.append(f"  {r.ran_at}", style="dim")
        if r.trace_id:
            text.append(f"  trace {one_line(r.trace_id, 40)}", style="dim")
        text.append("\n")
        for failed in (r.data.get("failed") or [])[:5]:
            text.append("    ✗ ", style="red")
            text.append(one_line(str(failed), 160))
            text.append("\n")
        reason = r.data.get("reason")
        if reason:
            text.append("    ", style="dim")
            text.append(one_line(str(reason), 160), style="dim")
            text.append("\n")
    text.rstrip()
    return text


class CasesScreen(ReportsWorkerFailures, PaletteScreen, Screen[None]):
    """A table of eval cases; enter opens the source trace, escape goes back to the list."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="cases.back"),
        Binding("enter", "open_source", "Open source trace", id="cases.open"),
        Binding("r", "reload", "Reload", id="cases.reload"),
    ]

    PALETTE: ClassVar[tuple[PaletteCommand, ...]] = (
        PaletteCommand("cases: open source trace", "Open the trace the selected case was made from", "open_source"),
        PaletteCommand("cases: reload", "Read the cases and results again", "reload"),
        PaletteCommand("cases: back to list", "Close the eval cases", "back"),
    )

    @dataclass
    class _Loaded(Message):
        cases: list[EvalCase]
        results: dict[str, list[EvalResultRow]]
        source: str
        error: str | None = None

    def __init__(self, store: Store, evals_dir: Path | None = None) -> None:
        super().__init__()
        self.store = store
        self.evals_dir = evals_dir
        self.cases: list[EvalCase] = []
        self.results: dict[str, list[EvalResultRow]] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(Text("loading eval cases…", style="dim"), id="cases-summary")
        table: DataTable[Text] = DataTable(id="cases-table", cursor_type="row", zebra_stripes=True)
        yield table
        yield Static(id="cases-detail")
        yield WideFooter()

    def on_mount(self) -> None:
        table = self.query_one("#cases-table", DataTable)
        for label in ("Group", "Case", "Name", "Source trace", "Version", "Asserts", "Last results"):
            table.add_column(label, key=label)
        self._load()

    @work(thread=True, exclusive=True, group="cases", exit_on_error=False, description="reading the eval cases")
    def _load(self) -> None:
        from store.eval_run import CaseFileError, load_cases_for_run

        # The same cases as `loupe evals list`: the committed evals/ folder when it has any, else the store's.
        try:
            cases, source = load_cases_for_run(self.store, self.evals_dir)
        except CaseFileError as exc:
            self.post_message(self._Loaded([], {}, "", error=str(exc)))
            return
        results: dict[str, list[EvalResultRow]] = {}
        for r in self.store.last_eval_results():
            results.setdefault(r.case_id, []).append(r)
        self.post_message(self._Loaded(cases, results, source))

    def on_cases_screen__loaded(self, message: _Loaded) -> None:
        self.cases, self.results = message.cases, message.results
        table = self.query_one("#cases-table", DataTable)
        table.clear()
        for case in self.cases:
            src = case.source_trace
            version = src.get("prompt_version")
            table.add_row(
                Text(one_line(case.group, 28)),
                Text(case.id, style="bold"),
                Text(one_line(case.name, 40)),
                Text(one_line(str(src.get("id", "?")), 24), style="cyan"),
                Text(one_line(str(version), 16)) if version is not None else Text("(no version)", style="dim"),
                Text(str(len(case.assertions)), justify="right"),
                results_text(self.results.get(case.id, [])),
                key=case.id,
            )
        summary = self.query_one("#cases-summary", Static)
        if message.error:
            summary.update(Text.assemble(("Cannot read the eval cases: ", "bold red"), one_line(message.error, 300)))
        elif not self.cases:
            summary.update(Text("No eval cases yet: press e (or E to review first) on a failing trace.",
                                style="dim"))
        else:
            groups = len({c.group for c in self.cases})
            summary.update(Text.assemble((f"{len(self.cases):,}", "bold"),
                                         f" case{'s' if len(self.cases) != 1 else ''} in {groups} "
                                         f"group{'s' if groups != 1 else ''} from ",
                                         one_line(message.source, 120)))
            table.focus()
            self._show_detail(table.cursor_row)
        self.refresh_bindings()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail(event.cursor_row)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open_source()

    def _show_detail(self, row: int) -> None:
        detail = self.query_one("#cases-detail", Static)
        if 0 <= row < len(self.cases):
            case = self.cases[row]
            detail.update(case_detail(case, self.results.get(case.id, [])))
        else:
            detail.update("")

    def selected_case(self) -> EvalCase | None:
        row = self.query_one("#cases-table", DataTable).cursor_row
        return self.cases[row] if 0 <= row < len(self.cases) else None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "open_source":
            return self.selected_case() is not None
        return True

    def action_open_source(self) -> None:
        case = self.selected_case()
        if case is None:
            return
        trace_id = str(case.source_trace.get("id") or "")
        from tui.app import LoupeApp

        assert isinstance(self.app, LoupeApp)
        self.app.push_screen(_trace_view(self.store, trace_id))

    def action_reload(self) -> None:
        self._load()

    def action_back(self) -> None:
        self.dismiss(None)


def _trace_view(store: Store, trace_id: str) -> Screen[str | None]:
    from tui.screens.trace_view import TraceViewScreen

    return TraceViewScreen(store, trace_id)
