"""LogView: append-only updates, sliding windows, full replace, follow semantics."""

from __future__ import annotations

from textual.app import App, ComposeResult

from widgets import LogView
from widgets.log_view import new_tail


class LogApp(App[None]):
    CSS = "LogView { height: 10; }"

    def compose(self) -> ComposeResult:
        yield LogView()


def lines(a: int, b: int) -> list[str]:
    return [f"line {i}" for i in range(a, b)]


def test_new_tail_finds_extension_sliding_window_and_replacement() -> None:
    assert new_tail([], ["a"]) == (0, 0)
    assert new_tail(["a", "b"], ["a", "b", "c"]) == (0, 2)
    assert new_tail(["a", "b", "c"], ["b", "c", "d"]) == (1, 2)
    assert new_tail(["a", "b", "c"], ["c", "x"]) == (2, 1)
    assert new_tail(["a", "b"], ["x", "y"]) is None
    assert new_tail(["a", "b", "c"], ["b", "c"]) == (1, 2)  # shrink from the top only


async def test_set_lines_appends_only_new_lines() -> None:
    app = LogApp()
    async with app.run_test() as pilot:
        log = app.query_one(LogView)
        log.set_lines(lines(0, 5))
        writes: list[list[str]] = []
        original = log.write_lines
        log.write_lines = lambda new, scroll_end=None: (writes.append(list(new)), original(new, scroll_end))[
            1
        ]
        log.set_lines(lines(0, 7))
        assert writes == [["line 5", "line 6"]] and list(log.lines) == lines(0, 7)
        log.set_lines(lines(3, 9))  # the agent's ring moved on: drop 3, append 2
        assert list(log.lines) == lines(3, 9) and writes[-1] == ["line 7", "line 8"]
        log.set_lines(["other", "", "multi\nline"])  # no overlap: replace; one display line each
        assert list(log.lines) == ["other", " ", "multi line"]
        await pilot.pause()


async def test_follow_keeps_the_end_until_the_user_scrolls_up() -> None:
    app = LogApp()
    async with app.run_test(size=(40, 20)) as pilot:
        log = app.query_one(LogView)
        log.focus()
        log.set_lines(lines(0, 50))
        await pilot.pause()
        assert log.follow and log.scroll_y == log.max_scroll_y > 0
        await pilot.press("up", "up", "up")
        await pilot.pause()
        assert not log.follow
        reading = log.scroll_y
        log.set_lines(lines(0, 80))
        await pilot.pause()
        assert log.scroll_y == reading  # not yanked to the end while reading
        log.set_lines(lines(10, 90))  # sliding window: the same text stays on screen
        await pilot.pause()
        assert log.scroll_y == reading - 10 and not log.follow
        await pilot.press("end")
        await pilot.pause()
        assert log.follow and log.scroll_y == log.max_scroll_y
        log.set_lines(lines(10, 120))
        await pilot.pause()
        assert log.scroll_y == log.max_scroll_y and log.has_class("-following")
