"""A virtual list of traces: line API over paged SQLite queries, never one widget per row."""

from __future__ import annotations

import copy
import dataclasses
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import ClassVar, Literal

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events, work
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.worker import get_current_worker

from store.db import Store, TraceFilter, trace_bounds
from store.models import TraceSummary, format_time, parse_time
from tui.format import NOT_APPLICABLE, UNKNOWN, fmt_latency, fmt_time, one_line, summary_cost, summary_tokens
from tui.workers import ReportsWorkerFailures

PAGE_SIZE = 200
# Pages kept in the LRU cache: 2,400 rows at the default page size, some fifty screens. Rows are cheap to read
# again (keyset queries), and the cache is most of what the list holds in memory.
MAX_PAGES = 12
MAX_STRIPS = 400  # rendered rows kept: a few screens' worth

SEVERITY_STYLE = {"error": Style(color="red", bold=True), "warning": Style(color="yellow"), "info": Style(color="cyan")}
# The worst severity as a letter beside the count, so that it reads without colour too ("2 E").
SEVERITY_LETTER = {"error": "E", "warning": "W", "info": "I"}
_DIM = Style(dim=True)
_ERROR = Style(color="red")
_OK = Style(color="green")
_PARTIAL = Style(color="yellow")


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    short_title: str
    min: int
    ideal: int
    align: Literal["left", "right"] = "left"
    grow: bool = False  # takes a share of the space left over once every column has its ideal width
    snap: bool = False  # goes from min to ideal width in one step or not at all (the time column's two forms)
    order: int = 0  # which columns get their ideal width first when space is short (lowest first)
    drop: int = 0  # when the terminal is too narrow, columns with the highest `drop` go first; 0 never goes


COLUMNS: tuple[Column, ...] = (
    Column("time", "time", "time", 11, 19, snap=True, order=2),
    Column("id", "trace", "trace", 10, 16, grow=True, order=1),
    Column("prompt", "prompt@version", "prompt", 16, 22, grow=True, order=3),
    Column("model", "model", "model", 8, 18, grow=True, drop=3, order=4),
    Column("steps", "steps", "st", 5, 5, "right", drop=5, order=9),
    Column("tokens", "tokens in/out", "in/out", 11, 15, "right", order=5),
    Column("cost", "cost", "cost", 10, 11, "right", order=6),
    Column("latency", "latency", "lat", 7, 8, "right", drop=4, order=8),
    Column("status", "status", "status", 7, 7, drop=2),
    Column("findings", "findings", "find", 4, 8, "right", order=7),
)
GAP = 1
MAX_GROW = 48  # a growing column never gets wider than this; the rest of a wide terminal stays blank


@lru_cache(maxsize=64)
def layout_columns(width: int, columns: Sequence[Column] = COLUMNS) -> tuple[tuple[Column, int], ...]:
    """Which columns fit in `width` cells, and how wide each one is."""
    cols = list(columns)

    def needed(cs: list[Column]) -> int:
        return sum(c.min for c in cs) + GAP * (len(cs) - 1)

    while needed(cols) > width:
        droppable = [c for c in cols if c.drop]
        if not droppable:
            break
        cols.remove(max(droppable, key=lambda c: c.drop))
    widths = {c.key: c.min for c in cols}
    spare = width - needed(cols)
    for c in sorted(cols, key=lambda c: c.order):  # first every column up to its ideal width, by importance
        if spare <= 0:
            break
        add = min(c.ideal - widths[c.key], spare)
        if c.snap and add < c.ideal - widths[c.key]:
            continue
        widths[c.key] += add
        spare -= add
    growing = [c for c in cols if c.grow]
    while spare > 0 and growing:  # then the flexible text columns share what is left, one cell at a time
        progressed = False
        for c in growing:
            if spare <= 0:
                break
            if widths[c.key] < MAX_GROW:
                widths[c.key] += 1
                spare -= 1
                progressed = True
        if not progressed:
            break
    return tuple((c, widths[c.key]) for c in cols)


def fit(text: str, width: int, align: Literal["left", "right"] = "left") -> str:
    """Pad or truncate (with "…") to exactly `width` cells."""
    if width <= 0:
        return ""
    if cell_len(text) > width:
        return set_cell_size(text, width - 1) + "…"
    pad = width - cell_len(text)
    return (" " * pad + text) if align == "right" else (text + " " * pad)


def cell_values(row: TraceSummary, col: Column, width: int) -> tuple[str, Style | None]:
    """The text of one cell (already made inert) and its style."""
    key = col.key
    if key == "time":
        if width >= 19 or not row.started_at:
            return fmt_time(row.started_at), _DIM
        return row.started_at[5:16].replace("T", " "), _DIM
    if key == "id":
        return one_line(row.id), None
    if key == "prompt":
        if row.prompt_name is None and row.prompt_version is None:
            return one_line(row.name) if row.name else "?", _DIM
        name = one_line(row.prompt_name) if row.prompt_name is not None else "?"
        version = one_line(row.prompt_version) if row.prompt_version is not None else "?"
        return f"{name}@{version}", None
    if key == "model":
        return (one_line(row.model), None) if row.model else ("?", _DIM)
    if key == "steps":
        return str(row.steps), None
    if key == "tokens":
        # "-" without LLM calls (nothing unknown), "?" unknown, "1,200+" a sum that leaves out steps without usage.
        tokens_in, tokens_out = summary_tokens(row)
        if tokens_in == NOT_APPLICABLE:
            return NOT_APPLICABLE, _DIM
        return f"{tokens_in}/{tokens_out}", (_DIM if tokens_in == tokens_out == UNKNOWN else None)
    if key == "cost":
        cost = summary_cost(row)
        return cost, (_DIM if cost in (UNKNOWN, NOT_APPLICABLE) else None)
    if key == "latency":
        return fmt_latency(row.latency_ms), None
    if key == "status":
        if row.status == "error":
            return "error", _ERROR
        if row.partial:
            return "partial", _PARTIAL
        return one_line(row.status), _OK
    if key == "findings":
        return findings_cell(row.findings, row.worst_severity, width)
    raise KeyError(key)


def findings_cell(count: int, worst: str | None, width: int) -> tuple[str, Style | None]:
    """The count and the worst severity's letter ("2 E"), coloured by that severity; "0" dim. Where the column
    is too narrow for both, the space goes, then the letter (the colour still tells the severity)."""
    if not count:
        return ("0  " if width >= 3 else "0"), _DIM  # the zero under the other counts, not under their letters
    style = SEVERITY_STYLE.get(worst or "", None)
    letter = SEVERITY_LETTER.get(worst or "")
    if letter is None:
        return str(count), style
    for text in (f"{count:,} {letter}", f"{count} {letter}", f"{count}{letter}"):
        if cell_len(text) <= width:
            return text, style
    return str(count), style


MAX_TIES = 10_000  # traces started in the same microsecond that `row_index` reads to place one among them


def row_index(store: Store, flt: TraceFilter, trace_id: str) -> int | None:
    """The row of a trace in the list under `flt` (newest first), or None if the filter leaves it out.

    Two queries through the store's own filter, never a scan of the list: the number of rows that started later
    than the trace (a `since` bound one microsecond after its start), plus its place among the rows that started in
    the same microsecond (the list orders those by ID, descending). Finding the trace among those rows is also what
    proves it passes the filter. A trace without a start time (listed last) gives None.
    """
    try:
        start = trace_bounds(store.get_trace(trace_id).trace)[0]
    except LookupError:
        return None
    if start is None:
        return None
    tick = timedelta(microseconds=1)

    def bound(given: str | None, mine: datetime, *, later: bool) -> str | None:
        """The stricter of the filter's own bound and ours."""
        theirs = parse_time(given) if given else None
        if theirs is not None and (theirs > mine if later else theirs < mine):
            mine = theirs
        return format_time(mine)

    same = dataclasses.replace(flt, since=bound(flt.since, start, later=True),
                               until=bound(flt.until, start + tick, later=False))
    ties = [r.id for r in store.list_traces(same, limit=MAX_TIES)]
    if trace_id not in ties:
        return None
    newer = dataclasses.replace(flt, since=bound(flt.since, start + tick, later=True))
    return store.count_traces(newer) + ties.index(trace_id)


def follow(cursor: int, scroll: int, index: int | None, count: int, height: int) -> tuple[int, int]:
    """Where the cursor and the view go when rows have come and gone above them.

    The cursor stays on its trace, now at row `index` (or at its row number, when the list no longer holds the
    trace). A view at the top stays at the top, so that new traces show; any other view moves with the selected
    trace, so that the rows in view stay where they were. `height` counts the header line.
    """
    if count <= 0:
        return 0, 0
    new_cursor = min(cursor, count - 1) if index is None else index
    new_scroll = scroll if scroll == 0 or index is None else scroll + index - cursor
    visible = max(height - 1, 1)
    new_scroll = max(0, min(new_scroll, count - visible))
    if new_cursor < new_scroll:
        new_scroll = new_cursor
    elif new_cursor >= new_scroll + visible:
        new_scroll = new_cursor - visible + 1
    return new_cursor, new_scroll


class TraceTable(ReportsWorkerFailures, ScrollView, can_focus=True):
    """The trace list: renders only the visible lines, fetching pages of rows from the store as needed."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Open", id="list.open"),
        Binding("up,k", "cursor_up", "Up", show=False, id="list.up"),
        Binding("down,j", "cursor_down", "Down", show=False, id="list.down"),
        Binding("pageup", "page_up", "Page up", show=False, id="list.page_up"),
        Binding("pagedown", "page_down", "Page down", show=False, id="list.page_down"),
        Binding("home", "first", "First", show=False, id="list.first"),
        Binding("end", "last", "Last", show=False, id="list.last"),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "trace-table--header",
        "trace-table--cursor",
        "trace-table--placeholder",
    }

    DEFAULT_CSS = """
    TraceTable {
        height: 1fr;
        overflow-x: hidden;
        overflow-y: auto;
        scrollbar-size-vertical: 1;
        scrollbar-gutter: stable;
        & > .trace-table--header { text-style: bold; background: $panel; color: $foreground; }
        & > .trace-table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
        }
        &:focus > .trace-table--cursor {
            background: $block-cursor-background;
            color: $block-cursor-foreground;
            text-style: $block-cursor-text-style;
        }
        & > .trace-table--placeholder { color: $text-muted; }
    }
    """

    cursor_row: reactive[int] = reactive(0, always_update=True)

    @dataclass
    class Opened(Message):
        """The user asked to open a trace (enter or double click)."""

        trace_id: str

    @dataclass
    class Highlighted(Message):
        """The trace under the cursor changed; None while its page is loading or the list is empty."""

        trace_id: str | None

    @dataclass
    class Counted(Message):
        """The number of rows matching the current filter is known."""

        count: int

    @dataclass
    class _PageLoaded(Message):
        generation: int
        page: int
        rows: list[TraceSummary]

    @dataclass
    class _PageFailed(Message):
        generation: int
        page: int

    @dataclass
    class _CountLoaded(Message):
        generation: int
        count: int

    @dataclass
    class _Located(Message):
        generation: int
        index: int | None

    @dataclass
    class _Refreshed(Message):
        """The rows read again after the store changed: the count and the pages in view, all at once."""

        token: int
        generation: int
        count: int
        pages: dict[int, list[TraceSummary]]
        start: tuple[int, int]  # (cursor row, scroll offset) when the refresh began
        place: tuple[int, int]  # where they go now, so that the same trace stays selected

    def __init__(
        self,
        store: Store,
        flt: TraceFilter | None = None,
        *,
        page_size: int = PAGE_SIZE,
        max_pages: int = MAX_PAGES,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.store = store
        self._filter = copy.deepcopy(flt) if flt is not None else TraceFilter()
        self.page_size = max(1, page_size)
        self.max_pages = max(2, max_pages)
        self.row_count: int | None = None
        self._pages: OrderedDict[int, list[TraceSummary]] = OrderedDict()
        self._loading: set[int] = set()
        self._failed: set[int] = set()
        self._generation = 0
        self._last_highlighted: str | None = None
        self._fetch_scheduled = False
        self._wanted: set[int] = set()
        self._pending_cursor: int | None = None  # a row to put the cursor on once the rows are counted
        self._refresh_token = 0
        self._locating: str | None = None  # a trace being looked for by select_trace
        # Rendered rows (before the cursor's and the widget's style), by (generation, row, width): a frame that
        # scrolls by a line or moves the cursor renders only the rows it has not shown before.
        self._strips: OrderedDict[tuple[int, int, int], Strip] = OrderedDict()

    # ------------------------------------------------------------------ public API

    @property
    def filter(self) -> TraceFilter:
        """A copy of the filter in use (the worker threads read theirs from their own copy)."""
        return copy.deepcopy(self._filter)

    def set_filter(self, flt: TraceFilter) -> None:
        self._filter = copy.deepcopy(flt)
        self.reload()

    def reload(self) -> None:
        """Forget cached rows and count and fetch again (new traces may have been written meanwhile)."""
        self._generation += 1
        self._pages.clear()
        self._strips.clear()
        self._loading.clear()
        self._failed.clear()
        self._wanted.clear()
        self._pending_cursor = None
        self._locating = None
        self.row_count = None
        # The scroll range stays until the new count is known: changing it costs a layout pass (a frame), and it
        # changes again when the count comes.
        self.scroll_to(y=0, animate=False)
        self.cursor_row = 0
        # The first page before the count: both take the store's one connection in turn, and the rows are what
        # the user waits for (a count over a million rows takes longer than a page).
        self._request_page(0)
        self._count_rows(self._generation, self.filter)
        self.refresh()

    def refresh_rows(self) -> bool:
        """Read the rows again (the store has changed), keeping the selected trace selected and the view in place.

        The rows on screen stay until the new ones have been read, so nothing flashes. False, and nothing done,
        while the rows are still being counted: that count reads the store as it is now anyway."""
        if self.row_count is None:
            return False
        self._refresh_token += 1
        start = (self.cursor_row, int(self.scroll_y))
        self._reread(self._refresh_token, self._generation, self.filter, self.selected_trace_id, start,
                     max(self.scrollable_content_region.height, 1))
        return True

    def row(self, index: int) -> TraceSummary | None:
        """The row at `index` if its page is in the cache (None while loading)."""
        page = self._pages.get(index // self.page_size)
        if page is None:
            return None
        self._pages.move_to_end(index // self.page_size)
        offset = index % self.page_size
        return page[offset] if offset < len(page) else None

    @property
    def selected_trace_id(self) -> str | None:
        if not self.row_count:
            return None
        row = self.row(self.cursor_row)
        return row.id if row is not None else None

    @property
    def cached_pages(self) -> list[int]:
        return list(self._pages)

    def move_cursor(self, index: int) -> None:
        """Put the cursor on row `index`, now or, while the rows are being counted, as soon as they are."""
        if self.row_count is None:
            self._pending_cursor = index
        else:
            self.cursor_row = index

    def select_trace(self, trace_id: str) -> None:
        """Put the cursor on this trace if the list holds it (found in the background); otherwise leave it."""
        if self.selected_trace_id == trace_id:
            return
        for page, rows in self._pages.items():
            for offset, row in enumerate(rows):
                if row.id == trace_id:
                    self.move_cursor(page * self.page_size + offset)
                    return
        self._locating = trace_id
        self._locate(self._generation, self.filter, trace_id)

    # ------------------------------------------------------------------ data

    def on_mount(self) -> None:
        self.reload()

    def _request_page(self, page: int) -> None:
        if page < 0 or page in self._pages or page in self._loading or page in self._failed:
            return
        if self.row_count is not None and page * self.page_size >= self.row_count:
            return
        self._loading.add(page)
        after = None
        previous = self._pages.get(page - 1)
        if previous is not None and len(previous) == self.page_size:
            # Keyset from the previous page's last row: no OFFSET scan when scrolling down page by page.
            last = previous[-1]
            after = (last.started_at, last.id)
        self._fetch_page(self._generation, self.filter, page, after)

    @work(thread=True, exclusive=False, group="trace-pages", exit_on_error=False, description="loading traces")
    def _fetch_page(
        self, generation: int, flt: TraceFilter, page: int, after: tuple[str | None, str] | None
    ) -> None:
        try:
            if after is not None:
                rows = self.store.list_traces(flt, limit=self.page_size, after=after)
            else:
                rows = self.store.list_traces(flt, limit=self.page_size, offset=page * self.page_size)
        except Exception:
            self.post_message(self._PageFailed(generation, page))
            raise  # the failure handler notifies it
        if not get_current_worker().is_cancelled:
            self.post_message(self._PageLoaded(generation, page, rows))

    @work(thread=True, exclusive=True, group="trace-locate", exit_on_error=False, description="finding the trace")
    def _locate(self, generation: int, flt: TraceFilter, trace_id: str) -> None:
        index = row_index(self.store, flt, trace_id)
        if not get_current_worker().is_cancelled:
            self.post_message(self._Located(generation, index))

    def on_trace_table__located(self, message: _Located) -> None:
        message.stop()
        if message.generation != self._generation:
            return
        self._locating = None
        if message.index is not None:
            self.move_cursor(message.index)

    @work(thread=True, exclusive=True, group="trace-count", exit_on_error=False, description="counting traces")
    def _count_rows(self, generation: int, flt: TraceFilter) -> None:
        count = self.store.count_traces(flt)
        if not get_current_worker().is_cancelled:
            self.post_message(self._CountLoaded(generation, count))

    # Not exclusive: an older refresh runs to its end (a cancelled worker would surface as a failure to whoever
    # waits on it) and its answer is dropped for the newer one's token.
    @work(thread=True, exclusive=False, group="trace-refresh", exit_on_error=False, description="reading new traces")
    def _reread(self, token: int, generation: int, flt: TraceFilter, keep: str | None, start: tuple[int, int],
                height: int) -> None:
        count = self.store.count_traces(flt)
        index = row_index(self.store, flt, keep) if keep is not None else None
        cursor, scroll = follow(start[0], start[1], index, count, height)
        pages: dict[int, list[TraceSummary]] = {}
        for page in range(scroll // self.page_size, (scroll + height) // self.page_size + 1):
            if page * self.page_size >= count or get_current_worker().is_cancelled:
                break
            pages[page] = self.store.list_traces(flt, limit=self.page_size, offset=page * self.page_size)
        if not get_current_worker().is_cancelled:
            self.post_message(self._Refreshed(token, generation, count, pages, start, (cursor, scroll)))

    def on_trace_table__refreshed(self, message: _Refreshed) -> None:
        message.stop()
        if message.token != self._refresh_token or message.generation != self._generation:
            return  # a newer refresh, or another filter, came since
        # Where the user moved while the rows were read, they move from the new place.
        cursor = message.place[0] + self.cursor_row - message.start[0]
        scroll = message.place[1] + int(self.scroll_y) - message.start[1]
        self._generation += 1  # pages still loading hold the old rows
        self._strips.clear()
        self._pages = OrderedDict(sorted(message.pages.items()))
        self._loading.clear()
        self._failed.clear()
        self._wanted.clear()
        self.row_count = message.count
        self.virtual_size = Size(0, message.count + 1)  # +1: the header line
        self.scroll_to(y=scroll, animate=False, immediate=True)  # before the cursor brings its row into view
        self.cursor_row = cursor
        self.refresh()
        self.post_message(self.Counted(message.count))
        self._post_highlighted()
        if self._locating is not None:
            self._locate(self._generation, self.filter, self._locating)  # its answer was for the old rows

    def on_trace_table__page_loaded(self, message: _PageLoaded) -> None:
        message.stop()
        if message.generation != self._generation:
            return  # an answer to a filter that is no longer shown
        self._loading.discard(message.page)
        self._pages[message.page] = message.rows
        self._pages.move_to_end(message.page)
        visible = self._visible_pages()
        while len(self._pages) > self.max_pages:
            oldest = next((p for p in self._pages if p not in visible), None)
            if oldest is None:
                break
            del self._pages[oldest]
        self.refresh()
        self._post_highlighted()

    def on_trace_table__page_failed(self, message: _PageFailed) -> None:
        message.stop()
        if message.generation == self._generation:
            # Not asked for again until a reload: a failing query must not be retried on every paint.
            self._loading.discard(message.page)
            self._failed.add(message.page)
            self.refresh()

    def on_trace_table__count_loaded(self, message: _CountLoaded) -> None:
        message.stop()
        if message.generation != self._generation:
            return
        self.row_count = message.count
        self.virtual_size = Size(0, message.count + 1)  # +1: the header line
        if self._pending_cursor is not None:
            self.cursor_row, self._pending_cursor = self._pending_cursor, None
        elif self.cursor_row >= message.count:
            self.cursor_row = max(0, message.count - 1)
        self.refresh()
        self.post_message(self.Counted(message.count))
        self._post_highlighted()

    def _visible_pages(self) -> set[int]:
        first = int(self.scroll_y)
        last = first + max(self.size.height - 1, 1)
        return set(range(first // self.page_size, last // self.page_size + 1))

    def _want(self, page: int) -> None:
        """Ask for a page from inside rendering; the worker starts once the paint is done."""
        if page in self._pages or page in self._loading or page in self._failed:
            return
        self._wanted.add(page)
        if not self._fetch_scheduled:
            self._fetch_scheduled = True
            self.call_later(self._fetch_wanted)

    def _fetch_wanted(self) -> None:
        self._fetch_scheduled = False
        wanted, self._wanted = sorted(self._wanted), set()
        for page in wanted:
            self._request_page(page)

    def _post_highlighted(self) -> None:
        tid = self.selected_trace_id
        if tid is None and self._cursor_row_loading():
            # The row under the cursor is being read (a new filter, a page not read yet): the highlight changes
            # when it is there, in one step, rather than to "nothing" and back (two footer rebuilds).
            return
        if tid != self._last_highlighted:
            had = self._last_highlighted is not None
            self._last_highlighted = tid
            self.post_message(self.Highlighted(tid))
            if had != (tid is not None):
                # Only whether a trace is selected changes what `enter` can do: the footer is not rebuilt on
                # every cursor move (a rebuild costs more than a frame).
                self.refresh_bindings()

    def _cursor_row_loading(self) -> bool:
        if self.row_count is None:
            return True  # still counting: a later message (page or count) posts the highlight
        page = self.cursor_row // self.page_size
        return bool(self.row_count) and page not in self._pages and page not in self._failed

    # ------------------------------------------------------------------ rendering

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        base = self.rich_style
        columns = layout_columns(width)
        if y == 0:
            return self._header_strip(columns, width, base)
        index = int(self.scroll_y) + y - 1
        if self.row_count is None:
            # The first page is often read before the rows are counted (counting a million rows takes longer
            # than reading two hundred): its rows are shown at once, the rest once the count is known.
            if self.row(index) is None:
                if index == 0:
                    return self._placeholder(width, base, "loading…")
                return Strip.blank(width, base)
        elif index >= self.row_count:
            if self.row_count == 0 and index == 0:
                return self._placeholder(width, base, "no traces match")
            return Strip.blank(width, base)
        row = self.row(index)
        if row is None and index // self.page_size in self._failed:
            strip = self._placeholder(width, base, "could not load these rows; r reloads")
        elif row is None:
            self._want(index // self.page_size)
            strip = self._placeholder(width, base, "…")
        else:
            key = (self._generation, index, width)
            cached = self._strips.get(key)
            if cached is None:
                segments: list[Segment] = []
                for i, (col, w) in enumerate(columns):
                    if i:
                        segments.append(Segment(" " * GAP))
                    text, style = cell_values(row, col, w)
                    segments.append(Segment(fit(text, w, col.align), style))
                cached = Strip(segments).extend_cell_length(width).crop(0, width)
                self._strips[key] = cached
                if len(self._strips) > MAX_STRIPS:
                    self._strips.popitem(last=False)
            else:
                self._strips.move_to_end(key)
            strip = cached
        if index == self.cursor_row:
            cursor = self.get_component_rich_style("trace-table--cursor")
            return strip.apply_style(base + cursor)
        return strip.apply_style(base)

    def _header_strip(self, columns: tuple[tuple[Column, int], ...], width: int, base: Style) -> Strip:
        segments: list[Segment] = []
        for i, (col, w) in enumerate(columns):
            if i:
                segments.append(Segment(" " * GAP))
            title = col.title if cell_len(col.title) <= w else col.short_title
            segments.append(Segment(fit(title, w, col.align)))
        style = base + self.get_component_rich_style("trace-table--header")
        return Strip(segments).extend_cell_length(width).crop(0, width).apply_style(style)

    def _placeholder(self, width: int, base: Style, text: str) -> Strip:
        style = base + self.get_component_rich_style("trace-table--placeholder")
        return Strip([Segment(fit(text, width))]).crop(0, width).apply_style(style)

    # ------------------------------------------------------------------ cursor

    def watch_cursor_row(self, old: int, new: int) -> None:
        self._scroll_cursor_into_view()
        self.refresh()
        self._post_highlighted()
        # The pages on either side are read ahead, so that paging down (or up) lands on rows already read:
        # no "…" row, no extra frame, and the keys in the footer do not flicker off while a page loads.
        page = new // self.page_size
        for ahead in (page + 1, page - 1):
            if ahead >= 0 and self.row_count is not None and ahead * self.page_size < self.row_count:
                self._want(ahead)

    def validate_cursor_row(self, value: int) -> int:
        if not self.row_count:
            return 0
        return max(0, min(value, self.row_count - 1))

    def _scroll_cursor_into_view(self) -> None:
        visible = max(self.size.height - 1, 1)  # minus the header line
        top = int(self.scroll_y)
        if self.cursor_row < top:
            self.scroll_to(y=self.cursor_row, animate=False)
        elif self.cursor_row >= top + visible:
            self.scroll_to(y=self.cursor_row - visible + 1, animate=False)

    def on_resize(self, event: events.Resize) -> None:
        self._scroll_cursor_into_view()

    def action_cursor_up(self) -> None:
        self.cursor_row -= 1

    def action_cursor_down(self) -> None:
        self.cursor_row += 1

    def action_page_up(self) -> None:
        self.cursor_row -= max(self.size.height - 2, 1)

    def action_page_down(self) -> None:
        self.cursor_row += max(self.size.height - 2, 1)

    def action_first(self) -> None:
        self.cursor_row = 0

    def action_last(self) -> None:
        if self.row_count:
            self.cursor_row = self.row_count - 1

    def action_open(self) -> None:
        tid = self.selected_trace_id
        if tid is not None:
            self.post_message(self.Opened(tid))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "open":
            return self.selected_trace_id is not None
        return True

    def on_click(self, event: events.Click) -> None:
        if event.y < 1 or not self.row_count:
            return
        index = int(self.scroll_y) + event.y - 1
        if index >= self.row_count:
            return
        self.cursor_row = index
        if event.chain >= 2:
            self.action_open()
