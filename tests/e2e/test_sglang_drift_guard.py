"""SGLang metrics-drift guard: the real SGLang's metric definitions against the SGLang adapter and the simulator.

SGLang needs a GPU to run, so instead of scraping a live server this guard reads where SGLang *defines* its
metrics, ``sglang/srt/observability/metrics_collector.py`` of the released wheel (``pip install --no-deps
sglang==0.5.23`` into the e2e cache; read as text and parsed with ``ast``, never imported), and derives the
sample names prometheus_client would expose for each family (a Counter ``x`` or ``x_total`` -> ``x_total``;
a Histogram ``h`` -> ``h_bucket``/``h_sum``/``h_count``) and the histograms' literal bucket bounds. It fails when

- a name the SGLang adapter reads first (agents/engines/sglang.py, its preferred name) is gone or renamed
  (older fallback names may be absent: that is expected);
- the simulated SGLang dialect (agents/sim/dialects/sglang.py) serves a ``sglang:`` name the real one does not,
  or a histogram with other bucket bounds than the real one.

The wheel-reading tests are marked ``e2e`` (run with ``-m e2e``; the install is a session fixture, cached and
idempotent). The parser's own tests run in the normal suite on inline source.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from agents.engines import sglang as adapter
from agents.sim import dialects
from agents.sim.config import SimConfig
from agents.sim.model import ModelConfig, QueueModel
from tests.e2e.support.cache import SetupError, cache_dir, locked, marker_matches, write_marker

SGLANG_VERSION = "0.5.23"
SOURCE = "sglang/srt/observability/metrics_collector.py"
RECIPE = 1  # bump when the install steps change: the cached copy is installed again
HIST_SUFFIXES = ("_bucket", "_sum", "_count")
KINDS = ("GaugeHistogram", "Histogram", "Counter", "Gauge", "Summary")  # longest match first


# --- reading the real definitions -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Family:
    name: str  # as passed to prometheus_client (a Counter's may end in _total)
    kind: str  # Gauge | Counter | Histogram | GaugeHistogram | Summary
    buckets: tuple[float, ...] | None  # literal bounds of a histogram (None: computed at run time)
    line: int

    def samples(self) -> tuple[str, ...]:
        """The sample names prometheus_client exposes for this family."""
        if self.kind == "Counter":
            return (self.name if self.name.endswith("_total") else self.name + "_total",)
        if self.kind == "Histogram":
            return tuple(self.name + s for s in HIST_SUFFIXES)
        if self.kind == "GaugeHistogram":
            return (self.name + "_bucket", self.name + "_gsum", self.name + "_gcount")
        if self.kind == "Summary":
            return (self.name + "_sum", self.name + "_count")
        return (self.name,)


def _kind(func: ast.expr) -> str | None:
    name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
    return next((k for k in KINDS if name.endswith(k)), None)


def _literal_floats(node: ast.expr) -> tuple[float, ...] | None:
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None
    if isinstance(value, list | tuple) and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in value
    ):
        return tuple(float(v) for v in value)
    return None


def _assigned_lists(scope: ast.AST) -> dict[str, tuple[float, ...]]:
    """``name = [literal numbers]`` assignments anywhere in ``scope`` (defaults such as
    ``if bucket_x is None: bucket_x = [...]``); a name assigned two different lists is dropped."""
    found: dict[str, tuple[float, ...] | None] = {}
    for node in ast.walk(scope):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            values = _literal_floats(node.value)
            if values is not None:
                name = node.targets[0].id
                found[name] = values if found.get(name, values) == values else None
    return {k: v for k, v in found.items() if v is not None}


def read_families(source: str) -> dict[str, Family]:
    """Every ``sglang:`` metric family a prometheus_client constructor call defines in ``source``."""
    tree = ast.parse(source)
    out: dict[str, Family] = {}
    functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    for scope in (*functions, tree):  # a function's own default lists first, then the module's
        lists = _assigned_lists(scope)
        for node in ast.walk(scope):
            if not isinstance(node, ast.Call) or (kind := _kind(node.func)) is None:
                continue
            kwargs = {kw.arg: kw.value for kw in node.keywords if kw.arg}
            name_node = kwargs.get("name") or (node.args[0] if node.args else None)
            if not (isinstance(name_node, ast.Constant) and isinstance(name_node.value, str)):
                continue
            if not name_node.value.startswith("sglang:"):
                continue
            buckets = None
            if "Histogram" in kind and (b := kwargs.get("buckets")) is not None:
                buckets = lists.get(b.id) if isinstance(b, ast.Name) else _literal_floats(b)
            out.setdefault(name_node.value, Family(name_node.value, kind, buckets, node.lineno))
    return out


def exposed_samples(families: Iterable[Family]) -> dict[str, Family]:
    return {sample: f for f in families for sample in f.samples()}


# --- what the adapter reads -----------------------------------------------------------------------


def adapter_groups() -> dict[str, tuple[str, ...]]:
    """Logical sample -> the names the adapter reads for it, preferred (current) first."""
    groups: dict[str, tuple[str, ...]] = {}
    for logical, names in (*adapter.GAUGE_NAMES.items(), *adapter.COUNTER_NAMES.items()):
        groups[logical] = tuple(names)
    groups["requests"] = tuple(adapter.FINISHED_NAMES)
    groups["prefix_cache_hits"] = (adapter.CACHED_TOKENS,)
    groups["prompt_tokens_for_hit_rate"] = (adapter.PROMPT_TOKENS,)
    for logical, names in adapter.HISTOGRAM_NAMES.items():
        for suffix in HIST_SUFFIXES:
            groups[f"{logical}{suffix}"] = tuple(n + suffix for n in names)
    return groups


@dataclass(frozen=True, slots=True)
class SglangDrift:
    missing: tuple[tuple[str, str], ...]  # (logical, preferred name) the real SGLang does not define
    fallback_only: tuple[tuple[str, str], ...]  # (logical, older name) defined instead of the preferred one
    sim_unknown: tuple[str, ...]  # sglang: samples the simulator serves that the real SGLang does not define
    sim_buckets: tuple[tuple[str, tuple[float, ...], tuple[float, ...]], ...]  # (family, sim, real)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.fallback_only or self.sim_unknown or self.sim_buckets)

    def explain(self) -> str:
        parts = []
        if self.missing:
            parts.append("gone from SGLang: " + ", ".join(f"{n} (for {lg})" for lg, n in self.missing))
        if self.fallback_only:
            parts.append(
                "only an older name defined: " + ", ".join(f"{n} (for {lg})" for lg, n in self.fallback_only)
            )
        if self.sim_unknown:
            parts.append("the simulator serves names SGLang does not define: " + ", ".join(self.sim_unknown))
        if self.sim_buckets:
            parts.append(
                "the simulator's buckets differ: "
                + "; ".join(f"{n} sim {list(s)} real {list(r)}" for n, s, r in self.sim_buckets)
            )
        return "; ".join(parts) or "no drift"


def check(
    real: Mapping[str, Family],
    groups: Mapping[str, tuple[str, ...]],
    sim_samples: Iterable[str],
    sim_buckets: Mapping[str, tuple[float, ...]],
) -> SglangDrift:
    samples = exposed_samples(real.values())
    missing, fallback_only = [], []
    for logical, names in groups.items():
        if names[0] in samples:
            continue
        older = next((n for n in names[1:] if n in samples), None)
        (fallback_only if older else missing).append((logical, older or names[0]))
    unknown = sorted({n for n in sim_samples if n.startswith("sglang:") and n not in samples})
    differ = []
    for family, bounds in sorted(sim_buckets.items()):
        real_bounds = real[family].buckets if family in real else None
        if real_bounds is not None and tuple(bounds) != real_bounds:
            differ.append((family, tuple(bounds), real_bounds))
    return SglangDrift(tuple(missing), tuple(fallback_only), tuple(unknown), tuple(differ))


# --- what the simulator serves --------------------------------------------------------------------


def simulated_exposition() -> tuple[set[str], dict[str, tuple[float, ...]]]:
    """(sample names, histogram family -> bucket bounds) of the simulated SGLang after some traffic."""
    mc = ModelConfig(max_num_seqs=4, kv_tokens=2048, max_model_len=512, decode_s=0.01)
    cfg = SimConfig(dialect="sglang", model="m", served_name="m", host="127.0.0.1", port=1, model_config=mc)
    sink = dialects.get("sglang").make_metrics(cfg, 0.0, lambda line: None)
    model = QueueModel(mc, seed=1, sink=sink)
    for i in range(6):
        model.submit(model.new_request(200, 150, 0.0, ignore_eos=i % 2 == 0))
    t = 0.0
    while t < 5.0:
        t += 0.01
        model.step(t)
    names: set[str] = set()
    buckets: dict[str, list[float]] = {}
    for line in sink.render().splitlines():
        if not line or line.startswith("#"):
            continue
        head = line.rsplit(" ", 1)[0]
        name = head.split("{", 1)[0]
        names.add(name)
        if name.endswith("_bucket") and 'le="' in head:
            le = head.split('le="', 1)[1].split('"', 1)[0]
            family = name[: -len("_bucket")]
            if le != "+Inf" and float(le) not in buckets.setdefault(family, []):
                buckets[family].append(float(le))
    return names, {k: tuple(v) for k, v in buckets.items()}


# --- the installed wheel (session fixture) ----------------------------------------------------------


def install_sglang(root: Path) -> Path:
    """``pip install --no-deps sglang==<version>`` into ``root/sglang-<version>`` once; returns the file."""
    target = root / f"sglang-{SGLANG_VERSION}-nodeps"
    expected = {"dist": "sglang", "version": SGLANG_VERSION, "recipe": RECIPE}
    with locked(root):
        if marker_matches(target, expected) and (target / SOURCE).is_file():
            return target / SOURCE
        staging = root / (target.name + ".tmp")
        for stale in (staging, target):
            if stale.exists():
                shutil.rmtree(stale)
        argv = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-compile",
            "--no-input",
            "--disable-pip-version-check",
            "--target",
            str(staging),
            f"sglang=={SGLANG_VERSION}",
        ]
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=240, check=False
        )  # < pytest timeout
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-10:])
            raise SetupError(
                f"pip install --no-deps sglang=={SGLANG_VERSION} failed (exit {proc.returncode}):\n{tail}"
            )
        if not (staging / SOURCE).is_file():
            raise SetupError(f"sglang {SGLANG_VERSION} installed but has no {SOURCE}: the metrics moved")
        write_marker(staging, expected)
        os.replace(staging, target)
    return target / SOURCE


@pytest.fixture(scope="session")
def sglang_metrics_source() -> str:
    """The text of SGLang's metrics_collector.py from the cached wheel install (a set-up failure fails)."""
    try:
        path = install_sglang(cache_dir())
        text = path.read_text(encoding="utf-8")
    except (SetupError, OSError, subprocess.TimeoutExpired) as exc:
        failure = str(exc)
    else:
        return text
    pytest.fail(f"e2e set-up failed (not skipped): {failure}", pytrace=False)


# --- the guard against the real wheel (e2e) ---------------------------------------------------------


@pytest.mark.e2e
def test_reader_finds_sglangs_families_with_their_kinds(sglang_metrics_source: str) -> None:
    real = read_families(sglang_metrics_source)
    assert len(real) >= 100, sorted(real)  # 0.5.23 defines ~160; a sharp drop means the reader broke
    kinds = {
        name: real[name].kind
        for name in (
            "sglang:num_running_reqs",
            "sglang:token_usage",
            "sglang:prompt_tokens_total",
            "sglang:time_to_first_token_seconds",
            "sglang:queue_time_seconds",
        )
    }
    assert kinds == {
        "sglang:num_running_reqs": "Gauge",
        "sglang:token_usage": "Gauge",
        "sglang:prompt_tokens_total": "Counter",
        "sglang:time_to_first_token_seconds": "Histogram",
        "sglang:queue_time_seconds": "Histogram",
    }
    assert real["sglang:time_to_first_token_seconds"].buckets is not None  # resolved through its default list


@pytest.mark.e2e
def test_every_name_the_sglang_adapter_prefers_is_defined(sglang_metrics_source: str) -> None:
    drift = check(read_families(sglang_metrics_source), adapter_groups(), (), {})
    assert not drift.missing and not drift.fallback_only, drift.explain()


@pytest.mark.e2e
def test_the_simulated_sglang_serves_only_real_names_and_buckets(sglang_metrics_source: str) -> None:
    names, buckets = simulated_exposition()
    assert {"sglang:num_running_reqs", "sglang:time_to_first_token_seconds_bucket"} <= names
    drift = check(read_families(sglang_metrics_source), {}, names, buckets)
    assert drift.ok, drift.explain()
    real = read_families(sglang_metrics_source)
    compared = [f for f in buckets if f in real and real[f].buckets is not None]
    assert len(compared) == len(buckets) >= 4, (sorted(buckets), compared)  # every sim histogram was compared


# --- the guard's own logic, on inline source (fast; the normal suite) -------------------------------------

FAKE = """
from prometheus_client import Counter, Gauge, Histogram
import prometheus_client as prom

class SchedulerMetricsCollector:
    def __init__(self, labels):
        self.running = Gauge(name="sglang:num_running_reqs", documentation="x", labelnames=labels.keys())
        self.queue = Gauge(name="sglang:num_queue_reqs", documentation="x")
        self.usage = Gauge(name="sglang:token_usage", documentation="x")
        self.retracted = Counter(name="sglang:num_retracted_requests_total", documentation="x")
        self.queue_time = Histogram(name="sglang:queue_time_seconds", documentation="x", buckets=[0.0, 0.5, 1])
        self.other = prom.Histogram("sglang:computed_seconds", "x", buckets=exponential_buckets(1, 2, 3))
        self.not_ours = Gauge(name="vllm:num_requests_running", documentation="x")


class TokenizerMetricsCollector:
    def __init__(self, labels, bucket_time_to_first_token=None):
        self.prompt = Counter(name="sglang:prompt_tokens_total", documentation="x")
        self.gen = Counter(name="sglang:generation_tokens", documentation="x")
        self.cached = Counter(name="sglang:cached_tokens_total", documentation="x")
        self.finished = Counter(name="sglang:num_requests_total", documentation="x")
        if bucket_time_to_first_token is None:
            bucket_time_to_first_token = [0.1, 0.2, 0.4]
        self.ttft = Histogram(name="sglang:time_to_first_token_seconds", documentation="x",
                              labelnames=[*labels.keys(), "is_streaming"], buckets=bucket_time_to_first_token)
        self.itl = Histogram(name="sglang:time_per_output_token_seconds", documentation="x", buckets=(0.01,))
        self.e2e = Histogram(name="sglang:e2e_request_latency_seconds", documentation="x")
"""


def test_reader_derives_exposed_samples_and_literal_buckets() -> None:
    real = read_families(FAKE)
    assert "vllm:num_requests_running" not in real and len(real) == 13
    samples = exposed_samples(real.values())
    assert "sglang:generation_tokens_total" in samples and "sglang:prompt_tokens_total" in samples
    assert "sglang:prompt_tokens_total_total" not in samples
    assert {
        "sglang:queue_time_seconds_bucket",
        "sglang:queue_time_seconds_sum",
        "sglang:queue_time_seconds_count",
    } <= samples.keys()
    assert real["sglang:queue_time_seconds"].buckets == (0.0, 0.5, 1.0)
    assert real["sglang:time_to_first_token_seconds"].buckets == (0.1, 0.2, 0.4)  # through the default list
    assert (
        real["sglang:computed_seconds"].buckets is None
        and real["sglang:computed_seconds"].kind == "Histogram"
    )
    assert real["sglang:e2e_request_latency_seconds"].buckets is None


def test_a_renamed_preferred_name_fails_and_an_older_one_alone_is_named() -> None:
    drift = check(read_families(FAKE), adapter_groups(), (), {})
    assert not drift.ok
    assert ("itl_bucket", "sglang:time_per_output_token_seconds_bucket") in drift.fallback_only
    assert ("queue_time_bucket", "sglang:queue_time_seconds_bucket") not in drift.missing
    renamed = FAKE.replace('"sglang:token_usage"', '"sglang:kv_usage"')
    missing = dict(check(read_families(renamed), adapter_groups(), (), {}).missing)
    assert (
        missing["kv_cache_usage"] == "sglang:token_usage"
        and "sglang:token_usage" in check(read_families(renamed), adapter_groups(), (), {}).explain()
    )


def test_the_simulators_names_and_buckets_are_checked_against_the_real_ones() -> None:
    real = read_families(FAKE)
    drift = check(
        real,
        {},
        {"sglang:num_running_reqs", "sglang:made_up_total", "llmconsole_simulated"},
        {"sglang:queue_time_seconds": (0.0, 0.5, 1.0), "sglang:time_to_first_token_seconds": (0.1, 0.3)},
    )
    assert drift.sim_unknown == ("sglang:made_up_total",)
    assert drift.sim_buckets == (("sglang:time_to_first_token_seconds", (0.1, 0.3), (0.1, 0.2, 0.4)),)


def test_groups_cover_exactly_what_the_sglang_adapter_reads() -> None:
    grouped = {n for names in adapter_groups().values() for n in names}
    assert grouped == set(adapter.WANTED)


def test_the_simulated_exposition_has_every_histogram_the_adapter_reads() -> None:
    names, buckets = simulated_exposition()
    for names_of in adapter.HISTOGRAM_NAMES.values():
        assert names_of[0] in buckets and names_of[0] + "_count" in names
