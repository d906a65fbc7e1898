"""A scrollable view of one (possibly huge) Rich Text that renders only the visible lines."""

from __future__ import annotations

from typing import ClassVar

from rich.cells import cell_len
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip


class TextView(ScrollView, can_focus=True):
    """Word-wrapped (`wrap=True`) or unwrapped with horizontal scrolling (`wrap=False`, for raw JSON).

    The text is split into lines once per width; strips are made only for lines on screen and cached.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("j", "scroll_down", "Down", show=False),
        Binding("k", "scroll_up", "Up", show=False),
    ]

    DEFAULT_CSS = """
    TextView {
        height: 1fr;
        overflow-y: auto;
        overflow-x: auto;
        scrollbar-size-vertical: 1;
        scrollbar-size-horizontal: 1;
        scrollbar-gutter: stable;
        padding: 0 1;
    }
    TextView.-wrap { overflow-x: hidden; }
    """

    def __init__(
        self,
        text: Text | None = None,
        *,
        wrap: bool = True,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.wrap = wrap
        self.set_class(wrap, "-wrap")
        self._text = text or Text()
        self._lines: list[Text] | None = None
        self._lines_width = -1
        self._strips: LRUCache[tuple[int, int, int], Strip] = LRUCache(1024)

    @property
    def text(self) -> Text:
        return self._text

    @property
    def plain(self) -> str:
        return self._text.plain

    def set_text(self, text: Text, *, scroll_home: bool = True) -> None:
        self._text = text
        self._lines = None
        self._strips.clear()
        if scroll_home:
            self.scroll_to(0, 0, animate=False)
        self._update_lines()
        self.refresh()

    def _content_width(self) -> int:
        return max(self.scrollable_content_region.width, 1)

    def _update_lines(self) -> None:
        if not self.is_mounted:
            return
        width = self._content_width()
        if self._lines is not None and (not self.wrap or width == self._lines_width):
            return
        lines: list[Text]
        if self.wrap:
            lines = list(self._text.wrap(self.app.console, width, overflow="fold"))
            virtual_width = 0
        else:
            lines = list(self._text.split("\n", allow_blank=True))
            for line in lines:
                if "\t" in line.plain:
                    line.expand_tabs()
            virtual_width = max((cell_len(line.plain) for line in lines), default=0)
        self._lines = lines
        self._lines_width = width
        self._strips.clear()
        self.virtual_size = Size(virtual_width, len(lines))

    def notify_style_update(self) -> None:
        super().notify_style_update()
        strips = getattr(self, "_strips", None)  # also called while the widget is being constructed
        if strips is not None:
            strips.clear()

    def on_mount(self) -> None:
        self.call_after_refresh(self._update_lines)

    def on_resize(self, event: events.Resize) -> None:
        self._update_lines()

    def render_line(self, y: int) -> Strip:
        width = self._content_width()
        if self.wrap and self._lines is not None and width != self._lines_width:
            self._update_lines()  # the width changed without a resize (a scrollbar came or went)
        base = self.rich_style
        if self._lines is None:
            return Strip.blank(width, base)
        index = int(self.scroll_y) + y
        if index >= len(self._lines):
            return Strip.blank(width, base)
        x = int(self.scroll_x) if not self.wrap else 0
        key = (index, x, width)
        strip = self._strips.get(key)
        if strip is None:
            line = self._lines[index]
            if not self.wrap and len(line) > x + 4 * width:
                # A huge unwrapped line (a 5 MB JSON string): render only the slice on screen. Character and
                # cell offsets differ only for wide characters, which at worst shifts this one line.
                line, x = line[x : x + 2 * width], 0
            strip = Strip(list(line.render(self.app.console)))
            strip = strip.crop(x, x + width).extend_cell_length(width).apply_style(base)
            self._strips[key] = strip
        return strip
