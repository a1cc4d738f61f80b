"""LogView: a log tail fed whole line lists; appends only what is new, follows the end like `tail -f`,
wraps long lines (toggle), and can hide lines a predicate marks (e.g. a monitor's own probe requests)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

from rich.cells import cell_len
from textual.binding import Binding, BindingType
from textual.reactive import reactive
from textual.widgets import Log

WRAP_INDENT = "  "  # continuation lines of a wrapped line start with this


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


def wrap_line(line: str, width: int, indent: str = WRAP_INDENT) -> list[str]:
    """``line`` cut into display lines of at most ``width`` cells, at a space where one is near the
    end, else mid-word; continuation lines start with ``indent``. ``width`` < 8: unchanged."""
    if width < 8 or cell_len(line) <= width:
        return [line]
    out: list[str] = []
    rest, room = line, width
    while cell_len(rest) > room:
        cut, used = 0, 0
        for i, ch in enumerate(rest):
            used += cell_len(ch)
            if used > room:
                break
            cut = i + 1
        space = rest.rfind(" ", 0, cut + 1)
        if space > cut // 2:
            cut = space
        out.append(rest[:cut].rstrip(" ") if out else rest[:cut])
        rest = rest[cut:].lstrip(" ")
        room = width - cell_len(indent)
        if not rest:
            return out
    out.append(rest)
    return [out[0], *(indent + part for part in out[1:])]


class LogView(Log):
    """A Log fed with ``set_lines(lines)`` (the latest tail, e.g. from the agent's log endpoint).

    ``follow`` (default True) keeps the view on the last line. Scrolling up turns it off; ``end`` (or
    scrolling back down to the bottom) turns it on again. The ``-following`` class mirrors it.
    ``wrap`` (default True) wraps lines at the pane's width. ``hide`` (a predicate on a source line)
    marks lines that are left out unless ``show_hidden``; ``hidden_count`` says how many were.
    """

    BINDINGS: ClassVar[list[BindingType]] = [Binding("end", "follow", "Follow", show=False)]

    follow: reactive[bool] = reactive(True)
    wrap: reactive[bool] = reactive(True)
    show_hidden: reactive[bool] = reactive(False)

    def __init__(
        self,
        *,
        wrap: bool = True,
        hide: Callable[[str], bool] | None = None,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(auto_scroll=False, name=name, id=id, classes=classes)
        self._source: tuple[str, ...] = ()
        self._shown: tuple[str, ...] = ()
        self._counts: list[int] = []  # display lines per shown source line
        self._wrap_width = 0
        self.hide = hide
        self.set_reactive(LogView.wrap, wrap)
        self.set_class(wrap, "-wrap")
        self.styles.overflow_x = "hidden" if wrap else "auto"

    @property
    def source(self) -> tuple[str, ...]:
        """The lines last given to ``set_lines``."""
        return self._source

    @property
    def shown(self) -> tuple[str, ...]:
        """The source lines on display (those ``hide`` marks are left out unless ``show_hidden``)."""
        return self._shown

    @property
    def hidden_count(self) -> int:
        """How many of the source lines are hidden now."""
        return len(self._source) - len(self._shown)

    def _visible(self, lines: Sequence[str]) -> tuple[str, ...]:
        hide = self.hide
        if hide is None or self.show_hidden:
            return tuple(lines)
        return tuple(line for line in lines if not hide(line))

    def set_lines(self, lines: Sequence[str]) -> None:
        """Show exactly ``lines`` (less the hidden ones): append when they continue what is shown, else
        replace everything."""
        self._source = tuple(lines)
        new = self._visible(self._source)
        step = new_tail(self._shown, new)
        if step is None:
            self._rewrite(new)
            return
        dropped, kept = step
        if dropped:
            self._drop_top(sum(self._counts[:dropped]))
            del self._counts[:dropped]
        self._write(new[kept:])
        self._shown = new
        if self.follow:
            self.scroll_end(animate=False, immediate=True, x_axis=False)

    def _rewrite(self, lines: tuple[str, ...]) -> None:
        """Everything again (a replace, a toggle, a new width), keeping the reader's place at the top
        line's proportion when not following."""
        fraction = self.scroll_y / self.max_scroll_y if self.max_scroll_y else 0.0
        self.clear()
        self._counts = []
        self._write(lines)
        self._shown = lines
        if self.follow:  # now, and again once a scrollbar that came or went has been laid out
            self.scroll_end(animate=False, immediate=True, x_axis=False)
        self.call_after_refresh(self._settle, fraction, self.scroll_y)

    def _settle(self, fraction: float, at: float) -> None:
        if self.follow:
            self.scroll_end(animate=False, immediate=True, x_axis=False)
        elif self.scroll_y == at:  # unless the reader moved meanwhile: their move wins
            self.scroll_to(y=round(fraction * self.max_scroll_y), animate=False, immediate=True)

    def _wrap_at(self) -> int:
        """The width to wrap at (0: no wrapping), leaving room for a vertical scrollbar."""
        if not self.wrap:
            return 0
        width = self.scrollable_content_region.width
        if not self.show_vertical_scrollbar:
            width -= self.styles.scrollbar_size_vertical
        return max(0, width)

    def _write(self, lines: Sequence[str]) -> None:
        if not lines:
            return
        width = self._wrap_width = self._wrap_at()
        out: list[str] = []
        for line in lines:  # one source line: Log would split on newlines and drop empty lines
            parts = (
                wrap_line(" ".join(line.splitlines()) or " ", width)
                if width
                else [" ".join(line.splitlines()) or " "]
            )
            self._counts.append(len(parts))
            out += parts
        self.write_lines(out, scroll_end=False)

    def _drop_top(self, count: int) -> None:
        """Remove ``count`` display lines from the top, keeping the reader's place when not following."""
        self.max_lines = max(0, self.line_count - count)  # Log prunes from the top on the next write
        self.write_lines([], scroll_end=False)
        self.max_lines = None
        if not self.follow:
            self.scroll_to(y=max(0, self.scroll_y - count), animate=False, immediate=True)

    def watch_follow(self, follow: bool) -> None:
        self.set_class(follow, "-following")
        if follow:
            self.scroll_end(animate=False, immediate=True, x_axis=False)

    def watch_wrap(self) -> None:
        self.set_class(self.wrap, "-wrap")
        self.styles.overflow_x = "hidden" if self.wrap else "auto"
        if self.is_mounted:
            self._rewrite(self._shown)

    def watch_show_hidden(self) -> None:
        if self.is_mounted:
            self._rewrite(self._visible(self._source))

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        if new < old and new < self.max_scroll_y:
            self.follow = False
        elif new > old and new >= self.max_scroll_y:
            self.follow = True

    def action_follow(self) -> None:
        self.follow = True

    def on_resize(self) -> None:
        if self.wrap and self._shown and self._wrap_at() != self._wrap_width:
            self._rewrite(self._shown)
        elif self.follow:
            self.scroll_end(animate=False, immediate=True, x_axis=False)

    def watch_show_horizontal_scrollbar(self, shown: bool) -> None:
        """A horizontal scrollbar that comes or goes moves the end by a line: keep following it."""
        if self.follow:  # judged again when it runs: the reader may have scrolled away by then
            self.call_after_refresh(self._end_if_following)

    def _end_if_following(self) -> None:
        if self.follow:
            self.scroll_end(animate=False, immediate=True, x_axis=False)
