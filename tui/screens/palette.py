"""Command palette entries of a screen: "area: verb", offered only while the action can run."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class PaletteCommand:
    """One command palette entry: "area: verb", its help, and the action it runs on the screen."""

    title: str
    help: str
    action: str


class PaletteScreen:
    """Mixin for screens: their PALETTE, filtered by check_action (the app lists them in ctrl+p)."""

    PALETTE: ClassVar[tuple[PaletteCommand, ...]] = ()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return True

    def palette_commands(self) -> Iterator[PaletteCommand]:
        for cmd in self.PALETTE:
            if self.check_action(cmd.action, ()):
                yield cmd
