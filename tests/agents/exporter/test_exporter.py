"""The agent's /metrics exposition, read back with prometheus_client's own parser.

Engine data comes from real engine expositions (tests/data/metrics) read by the real adapters; what the
exporter writes is checked against those files parsed independently (prometheus_client's parser).
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agents.engines import get_adapter
from agents.engines.base import Reading
from agents.exporter import EngineExport, make_registry, render
from agents.metrics.model import Histogram
from agents.metrics.parse import parse
from agents.schema import Alert, from_json, stats_are_live

DATA = Path(__file__).resolve().parents[2] / "data"
FULL = DATA / "snapshots" / "v1" / "full.json"
METRICS = DATA / "metrics"
# The golden host's engines and a real exposition of the same kind for each.
FIXTURES = {
    "llama70b": ("vllm", "vllm-0.32-cpu.loaded.prom"),
    "qwen-sg": ("sglang", "sglang-docs-2025.prom"),
    "mistral-tgi": ("tgi", "tgi-v3-constructed.prom"),
}
# The engines' own family names (research/engines.md §1), independent of the adapters' tables.
# (newer name, the one it replaced); an engine without any of them has no such histogram.
OWN_HISTOGRAMS = {
    "vllm": {
        "ttft": ("vllm:time_to_first_token_seconds",),
        "e2e": ("vllm:e2e_request_latency_seconds",),
        "itl": ("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"),
        "queue_time": ("vllm:request_queue_time_seconds",),
    },
    "sglang": {
        "ttft": ("sglang:time_to_first_token_seconds",),
        "e2e": ("sglang:e2e_request_latency_seconds",),
        "itl": ("sglang:inter_token_latency_seconds", "sglang:time_per_output_token_seconds"),
        "queue_time": ("sglang:queue_time_seconds",),
    },
    "tgi": {
        "ttft": (),
        "e2e": ("tgi_request_duration",),
        "itl": ("tgi_request_mean_time_per_token_duration",),
        "queue_time": ("tgi_request_queue_duration",),
    },
}
OWN_GENERATION = {
    "vllm": "vllm:generation_tokens_total",
    "sglang": "sglang:generation_tokens_total",
    "tgi": "tgi_request_generated_tokens_sum",
}
# Finished requests: vLLM's per finished_reason, SGLang's counter, TGI's successes + failures (its
# tgi_request_count counts requests on entry, in-flight ones included).
OWN_REQUESTS = {
    "vllm": ("vllm:request_success_total",),
    "sglang": ("sglang:num_requests_total",),
    "tgi": ("tgi_request_success", "tgi_request_failure"),
}
PROMTOOL = shutil.which("promtool")


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(text.decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def find(got, name: str, **labels) -> list[float]:
    return [
        v
        for (n, ls), v in got.items()
        if n == name and all(dict(ls).get(k) == val for k, val in labels.items())
    ]


def buckets(got, name: str, **labels) -> dict[str, float]:
    return {
        dict(ls)["le"]: v
        for (n, ls), v in got.items()
        if n == name + "_bucket" and all(dict(ls).get(k) == val for k, val in labels.items())
    }


def own(path: Path) -> dict[str, list[tuple[dict[str, str], float]]]:
    """An engine exposition's samples by sample name, parsed by prometheus_client (not by agents.*)."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(path.read_text()):
        for s in fam.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def reading(kind: str, name: str) -> Reading:
    adapter = get_adapter(kind)
    return adapter.read(parse((METRICS / name).read_bytes(), adapter.wanted()))


def golden_exports() -> dict[str, EngineExport]:
    return {
        eid: EngineExport(reading(kind, name), version="9.9.9" if kind == "vllm" else None)
        for eid, (kind, name) in FIXTURES.items()
    }


def test_exports_engines_gpus_and_alerts_from_the_snapshot() -> None:
    snap = from_json(FULL.read_text())
    got = samples(render(make_registry(lambda: snap)))
    live = 0
    assert find(got, "llmconsole_snapshot_seq", host=snap.host) == [snap.seq]
    for e in snap.engines:
        model = e.served_model_name or e.model
        assert find(got, "llmconsole_engine_up", host=snap.host, engine=e.id, kind=e.kind, model=model) == [
            1.0 if e.state == "ready" else 0.0
        ]
        # a state set with only its active member: one series per engine, never a 0 for the other states
        assert find(got, "llmconsole_engine_state", engine=e.id) == [1.0]
        assert find(got, "llmconsole_engine_state", engine=e.id, state=e.state) == [1.0]
        if e.restarts is not None:
            assert find(got, "llmconsole_engine_restarts_total", engine=e.id) == [e.restarts]
        if stats_are_live(e, snap.interval_s) and e.stats.requests_running is not None:
            live += 1
            assert find(got, "llmconsole_engine_requests_running", engine=e.id) == [e.stats.requests_running]
            assert find(got, "llmconsole_engine_ttft_p95_seconds", engine=e.id) == (
                [] if e.stats.ttft_p95_s is None else [e.stats.ttft_p95_s]
            )
        if e.stats is not None and e.stats.kv_cache_usage is None:
            assert (
                find(got, "llmconsole_engine_kv_cache_usage_ratio", engine=e.id) == []
            )  # null is omitted, not 0
        for a in e.alerts:
            assert find(
                got,
                "llmconsole_alerts_active",
                host=snap.host,
                code=a.code,
                engine=e.id,
                severity=a.severity,
                summary=a.summary,
            ) == [1.0]
    for a in snap.alerts:  # host alerts: engine empty
        assert find(
            got, "llmconsole_alerts_active", host=snap.host, code=a.code, engine="", summary=a.summary
        ) == [1.0]
    for g in snap.gpus:
        if g.mem_used_bytes is not None:
            assert find(got, "llmconsole_gpu_memory_used_bytes", host=snap.host, gpu=str(g.index)) == [
                g.mem_used_bytes
            ]
    assert live >= 2  # the golden host has live engines: the checks above really ran
    info = find(
        got,
        "llmconsole_host_info",
        host=snap.host,
        agent_version=snap.agent_version,
        gpu_source=snap.gpu_source,
        boot_id=snap.boot_id,
    )
    assert info == [1.0]
    # no quantile-labelled gauges any more (promtool rejects them); the precomputed quantiles say what they are
    assert not [k for k in got if dict(k[1]).get("quantile") is not None]


def test_engine_info_names_the_engine_for_fleet_rows() -> None:
    snap = from_json(FULL.read_text())
    got = samples(render(make_registry(lambda: snap, golden_exports)))
    for e in snap.engines:
        rows = [
            dict(ls)
            for (n, ls), v in got.items()
            if n == "llmconsole_engine_info" and dict(ls)["engine"] == e.id and v == 1.0
        ]
        assert len(rows) == 1
        row = rows[0]
        assert (
            row["host"] == snap.host
            and row["kind"] == e.kind
            and row["model"] == (e.served_model_name or e.model)
        )
        assert row["served_model_name"] == (e.served_model_name or "") and row["model_path"] == e.model
        assert row["gpus"] == ",".join(map(str, e.gpus)) and row["port"] == str(e.port)
        assert row["version"] == (
            "9.9.9" if e.kind == "vllm" else ""
        )  # unknown version: empty, i.e. no label
        assert row["managed"] == "true"  # the golden host's engines are all launched by the agent


def test_engine_info_says_which_engines_are_only_watched() -> None:
    snap = from_json(FULL.read_text())
    watched = dataclasses.replace(snap.engines[1], managed=False)
    snap = dataclasses.replace(snap, engines=(snap.engines[0], watched, *snap.engines[2:]))
    got = samples(render(make_registry(lambda: snap)))
    managed = {
        dict(ls)["engine"]: dict(ls)["managed"] for (n, ls), _ in got.items() if n == "llmconsole_engine_info"
    }
    assert managed[watched.id] == "false"
    assert {v for k, v in managed.items() if k != watched.id} == {"true"} and len(managed) == len(
        snap.engines
    )


def test_engine_state_has_one_series_per_engine() -> None:
    """About 40 % of all series were llmconsole_engine_state 0/1 per possible state; now one per engine."""
    snap = from_json(FULL.read_text())
    got = samples(render(make_registry(lambda: snap, golden_exports)))
    states = [dict(ls) for (n, ls), _ in got.items() if n == "llmconsole_engine_state"]
    assert sorted((s["engine"], s["state"]) for s in states) == sorted((e.id, e.state) for e in snap.engines)
    assert set(find(got, "llmconsole_engine_state")) == {1.0}


def test_requests_total_is_the_adapters_counter_and_absent_without_it() -> None:
    snap = from_json(FULL.read_text())
    hist = Histogram(bounds=(1.0, math.inf), cumulative=(1.0, 2.0), sum=1.5, count=2.0)
    with_requests = Reading("vllm", {}, {"generation_tokens": 7.0, "requests": 42.0}, {"ttft": hist})
    without = Reading("vllm", {}, {"generation_tokens": 9.0, "requests": None}, {})
    live = [e.id for e in snap.engines if stats_are_live(e, snap.interval_s)]
    assert len(live) >= 2
    exports = {live[0]: EngineExport(with_requests), live[1]: EngineExport(without)}
    text = render(make_registry(lambda: snap, lambda: exports))
    got = samples(text)
    assert find(got, "llmconsole_engine_requests_total", engine=live[0]) == [42.0]
    assert find(got, "llmconsole_engine_requests_total", engine=live[1]) == []  # never a made-up 0
    assert find(got, "llmconsole_engine_generation_tokens_total", engine=live[1]) == [9.0]
    assert b"# TYPE llmconsole_engine_requests_total counter" in text


@pytest.mark.parametrize("engine_id", list(FIXTURES))
def test_requests_total_from_the_real_adapters_matches_the_engines_own_counter(engine_id: str) -> None:
    """Whatever the adapter fills under ``requests`` is exported as is; an adapter without it exports none."""
    snap = from_json(FULL.read_text())
    exports = golden_exports()
    got = samples(render(make_registry(lambda: snap, lambda: exports)))
    value = exports[engine_id].reading.counters.get("requests")
    assert find(got, "llmconsole_engine_requests_total", engine=engine_id) == (
        [] if value is None else [value]
    )
    kind, fixture = FIXTURES[engine_id]
    raw = own(METRICS / fixture)
    if value is not None:  # the engines' own counters (research/engines.md), summed over their labels
        theirs = sum(v for name in OWN_REQUESTS[kind] for _, v in raw.get(name, raw.get(name + "_total", [])))
        assert value == pytest.approx(theirs) and theirs > 0


@pytest.mark.parametrize("engine_id", list(FIXTURES))
def test_engine_histograms_and_counters_are_the_engines_own(engine_id: str) -> None:
    snap = from_json(FULL.read_text())
    e = snap.engine(engine_id)
    assert e is not None and stats_are_live(e, snap.interval_s)
    kind, fixture = FIXTURES[engine_id]
    raw = own(METRICS / fixture)
    got = samples(render(make_registry(lambda: snap, golden_exports)))
    ids = {"host": snap.host, "engine": e.id, "kind": kind, "model": e.served_model_name or e.model}
    compared = 0
    for logical, names in OWN_HISTOGRAMS[kind].items():
        ours = f"llmconsole_engine_{logical}_seconds"
        theirs = next((n for n in names if n + "_count" in raw), None)
        if theirs is None:  # the engine has no such histogram: absent, never zero
            assert find(got, ours + "_count", engine=e.id) == [] and buckets(got, ours, engine=e.id) == {}
            continue
        compared += 1
        (their_count,) = [v for _, v in raw[theirs + "_count"]]
        assert find(got, ours + "_count", **ids) == [their_count]
        (their_sum,) = [v for _, v in raw[theirs + "_sum"]]
        assert find(got, ours + "_sum", **ids) == [pytest.approx(their_sum)]
        their_buckets = {float(ls["le"]): v for ls, v in raw[theirs + "_bucket"]}
        exported = buckets(got, ours, **ids)
        assert {float(le): v for le, v in exported.items()} == their_buckets  # the engine's own boundaries
        assert "+Inf" in exported and all(
            le == "+Inf" or "." in le or "e" in le for le in exported
        )  # float form
    assert compared >= 2  # not vacuous: this fixture has histograms of its own
    (their_tokens,) = [v for _, v in raw[OWN_GENERATION[kind]]]
    assert find(got, "llmconsole_engine_generation_tokens_total", **ids) == [their_tokens]
    if kind == "tgi":
        for absent in ("llmconsole_engine_kv_cache_usage_ratio", "llmconsole_engine_preemptions_total"):
            assert find(got, absent, engine=e.id) == []
    if kind == "sglang":  # SGLang has no error counter: absent, not 0
        assert find(got, "llmconsole_engine_request_errors_total", engine=e.id) == []


def test_data_parallel_series_add_up_and_keep_the_bounds() -> None:
    snap = from_json(FULL.read_text())
    exports = {"llama70b": EngineExport(reading("vllm", "vllm-dp2-constructed.prom"))}
    got = samples(render(make_registry(lambda: snap, lambda: exports)))
    raw = own(METRICS / "vllm-dp2-constructed.prom")
    name = "vllm:time_to_first_token_seconds"
    assert find(got, "llmconsole_engine_ttft_seconds_count", engine="llama70b") == [
        sum(v for _, v in raw[name + "_count"])
    ]
    bounds = {float(ls["le"]) for ls, _ in raw[name + "_bucket"]}
    assert {float(le) for le in buckets(got, "llmconsole_engine_ttft_seconds", engine="llama70b")} == bounds


def test_le_is_written_in_float_form() -> None:
    snap = from_json(FULL.read_text())
    hist = Histogram(bounds=(0.5, 1.0, 10.0, math.inf), cumulative=(1.0, 3.0, 4.0, 5.0), sum=6.5, count=5.0)
    empty = {k: None for k in ("requests_running", "requests_waiting", "kv_cache_usage")}
    r = Reading("vllm", empty, {"generation_tokens": 7.0}, {"ttft": hist})
    text = render(make_registry(lambda: snap, lambda: {"llama70b": EngineExport(r)})).decode()
    assert 'le="1.0"' in text and 'le="10.0"' in text and 'le="+Inf"' in text and 'le="1"' not in text


def test_an_unusable_histogram_is_left_out_not_invented() -> None:
    snap = from_json(FULL.read_text())
    no_inf = Histogram(bounds=(0.5, 1.0), cumulative=(1.0, 3.0), sum=1.0, count=math.nan)
    nan_bucket = Histogram(bounds=(0.5, math.inf), cumulative=(math.nan, 3.0), sum=1.0, count=3.0)
    r = Reading(
        "vllm",
        {},
        {"generation_tokens": math.nan, "prompt_tokens": -1.0},
        {"ttft": no_inf, "e2e": nan_bucket},
    )
    got = samples(render(make_registry(lambda: snap, lambda: {"llama70b": EngineExport(r)})))
    for name in (
        "llmconsole_engine_ttft_seconds_count",
        "llmconsole_engine_e2e_seconds_count",
        "llmconsole_engine_generation_tokens_total",
        "llmconsole_engine_prompt_tokens_total",
    ):
        assert find(got, name, engine="llama70b") == []
    assert find(got, "llmconsole_engine_up", engine="llama70b") == [1.0]


def test_stale_stats_are_not_exported_as_live() -> None:
    snap = from_json(FULL.read_text())
    e = next(e for e in snap.engines if e.stats is not None and e.stats.requests_running is not None)
    stale = dataclasses.replace(e, stats_age_s=12.0)
    snap2 = dataclasses.replace(snap, engines=tuple(stale if x.id == e.id else x for x in snap.engines))
    got = samples(render(make_registry(lambda: snap2, golden_exports)))
    for name in (
        "llmconsole_engine_requests_running",
        "llmconsole_engine_generation_tokens_total",
        "llmconsole_engine_e2e_seconds_count",
    ):
        assert find(got, name, engine=e.id) == []
    assert find(got, "llmconsole_engine_up", engine=e.id)  # lifecycle series stay
    others = [x for x in snap.engines if x.id != e.id and stats_are_live(x, snap.interval_s)]
    assert others and all(find(got, "llmconsole_engine_e2e_seconds_count", engine=x.id) for x in others)


def test_no_snapshot_yet_renders_an_empty_exposition() -> None:
    assert samples(render(make_registry(lambda: None, golden_exports))) == {}


def test_no_sample_name_belongs_to_two_families() -> None:
    """A gauge never shares a name with a counter's or histogram's samples (llmconsole_engine_ttft_seconds
    was once both a quantile gauge and, now, the histogram)."""
    snap = from_json(FULL.read_text())
    text = render(make_registry(lambda: snap, golden_exports)).decode()
    owner: dict[str, str] = {}
    types = {}
    for fam in text_string_to_metric_families(text):
        types[fam.name] = fam.type
        for s in fam.samples:
            assert owner.setdefault(s.name, fam.name) == fam.name, (
                f"{s.name} in {owner[s.name]} and {fam.name}"
            )
    declared = Counter(line.split()[2] for line in text.splitlines() if line.startswith("# TYPE "))
    assert all(n == 1 for n in declared.values())
    assert {types["llmconsole_engine_ttft_seconds"], types["llmconsole_engine_generation_tokens"]} == {
        "histogram",
        "counter",
    }
    assert (
        types["llmconsole_engine_ttft_p95_seconds"] == "gauge"
        and types["llmconsole_engine_restarts"] == "counter"
    )


@pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not installed (Debian: apt-get install --no-install-recommends prometheus)",
)
def test_promtool_accepts_the_exposition_with_every_family_and_awkward_labels() -> None:
    snap = from_json(FULL.read_text())
    odd = Alert(code="HEALTH_LIES", severity="warning", summary='canary said "no"\\ then\nbroke')
    e0 = dataclasses.replace(snap.engines[0], alerts=(*snap.engines[0].alerts, odd))
    snap = dataclasses.replace(snap, engines=(e0, *snap.engines[1:]))
    text = render(make_registry(lambda: snap, golden_exports))
    got = samples(text)
    assert find(got, "llmconsole_alerts_active", summary='canary said "no"\\ then\nbroke') == [1.0]
    done = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, timeout=60)
    assert done.returncode == 0 and not done.stdout.strip() and not done.stderr.strip(), (
        done.stdout + done.stderr
    ).decode()
