"""`llmconsole rules` — Prometheus recording and alerting rules for an llmconsole fleet, as YAML text.

    llmconsole rules [--slo-ttft SECONDS] [--slo-objective FRACTION] > llmconsole-rules.yml

One generator, three sources of series (each a :class:`Dialect`, data only):

- ``llmconsole``: the agent's normalized cumulative series (``llmconsole_engine_*_total``, the TTFT
  histogram, the running/waiting/KV gauges; labels ``host, engine, kind, model``), one rule set for
  vLLM, SGLang and TGI alike;
- ``vllm`` and ``sglang``: the engines' own names, for sites that scrape engines directly (names from
  the engines' sources and docs, old and new where both exist).

Every agent alert passes through (``llmconsole_alerts_active``), and a down agent is an alert of its own.
Rules hold on Prometheus 2.42 and 3.x: ``le`` is written in float form (``"1.0"``, as prometheus-client
writes it and as 3.x normalizes it), numerators and denominators are aggregated before dividing, and zero
traffic yields no series (never NaN) while traffic without the SLO's bucket boundary is an alert itself.

``build_groups()`` and ``render()`` are pure; ``add_parser``/``run`` are the CLI verb.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.utils import floatToGoString

PROG = "llmconsole rules"

AGENT_JOB = "llmconsole"  # the scrape job name the rules expect for the agents

# Multi-window, multi-burn-rate paging (SRE Workbook "Alerting on SLOs", 30-day SLO): (long, short, factor).
BURN_WINDOWS: tuple[tuple[str, str, float], ...] = (("1h", "5m", 14.4), ("6h", "30m", 6.0))
RATIO_WINDOWS = ("5m", "30m", "1h", "6h")
FAST_BURN = max(f for _, _, f in BURN_WINDOWS)

# Default TTFT histogram boundaries of vLLM and SGLang: the SLO threshold must be one of them.
DEFAULT_TTFT_BUCKETS: dict[str, tuple[float, ...]] = {
    "vLLM": (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80, 160, 640, 2560),
    "SGLang": (0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400),
}


@dataclass(frozen=True)
class SLO:
    """TTFT objective: ``objective`` of requests get their first token within ``ttft_s`` (a bucket boundary)."""

    ttft_s: float = 1.0
    objective: float = 0.99

    @property
    def le(self) -> str:
        """The bucket's ``le`` label value, in float form (``1.0``, never ``1``)."""
        return floatToGoString(self.ttft_s)

    @property
    def budget(self) -> float:
        return 1.0 - self.objective


@dataclass(frozen=True)
class Thresholds:
    """Fixed knobs of the engine rules (windows are PromQL durations)."""

    stall_window: str = "2m"
    stall_for: str = "1m"
    admission_window: str = "5m"
    admission_for: str = "1m"
    admission_kv_free_below: float = 0.5
    kv_pressure: float = 0.95
    kv_window: str = "2m"
    kv_for: str = "5m"
    preemptions_per_5m: float = 10
    preemption_for: str = "5m"
    queue_window: str = "10m"
    queue_growth: float = 10  # waiting requests gained over queue_window (least-squares trend)
    queue_for: str = "5m"
    burn_for: str = "2m"  # the short window already debounces; this only skips one-evaluation blips
    unmeasurable_for: str = "10m"
    agent_alert_for: str = "1m"
    agent_alert_keep_firing_for: str = "5m"
    agent_down_for: str = "2m"


@dataclass(frozen=True)
class Dialect:
    """Where one source keeps each concept: metric names (alternatives, newest first) and label names."""

    source: str
    title: str
    engine_by: tuple[str, ...]  # the labels that identify one engine
    model_label: str
    where: str  # how an annotation names the engine
    running: tuple[str, ...]
    waiting: tuple[str, ...]
    kv: tuple[str, ...]
    generation: tuple[str, ...]
    prompt: tuple[str, ...]
    progress: tuple[str, ...]  # other counters whose increase shows the engine is moving
    preemptions: tuple[str, ...]
    ttft: str  # histogram base name
    record_prefix: str  # metric part of recorded series names
    preemption_word: str = "preemptions"
    rank_label: str | None = None  # per-rank scheduler series: max within a rank group, then sum
    host_label: str | None = None  # record a per-host TTFT p95 too
    requests: str | None = None  # finished requests (any outcome), cumulative: request rate recordings
    errors: str | None = None  # failed requests, cumulative: with ``requests``, the error ratio recording


LLMCONSOLE = Dialect(
    source="llmconsole",
    title="llmconsole agent (normalized)",
    engine_by=("host", "engine", "kind", "model"),
    model_label="model",
    where="{{ $labels.engine }} ({{ $labels.kind }}, {{ $labels.model }}) on {{ $labels.host }}",
    running=("llmconsole_engine_requests_running",),
    waiting=("llmconsole_engine_requests_waiting",),
    kv=("llmconsole_engine_kv_cache_usage_ratio",),
    generation=("llmconsole_engine_generation_tokens_total",),
    prompt=("llmconsole_engine_prompt_tokens_total",),
    # SGLang counts tokens when a request finishes; its ITL histogram's count moves per streamed chunk
    progress=("llmconsole_engine_itl_seconds_count",),
    preemptions=("llmconsole_engine_preemptions_total",),
    ttft="llmconsole_engine_ttft_seconds",
    record_prefix="llmconsole_engine_ttft",
    host_label="host",
    requests="llmconsole_engine_requests_total",
    errors="llmconsole_engine_request_errors_total",
)
VLLM = Dialect(
    source="vllm",
    title="vLLM scraped directly",
    engine_by=("instance", "job", "model_name"),
    model_label="model_name",
    where="vLLM {{ $labels.instance }} ({{ $labels.model_name }})",
    running=("vllm:num_requests_running",),
    waiting=("vllm:num_requests_waiting",),
    kv=("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),  # the older name is gone in newest vLLM
    generation=("vllm:generation_tokens_total",),
    prompt=("vllm:prompt_tokens_total",),
    progress=(),
    preemptions=("vllm:num_preemptions_total",),
    ttft="vllm:time_to_first_token_seconds",
    record_prefix="vllm_ttft",
)
SGLANG = Dialect(
    source="sglang",
    title="SGLang scraped directly (--enable-metrics)",
    engine_by=("instance", "job", "model_name"),
    model_label="model_name",
    where="SGLang {{ $labels.instance }} ({{ $labels.model_name }})",
    running=("sglang:num_running_reqs", "sglang:num_requests_running"),  # late-2024 names second
    waiting=("sglang:num_queue_reqs", "sglang:num_requests_waiting"),
    kv=("sglang:token_usage",),
    generation=("sglang:generation_tokens_total",),
    prompt=("sglang:prompt_tokens_total",),
    # Token counters move only when a request finishes; the ITL histogram's count moves per streamed chunk.
    progress=("sglang:inter_token_latency_seconds_count",),
    preemptions=("sglang:num_retracted_requests_total",),
    ttft="sglang:time_to_first_token_seconds",
    record_prefix="sglang_ttft",
    preemption_word="retractions",
    rank_label="dp_rank",  # scheduler gauges come once per TP/PP rank: max within a DP rank, sum across
)
DIALECTS = (LLMCONSOLE, VLLM, SGLANG)


# --- rule objects ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    record: str
    expr: str
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Alert:
    alert: str
    expr: str
    for_: str | None
    labels: dict[str, str]
    annotations: dict[str, str]
    keep_firing_for: str | None = None


@dataclass(frozen=True)
class Group:
    name: str
    rules: tuple[Record | Alert, ...]


# --- PromQL helpers ----------------------------------------------------------------------------------


def _num(x: float) -> str:
    return f"{x:.10g}"


def _by(labels: Iterable[str]) -> str:
    return ", ".join(labels)


def _sum(d: Dialect, x: str) -> str:
    """Sum an additive quantity over one engine's series (per-rank series: max within a rank first)."""
    by = _by(d.engine_by)
    if d.rank_label:
        return f"sum by ({by}) (max by ({by}, {d.rank_label}) ({x}))"
    return f"sum by ({by}) ({x})"


def _max(d: Dialect, x: str) -> str:
    return f"max by ({_by(d.engine_by)}) ({x})"


def _alt(names: Sequence[str], make: Callable[[str], str]) -> str:
    """``make(name)`` for each alternative name, joined with ``or`` (the first that exists wins)."""
    parts = [make(n) for n in names]
    return parts[0] if len(parts) == 1 else "(" + " or ".join(parts) + ")"


def _on(d: Dialect) -> str:
    return f"on ({_by(d.engine_by)})"


# --- the rules ---------------------------------------------------------------------------------------


def agent_group(t: Thresholds) -> Group:
    summary = (
        '{{ $s := "" }}'
        '{{ with printf "llmconsole_alerts_active{host=%q,engine=%q,code=%q}" $labels.host $labels.engine $labels.code'
        ' | query }}{{ $s = . | first | label "summary" }}{{ end }}'
        "{{ if $s }}{{ $s }}{{ else }}{{ $labels.code }}{{ end }}"
    )
    where = "{{ $labels.code }} ({{ $labels.severity }}) on {{ $labels.host }}{{ with $labels.engine }}, engine {{ . }}{{ end }}"
    return Group(
        "llmconsole-agent",
        (
            Alert(
                "LLMConsoleAgentAlert",
                # summary text may change every scrape; the alert's identity must not
                "max without (summary) (llmconsole_alerts_active == 1)",
                t.agent_alert_for,
                {"source": "agent"},
                {"summary": summary, "description": f"llmconsole agent alert {where}"},
                keep_firing_for=t.agent_alert_keep_firing_for,
            ),
            Alert(
                "LLMConsoleAgentDown",
                f'up{{job="{AGENT_JOB}"}} == 0',
                t.agent_down_for,
                {"severity": "critical", "source": "agent", "code": "AGENT_UNREACHABLE"},
                {"summary": "llmconsole agent {{ $labels.instance }} is down: its engines are not observed"},
            ),
        ),
    )


def engine_alerts(d: Dialect, t: Thresholds) -> list[Alert]:
    """Stalled, admission stalled, KV pressure, preemption storm, queue growing: one engine at a time."""
    on = _on(d)
    running = _alt(d.running, lambda n: _sum(d, n))
    waiting = _alt(d.waiting, lambda n: _sum(d, n))
    w = t.stall_window
    progress = " or ".join(f"{_sum(d, f'increase({n}[{w}])')} > 0" for n in (*d.prompt, *d.progress))
    stalled = (
        f"(\n  {running}\n  + {waiting}\n  > 0\n)\n"
        f"and {on}\n(\n  {_alt(d.generation, lambda n: _sum(d, f'increase({n}[{w}])'))} == 0\n)\n"
        f"unless {on}\n(\n  {progress}\n)"
    )
    a = t.admission_window
    admission = (
        f"(\n  {_alt(d.waiting, lambda n: _sum(d, f'min_over_time({n}[{a}])'))}\n"
        f"  > {_alt(d.running, lambda n: _sum(d, f'max_over_time({n}[{a}])'))}\n)\n"
        f"and {on}\n(\n  {_alt(d.kv, lambda n: _max(d, f'max_over_time({n}[{a}])'))} < {_num(t.admission_kv_free_below)}\n)\n"
        f"and {on}\n(\n  {_alt(d.prompt, lambda n: _sum(d, f'increase({n}[{a}])'))} == 0\n)"
    )
    kv = f"{_alt(d.kv, lambda n: _max(d, f'max_over_time({n}[{t.kv_window}])'))}\n>= {_num(t.kv_pressure)}"
    storm = f"{_alt(d.preemptions, lambda n: _sum(d, f'increase({n}[5m])'))}\n> {_num(t.preemptions_per_5m)}"
    q = t.queue_window
    gen_now = _alt(d.generation, lambda n: _sum(d, f"rate({n}[5m])"))
    gen_before = _alt(d.generation, lambda n: _sum(d, f"rate({n}[5m] offset 5m)"))
    queue = (
        f"(\n  {_alt(d.waiting, lambda n: _sum(d, f'deriv({n}[{q}])'))} * {_seconds(q)}\n  > {_num(t.queue_growth)}\n)\n"
        f"and {on}\n(\n  {gen_now}\n  <= 1.1 * {gen_before}\n)"
    )
    src = {"source": d.source}
    return [
        Alert(
            "LLMEngineStalled",
            stalled,
            t.stall_for,
            {"severity": "critical", **src, "code": "ENGINE_HUNG"},
            {"summary": f"{d.where}: {{{{ $value }}}} requests pending and no tokens generated for {w}"},
        ),
        Alert(
            "LLMEngineAdmissionStalled",
            admission,
            t.admission_for,
            {"severity": "critical", **src, "code": "ADMISSION_STALLED"},
            {
                "summary": f"{d.where}: {{{{ $value }}}} requests waiting for {a} with fewer running, KV below "
                f"{_num(t.admission_kv_free_below * 100)}% and no prompt tokens processed"
            },
        ),
        Alert(
            "LLMEngineKVPressure",
            kv,
            t.kv_for,
            {"severity": "warning", **src, "code": "KV_PRESSURE"},
            {"summary": f"{d.where}: KV cache {{{{ $value | humanizePercentage }}}} full (peak over {t.kv_window})"},
        ),
        Alert(
            "LLMEnginePreemptionStorm",
            storm,
            t.preemption_for,
            {"severity": "warning", **src, "code": "PREEMPTION_STORM"},
            {"summary": f"{d.where}: {{{{ $value | printf \"%.0f\" }}}} {d.preemption_word} in the last 5m"},
        ),
        Alert(
            "LLMEngineQueueGrowing",
            queue,
            t.queue_for,
            {"severity": "warning", **src, "code": "QUEUE_GROWING"},
            {"summary": f"{d.where}: waiting requests trending up by {{{{ $value | printf \"%.0f\" }}}} per {q} at flat throughput"},
        ),
    ]


def _seconds(duration: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    return int(duration[:-1]) * units[duration[-1]]


def _ratio_name(d: Dialect, window: str) -> str:
    return f"{d.model_label}:{d.record_prefix}_slo_errors:ratio_rate{window}"


def slo_rules(d: Dialect, slo: SLO, t: Thresholds) -> list[Record | Alert]:
    """Error ratios per model and window, the multi-window burn-rate pages, and the unmeasurable case."""
    g = d.model_label
    bucket = f'{d.ttft}_bucket{{le="{slo.le}"}}'
    rules: list[Record | Alert] = []
    for w in RATIO_WINDOWS:
        # only engines that have the boundary count, in numerator and denominator alike
        total = f"sum by ({g}) (rate({d.ttft}_count[{w}]) and ignoring (le) {bucket})"
        within = f"sum by ({g}) (rate({bucket}[{w}]))"
        rules.append(Record(_ratio_name(d, w), f"(\n  {total}\n  - {within}\n)\n/ ({total} > 0)"))
    where = f"{{{{ $labels.{g} }}}}"
    for long, short, factor in BURN_WINDOWS:
        limit = _num(factor * slo.budget)
        rules.append(
            Alert(
                "LLMTTFTBudgetBurn",
                f"{_ratio_name(d, long)} > {limit}\nand\n{_ratio_name(d, short)} > {limit}",
                t.burn_for,
                {"severity": "critical", "source": d.source, "code": "TTFT_BUDGET_BURN", "window": f"{long}/{short}"},
                {
                    "summary": f"{where}: {{{{ $value | humanizePercentage }}}} of requests waited over {slo.le} s "
                    f"for the first token in the last {long} (and {short}): the {_num(slo.objective * 100)}% TTFT "
                    f"SLO's error budget burns {_num(factor)}x too fast"
                },
            )
        )
    by = _by(d.engine_by)
    rules.append(
        Alert(
            "LLMTTFTSLOUnmeasurable",
            f"(sum by ({by}) (rate({d.ttft}_count[10m])) > 0)\nunless on ({by})\nmax by ({by}) ({bucket})",
            t.unmeasurable_for,
            {"severity": "warning", "source": d.source, "code": "TTFT_SLO_UNMEASURABLE"},
            {"summary": f'{d.where}: serves requests but has no TTFT bucket at le="{slo.le}": the SLO cannot be evaluated'},
        )
    )
    return rules


def p95_rules(d: Dialect) -> list[Record]:
    """Fleet TTFT p95 per model (and per host), absent rather than NaN when there is no traffic."""
    out = []
    for label in (d.model_label, d.host_label):
        if label is None:
            continue
        q = f"histogram_quantile(0.95, sum by (le, {label}) (rate({d.ttft}_bucket[5m])))"
        guard = f"sum by ({label}) (rate({d.ttft}_count[5m])) > 0"
        out.append(Record(f"{label}:{d.record_prefix}_seconds:p95_rate5m", f"{q}\nand on ({label})\n({guard})"))
    return out


def request_rules(d: Dialect) -> list[Record]:
    """Fleet request rate per model (and per host), and the failed fraction per model, from the engines'
    finished-request counters (``llmconsole_engine_requests_total``: every outcome, aborts included, so it
    is no progress signal for the stall rule: a hung engine's clients abort). The ratio counts only engines
    that have both counters (SGLang has no error counter: absent, so its traffic is left out of the
    denominator too) and yields no series at zero traffic."""
    if d.requests is None:
        return []
    prefix = d.requests.removesuffix("_total")
    out = []
    for label in (d.model_label, d.host_label):
        if label is not None:
            out.append(Record(f"{label}:{prefix}:rate5m", f"sum by ({label}) (rate({d.requests}[5m]))"))
    if d.errors is not None:
        g, on = d.model_label, _on(d)
        errors = f"sum by ({g}) (rate({d.errors}[5m]))"
        total = f"sum by ({g}) (rate({d.requests}[5m]) and {on} {d.errors})"
        out.append(Record(f"{g}:{d.errors.removesuffix('_total')}:ratio_rate5m", f"{errors}\n/ ({total} > 0)"))
    return out


def build_groups(slo: SLO | None = None, thresholds: Thresholds | None = None) -> list[Group]:
    slo = slo or SLO()
    t = thresholds or Thresholds()
    groups = [agent_group(t)]
    for d in DIALECTS:
        rules: list[Record | Alert] = [*p95_rules(d), *request_rules(d), *slo_rules(d, slo, t), *engine_alerts(d, t)]
        groups.append(Group(f"llmconsole-engines-{d.source}", tuple(rules)))
    return groups


# --- YAML (hand-emitted: no YAML library needed; `promtool check rules` is the parser under test) -------


def _scalar(s: str, indent: str) -> str:
    if "\n" in s:
        body = "\n".join(f"{indent}  {line}" if line else "" for line in s.split("\n"))
        return f"|-\n{body}"
    if s.isprintable():
        return "'" + s.replace("'", "''") + "'"
    return json.dumps(s)  # control characters: YAML double quotes take JSON escapes


def _mapping(d: dict[str, str], indent: str) -> list[str]:
    return [f"{indent}{k}: {_scalar(v, indent)}" for k, v in d.items()]


def _rule(r: Record | Alert) -> list[str]:
    ind = "      "
    if isinstance(r, Record):
        lines = [f"    - record: {r.record}", f"{ind}expr: {_scalar(r.expr, ind)}"]
        if r.labels:
            lines += [f"{ind}labels:", *_mapping(r.labels, ind + "  ")]
        return lines
    lines = [f"    - alert: {r.alert}", f"{ind}expr: {_scalar(r.expr, ind)}"]
    if r.for_:
        lines.append(f"{ind}for: {r.for_}")
    if r.keep_firing_for:
        lines.append(f"{ind}keep_firing_for: {r.keep_firing_for}")
    lines += [f"{ind}labels:", *_mapping(r.labels, ind + "  ")]
    lines += [f"{ind}annotations:", *_mapping(r.annotations, ind + "  ")]
    return lines


def render(groups: Sequence[Group], slo: SLO | None = None) -> str:
    slo = slo or SLO()
    head = [
        "# llmconsole Prometheus rules, generated by `llmconsole rules"
        + (f" --slo-ttft {slo.le} --slo-objective {_num(slo.objective)}" if slo != SLO() else "")
        + "`: do not edit by hand.",
        f'# TTFT SLO: {_num(slo.objective * 100)}% of requests get their first token within {slo.le} s (bucket le="{slo.le}").',
        f'# Agents are scraped by the job "{AGENT_JOB}". Valid on Prometheus 2.42 and 3.x.',
        "groups:",
    ]
    out = list(head)
    for g in groups:
        out += [f"  - name: {g.name}", "    rules:"]
        for r in g.rules:
            out += _rule(r)
    return "\n".join(out) + "\n"


def rules_yaml(slo: SLO | None = None) -> str:
    """The rules file for ``slo`` (default: what ships in deploy/prometheus/llmconsole-rules.yml)."""
    return render(build_groups(slo), slo)


def bucket_note(slo: SLO) -> str | None:
    """A note when the SLO threshold is not a default TTFT bucket of every engine with a TTFT histogram."""
    missing = [name for name, buckets in DEFAULT_TTFT_BUCKETS.items() if not any(math.isclose(slo.ttft_s, b) for b in buckets)]
    if not missing:
        return None
    return (
        f'{slo.le} s is not a default TTFT bucket of {" or ".join(missing)}; engines without a bucket at le="{slo.le}" '
        "raise LLMTTFTSLOUnmeasurable instead of being judged"
    )


# --- CLI ---------------------------------------------------------------------------------------------


def _ttft(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the TTFT threshold must be a positive number of seconds")
    return value


def _objective(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a fraction such as 0.99") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: the objective must be a fraction between 0 and 1, such as 0.99")
    if FAST_BURN * (1 - value) >= 1:
        floor = 1 - 1 / FAST_BURN
        raise argparse.ArgumentTypeError(
            f"{text!r} leaves an error budget so large that the {_num(FAST_BURN)}x burn-rate page could never fire; "
            f"use an objective above {floor:.4f}"
        )
    return value


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "rules",
        help="print Prometheus recording and alerting rules for the fleet (YAML)",
        description="Print Prometheus rules: agent alerts passed through, engine stall/admission/KV/preemption/"
        "queue alerts on the agent's normalized series and on vLLM's and SGLang's own, TTFT burn-rate pages, "
        "fleet TTFT p95 recordings. Load the output with rule_files in prometheus.yml.",
    )
    p.add_argument("--slo-ttft", type=_ttft, default=SLO.ttft_s, metavar="S",
                   help=f"TTFT threshold in seconds, a histogram bucket boundary (default {SLO.ttft_s})")  # fmt: skip
    p.add_argument("--slo-objective", type=_objective, default=SLO.objective, metavar="O",
                   help=f"fraction of requests within the threshold (default {SLO.objective})")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    slo = SLO(ttft_s=args.slo_ttft, objective=args.slo_objective)
    note = bucket_note(slo)
    if note:
        sys.stderr.write(f"{PROG}: note: {note}\n")
    sys.stdout.write(rules_yaml(slo))
    return 0


__all__ = [
    "DIALECTS", "LLMCONSOLE", "SGLANG", "SLO", "VLLM", "Alert", "Dialect", "Group", "Record", "Thresholds",
    "add_parser", "bucket_note", "build_groups", "render", "rules_yaml", "run",
]  # fmt: skip
