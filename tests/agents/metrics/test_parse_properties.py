"""Differential tests: our parser against prometheus_client's on real fixtures and generated text."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from agents.metrics.model import MetricSet
from agents.metrics.parse import parse

DATA = Path(__file__).resolve().parents[2] / "data" / "metrics"
FIXTURES = [
    "vllm-0.32-cpu.loaded.prom",
    "vllm-0.32-cpu.idle.prom",
    "sglang-docs-2025.prom",
    "vllm-docs-v1-early.prom.txt",
]
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

Key = tuple[str, frozenset[tuple[str, str]], object]


def _value_key(value: float) -> object:
    value = float(value)
    return "NaN" if math.isnan(value) else value


def ours(metrics: MetricSet) -> Counter[Key]:
    return Counter(
        (name, frozenset(labels.items()), _value_key(value))
        for name, series in metrics.samples.items()
        for labels, value in series
    )


def reference(text: str) -> Counter[Key]:
    return Counter(
        (sample.name, frozenset(sample.labels.items()), _value_key(sample.value))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    )


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_matches_prometheus_client(name: str) -> None:
    text = (DATA / name).read_text(encoding="utf-8")
    text = "\n".join(line for line in text.split("\n") if line.strip() != "...")
    metrics = parse(text)
    assert metrics.ok
    expected = reference(text)
    assert len(expected) > 10
    assert ours(metrics) == expected


# --- generated expositions -------------------------------------------------------------------------

_metric_base = st.from_regex(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,12}", fullmatch=True)
_label_name = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,8}", fullmatch=True).filter(
    lambda n: not n.startswith("__") and n != "le"
)
_label_value = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
_value = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**20), 10**20).map(str),
    st.sampled_from(["NaN", "+Inf", "-Inf", "0", "1.5e-7", "-0.0"]),
)
_help = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\n\r"), max_size=20)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@st.composite
def _label_block(draw: st.DrawFn, extra: tuple[tuple[str, str], ...] = ()) -> tuple[str, dict[str, str]]:
    labels = draw(st.dictionaries(_label_name, _label_value, max_size=3))
    pairs = list(labels.items()) + list(extra)
    if not pairs:
        return draw(st.sampled_from(["", "{}"])), {}
    sep = draw(st.sampled_from([",", ", "]))
    body = sep.join(f'{k}="{_escape(v)}"' for k, v in pairs)
    return "{" + body + "}", dict(pairs)


@st.composite
def _sample_line(draw: st.DrawFn, name: str, extra: tuple[tuple[str, str], ...] = ()) -> tuple[str, dict]:
    block, labels = draw(_label_block(extra))
    value = draw(_value)
    stamp = draw(st.sampled_from(["", " 1700000000000", " -5"]))
    return f"{name}{block} {value}{stamp}", labels


@st.composite
def _family(draw: st.DrawFn, index: int) -> list[str]:
    kind = draw(st.sampled_from(["gauge", "counter", "untyped", "histogram", "notype"]))
    base = f"{draw(_metric_base)}_{index}"
    family = base + "_total" if kind == "counter" else base
    lines: list[str] = []
    if draw(st.booleans()):
        lines.append(f"# HELP {family} {draw(_help).replace(chr(92), chr(92) * 2)}")
    if kind != "notype":
        lines.append(f"# TYPE {family} {kind}")
    series = draw(st.integers(1, 3))
    seen: set[frozenset] = set()
    for _ in range(series):
        if kind == "histogram":
            block, labels = draw(_label_block())
            key = frozenset(labels.items())
            if key in seen:
                continue
            seen.add(key)
            inner = block[1:-1] if block not in ("", "{}") else ""
            for bound in draw(st.lists(st.sampled_from(["0.1", "1", "2.5", "10"]), unique=True)) + ["+Inf"]:
                le = f'le="{bound}"'
                lines.append(f"{base}_bucket{{{inner + ',' if inner else ''}{le}}} {draw(_value)}")
            lines.append(f"{base}_sum{block} {draw(_value)}")
            lines.append(f"{base}_count{block} {draw(_value)}")
        else:
            line, labels = draw(_sample_line(family))
            key = frozenset(labels.items())
            if key in seen:
                continue
            seen.add(key)
            lines.append(line)
    return lines


@st.composite
def expositions(draw: st.DrawFn) -> str:
    count = draw(st.integers(0, 5))
    lines: list[str] = []
    for index in range(count):
        lines.extend(draw(_family(index)))
        if draw(st.booleans()):
            lines.append("")
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    return newline.join(lines) + (newline if draw(st.booleans()) else "")


@FAST
@given(expositions())
def test_generated_exposition_matches_prometheus_client(text: str) -> None:
    metrics = parse(text)
    expected = reference(text.replace("\r\n", "\n"))
    if not expected:
        assert metrics.samples == {}
        return
    assert metrics.ok, metrics.problems
    assert ours(metrics) == expected


@FAST
@given(expositions(), st.data())
def test_wanted_is_the_full_parse_restricted(text: str, data: st.DataObject) -> None:
    full = parse(text)
    wanted = data.draw(st.sets(st.sampled_from(sorted(full.samples) or ["none"])))
    part = parse(text, wanted=wanted)
    restricted = MetricSet(samples={n: s for n, s in full.samples.items() if n in wanted})
    assert list(part.samples) == list(restricted.samples)
    assert ours(part) == ours(restricted)
    assert part.problems == full.problems


# --- never raise --------------------------------------------------------------------------------------


@FAST
@given(st.text())
def test_arbitrary_text_never_raises(text: str) -> None:
    metrics = parse(text)
    assert isinstance(metrics, MetricSet)
    assert parse(text, wanted={"a", "b"}).problems is not None


@FAST
@given(st.binary())
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    assert isinstance(parse(data), MetricSet)


_noise = st.sampled_from(list('{}"=,\\# \n\t\r.x1-+') + ["NaN", "\\\\", "\xff", "\x00"])


@FAST
@given(expositions(), st.lists(st.tuples(st.integers(0, 10**6), _noise), max_size=8))
def test_corrupted_exposition_never_raises(text: str, edits: list[tuple[int, str]]) -> None:
    chars = list(text)
    for where, what in edits:
        chars.insert(where % (len(chars) + 1), what)
    broken = "".join(chars)
    metrics = parse(broken)
    assert isinstance(metrics, MetricSet)
    assert isinstance(parse(broken.encode("utf-8", "surrogatepass"), wanted=set(metrics.samples)), MetricSet)
