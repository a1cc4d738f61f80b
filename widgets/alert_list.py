"""AlertList: active alerts, most severe first, each with its evidence in one compact line."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Final

from rich.style import Style
from rich.text import Text
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from .tone import component_style

SEVERITY_RANK: Final[dict[str, int]] = {"info": 0, "warning": 1, "critical": 2}
_LEVEL: Final[dict[str, str]] = {"critical": "crit", "warning": "warn", "info": "info"}
_TAG: Final[dict[str, str]] = {"crit": "CRIT", "warn": "WARN", "info": "INFO", "other": "????"}
EMPTY_ID: Final = "\x00no-alerts"


@dataclass(frozen=True, slots=True)
class AlertItem:
    """One alert as shown: ``severity`` is "critical" | "warning" | "info" (others sort last, grey);
    ``where`` names the subject ("host-a/llama70b"); ``since`` is display text or None;
    ``raised_count`` > 1: raised that many times in the source's window (it flaps), shown as "raised 5×";
    ``depth`` > 0: a consequence of the nearest item before it with a smaller depth (its cause), listed
    under it, indented and marked "↳"."""

    code: str
    severity: str
    summary: str
    since: str | None
    where: str
    evidence: Mapping[str, object] = field(default_factory=dict)
    raised_count: int = 1
    depth: int = 0

    @property
    def key(self) -> str:
        """Identity across updates: where + code."""
        return f"{self.where}|{self.code}"


def format_evidence(evidence: Mapping[str, object], limit: int | None = 8) -> str:
    """``key=value`` pairs separated by two spaces; floats with 3 significant digits, lists joined by ",",
    None as "null"; more than ``limit`` pairs end in "…" (``limit`` None: every pair). One definition:
    whoever shows alert evidence outside this widget formats it with this function too."""
    items = list(evidence.items())
    shown = items if limit is None else items[:limit]
    pairs = [f"{k}={evidence_value(v)}" for k, v in shown]
    return "  ".join(pairs) + ("  …" if len(shown) < len(items) else "")


def evidence_value(v: object) -> str:
    """One evidence value: "null", a float with 3 significant digits, a list joined by ",", else str()."""
    if v is None:
        return "null"
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, list | tuple):
        return ",".join(evidence_value(x) for x in v)
    return str(v)


def ordered(alerts: Sequence[AlertItem], acknowledged: frozenset[str] = frozenset()) -> list[AlertItem]:
    """Groups (an item of depth 0 and the deeper items after it: a cause and its consequences) with an
    unacknowledged member first, then by their most severe member (critical first); input order within
    ties and inside a group. Items without depth are groups of one."""
    groups: list[list[AlertItem]] = []
    for a in alerts:
        if a.depth > 0 and groups:
            groups[-1].append(a)
        else:
            groups.append([a])

    def rank(group: list[AlertItem]) -> tuple[bool, int]:
        return (
            all(a.key in acknowledged for a in group),
            -max(SEVERITY_RANK.get(a.severity, -1) for a in group),
        )

    return [a for group in sorted(groups, key=rank) for a in group]


class AlertList(OptionList):
    """An OptionList of alerts: per item a header line (severity tag, code, where, since), the summary
    and the evidence. Acknowledged items (``acknowledged`` holds their keys) are dimmed and listed after
    the others. The highlight follows the same alert key across updates (else the nearest index).
    Enter / click posts ``AlertList.Chosen(index, item)`` (index in displayed order).

    Component classes: ``alert-list--crit|warn|info|other`` (tag colour), ``--code``, ``--where``,
    ``--evidence``, ``--acknowledged``, ``--empty``.
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = OptionList.COMPONENT_CLASSES | {
        f"alert-list--{n}"
        for n in ("crit", "warn", "info", "other", "code", "where", "evidence", "acknowledged", "empty")
    }
    DEFAULT_CSS = """
    AlertList > .alert-list--crit { color: $error; text-style: bold; }
    AlertList > .alert-list--warn { color: $warning; text-style: bold; }
    AlertList > .alert-list--info { color: $primary; text-style: bold; }
    AlertList > .alert-list--other { color: $text-muted; text-style: bold; }
    AlertList > .alert-list--code { text-style: bold; }
    AlertList > .alert-list--where { color: $text-primary; }
    AlertList > .alert-list--evidence { color: $text-muted; }
    AlertList > .alert-list--acknowledged { text-style: dim; }
    AlertList > .alert-list--empty { color: $success; }
    """

    alerts: reactive[tuple[AlertItem, ...]] = reactive((), always_update=True)
    acknowledged: reactive[frozenset[str]] = reactive(frozenset())

    class Chosen(Message):
        """The user chose an alert."""

        def __init__(self, alert_list: AlertList, index: int, item: AlertItem) -> None:
            super().__init__()
            self.alert_list, self.index, self.item = alert_list, index, item

        @property
        def control(self) -> AlertList:
            return self.alert_list

    def __init__(self, alerts: Sequence[AlertItem] = (), **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._shown: list[AlertItem] = []
        self._styles_seen: tuple[Style, ...] = ()
        self.set_reactive(AlertList.alerts, tuple(alerts))

    @property
    def shown(self) -> tuple[AlertItem, ...]:
        """The alerts in displayed order."""
        return tuple(self._shown)

    def on_mount(self) -> None:
        self._rebuild()

    def watch_alerts(self) -> None:
        self._rebuild()

    def watch_acknowledged(self) -> None:
        self._rebuild()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        if self.is_mounted and self._styles_signature() != self._styles_seen:  # the theme changed
            self.call_later(self._rebuild)

    def _rebuild(self) -> None:
        if not self.is_mounted:
            return
        self._styles_seen = self._styles_signature()
        previous = self.highlighted_option.id if self.highlighted_option is not None else None
        index = self.highlighted or 0
        self._shown = ordered(self.alerts, self.acknowledged)
        ids = _unique_ids(self._shown)
        self.clear_options()
        if not self._shown:
            self.add_option(
                Option(Text("no active alerts", style=self._style("empty")), id=EMPTY_ID, disabled=True)
            )
            return
        options: list[Option | None] = []
        for alert, option_id in zip(self._shown, ids, strict=True):
            options += [Option(self._prompt(alert), id=option_id), None]  # None: a divider line
        self.add_options(options[:-1])
        self.highlighted = ids.index(previous) if previous in ids else min(index, len(ids) - 1)

    def _prompt(self, alert: AlertItem) -> Text:
        level = _LEVEL.get(alert.severity, "other")
        head = Text.assemble(
            (f"{'  ' * alert.depth}↳ " if alert.depth else "", self._style("evidence")),
            (f"{_TAG[level]} ", self._style(level)),
            (alert.code, self._style("code")),
            "  ",
            (alert.where, self._style("where")),
            (f"  since {alert.since}" if alert.since else "", self._style("evidence")),
            (f"  raised {alert.raised_count}×" if alert.raised_count > 1 else "", self._style("evidence")),
            ("  (acknowledged)" if alert.key in self.acknowledged else "", self._style("evidence")),
        )
        pad = "     " + "  " * alert.depth + ("  " if alert.depth else "")
        text = Text("\n").join([head, Text(pad + alert.summary)])
        if alert.evidence:
            text.append("\n" + pad + format_evidence(alert.evidence), self._style("evidence"))
        if alert.key in self.acknowledged:
            text.stylize(self._style("acknowledged"))
        return text

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if 0 <= event.option_index < len(self._shown):
            self.post_message(self.Chosen(self, event.option_index, self._shown[event.option_index]))

    def _style(self, name: str) -> Style:
        return component_style(self, f"alert-list--{name}")

    def _styles_signature(self) -> tuple[Style, ...]:
        return tuple(self._style(n) for n in ("crit", "warn", "info", "evidence", "where"))


def _unique_ids(alerts: Sequence[AlertItem]) -> list[str]:
    seen: dict[str, int] = {}
    ids = []
    for alert in alerts:
        n = seen[alert.key] = seen.get(alert.key, 0) + 1
        ids.append(alert.key if n == 1 else f"{alert.key}#{n}")
    return ids
