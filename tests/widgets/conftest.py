"""Helpers shared by the widget tests."""

from __future__ import annotations

import pytest
from textual.widget import Widget


def widget_text(widget: Widget) -> str:
    """The widget's rendered lines as plain text (what the terminal would show)."""
    return "\n".join("".join(seg.text for seg in widget.render_line(y)) for y in range(widget.size.height))


@pytest.fixture
def text_of():
    return widget_text
