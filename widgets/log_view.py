"""LogView: a log tail fed whole line lists; appends only what is new, follows the end like `tail -f`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.reactive import reactive
from textual.widgets import Log


def new_tail(old: Sequence[str], new: Sequence[str]) -> tuple[int, int] | None:
    """How to turn ``old`` into ``new`` by dropping lines from the top and appending at the bottom.

    Returns (dropped, kept): drop ``dropped`` old lines, then append ``new[kept:]``; None when ``new``
    does not continue ``old`` at all (a full replace). The largest overlap wins, so an extension
    (``new`` starts with ``old``) is (0, len(old)) and a sliding window of the last N lines works too.
    """
    if not old:
        return (0, 0)
    if len(new) >= len(old) and new[: len(old)] == old:
        return (0, len(old))
    last = old[-1]
    for kept in range(min(len(old) - 1, len(new)), 0, -1):
        if new[kept - 1] == last and new[:kept] == old[len(old) - kept :]:
            return (len(old) - kept, kept)
    return None


class LogView(Log):
    """A Log fed with ``set_lines(lines)`` (the latest tail, e.g. from the agent's log endpoint).

    ``follow`` (default True) keeps the view on the last line. Scrolling up turns it off; ``end`` (or
    scrolling back down to the bottom) turns it on again. The ``-following`` class mirrors it.
    """

    BINDINGS: ClassVar[list[BindingType]] = [Binding("end", "follow", "Follow", show=False)]

    follow: reactive[bool] = reactive(True)

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(auto_scroll=False, name=name, id=id, classes=classes)
        self._source: tuple[str, ...] = ()

    @property
    def source(self) -> tuple[str, ...]:
        """The lines last given to ``set_lines``."""
        return self._source

    def set_lines(self, lines: Sequence[str]) -> None:
        """Show exactly ``lines``: append when they continue what is shown, else replace everything."""
        new = tuple(lines)
        step = new_tail(self._source, new)
        if step is None:
            self.clear()
            self._write(new)
        else:
            dropped, kept = step
            if dropped:
                self._drop_top(dropped)
            self._write(new[kept:])
        self._source = new
        if self.follow:
            self.scroll_end(animate=False, immediate=True, x_axis=False)

    def _write(self, lines: Sequence[str]) -> None:
        if lines:  # one display line per source line: Log would split on newlines and drop empty lines
            self.write_lines([" ".join(line.splitlines()) or " " for line in lines], scroll_end=False)

    def _drop_top(self, count: int) -> None:
        """Remove ``count`` lines from the top, keeping the reader's place when not following."""
        self.max_lines = len(self._source) - count  # Log prunes from the top on the next write
        self.write_lines([], scroll_end=False)
        self.max_lines = None
        if not self.follow:
            self.scroll_to(y=max(0, self.scroll_y - count), animate=False, immediate=True)

    def watch_follow(self, follow: bool) -> None:
        self.set_class(follow, "-following")
        if follow:
            self.scroll_end(animate=False, immediate=True, x_axis=False)

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        if new < old and new < self.max_scroll_y:
            self.follow = False
        elif new > old and new >= self.max_scroll_y:
            self.follow = True

    def action_follow(self) -> None:
        self.follow = True

    def on_resize(self) -> None:
        if self.follow:
            self.scroll_end(animate=False, immediate=True, x_axis=False)
