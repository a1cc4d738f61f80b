"""KeyedTable: keyed diff semantics, cursor kept by key, tones styled by the theme, messages."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from textual.app import App, ComposeResult
from textual.message import Message
from textual.pilot import Pilot

from widgets import Cell, KeyedTable

COLUMNS = [("name", "NAME"), ("state", "STATE"), ("tps", "TOK/S")]


def rows(*keys: str, tps: str = "1.0") -> dict[str, list[Cell | str]]:
    return {k: [k, Cell("ready", "ok"), tps] for k in keys}


class TableApp(App[None]):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[Message] = []

    def record(self, message: Message) -> None:
        """message_hook: a bubbling message is seen once per node, keep it once."""
        if all(m is not message for m in self.messages):
            self.messages.append(message)

    def compose(self) -> ComposeResult:
        yield KeyedTable()

    def on_mount(self) -> None:
        self.query_one(KeyedTable).set_columns(COLUMNS, right={"tps"})


class Calls:
    """Counts calls to a table method while still running it."""

    def __init__(self, table: KeyedTable, name: str) -> None:
        self.args: list[tuple] = []
        original = getattr(table, name)

        def wrapper(*args, **kwargs):
            self.args.append(args)
            return original(*args, **kwargs)

        setattr(table, name, wrapper)


class CellUpdates:
    """Records every cell the table updates in place (row key, column key, value), batched or not."""

    def __init__(self, table: KeyedTable) -> None:
        self.args: list[tuple] = []
        batched = table._update_cells

        def wrapper(changed):
            self.args.extend((key, col, value) for key, col, value, _wider in changed)
            return batched(changed)

        table._update_cells = wrapper  # type: ignore[method-assign]


def order(table: KeyedTable) -> list[str]:
    return [row.key.value for row in table.ordered_rows]


async def test_changing_one_value_updates_exactly_one_cell() -> None:
    app = TableApp()
    async with app.run_test() as pilot:
        table = app.query_one(KeyedTable)
        table.sync(rows("a", "b", "c"))
        await pilot.pause()
        updates, clears, removes = CellUpdates(table), Calls(table, "clear"), Calls(table, "remove_row")
        changed = rows("a", "b", "c")
        changed["b"][2] = "2.5"
        table.sync(changed)
        assert updates.args == [("b", "tps", updates.args[0][2])]
        assert clears.args == [] and removes.args == []
        assert table.get_cell("b", "tps").cell == Cell("2.5")
        table.sync(changed)  # identical: nothing at all
        assert len(updates.args) == 1 and clears.args == []


async def test_tone_change_alone_is_an_update() -> None:
    app = TableApp()
    async with app.run_test():
        table = app.query_one(KeyedTable)
        table.sync({"a": ["a", "x", "1"]})
        updates = CellUpdates(table)
        table.sync({"a": ["a", "x", Cell("1", "stale")]})
        assert [a[:2] for a in updates.args] == [("a", "tps")]


async def test_removing_one_of_many_uses_remove_row_not_clear() -> None:
    app = TableApp()
    async with app.run_test():
        table = app.query_one(KeyedTable)
        table.sync(rows("a", "b", "c", "d", "e"))
        clears, removes = Calls(table, "clear"), Calls(table, "remove_row")
        table.sync(rows("a", "b", "d", "e", "f"))
        assert removes.args == [("c",)] and clears.args == []
        assert order(table) == ["a", "b", "d", "e", "f"]


async def test_cursor_stays_on_key_when_rows_are_inserted_above() -> None:
    app = TableApp()
    async with app.run_test() as pilot:
        table = app.query_one(KeyedTable)
        table.focus()
        table.sync(rows("a", "b", "c"))
        await pilot.press("down", "down")
        assert table.cursor_key == "c"
        clears = Calls(table, "clear")
        table.sync(rows("x", "y", "a", "b", "c"))
        await pilot.pause()
        assert len(clears.args) == 1  # a new key in the middle changes the order: rebuild
        assert order(table) == ["x", "y", "a", "b", "c"]
        assert table.cursor_key == "c" and table.cursor_row == 4


async def test_vanished_cursor_key_moves_to_the_nearest_row() -> None:
    app = TableApp()
    async with app.run_test() as pilot:
        table = app.query_one(KeyedTable)
        table.sync(rows("a", "b", "c", "d"))
        assert table.select_key("b")
        table.sync(rows("a", "c", "d"))
        assert table.cursor_key == "c"  # the following row first
        table.select_key("d")
        table.sync(rows("a", "c"))
        assert table.cursor_key == "c"  # no following row: the preceding one
        table.sync({})
        await pilot.pause()
        assert table.cursor_key is None and table.row_count == 0


async def test_reorder_rebuilds_and_keeps_the_cursor_key() -> None:
    app = TableApp()
    async with app.run_test():
        table = app.query_one(KeyedTable)
        table.sync(rows("a", "b", "c"))
        table.select_key("a")
        clears = Calls(table, "clear")
        table.sync(rows("a", "b", "c"), order=["c", "b", "a"])
        assert order(table) == ["c", "b", "a"] and len(clears.args) == 1
        assert table.cursor_key == "a" and table.cursor_row == 2
        table.sync(rows("a", "b", "c"), order=["c", "zz"])  # unknown keys ignored, missing ones follow
        assert order(table) == ["c", "a", "b"]


async def test_highlight_and_choose_messages_carry_keys() -> None:
    app = TableApp()
    async with app.run_test(message_hook=app.record) as pilot:
        table = app.query_one(KeyedTable)
        table.focus()
        table.sync(rows("a", "b"))
        await pilot.press("down")
        await pilot.pause()
        highlighted = [m.key for m in app.messages if isinstance(m, KeyedTable.RowHighlighted)]
        assert highlighted == ["a", "b"]
        table.sync(rows("x", "a", "b"))  # rebuild; the cursor key is unchanged: no new announcement
        await pilot.pause()
        assert [m.key for m in app.messages if isinstance(m, KeyedTable.RowHighlighted)] == ["a", "b"]
        await pilot.press("enter")
        await pilot.pause()
        chosen = [m for m in app.messages if isinstance(m, KeyedTable.RowChosen)]
        assert [m.key for m in chosen] == ["b"] and chosen[0].control is table


async def test_tones_have_distinct_theme_styles() -> None:
    app = TableApp()
    async with app.run_test() as pilot:
        table = app.query_one(KeyedTable)
        live, stale = table.tone_style("live"), table.tone_style("stale")
        assert live != stale and stale.italic and not live.italic
        assert table.tone_style("ok").color != table.tone_style("crit").color
        assert table.tone_style("missing").color != table.tone_style("error").color
        assert table.tone_style("zero") == live  # zero is a real value: shown like live
        assert table.tone_style("live", group=True).bold
        ok_dark = table.tone_style("ok").color
        app.theme = "nord"
        await pilot.pause()
        assert table.tone_style("ok").color != ok_dark  # the theme drives the colour


async def test_rendered_cells_show_placeholders_and_styles() -> None:
    app = TableApp()
    async with app.run_test(size=(60, 8)) as pilot:
        table = app.query_one(KeyedTable)
        table.sync(
            {
                "a": ["a", Cell("", "missing"), Cell("", "unsupported")],
                "b": ["b", Cell("9 (stale 8s)", "stale"), Cell("0", "zero")],
            }
        )
        await pilot.pause()
        line_b = table.render_line(2)  # header, row a, row b
        text_a = "".join(s.text for s in table.render_line(1))
        assert "—" in text_a and "n/a" in text_a
        styles = {s.text.strip(): s.style for s in line_b if s.text.strip()}
        assert styles["9 (stale 8s)"].italic and not styles["0"].italic


async def test_wider_text_grows_its_column() -> None:
    app = TableApp()
    async with app.run_test() as pilot:
        table = app.query_one(KeyedTable)
        table.sync({"a": ["a", "x", "1.0"]})
        await pilot.pause()
        before = table.columns["tps"].content_width
        table.sync({"a": ["a", "x", Cell("1.0 (stale 12s)", "stale")]})
        await pilot.pause()
        assert table.columns["tps"].content_width > before


async def test_groups_row_shapes_and_columns() -> None:
    app = TableApp()
    async with app.run_test():
        table = app.query_one(KeyedTable)
        table.sync({"host": ["host-a"], "host/e": ["e", "ready", "1"]}, groups={"host"})
        assert table.cells("host") == (Cell("host-a"), Cell(""), Cell(""))  # short rows are padded
        assert table.get_cell("host", "name").group and not table.get_cell("host/e", "name").group
        updates = CellUpdates(table)
        table.sync({"host": ["host-a"], "host/e": ["e", "ready", "1"]})  # no longer a group row
        assert len(updates.args) == 3
        try:
            table.sync({"x": ["1", "2", "3", "4"]})
        except ValueError as exc:
            assert "4 cells" in str(exc)
        else:
            raise AssertionError("a row longer than the columns must be rejected")
        table.set_columns([("only", "ONLY")])
        assert table.row_count == 0 and table.keys == ()


async def test_rebuild_keeps_the_cursor_on_the_same_screen_line() -> None:
    app = TableApp()
    async with app.run_test(size=(60, 12)) as pilot:
        table = app.query_one(KeyedTable)
        keys = [f"r{i:03d}" for i in range(100)]
        table.sync(rows(*keys))
        await pilot.pause()
        table.focus()
        table.select_key("r060")  # scrolls it into view at the bottom edge
        await pilot.pause()
        await pilot.press("up", "up", "up")  # the cursor moves up, the view does not
        line = table.cursor_row - table.scroll_y
        assert table.scroll_y > 0 and table.cursor_key == "r057"
        table.sync(rows("new", *keys))
        await pilot.pause()
        assert table.cursor_key == "r057" and table.cursor_row == 58
        assert table.cursor_row - table.scroll_y == line


def _screen_line(table: KeyedTable, key: str) -> str:
    """The text the table paints for row ``key`` now (it must be on screen)."""
    y = table.get_row_index(key) - int(table.scroll_y) + 1  # the header is line 0
    return table.render_line(y).text


KEYS = [f"r{i:02d}" for i in range(40)]  # more rows than a 12-line screen shows


@contextlib.asynccontextmanager
async def tall_table() -> AsyncIterator[tuple[KeyedTable, Pilot]]:
    app = TableApp()
    async with app.run_test(size=(60, 12)) as pilot:
        table = app.query_one(KeyedTable)
        table.sync(rows(*KEYS))
        await pilot.pause()
        yield table, pilot


def sync_values(table: KeyedTable, **tps: str) -> None:
    """Sync every row of KEYS again, with these rows' TOK/S changed."""
    changed = rows(*KEYS)
    for key, value in tps.items():
        changed[key][2] = value
    table.sync(changed)


async def test_an_update_renders_the_changed_rows_again_and_reuses_the_others() -> None:
    async with tall_table() as (table, pilot):
        assert "1.0" in _screen_line(table, "r02")
        rendered = Calls(table, "_compute_row_renderables")
        for _ in range(5):  # the first paints settle focus and styles; then a repaint reuses every render
            rendered.args.clear()
            table.refresh()
            await pilot.pause()
            if not rendered.args:
                break
        assert rendered.args == [], "a plain repaint renders nothing again"
        sync_values(table, r02="7.5", r30="8.5")  # r30: off screen
        await pilot.pause()
        assert "7.5" in _screen_line(table, "r02") and "1.0" in _screen_line(table, "r03")
        assert {a[0] for a in rendered.args} == {table.get_row_index("r02")}, "only the changed row again"
        table.move_cursor(row=table.get_row_index("r30"))  # scrolls r30 into view: its new value
        await pilot.pause()
        assert "8.5" in _screen_line(table, "r30")


async def test_an_offscreen_update_after_the_row_was_seen_shows_the_new_value() -> None:
    async with tall_table() as (table, pilot):
        table.move_cursor(row=30)  # r30 rendered (and cached) ...
        await pilot.pause()
        assert "1.0" in _screen_line(table, "r30")
        table.move_cursor(row=0)  # ... then scrolled away
        await pilot.pause()
        sync_values(table, r30="9.5")
        await pilot.pause()
        table.move_cursor(row=30)
        await pilot.pause()
        assert "9.5" in _screen_line(table, "r30")
        table.move_cursor(row=29)  # the cursor leaves it: drawn again without the cursor, same value
        await pilot.pause()
        assert "9.5" in _screen_line(table, "r30")
