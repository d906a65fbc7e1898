"""The loupe Textual app and the one factory that the CLI and the tests use to build it."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.css.query import NoMatches
from textual.message import Message
from textual.screen import Screen

from store.db import Store, TraceFilter
from tui.format import inert
from tui.screens.trace_list import POLL_SECONDS, TraceListScreen
from tui.screens.trace_view import TraceViewScreen
from tui.widgets.trace_table import PAGE_SIZE
from tui.workers import ReportsWorkerFailures

if TYPE_CHECKING:
    from store.config import Config
    from store.evals import PromoteResult
    from store.models import EvalCase


def display_path(path: Path | None) -> str:
    """A path relative to the working directory when it is under it (what a person would type), else absolute."""
    if path is None:
        return "?"
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


class LoupeApp(ReportsWorkerFailures, App[None]):
    """A terminal debugger for the traces of LLM applications."""

    CSS_PATH = "app.tcss"
    TITLE = "loupe"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("question_mark", "toggle_keys", "Keys", id="app.keys"),
    ]

    @dataclass
    class _Promoted(Message):
        trace_id: str
        result: Any  # store.evals.PromoteResult; imported lazily so the app starts without it

    def __init__(
        self,
        store: Store,
        *,
        trace_id: str | None = None,
        flt: TraceFilter | None = None,
        evals_dir: Path | None = None,
        page_size: int = PAGE_SIZE,
        poll_interval: float | None = POLL_SECONDS,
        config: Config | None = None,
    ) -> None:
        super().__init__()
        # Masking patterns, groups and the escalation tool for new cases; None: read from the working directory
        # when first needed (a bad loupe.toml then fails the promotion with its message, not the whole app).
        self._config = config
        self.store = store
        self.initial_trace_id = trace_id
        self.initial_filter = flt or TraceFilter()
        self.evals_dir = Path(evals_dir) if evals_dir is not None else Path("evals")
        self.page_size = page_size
        self.poll_interval = poll_interval  # seconds between checks for traces written by others; None: never
        # Two quick presses of `e` must not race to write the same case.
        self._promote_lock = threading.Lock()

    def get_default_screen(self) -> Screen[Any]:
        return TraceListScreen(self.store, self.initial_filter, page_size=self.page_size,
                               poll_interval=self.poll_interval)

    def on_mount(self) -> None:
        self.sub_title = inert(str(self.store.path), keep_newlines=False)
        if self.initial_trace_id:
            self.open_trace(self.initial_trace_id)

    # ------------------------------------------------------------------ navigation

    def open_trace(self, trace_id: str) -> None:
        self.push_screen(TraceViewScreen(self.store, trace_id), self._trace_closed)

    def _trace_closed(self, trace_id: str | None) -> None:
        """Back on the list, the cursor goes to the trace just seen (opened with `loupe TRACE_ID`, it may be far down)."""
        if trace_id is not None and isinstance(self.screen, TraceListScreen):
            self.screen.select_trace(trace_id)

    # ------------------------------------------------------------------ promotion

    def config(self) -> Config:
        if self._config is None:
            from store.config import load_config

            self._config = load_config()
        return self._config

    def promote_trace(self, trace_id: str, case: EvalCase | None = None) -> None:
        """Turn a trace into an eval case in the background (`case`: one edited in the preview); the outcome is
        notified."""
        self._promote(trace_id, case)

    def preview_case(self, trace_id: str) -> None:
        """The case preview (`E`); saving it promotes the edited case."""
        from tui.screens.case_preview import CasePreview

        def chosen(case: EvalCase | None) -> None:
            if case is not None:
                self.promote_trace(trace_id, case)

        from store.config import ConfigError

        try:
            config = self.config()
        except ConfigError as exc:  # a bad loupe.toml: say so, the preview cannot be built as configured
            self.notify(inert(str(exc)), title="Configuration", severity="error", markup=False, timeout=10)
            return
        self.push_screen(CasePreview(self.store, trace_id, config), chosen)

    def open_cases(self) -> None:
        from tui.screens.cases import CasesScreen

        self.push_screen(CasesScreen(self.store, self.evals_dir))

    @work(thread=True, exclusive=False, group="promote", exit_on_error=False, description="promoting the trace")
    def _promote(self, trace_id: str, case: EvalCase | None = None) -> None:
        from store.evals import promote

        config = self.config()
        with self._promote_lock:
            result = promote(self.store, trace_id, self.evals_dir, config=config, case=case)
        self.post_message(self._Promoted(trace_id, result))

    def on_loupe_app__promoted(self, message: _Promoted) -> None:
        result: PromoteResult = message.result
        where = display_path(result.path)
        if result.created:
            text = f"Eval case {result.case_id} saved: {where}"
        else:
            text = f"Already a case: {result.case_id}" + (f" ({where})" if result.path else "")
        self.notify(inert(text), title="Promote", markup=False, timeout=8)

    # ------------------------------------------------------------------ keys and commands

    def action_toggle_keys(self) -> None:
        try:
            self.screen.query_one("HelpPanel")
        except NoMatches:
            self.action_show_help_panel()
        else:
            self.action_hide_help_panel()

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        commands = getattr(screen, "palette_commands", None)
        if commands is not None:
            for cmd in commands():
                yield SystemCommand(cmd.title, cmd.help, partial(self.run_action, cmd.action, screen))
        yield SystemCommand("app: keys", "Show or hide all keys", self.action_toggle_keys)
        for cmd in super().get_system_commands(screen):
            if cmd.title in ("Keys", "Quit"):
                continue
            yield cmd._replace(title=f"app: {cmd.title.lower()}")
        yield SystemCommand("app: quit", "Quit loupe", self.action_quit)


def make_app(
    store: Store,
    *,
    trace_id: str | None = None,
    flt: TraceFilter | None = None,
    evals_dir: Path | None = None,
    page_size: int = PAGE_SIZE,
    poll_interval: float | None = POLL_SECONDS,
    config: Config | None = None,
) -> LoupeApp:
    """The app as the CLI runs it and the tests drive it."""
    return LoupeApp(store, trace_id=trace_id, flt=flt, evals_dir=evals_dir, page_size=page_size,
                    poll_interval=poll_interval, config=config)
