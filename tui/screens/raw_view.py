"""A pager for the raw JSON of one step: every character, unwrapped, scrollable both ways."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from tui.format import inert, one_line
from tui.widgets.text_view import TextView


class RawJsonScreen(ModalScreen[None]):
    """The step as stored, in full; closes with escape, q or r."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,r", "close", "Close", id="raw.close"),
    ]

    def __init__(self, title: str, raw: str) -> None:
        super().__init__()
        self.title_text = title
        self.raw = raw

    def compose(self) -> ComposeResult:
        with Vertical(id="raw-dialog"):
            header = Text("raw JSON · ", style="bold")
            header.append(one_line(self.title_text, 120), style="bold cyan")
            header.append(f"   {len(self.raw):,} chars · escape to close", style="dim")
            yield Static(header, id="raw-title")
            yield TextView(Text(inert(self.raw)), wrap=False, id="raw-json")

    def on_mount(self) -> None:
        self.query_one(TextView).focus()

    def action_close(self) -> None:
        self.dismiss(None)
