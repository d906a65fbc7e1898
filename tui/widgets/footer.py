"""The footer, with keys that are shown only where the terminal is wide enough for them."""

from __future__ import annotations

from collections.abc import Mapping

from textual import events
from textual.app import ComposeResult
from textual.widgets import Footer


class WideFooter(Footer):
    """Textual's footer; the keys of the actions in `wide_only` are left out below their width (in columns).

    They still work and are listed by `?` and the command palette; only the footer has no room for them.
    """

    def __init__(self, *, wide_only: Mapping[str, int] | None = None, id: str | None = None) -> None:
        super().__init__(id=id)
        self.wide_only = dict(wide_only or {})
        self._hidden: frozenset[str] = frozenset()

    def _hidden_at(self, width: int) -> frozenset[str]:
        return frozenset(action for action, needs in self.wide_only.items() if width < needs)

    def compose(self) -> ComposeResult:
        self._hidden = self._hidden_at(self.app.size.width)
        for widget in super().compose():
            if getattr(widget, "action", None) in self._hidden:
                continue
            yield widget

    def on_resize(self, event: events.Resize) -> None:
        if self.wide_only and self._hidden_at(self.app.size.width) != self._hidden:
            self.call_after_refresh(self.recompose)
