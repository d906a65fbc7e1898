"""A modal listing prompt versions with their trace counts; it returns the version filter to apply."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from store.db import NO_PROMPT, NO_VERSION, Store
from tui.format import one_line, scrub
from tui.workers import ReportsWorkerFailures

VersionRow = tuple[str | None, str | None, int]


def version_value(name: str | None, version: str | None) -> str:
    """The filter value for exactly one (prompt name, version) row: always "NAME@VERSION".

    The store splits it at the last "@" (a name may hold "@", as in "team@acme@v9") and reads "(no prompt)" and
    "(no version)" as NULL, so a row without a name or version selects only traces without one, never every
    prompt's traces with that version."""
    return f"{name if name is not None else NO_PROMPT}@{version if version is not None else NO_VERSION}"


LABEL_WIDTH = 48  # cells for "name@version"; longer ones are cut with "…"


def _shown(value: str | None, missing: str) -> str:
    if value is None:
        return missing
    return one_line(value, LABEL_WIDTH) if value else '""'  # an empty name is still something to see


def version_name_text(name: str | None, version: str | None) -> Text:
    label = Text(no_wrap=True, overflow="ellipsis")
    label.append(_shown(name, NO_PROMPT), style="bold" if name else "dim")
    label.append("@")
    label.append(_shown(version, NO_VERSION), style="bold cyan" if version else "dim")
    return scrub(label)


def count_label(name: Text, count: int, width: int) -> Text:
    """`name` cut or padded to `width` cells, then the trace count: one line, whatever the name holds."""
    label = name.copy()
    label.truncate(width, overflow="ellipsis", pad=True)
    label.append("   ")
    label.append(f"{count:,} trace{'s' if count != 1 else ''}", style="dim")
    return label


class VersionPicker(ReportsWorkerFailures, ModalScreen[list[str] | None]):
    """Pick one prompt version (or all). Dismisses with the new `prompt_versions` filter, or None if cancelled."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="versions.cancel"),
    ]

    @dataclass
    class _Loaded(Message):
        rows: list[VersionRow]

    def __init__(self, store: Store, current: list[str] | None = None) -> None:
        super().__init__()
        self.store = store
        self.current = list(current or [])
        self.values: list[list[str]] = []  # the filter value of each option, by option index

    def compose(self) -> ComposeResult:
        with Vertical(id="version-dialog"):
            yield Static(Text("Prompt version", style="bold"), id="version-title")
            yield OptionList(Option(Text("loading…", style="dim"), disabled=True), id="version-options")
            yield Static(Text("enter select · escape cancel", style="dim"), id="version-help")

    def on_mount(self) -> None:
        self._load()

    @work(thread=True, exclusive=True, group="versions", exit_on_error=False, description="listing prompt versions")
    def _load(self) -> None:
        self.post_message(self._Loaded(self.store.prompt_versions()))

    def on_version_picker__loaded(self, message: _Loaded) -> None:
        options = self.query_one("#version-options", OptionList)
        options.clear_options()
        total = sum(r[2] for r in message.rows)
        names = [version_name_text(n, v) for n, v, _ in message.rows]
        width = min(max([12, *(t.cell_len for t in names)]), LABEL_WIDTH)
        prompts: list[Option] = [Option(count_label(Text("All versions", style="bold"), total, width))]
        self.values = [[]]
        highlight = 0
        for (name, version, count), text in zip(message.rows, names, strict=True):
            value = version_value(name, version)
            if self.current == [value]:
                highlight = len(self.values)
            self.values.append([value])
            prompts.append(Option(count_label(text, count, width)))
        options.add_options(prompts)
        options.highlighted = highlight
        options.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if 0 <= event.option_index < len(self.values):
            self.dismiss(self.values[event.option_index])

    def action_cancel(self) -> None:
        self.dismiss(None)
