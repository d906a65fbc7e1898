"""A pager for the raw JSON of one step: every character, unwrapped, scrollable both ways; `o` hands it to $PAGER."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
from typing import ClassVar

from rich.text import Text
from textual.app import App, ComposeResult, SuspendNotSupported
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from tui.format import inert, one_line
from tui.widgets.text_view import TextView

DEFAULT_PAGER = "less"  # without -R: less shows any control character that got this far as ^X, never acts on it


def pager_command() -> list[str] | None:
    """$PAGER split as a shell would, else less, else more; None when there is none."""
    configured = os.environ.get("PAGER", "").strip()
    if configured:
        try:
            return shlex.split(configured)
        except ValueError:
            return [configured]
    for name in (DEFAULT_PAGER, "more"):
        if shutil.which(name):
            return [name]
    return None


def open_in_pager(app: App[object], title: str, raw: str) -> None:
    """Show `raw` (a step or trace as JSON) in the user's pager, the app suspended meanwhile.

    The text is written inert (escape sequences and invisible controls as visible symbols) to a private temporary
    file, so the pager shows every character of a 5 MB value without any of them acting on the terminal. Where
    the app cannot hand the terminal over (no terminal, a web driver), the file is kept and its path is told."""
    fd, path = tempfile.mkstemp(prefix="loupe-", suffix=".json", text=True)
    with os.fdopen(fd, "w", encoding="utf-8", errors="replace") as fh:
        fh.write(inert(raw))
        fh.write("\n")
    command = pager_command()
    if command is None:
        app.notify(f"No pager found (set $PAGER): {one_line(title, 80)} is in {path}", title="Pager",
                   markup=False, timeout=10)
        return
    try:
        with app.suspend():
            subprocess.run([*command, path], check=False)
    except SuspendNotSupported:
        app.notify(f"Cannot hand the terminal to a pager here: {one_line(title, 80)} is in {path}",
                   title="Pager", markup=False, timeout=10)
        return
    except OSError as exc:
        app.notify(f"Cannot run the pager {one_line(' '.join(command), 80)}: {one_line(exc, 200)}; "
                   f"{one_line(title, 80)} is in {path}", title="Pager", severity="error", markup=False, timeout=10)
        return
    os.unlink(path)


class RawJsonScreen(ModalScreen[None]):
    """The step as stored, in full; closes with escape, q or r; `o` opens it in $PAGER."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,r", "close", "Close", id="raw.close"),
        Binding("o", "pager", "Open in pager", id="raw.pager"),
    ]

    def __init__(self, title: str, raw: str) -> None:
        super().__init__()
        self.title_text = title
        self.raw = raw

    def compose(self) -> ComposeResult:
        with Vertical(id="raw-dialog"):
            header = Text("raw JSON · ", style="bold")
            header.append(one_line(self.title_text, 120), style="bold cyan")
            header.append(f"   {len(self.raw):,} chars · o for $PAGER · escape to close", style="dim")
            yield Static(header, id="raw-title")
            # TextView renders only the lines on screen, and only the slice of a huge line that is on screen.
            yield TextView(Text(inert(self.raw)), wrap=False, id="raw-json")

    def on_mount(self) -> None:
        self.query_one(TextView).focus()

    def action_close(self) -> None:
        self.dismiss(None)

    def action_pager(self) -> None:
        open_in_pager(self.app, self.title_text, self.raw)
