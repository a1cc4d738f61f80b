"""LogView: wrapping long lines (default on, toggled), hidden lines (a predicate, toggled, counted), and
both kept through incremental updates and the follow/reading place."""

from __future__ import annotations

import asyncio

from rich.cells import cell_len
from textual.app import App, ComposeResult

from widgets import LogView
from widgets.log_view import WRAP_INDENT, wrap_line

STATS = (
    "(APIServer pid=23247) INFO 11-29 12:16:12 [loggers.py:236] Engine 000: Avg prompt throughput: 3953.7 "
    "tokens/s, Avg generation throughput: 1103.1 tokens/s, Running: 20 reqs, Waiting: 758 reqs, "
    "Preemptions: 36, GPU KV cache usage: 95.6%, Prefix cache hit rate: 0.0%"
)


def probe(line: str) -> bool:
    return line.startswith("PROBE")


class WrapApp(App[None]):
    CSS = "LogView { height: 12; width: 60; }"

    def compose(self) -> ComposeResult:
        yield LogView(hide=probe)


def test_wrap_line_cuts_at_spaces_and_indents_continuations() -> None:
    parts = wrap_line(STATS, 40)
    assert all(cell_len(p) <= 40 for p in parts) and len(parts) > 3
    assert all(p.startswith(WRAP_INDENT) for p in parts[1:])
    assert " ".join(p.strip() for p in parts) == STATS  # nothing lost: the useful tail is there
    assert "Waiting: 758 reqs," in " ".join(p.strip() for p in parts)
    assert wrap_line("short", 40) == ["short"]
    assert wrap_line("x" * 100, 40)[0] == "x" * 40  # no space: cut mid-word
    assert wrap_line("漢字" * 30, 20)[0] == "漢字" * 5  # wide characters count two cells
    assert wrap_line(STATS, 0) == [STATS]  # unknown width: unchanged


async def test_long_lines_wrap_by_default_and_the_toggle_restores_one_line_each() -> None:
    app = WrapApp()
    async with app.run_test(size=(80, 20)) as pilot:
        log = app.query_one(LogView)
        await pilot.pause()
        log.set_lines(["first", STATS, "last"])
        await pilot.pause()
        shown = list(log.lines)
        assert log.wrap and len(shown) > 3 and shown[0] == "first" and shown[-1] == "last"
        assert all(cell_len(x) <= log.scrollable_content_region.width for x in shown)
        assert "Preemptions: 36" in " ".join(shown)
        log.wrap = False
        await pilot.pause()
        assert list(log.lines) == ["first", STATS, "last"]
        log.wrap = True
        await pilot.pause()
        assert list(log.lines) == shown


async def test_hidden_lines_are_counted_and_shown_on_demand_through_updates() -> None:
    app = WrapApp()
    async with app.run_test(size=(80, 20)) as pilot:
        log = app.query_one(LogView)
        tail = [f"PROBE {i}" if i % 3 else f"line {i}" for i in range(30)]
        log.set_lines(tail)
        await pilot.pause()
        assert list(log.lines) == [f"line {i}" for i in range(0, 30, 3)]
        assert log.hidden_count == 20 and log.source == tuple(tail)
        # the tail slides on: only the visible new lines are appended
        writes: list[list[str]] = []
        original = log.write_lines
        log.write_lines = lambda new, scroll_end=None: (writes.append(list(new)), original(new, scroll_end))[
            1
        ]
        log.set_lines(tail[6:] + ["PROBE x", "line 30", "line 31"])
        assert [w for w in writes if w] == [["line 30", "line 31"]]  # the empty write prunes the top
        assert list(log.lines) == [f"line {i}" for i in range(6, 30, 3)] + ["line 30", "line 31"]
        assert log.hidden_count == 17
        log.show_hidden = True
        await pilot.pause()
        assert list(log.lines) == list(log.source) and log.hidden_count == 0
        log.show_hidden = False
        await pilot.pause()
        assert "PROBE x" not in list(log.lines)


async def test_wrapped_sliding_window_drops_whole_source_lines_and_keeps_following() -> None:
    app = WrapApp()
    async with app.run_test(size=(80, 20)) as pilot:
        log = app.query_one(LogView)
        await pilot.pause()
        tail = [f"{i} {STATS}" for i in range(20)]
        log.set_lines(tail)
        await pilot.pause()
        per_line = len(wrap_line(tail[0], log.scrollable_content_region.width))
        assert per_line > 1 and log.line_count == 20 * per_line
        log.set_lines(tail[2:] + ["20 short"])  # two wrapped lines leave at the top, one arrives
        await pilot.pause()
        assert log.line_count == 18 * per_line + 1 and log.lines[0].startswith("2 (APIServer")
        assert log.follow and log.scroll_y == log.max_scroll_y


async def test_resizing_rewraps_at_the_new_width() -> None:
    app = WrapApp()
    async with app.run_test(size=(80, 20)) as pilot:
        log = app.query_one(LogView)
        await pilot.pause()
        log.set_lines([STATS])
        await pilot.pause()
        before = log.line_count
        log.styles.width = 30
        await pilot.pause()
        await pilot.pause()
        assert log.line_count > before
        assert all(cell_len(x) <= log.scrollable_content_region.width for x in log.lines)


async def test_toggles_keep_following_or_the_reading_place() -> None:
    app = WrapApp()

    async def until(cond, what: str, timeout: float = 10.0) -> None:
        """Layout settles over a few refreshes on a busy machine: wait for it, with a deadline."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not cond():
            assert asyncio.get_running_loop().time() < deadline, (
                what,
                log.follow,
                log.scroll_y,
                log.max_scroll_y,
            )
            await pilot.pause(0.05)

    async with app.run_test(size=(80, 20)) as pilot:
        log = app.query_one(LogView)
        log.focus()
        await pilot.pause()
        log.set_lines([f"{i} {STATS}" if i % 2 else f"PROBE {i}" for i in range(60)])
        await until(lambda: log.follow and log.scroll_y == log.max_scroll_y > 0, "following the end")
        log.show_hidden = True
        await pilot.pause()
        log.wrap = False
        # unwrapped long lines bring a horizontal scrollbar: let that layout land before the reader moves
        await until(
            lambda: log.show_horizontal_scrollbar and log.follow and log.scroll_y == log.max_scroll_y,
            "still at the end",
        )
        await pilot.pause(0.1)
        await pilot.press("home")
        await until(lambda: not log.follow and log.scroll_y == 0, "at the top, not following", timeout=3)
        log.wrap = True
        await until(lambda: log.max_scroll_y > 0, "re-wrapped")
        await pilot.pause()
        assert not log.follow and log.scroll_y < log.max_scroll_y  # not yanked to the end while reading
