"""AlertList: severity order, acknowledged items, evidence text, stable selection, Chosen."""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.message import Message

from widgets import AlertItem, AlertList, format_evidence
from widgets.alert_list import ordered

HUNG = AlertItem(
    "ENGINE_HUNG", "critical", "no token progress for 45 s", "12:03:04", "host-a/qwen", {"waiting": 12}
)
KV = AlertItem("KV_PRESSURE", "warning", "KV usage 0.97 for 60 s", "12:01:00", "host-a/llama", {"kv": 0.9712})
INFO = AlertItem("METRICS_STALE", "info", "scrape late", None, "host-b/tgi", {})
ODD = AlertItem("FUTURE", "severe-ish", "unknown severity", None, "host-c", {})


class AlertApp(App[None]):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[Message] = []

    def compose(self) -> ComposeResult:
        yield AlertList([INFO, KV, HUNG])

    def record(self, message: Message) -> None:
        if isinstance(message, AlertList.Chosen) and all(m is not message for m in self.messages):
            self.messages.append(message)


def test_order_and_evidence_format() -> None:
    assert ordered([INFO, ODD, KV, HUNG]) == [HUNG, KV, INFO, ODD]
    assert ordered([INFO, KV, HUNG], frozenset({HUNG.key})) == [KV, INFO, HUNG]  # acknowledged last
    evidence = {"running": 3, "age_s": 45.21, "gpus": [0, 1], "ttft": None, "ok": True}
    assert format_evidence(evidence) == "running=3  age_s=45.2  gpus=0,1  ttft=null  ok=True"
    assert format_evidence({str(i): i for i in range(10)}, limit=2) == "0=0  1=1  …"
    assert HUNG.key == "host-a/qwen|ENGINE_HUNG"


async def test_items_are_shown_most_severe_first_with_evidence(text_of) -> None:
    app = AlertApp()
    async with app.run_test(size=(70, 14)) as pilot:
        alerts = app.query_one(AlertList)
        await pilot.pause()
        assert alerts.shown == (HUNG, KV, INFO)
        text = text_of(alerts)
        assert (
            text.index("CRIT ENGINE_HUNG") < text.index("WARN KV_PRESSURE") < text.index("INFO METRICS_STALE")
        )
        assert "waiting=12" in text and "kv=0.971" in text and "since 12:03:04" in text
        tags = {
            seg.text.strip(): seg.style for y in range(8) for seg in alerts.render_line(y) if seg.text.strip()
        }
        assert tags["CRIT"].color != tags["WARN"].color


async def test_selection_follows_the_alert_key_and_enter_posts_chosen() -> None:
    app = AlertApp()
    async with app.run_test(size=(70, 14), message_hook=app.record) as pilot:
        alerts = app.query_one(AlertList)
        alerts.focus()
        await pilot.press("down")  # KV
        assert alerts.highlighted == 1
        alerts.alerts = (
            KV,
            INFO,
            HUNG,
            AlertItem("CRASH_LOOP", "critical", "5 restarts", None, "host-b/x", {}),
        )
        await pilot.pause()
        assert alerts.shown[alerts.highlighted] == KV and alerts.highlighted == 2
        await pilot.press("enter")
        await pilot.pause()
        assert [(m.index, m.item) for m in app.messages] == [(2, KV)]
        assert app.messages[0].control is alerts
        alerts.alerts = (HUNG,)  # KV vanished: the nearest index
        await pilot.pause()
        assert alerts.highlighted == 0


async def test_acknowledged_items_are_dimmed_and_empty_list_says_so(text_of) -> None:
    app = AlertApp()
    async with app.run_test(size=(70, 14)) as pilot:
        alerts = app.query_one(AlertList)
        alerts.acknowledged = frozenset({HUNG.key})
        await pilot.pause()
        assert alerts.shown[-1] == HUNG and "(acknowledged)" in text_of(alerts)
        alerts.alerts = ()
        await pilot.pause()
        assert "no active alerts" in text_of(alerts) and alerts.shown == ()
        await pilot.press("enter")  # the placeholder cannot be chosen


async def test_theme_change_recolours_the_items() -> None:
    app = AlertApp()
    async with app.run_test(size=(70, 14)) as pilot:
        alerts = app.query_one(AlertList)
        await pilot.pause()

        def crit_colour():
            prompt = alerts.get_option_at_index(0).prompt  # the CRIT item; its first span is the tag
            return prompt.spans[0].style.color

        before = crit_colour()
        app.theme = "nord"
        await pilot.pause()
        await pilot.pause()
        assert crit_colour() != before and crit_colour() is not None


def test_a_cause_keeps_its_consequences_under_it() -> None:
    """A group (depth 0 and the deeper items after it) moves as one: ranked by its worst member, an
    unacknowledged member keeps it up front, its members keep their order."""
    kv = AlertItem("KV_PRESSURE", "warning", "KV 97 %", None, "h/e", {})
    storm = AlertItem("PREEMPTION_STORM", "warning", "40 preemptions", None, "h/e", {}, depth=1)
    lies = AlertItem("HEALTH_LIES", "critical", "canary fails", None, "h/e", {}, depth=2)
    stale = AlertItem("METRICS_STALE", "warning", "late", None, "h/e", {})
    assert ordered([stale, kv, storm, lies]) == [
        kv,
        storm,
        lies,
        stale,
    ]  # the critical consequence lifts its cause
    assert ordered([kv, storm, lies, stale], frozenset({kv.key, storm.key, lies.key})) == [
        stale,
        kv,
        storm,
        lies,
    ]
    assert ordered([kv, storm, lies, stale], frozenset({kv.key})) == [
        kv,
        storm,
        lies,
        stale,
    ]  # still live below
    assert ordered([storm, stale]) == [storm, stale]  # a leading consequence without its cause is a group


async def test_consequences_are_indented_under_their_cause(text_of) -> None:
    kv = AlertItem("KV_PRESSURE", "warning", "KV 97 %", None, "h/e", {"kv": 0.97})
    lies = AlertItem("HEALTH_LIES", "critical", "canary fails", None, "h/e", {}, depth=1)

    class Grouped(App[None]):
        def compose(self) -> ComposeResult:
            yield AlertList([kv, lies])

    app = Grouped()
    async with app.run_test(size=(70, 14)) as pilot:
        await pilot.pause()
        text = text_of(app.query_one(AlertList))
        assert text.index("WARN KV_PRESSURE") < text.index("↳ CRIT HEALTH_LIES")
        lines = text.splitlines()
        summary = next(line for line in lines if "canary fails" in line)
        assert summary.index("canary fails") > next(line for line in lines if "KV 97 %" in line).index(
            "KV 97 %"
        )
