"""The trace view's findings: blocks of Rich Text, wrapped once per width, rendered a visible line at a time."""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from typing import ClassVar

from rich.console import Console
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

# The texts of one block, each with the indent of its first line and of the lines it wraps onto.
Block = list[tuple[Text, int, int]]


def hanging_wrap(text: Text, console: Console, width: int, indent: int, hang: int) -> list[Text]:
    """`text` wrapped to `width` cells, its first line indented by `indent`, the lines after it by `hang`."""
    first_room, room = max(width - indent, 1), max(width - hang, 1)
    lines = list(text.wrap(console, first_room, overflow="fold"))
    if len(lines) > 1 and room != first_room:
        # The rest again at its own width, from where the first line ends (the space it broke at dropped).
        plain = text.plain
        start = len(lines[0].plain)
        while start < len(plain) and plain[start] in " \n":
            start += 1
        lines = [lines[0], *text[start:].wrap(console, room, overflow="fold")]
    for n, line in enumerate(lines):
        line.pad_left(indent if n == 0 else hang)  # keeps the line's own style and moves its spans along
    return lines


class FindingsPanel(ScrollView, can_focus=True):
    """As tall as its lines up to its max-height, then scrollable (focus it, or the mouse wheel).

    Block i is finding i: `show_block` scrolls it into view, a click on it posts `Clicked(i)`. A trace with
    thousands of findings costs one wrap of each block and a Strip per line on screen, never a widget each."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("j", "scroll_down", "Down", show=False),
        Binding("k", "scroll_up", "Up", show=False),
    ]

    DEFAULT_CSS = """
    FindingsPanel {
        height: auto;
        overflow-x: hidden;
        overflow-y: auto;
        scrollbar-gutter: stable;
        scrollbar-size-vertical: 1;
        scrollbar-size-horizontal: 0;
    }
    """

    @dataclass
    class Clicked(Message):
        """A block was clicked."""

        index: int

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._blocks: list[Block] = []
        self._wrapped: dict[int, list[Text]] = {}  # block index -> its lines at `_width`
        self._width = -1
        self._lines: list[Text] = []
        self._starts: list[int] = []  # the first line of each block

    # ------------------------------------------------------------------ content

    @property
    def block_count(self) -> int:
        return len(self._blocks)

    @property
    def plain(self) -> str:
        """All lines as plain text (for tests and for copying)."""
        self._layout(self._text_width())
        return "\n".join(line.plain for line in self._lines)

    def set_blocks(self, blocks: list[Block]) -> None:
        self._blocks = list(blocks)
        self._wrapped.clear()
        self._width = -1
        self._relayout()

    def replace_block(self, index: int, block: Block) -> None:
        """One block changed (the current finding moved): only it is wrapped again."""
        if 0 <= index < len(self._blocks):
            self._blocks[index] = block
            self._wrapped.pop(index, None)
            self._relayout()

    def block_lines(self, index: int) -> tuple[int, int]:
        """(first line, number of lines) of a block at the current width."""
        self._layout(self._text_width())
        end = self._starts[index + 1] if index + 1 < len(self._starts) else len(self._lines)
        return self._starts[index], end - self._starts[index]

    def show_block(self, index: int) -> None:
        """Scroll so that the block is in view, whole if it fits (its first line otherwise)."""
        if not 0 <= index < len(self._blocks):
            return
        first, count = self.block_lines(index)
        height = max(self.scrollable_content_region.height, 1)
        self.scroll_to_region(Region(0, first, 1, min(count, height)), animate=False, immediate=True, top=False)

    # ------------------------------------------------------------------ wrapping

    def _text_width(self) -> int:
        if self.is_mounted and self.size.width:
            return max(self.scrollable_content_region.width, 1)
        return 80

    def _wrap_block(self, index: int, width: int) -> list[Text]:
        lines: list[Text] = []
        console = self.app.console
        for text, indent, hang in self._blocks[index]:
            lines += hanging_wrap(text, console, width, indent, hang)
        return lines

    def _layout(self, width: int) -> None:
        if width == self._width and self._lines:
            return
        if width != self._width:
            self._wrapped.clear()
            self._width = width
        lines: list[Text] = []
        starts: list[int] = []
        for i in range(len(self._blocks)):
            wrapped = self._wrapped.get(i)
            if wrapped is None:
                wrapped = self._wrapped[i] = self._wrap_block(i, width)
            starts.append(len(lines))
            lines.extend(wrapped)
        self._lines = lines
        self._starts = starts

    def _relayout(self) -> None:
        if not self.is_mounted:
            return
        self._lines = []
        self._layout(self._text_width())
        self.virtual_size = Size(0, len(self._lines))
        self.refresh(layout=True)

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        # `width` includes the scrollbar's column, which the stable gutter always keeps.
        self._layout(max(width - self.styles.scrollbar_size_vertical, 1))
        return len(self._lines)

    def on_mount(self) -> None:
        self._relayout()

    def on_resize(self, event: events.Resize) -> None:
        self._relayout()

    # ------------------------------------------------------------------ rendering

    def render_line(self, y: int) -> Strip:
        width = max(self.scrollable_content_region.width, 1)
        self._layout(width)
        base = self.rich_style
        index = int(self.scroll_y) + y
        if index >= len(self._lines):
            return Strip.blank(width, base)
        strip = Strip(list(self._lines[index].render(self.app.console)))
        return strip.crop(0, width).extend_cell_length(width).apply_style(base)

    def on_click(self, event: events.Click) -> None:
        line = int(self.scroll_y) + event.y
        if not self._starts or line >= len(self._lines) or line < 0:
            return
        index = bisect_right(self._starts, line) - 1
        self.post_message(self.Clicked(index))
