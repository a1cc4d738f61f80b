"""KeyedTable: a DataTable fed whole snapshots of keyed rows, diffed into minimal updates."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import ClassVar

from rich.cells import cell_len
from rich.style import Style
from rich.text import Text
from textual.cache import LRUCache
from textual.message import Message
from textual.widgets import DataTable
from textual.widgets.data_table import CellKey, ColumnKey, RowKey

from .tone import SALIENT_RULES, Cell, as_cell, component_style, tone_class, tone_classes, tone_css

_PREFIX = "keyed-table"
_ROW_KEYED_CACHES = ("_cell_render_cache", "_row_render_cache")  # DataTable caches keyed by row key first
Row = tuple[Cell, ...]


class _Rendered:
    """What the DataTable stores: a Cell whose style is looked up in the table's theme at render time.

    One per look (text, tone, group row, justification), shared by every cell that looks the same: a
    fleet table repeats most looks ("ready", "0", "73ms"), so its data holds far fewer objects."""

    __slots__ = ("cell", "group", "justify", "table")

    def __init__(self, table: KeyedTable, cell: Cell, group: bool, justify: str) -> None:
        self.table, self.cell, self.group, self.justify = table, cell, group, justify

    def __rich__(self) -> Text:
        style = self.table.tone_style(self.cell.tone, group=self.group)
        return Text(
            self.cell.display, style=style, justify=self.justify, no_wrap=True, overflow="ellipsis", end=""
        )  # type: ignore[arg-type]


class KeyedTable(DataTable):
    """A row-cursor DataTable whose content is set with ``sync(rows)``; rows are identified by str keys.

    - ``sync`` diffs inside ``app.batch_update()``: removes vanished rows, ``update_cell`` only where a
      cell's look (text, tone) changed (a row passed again as the same tuple is skipped outright; a
      new ``sort_key`` alone redraws nothing: read cells back with ``cells(key)``), appends new rows. It rebuilds with ``clear()`` + ``add_row`` instead when
      the order changes (including a new key that is not at the end) or more than half the rows vanish
      (``remove_row`` is O(n)). Column widths grow when a new text is wider, never shrink.
    - The cursor stays on the same row key across syncs; if that key vanished, on its nearest surviving
      neighbour in the old order (the following row first).
    - Group header rows (e.g. a host above its engines): pass their keys in ``sync(..., groups=...)``;
      their cells get the ``keyed-table--group`` style (bold, primary) combined with each cell's tone.
    - Plain ``str`` cells are live text, shown literally (no markup). Rows shorter than the columns are
      padded with blank cells; longer rows raise ValueError.
    - Order rows with ``sync(order=...)`` (``tone.sort_value`` orders cells), not ``DataTable.sort``.
    - Any terminal size: ``set_columns(..., priorities={key: n})`` gives columns priorities (0: always
      shown; missing keys are 0). When the columns do not fit the table's width, the highest numbers are
      dropped first (the first column that does not fit and every lower-priority one); rows keep every
      cell (``cells(key)``), a hidden column comes back when the table widens. ``visible_columns`` and
      ``hidden_columns`` say which. ``KeyedTable(fixed_columns=1)`` keeps the first column in place while
      the rest scroll sideways; with a row cursor, left/right scroll one whole column per press.
    - Messages: ``RowHighlighted(key)`` when the highlighted key changes (by the user or a sync),
      ``RowChosen(key)`` on Enter or a click on the highlighted row.
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = (
        DataTable.COMPONENT_CLASSES | tone_classes(_PREFIX) | {f"{_PREFIX}--group"}
    )
    DEFAULT_CSS = (
        tone_css("KeyedTable", _PREFIX, SALIENT_RULES)
        + "\nKeyedTable > .keyed-table--group { color: $text-primary; text-style: bold; }"
    )
    REBUILD_FRACTION: ClassVar[float] = 0.5
    """Rebuild instead of remove_row when more than this fraction of the rows vanished."""
    LOOKS_MAX: ClassVar[int] = 100_000
    """At most this many shared cell renderables (one per look) are remembered."""

    class RowHighlighted(Message):
        """The highlighted row key changed."""

        def __init__(self, table: KeyedTable, key: str) -> None:
            super().__init__()
            self.table, self.key = table, key

        @property
        def control(self) -> KeyedTable:
            return self.table

    class RowChosen(Message):
        """The user chose a row (Enter, or a click on the highlighted row)."""

        def __init__(self, table: KeyedTable, key: str) -> None:
            super().__init__()
            self.table, self.key = table, key

        @property
        def control(self) -> KeyedTable:
            return self.table

    def __init__(self, *, cursor_type: str = "row", **kwargs: object) -> None:
        super().__init__(cursor_type=cursor_type, **kwargs)  # type: ignore[arg-type]
        self._columns: tuple[tuple[str, str], ...] = ()
        self._right: frozenset[str] = frozenset()
        self._priority: dict[str, int] = {}
        self._visible: tuple[str, ...] = ()
        self._project: tuple[int, ...] = ()  # the positions in a full row of the visible columns
        self._widths: dict[str, int] = {}  # content width per column (label and cells), hidden ones too
        self._shown: dict[str, Row] = {}  # key -> cells, in display order
        self._groups: frozenset[str] = frozenset()
        self._announced: str | None = None
        self._looks: dict[tuple[str, str, bool, bool], _Rendered] = {}

    # -- public API ---------------------------------------------------------------------------------
    def set_columns(
        self,
        columns: Sequence[tuple[str, str]],
        *,
        right: Collection[str] = (),
        priorities: Mapping[str, int] | None = None,
    ) -> None:
        """Set the (key, label) columns; keys in ``right`` are right-aligned; ``priorities`` (key → n, 0:
        always shown) say which columns a narrow table drops first (highest n). A change clears the rows."""
        columns, right_set = tuple((str(k), str(label)) for k, label in columns), frozenset(right)
        priority = {k: int((priorities or {}).get(k, 0)) for k, _ in columns}
        if columns == self._columns and right_set == self._right and priority == self._priority:
            return
        self._columns, self._right, self._priority = columns, right_set, priority
        self._shown, self._groups, self._announced, self._looks = {}, frozenset(), None, {}
        self._widths = {k: cell_len(label) for k, label in columns}
        self._set_visible(self._fit())

    @property
    def visible_columns(self) -> tuple[str, ...]:
        """The keys of the columns shown now, in column order."""
        return self._visible

    @property
    def hidden_columns(self) -> tuple[str, ...]:
        """The keys of the columns dropped for want of width, in column order."""
        return tuple(k for k, _ in self._columns if k not in self._visible)

    def sync(
        self,
        rows: Mapping[str, Sequence[Cell | str]],
        order: Sequence[str] | None = None,
        *,
        groups: Collection[str] = (),
    ) -> None:
        """Show exactly ``rows``, in ``order`` (default: the mapping's order; keys missing from ``order``
        follow in mapping order; keys in ``order`` without a row are ignored)."""
        shown, normalize = self._shown, self._normalize
        new: dict[str, Row] = {}
        for key in _final_order(rows, order):
            row = rows[key]
            new[key] = shown[key] if shown.get(key) is row else normalize(row)  # the very row: normalized
        groups_set = frozenset(groups) & new.keys()
        old_keys = list(self._shown)
        cursor_key, cursor_row, scroll_y = self.cursor_key, self.cursor_row, self.scroll_y
        removed = [k for k in old_keys if k not in new]
        kept_order = [k for k in old_keys if k in new] + [k for k in new if k not in self._shown]
        rebuild = kept_order != list(new) or len(removed) > self.REBUILD_FRACTION * max(len(old_keys), 1)
        with self.app.batch_update():
            if rebuild:
                self._measure(new.values())
                self._rebuild(new, groups_set)
            else:
                self._diff(new, groups_set, removed)
            self._shown, self._groups = new, groups_set
            self._restore_cursor(cursor_key, cursor_row, old_keys, scroll_y if rebuild else None)
            self._refit()

    @property
    def cursor_key(self) -> str | None:
        """The key of the highlighted row (None when the table is empty)."""
        if self.row_count == 0 or not self._columns:
            return None
        return self.ordered_rows[self.cursor_row].key.value

    @property
    def keys(self) -> tuple[str, ...]:
        """Row keys in display order."""
        return tuple(self._shown)

    def cells(self, key: str) -> Row:
        """The cells last synced for ``key`` (KeyError if absent)."""
        return self._shown[key]

    def select_key(self, key: str) -> bool:
        """Move the cursor to ``key``; False if there is no such row."""
        if key not in self._shown:
            return False
        self.move_cursor(row=self.get_row_index(key))
        return True

    def tone_style(self, tone: str, *, group: bool = False) -> Style:
        """The Rich style of ``tone`` (and of group rows) from this table's component classes."""
        style = component_style(self, f"{_PREFIX}--group") if group else Style.null()
        name = tone_class(_PREFIX, tone)
        return style + component_style(self, name) if name else style

    # -- diff machinery -----------------------------------------------------------------------------
    def _normalize(self, cells: Sequence[Cell | str]) -> Row:
        n = len(self._columns)
        if type(cells) is tuple and len(cells) == n and all(type(c) is Cell for c in cells):
            return cells  # already a full row of Cells (the presenters' rows): kept as is, no copy
        if len(cells) > n:
            raise ValueError(f"row has {len(cells)} cells but the table has {n} columns")
        row = tuple(as_cell(c) for c in cells)
        return row + (Cell(""),) * (n - len(row))

    def _wrap(self, row: Row, group: bool) -> list[_Rendered]:
        return [
            self._wrap_one(row[i], key, group) for key, i in zip(self._visible, self._project, strict=True)
        ]

    def _wrap_one(self, cell: Cell, column: str, group: bool) -> _Rendered:
        right = column in self._right
        look = (cell.text, cell.tone, group, right)
        rendered = self._looks.get(look)
        if rendered is None:
            if len(self._looks) >= self.LOOKS_MAX:
                self._looks.clear()  # shown cells keep theirs; new ones start sharing again
            rendered = self._looks[look] = _Rendered(self, cell, group, "right" if right else "left")
        return rendered

    def _rebuild(self, new: dict[str, Row], groups: frozenset[str]) -> None:
        self.clear()
        for key, row in new.items():
            self.add_row(*self._wrap(row, key in groups), key=key)

    def _diff(self, new: dict[str, Row], groups: frozenset[str], removed: Iterable[str]) -> None:
        changed: list[tuple[str, str, object, bool]] = []
        for key in removed:
            self.remove_row(key)
        shown, old_groups = self._shown, self._groups
        columns = [key for key, _ in self._columns]
        visible = frozenset(self._visible)
        widths = self._widths
        for key, row in new.items():
            old = shown.get(key)
            group = key in groups
            if old is None:
                self._measure((row,))
                self.add_row(*self._wrap(row, group), key=key)
                continue
            regroup = group != (key in old_groups)
            if old is row and not regroup:
                continue  # the presenter gave the very same row: nothing to compare
            for col_key, cell, before in zip(columns, row, old, strict=True):
                if regroup or (cell is not before and (cell.text != before.text or cell.tone != before.tone)):
                    width = cell_len(cell.display)
                    wider = width > widths[col_key]
                    if wider:
                        widths[col_key] = width
                    if col_key in visible:
                        changed.append((key, col_key, self._wrap_one(cell, col_key, group), wider))
        self._update_cells(changed)

    # -- columns that fit ---------------------------------------------------------------------------
    def _measure(self, rows: Iterable[Row]) -> None:
        """Grow the remembered content widths to fit ``rows`` (widths never shrink, as DataTable's)."""
        widths = self._widths
        for key, _ in self._columns:
            widths.setdefault(key, 0)
        keys = [key for key, _ in self._columns]
        for row in rows:
            for key, cell in zip(keys, row, strict=True):
                width = cell_len(cell.display)
                if width > widths[key]:
                    widths[key] = width

    def _fit(self) -> tuple[str, ...]:
        """The columns to show at the current width: by priority (then position), up to the first that
        does not fit; priority-0 columns always. Every column while the table has no width yet."""
        keys = [key for key, _ in self._columns]
        available = self.size.width - self.styles.scrollbar_size_vertical
        if available <= 0 or not keys:
            return tuple(keys)
        pad = 2 * self.cell_padding
        chosen: set[str] = set()
        total = 0
        for key in sorted(keys, key=lambda k: self._priority.get(k, 0)):  # stable: then by position
            need = self._widths.get(key, 0) + pad
            if self._priority.get(key, 0) > 0 and total + need > available:
                break
            chosen.add(key)
            total += need
        return tuple(k for k in keys if k in chosen)

    def _refit(self) -> None:
        visible = self._fit()
        if visible == self._visible:
            return
        cursor_key, cursor_row, scroll_y = self.cursor_key, self.cursor_row, self.scroll_y
        with self.app.batch_update():
            self._set_visible(visible)
            if self._shown:
                self._rebuild(self._shown, self._groups)
                self._restore_cursor(cursor_key, cursor_row, list(self._shown), scroll_y)

    def _set_visible(self, visible: tuple[str, ...]) -> None:
        index = {key: i for i, (key, _) in enumerate(self._columns)}
        labels = dict(self._columns)
        self._visible, self._project = visible, tuple(index[k] for k in visible)
        self.clear(columns=True)
        for key in visible:
            self.add_column(Text(labels[key], justify="right" if key in self._right else "left"), key=key)

    def on_resize(self) -> None:
        if self._columns:
            self._refit()

    # -- sideways, one column at a time -------------------------------------------------------------
    def _column_stops(self) -> list[int]:
        """scroll_x values at which each scrollable (non-fixed) column starts."""
        stops, x = [0], 0
        for column in self.ordered_columns[self.fixed_columns :]:
            x += column.get_render_width(self)
            stops.append(x)
        return stops

    def action_cursor_right(self) -> None:
        if self.cursor_type != "row":
            super().action_cursor_right()
            return
        target = next((x for x in self._column_stops() if x > self.scroll_x), None)
        if target is not None:
            self.scroll_to(x=min(target, self.max_scroll_x), animate=False)

    def action_cursor_left(self) -> None:
        if self.cursor_type != "row":
            super().action_cursor_left()
            return
        target = max((x for x in self._column_stops() if x < self.scroll_x), default=0)
        self.scroll_to(x=target, animate=False)

    def _update_cells(self, changed: list[tuple[str, str, object, bool]]) -> None:
        """``update_cell`` for many cells with one refresh instead of one per cell.

        DataTable.update_cell stores the value, bumps ``_update_count`` (its render-cache generation) and
        refreshes; at fleet scale (thousands of changed cells a tick) the per-cell refresh dominated the
        console's tick (bench/bench_console.py). This does the same bookkeeping once per batch; on a
        Textual whose DataTable lacks those attributes it falls back to the public method.
        """
        if not changed:
            return
        data = getattr(self, "_data", None)
        if (
            not isinstance(data, dict)
            or not hasattr(self, "_update_count")
            or not hasattr(self, "_updated_cells")
        ):
            for key, col_key, value, wider in changed:
                self.update_cell(key, col_key, value, update_width=wider)
            return
        column_keys = {key: ColumnKey(key) for key, _ in self._columns}
        last_key, row_data, row_key = None, None, None
        rows: set[RowKey] = set()
        widened = False
        for key, col_key, value, wider in changed:
            if key != last_key:  # changes come row by row: look each row up once
                last_key, row_key = key, RowKey(key)
                row_data = data[row_key]
                rows.add(row_key)
            column_key = column_keys[col_key]
            row_data[column_key] = value  # type: ignore[index]
            if wider:
                widened = True
                self._updated_cells.add(CellKey(row_key, column_key))
                self._require_update_dimensions = True
        if widened or not self._forget_rendered(rows):
            self._update_count += 1  # every cached render is stale (a column may widen)
        self.refresh()

    def _forget_rendered(self, rows: set[RowKey]) -> bool:
        """Drop the cached renders of ``rows`` only, instead of every row's (what ``_update_count += 1``
        does: the visible rows then render again, each cell through Rich, although few changed; and the
        row order and line offsets of every row are computed again). False (nothing done) on a Textual
        whose DataTable caches differ from the ones this knows: cells and row lines keyed by row key
        first, renderables by (generation, row index), lines by screen line."""
        caches = [getattr(self, name, None) for name in _ROW_KEYED_CACHES]
        by_index = getattr(self, "_row_renderable_cache", None)
        lines = getattr(self, "_line_cache", None)
        locations = getattr(self, "_row_locations", None)
        if not all(isinstance(c, LRUCache) for c in (*caches, by_index, lines)) or locations is None:
            return False
        for cache in caches:
            for cache_key in [k for k in cache.keys() if k[0] in rows]:  # noqa: SIM118 - LRUCache: no __iter__
                cache.discard(cache_key)
        generation = self._update_count
        for row_key in rows:
            index = locations.get(row_key)
            if index is not None:
                by_index.discard((generation, index))
        lines.clear()  # keyed by screen line: rebuilt from the row caches above, cheaply
        return True

    def _restore_cursor(self, key: str | None, row: int, old_keys: list[str], scroll_y: float | None) -> None:
        """Put the cursor back on ``key``; after a rebuild (``scroll_y`` given) keep its screen line."""
        if not self._shown:
            self._announced = None
            return
        target = key if key in self._shown else _nearest(old_keys, row, self._shown)
        index = self.get_row_index(target) if target is not None else 0
        self.move_cursor(row=index, scroll=scroll_y is None)
        if scroll_y is not None:  # clear() scrolled to the top; sizes settle after the next refresh
            self.call_after_refresh(self._settle_scroll, max(0.0, scroll_y + index - row))

    def _settle_scroll(self, scroll_y: float) -> None:
        self.scroll_to(y=scroll_y, animate=False, immediate=True)
        self._scroll_cursor_into_view()

    # -- messages -----------------------------------------------------------------------------------
    def on_data_table_row_highlighted(self, _: DataTable.RowHighlighted) -> None:
        key = self.cursor_key  # the state now, not the event's: a sync's transient moves are not announced
        if key is not None and key != self._announced:
            self._announced = key
            self.post_message(self.RowHighlighted(self, key))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.post_message(self.RowChosen(self, event.row_key.value))

    def on_data_table_cell_selected(self, event: DataTable.CellSelected) -> None:
        self.post_message(self.RowChosen(self, event.cell_key.row_key.value))


def _final_order(rows: Mapping[str, object], order: Sequence[str] | None) -> list[str]:
    keys = list(dict.fromkeys(k for k in order if k in rows)) if order is not None else []
    seen = set(keys)
    return keys + [k for k in rows if k not in seen]


def _nearest(old_keys: list[str], row: int, alive: Collection[str]) -> str | None:
    """The surviving key nearest to position ``row`` of the old order, looking forward first."""
    for distance in range(len(old_keys) + 1):
        for i in (row,) if distance == 0 else (row + distance, row - distance):
            if 0 <= i < len(old_keys) and old_keys[i] in alive:
                return old_keys[i]
    return next(iter(alive), None)
