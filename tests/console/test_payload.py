"""Reading agents' answers: ``decode_snapshot`` / ``decode_history`` never raise anything but PayloadError
(one printable line), whatever the bytes; whatever they accept, the reducer and every presenter can show;
and one host's unreadable answer never costs another host its round (poll path and reducer)."""

from __future__ import annotations

import contextlib
import copy
import json
import math
from dataclasses import replace
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.schema import History, HostSnapshot
from console.fleet import HostError, HostResult, one_line
from console.httpsource import HttpFleetSource
from console.payload import MAX_DEPTH, PayloadError, decode_history, decode_snapshot, load_json
from console.settings import ConsoleConfig, HostConfig
from console.state import FleetState, apply
from console.status import render_json, render_table
from console.views import (
    alert_detail,
    alert_rows,
    engine_summary,
    event_lines,
    fleet_table,
    gpu_summary,
    graph_note,
    header_counts,
    host_status_line,
    live_engine_fields,
)
from tests.console.conftest import SNAPSHOTS, cfg

FULL: dict[str, Any] = json.loads((SNAPSHOTS / "full.json").read_text())
HISTORY_SCHEMA = "llmconsole.history/1"
PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Any JSON value, NaN and ±Infinity included; strings may hold lone surrogates and control characters.
_OVERFLOW = "1e999"  # a float literal that overflows to infinity (json.dumps cannot write one): see _dumps
_EXTREMES = st.sampled_from(
    [10**400, -(10**400), 2**63, -(2**63) - 1, _OVERFLOW, "-" + _OVERFLOW, math.nan, -math.inf]
)
_chars = st.characters(blacklist_categories=())
_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([1e308, -1e308, 5e-324, 0.0, -0.0])
    | _EXTREMES
    | st.text(_chars, max_size=20)
    | st.sampled_from(["\x1b[2J", "a\nb", "\u202eevil", "9999-12-31T23:59:59-23:59"])
)
JSON = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(_chars, max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into a JSON document (the document itself excluded)."""
    out: list[tuple[Any, ...]] = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        out.append((*prefix, k))
        out.extend(_paths(v, (*prefix, k)))
    return out


PATHS = _paths(FULL)


def _mutate(doc: Any, path: tuple[Any, ...], value: Any, delete: bool) -> Any:
    doc = copy.deepcopy(doc)
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return doc


mutations = st.lists(
    st.tuples(st.sampled_from(PATHS), _EXTREMES | JSON, st.booleans()), min_size=1, max_size=3
)


def _mutated(muts: list[tuple[tuple[Any, ...], Any, bool]]) -> Any:
    doc: Any = FULL
    for path, value, delete in muts:
        with contextlib.suppress(KeyError, IndexError, TypeError):  # an earlier mutation removed the parent
            doc = _mutate(doc, path, value, delete)
    return doc


def _dumps(value: Any) -> bytes:
    """JSON with NaN / Infinity literals, \\udXXX escapes, and 1e999 where the value said so."""
    text = json.dumps(value, allow_nan=True)
    return text.replace(f'"{_OVERFLOW}"', _OVERFLOW).replace(f'"-{_OVERFLOW}"', f"-{_OVERFLOW}").encode()


def _readable(err: PayloadError) -> None:
    msg = err.error.message
    assert err.error.kind in ("bad_payload", "incompatible") and msg
    assert msg == one_line(msg) and len(msg) <= 300, msg


def _read(decoder, body: bytes) -> Any:
    try:
        return decoder(body)
    except PayloadError as err:
        _readable(err)
        return None


def _finite_numbers(value: Any) -> None:
    """Every number in a decoded wire object is finite and fits a float (the presenters need both)."""
    if isinstance(value, HostSnapshot | History) or hasattr(value, "__dataclass_fields__"):
        for name in value.__dataclass_fields__:
            _finite_numbers(getattr(value, name))
    elif isinstance(value, dict):
        for v in value.values():
            _finite_numbers(v)
    elif isinstance(value, list | tuple):
        for v in value:
            _finite_numbers(v)
    elif isinstance(value, float):
        assert math.isfinite(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        assert -(2**63) <= value < 2**63


def _show_everything(snap: HostSnapshot, history: tuple[HostSnapshot, ...] = ()) -> None:
    """Reduce one host's answer next to a healthy host and run every presenter over the result."""
    good = decode_snapshot(json.dumps(FULL).encode())
    config = cfg("odd", "good")
    s = FleetState.initial(config, 0.0)
    for at in (1.0, 2.0, 30.0):  # first contact (with history), again, then stale
        s = apply(
            s,
            [
                HostResult("odd", snap, None, 0.01, at, history),
                HostResult("good", replace(good, seq=int(at)), None, 0.01, at),
            ],
            at,
            1.75e9 + at,
        )
    odd, healthy = s.hosts["odd"], s.hosts["good"]
    assert healthy.snapshot is not None and healthy.error is None  # the other host always renders
    assert odd.snapshot is not None or odd.error is not None
    view = fleet_table(s, s.now)
    assert "good" in view.order and "odd" in view.order
    for key in view.order:
        host_status_line(s, key, None)
    header_counts(s)
    render_table(s)
    json.loads(render_json(s))
    live_engine_fields(s)
    rows, by_key = alert_rows(s)
    for a in by_key.values():
        alert_detail(a)
    if odd.snapshot is not None:
        for e in odd.snapshot.engines:
            engine_summary(odd, e, s.now)
            graph_note(odd, e, s.now)
            event_lines(e)
        for g in odd.snapshot.gpus:
            gpu_summary(g)


@PROPS
@given(st.binary(max_size=400))
def test_any_bytes_decode_or_raise_payload_error(body: bytes) -> None:
    for decoder in (decode_snapshot, decode_history):
        got = _read(decoder, body)
        assert got is None or isinstance(got, HostSnapshot | History)


@PROPS
@given(JSON)
def test_any_json_value_decodes_or_raises_payload_error(value: Any) -> None:
    body = _dumps(value)
    assert _read(decode_snapshot, body) is None or isinstance(value, dict)
    assert _read(decode_history, body) is None or isinstance(value, dict)
    wrapped = _read(decode_history, _dumps({"schema": HISTORY_SCHEMA, "host": "x", "snapshots": [value]}))
    assert wrapped is None or isinstance(wrapped, History)


def _outcome(body: bytes | str) -> Any:
    try:
        return ("ok", load_json(body, max_depth=10_000))
    except PayloadError as err:
        return ("error", err.error.message)


@PROPS
@given(st.one_of(JSON, mutations.map(_mutated)))
def test_the_fast_number_path_reads_exactly_what_the_careful_path_reads(value: Any) -> None:
    body = _dumps(value)  # bytes may take the C-speed path; the same text as str always takes the careful one
    assert _outcome(body) == _outcome(body.decode())


@PROPS
@given(mutations)
def test_whatever_the_snapshot_reader_accepts_the_console_can_show(muts) -> None:
    snap = _read(decode_snapshot, _dumps(_mutated(muts)))
    if snap is not None:
        _finite_numbers(snap)
        _show_everything(snap)


@PROPS
@given(st.lists(mutations, min_size=1, max_size=3))
def test_whatever_the_history_reader_accepts_the_console_can_show(many) -> None:
    docs = [_mutated(m) for m in many]
    history = _read(decode_history, _dumps({"schema": HISTORY_SCHEMA, "host": "odd", "snapshots": docs}))
    if history is not None and history.snapshots:
        _finite_numbers(history)
        *past, newest = history.snapshots
        _show_everything(newest, tuple(past))


@PROPS
@given(st.binary(max_size=60), st.integers(min_value=0, max_value=len(json.dumps(FULL))))
def test_bytes_spliced_into_a_real_snapshot(junk: bytes, at: int) -> None:
    text = json.dumps(FULL).encode()
    snap = _read(decode_snapshot, text[:at] + junk + text[at:])
    if snap is not None:
        _show_everything(snap)


# --- the hostile cases by name -----------------------------------------------------------------------------


def _reason(body: bytes, **kw: Any) -> str:
    try:
        decode_snapshot(body, **kw)
    except PayloadError as err:
        _readable(err)
        return err.error.message
    raise AssertionError("decoded")


def _doc(**fields: Any) -> dict[str, Any]:
    return {**FULL, **fields}


def test_named_hostile_answers_each_get_one_reason() -> None:
    assert _reason(b"[" * 100_000 + b"]" * 100_000) == "bad payload: JSON nested too deeply"
    assert _reason(b'{"a":' * 100_000) == "bad payload: JSON nested too deeply"
    deep = copy.deepcopy(
        FULL
    )  # under the interpreter's limit, inside alert evidence (kept as is by the schema)
    code = deep["engines"][1]["alerts"][0]["code"]
    deep["engines"][1]["alerts"][0]["evidence"] = {"a": json.loads("[" * 40 + "]" * 40)}
    assert (
        _reason(_dumps(deep))
        == f"bad payload: alert {code!r}: evidence nested deeper than {MAX_DEPTH - 4} levels"
    )
    history = {"schema": HISTORY_SCHEMA, "host": "h", "snapshots": [FULL, deep]}
    try:
        decode_history(_dumps(history))
        raise AssertionError("decoded")
    except PayloadError as err:
        assert "evidence nested deeper" in err.error.message
    deep["engines"][1]["alerts"][0]["evidence"] = {"a": json.loads("[" * 20 + "]" * 20)}
    assert decode_snapshot(_dumps(deep)).engines[1].alerts[0].evidence["a"]  # 26 levels in all: fine
    assert _reason(b"[" * 40 + b"]" * 40).startswith(
        "bad payload: expected object, got [[[["
    )  # 40 deep, not an object
    try:
        load_json(b"[" * 40 + b"]" * 40)  # the generic reader bounds any nesting
        raise AssertionError("loaded")
    except PayloadError as err:
        assert err.error.message == f"bad payload: JSON nested deeper than {MAX_DEPTH} levels"
    assert _reason(json.dumps(FULL).encode().replace(b'"gpu01"', b'"gpu\xff01"', 1)).startswith(
        "bad payload: invalid UTF-8 at byte "
    )
    assert (
        _reason(b'{"schema":"llmconsole.snapshot/1","host":"h","seq":NaN,"taken_at":"x"}')
        == "bad payload: seq: expected integer, got None"
    )
    assert _reason(_dumps(_doc(seq=10**30))) == "bad payload: integer out of range: 100000000000000000000000…"
    assert _reason(_dumps(_doc(host="\ud800"))).startswith(
        "bad payload: a string holds a lone UTF-16 surrogate"
    )
    assert _reason(b" " * 2048, limit=1024) == "bad payload: answer larger than 1 KiB"
    stats = copy.deepcopy(FULL)
    stats["engines"][1]["stats"]["ttft_p95_s"] = {"a": [1]}
    assert (
        _reason(_dumps(stats))
        == "bad payload: engines[1].stats.ttft_p95_s: expected number or null, got {'a': [1]}"
    )
    v9 = _dumps(_doc(schema="llmconsole.snapshot/9\n\x1b[2J" + "x" * 500))
    try:
        decode_snapshot(v9)
    except PayloadError as err:
        assert (
            err.error.kind == "incompatible"
            and "\n" not in err.error.message
            and "\x1b" not in err.error.message
        )
        assert err.error.found_schema is not None and len(err.error.found_schema) <= 60


def test_nan_and_overflowing_numbers_read_as_null_where_null_is_allowed() -> None:
    doc = copy.deepcopy(FULL)
    doc["engines"][0]["stats"]["ttft_p95_s"] = math.inf
    doc["engines"][0]["stats"]["kv_cache_usage"] = math.nan
    body = _dumps(doc).replace(b"Infinity", b"1e999", 1)
    snap = decode_snapshot(body)
    assert snap.engines[0].stats.ttft_p95_s is None and snap.engines[0].stats.kv_cache_usage is None
    assert load_json(b"[NaN, -Infinity, 1e999, -1e999, 1.5]") == [None, None, None, None, 1.5]
    assert load_json(b"[-9223372036854775808, 9223372036854775807]") == [-(2**63), 2**63 - 1]


def test_host_error_messages_are_one_printable_line() -> None:
    e = HostError(
        "http", "HTTP 500: boom\nTraceback (most recent call last):\n\x1b[31mred\u202e" + "y" * 1000
    )
    assert "\n" not in e.message and "\x1b" not in e.message and "\u202e" not in e.message
    assert e.message.startswith("HTTP 500: boom Traceback") and len(e.message) <= 300


# --- one host's failure never costs another host its round ------------------------------------------------


def test_the_reducer_turns_one_hosts_failure_into_that_hosts_error() -> None:
    good = decode_snapshot(json.dumps(FULL).encode())
    broken = replace(good, engines=None)  # no decoder makes this: stands for any bug the reducer trips on
    config = cfg("bad", "good")
    s = apply(
        FleetState.initial(config, 0.0),
        [HostResult("bad", broken, None, 0.01, 1.0), HostResult("good", good, None, 0.01, 1.0)],
        1.0,
    )
    assert s.hosts["good"].status == "fresh" and s.hosts["good"].snapshot is good
    bad = s.hosts["bad"]
    assert bad.status == "unreachable" and bad.error.kind == "bad_payload"
    assert bad.error.message.startswith("console could not use this answer: TypeError")
    assert any(a.host == "bad" and a.alert.code == "AGENT_UNREACHABLE" for a in s.alerts)
    render_table(s)


class _Faulty(httpx.AsyncBaseTransport):
    """Answers the real snapshot, except for one host whose request blows up with an error httpx does not
    know (a console-side bug stand-in)."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "bad.invalid":
            raise RuntimeError("boom")
        if request.url.path == "/v1/snapshot":
            return httpx.Response(200, content=json.dumps(FULL).encode())
        return httpx.Response(404, content=b'{"error": "no"}')


async def test_the_poll_turns_one_hosts_unexpected_exception_into_that_hosts_error() -> None:
    hosts = (
        HostConfig(name="bad", url="http://bad.invalid:9300"),
        HostConfig(name="good", url="http://good.invalid:9300"),
    )
    src = HttpFleetSource(ConsoleConfig(hosts=hosts), transport=_Faulty())
    try:
        bad, good = await src.poll()
    finally:
        await src.aclose()
    assert good.ok and good.snapshot.seq == FULL["seq"]
    assert not bad.ok and bad.error == HostError(
        "bad_payload", "console could not read this answer: RuntimeError: boom"
    )
