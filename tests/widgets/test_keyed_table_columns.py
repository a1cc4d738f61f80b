"""KeyedTable at any width: column priorities drop the least important columns first, the first column
stays in place while the rest scroll sideways one column per press, hidden columns come back."""

from __future__ import annotations

from textual.app import App, ComposeResult

from widgets import Cell, KeyedTable

# name 8, state 8, a 10, b 10, c 10 wide (plus 2 padding each)
COLUMNS = [("name", "NAME"), ("state", "STATE"), ("a", "A"), ("b", "B"), ("c", "C")]
PRIORITY = {"name": 0, "state": 0, "a": 2, "b": 1, "c": 3}


def row(key: str, width: int = 10) -> list[Cell | str]:
    return [key.ljust(8, "."), Cell("ready...", "ok"), "a" * width, "b" * width, "c" * width]


class WideApp(App[None]):
    def __init__(self, priorities: dict[str, int] | None = PRIORITY, fixed: int = 1) -> None:
        super().__init__()
        self.priorities, self.fixed = priorities, fixed

    def compose(self) -> ComposeResult:
        yield KeyedTable(fixed_columns=self.fixed)

    def on_mount(self) -> None:
        table = self.query_one(KeyedTable)
        table.set_columns(COLUMNS, priorities=self.priorities)
        table.sync({f"r{i}": row(f"r{i}") for i in range(5)})


async def test_narrow_tables_drop_the_lowest_priorities_first_and_widen_back() -> None:
    app = WideApp()
    # columns need 10 + 10 + 12 + 12 + 12 = 56 cells (+2 for the vertical scrollbar)
    async with app.run_test(size=(58, 10)) as pilot:
        await pilot.pause()
        table = app.query_one(KeyedTable)
        assert table.visible_columns == ("name", "state", "a", "b", "c") and table.hidden_columns == ()
        await pilot.resize_terminal(46, 10)
        await pilot.pause()
        assert table.visible_columns == ("name", "state", "a", "b")  # c (priority 3) goes first
        await pilot.resize_terminal(36, 10)
        await pilot.pause()
        assert table.visible_columns == ("name", "state", "b") and table.hidden_columns == ("a", "c")
        await pilot.resize_terminal(12, 10)
        await pilot.pause()
        assert table.visible_columns == ("name", "state")  # priority 0: kept whatever the width
        assert len(table.cells("r1")) == 5  # rows keep every cell
        await pilot.resize_terminal(58, 10)
        await pilot.pause()
        assert table.visible_columns == ("name", "state", "a", "b", "c")
        assert table.get_cell("r1", "c").cell.text == "c" * 10  # a column comes back with its cells


async def test_wider_content_can_push_a_column_out_and_cursor_stays() -> None:
    app = WideApp()
    async with app.run_test(size=(58, 10)) as pilot:
        await pilot.pause()
        table = app.query_one(KeyedTable)
        table.select_key("r3")
        table.sync({f"r{i}": row(f"r{i}", 14 if i == 2 else 10) for i in range(5)})  # "a" grows by 4
        await pilot.pause()
        assert "c" not in table.visible_columns and table.cursor_key == "r3"
        table.sync({"r3": row("r3"), "r4": row("r4")})
        await pilot.pause()
        assert table.keys == ("r3", "r4") and table.cursor_key == "r3"


async def test_no_priorities_keeps_every_column() -> None:
    app = WideApp(priorities=None)
    async with app.run_test(size=(20, 10)) as pilot:
        await pilot.pause()
        assert app.query_one(KeyedTable).hidden_columns == ()


async def test_the_first_column_stays_while_right_scrolls_one_column_per_press() -> None:
    app = WideApp()
    async with app.run_test(size=(26, 10)) as pilot:  # name + state only, and not even they fit
        await pilot.pause()
        table = app.query_one(KeyedTable)
        table.focus()
        await pilot.resize_terminal(18, 10)
        await pilot.pause()
        assert table.visible_columns == ("name", "state") and table.max_scroll_x > 0
        first = table.render_line(1).text
        await pilot.press("right")
        await pilot.pause()
        assert table.scroll_x == min(10, table.max_scroll_x)  # one whole column (8 + 2 padding), not one cell
        line = table.render_line(1).text
        assert line.startswith(first[:10]) and "r0......" in line  # the name column did not move
        await pilot.press("left")
        await pilot.pause()
        assert table.scroll_x == 0


async def test_without_fixed_columns_the_first_column_scrolls_away() -> None:
    app = WideApp(fixed=0)
    async with app.run_test(size=(18, 10)) as pilot:
        await pilot.pause()
        table = app.query_one(KeyedTable)
        table.focus()
        await pilot.press("right")
        await pilot.pause()
        assert table.scroll_x > 0 and "r0......" not in table.render_line(1).text
