"""The rules themselves (pure): rule objects, PromQL helpers, and the builders of the agent group and of
each dialect's recordings (TTFT p95, request rates), SLO burn-rate pages and engine alerts."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from console.rules_dialects import AGENT_JOB, BURN_WINDOWS, DIALECTS, RATIO_WINDOWS, SLO, Dialect, Thresholds

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


def num(x: float) -> str:
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
        f"and {on}\n(\n  {_alt(d.kv, lambda n: _max(d, f'max_over_time({n}[{a}])'))} < {num(t.admission_kv_free_below)}\n)\n"
        f"and {on}\n(\n  {_alt(d.prompt, lambda n: _sum(d, f'increase({n}[{a}])'))} == 0\n)"
    )
    kv = f"{_alt(d.kv, lambda n: _max(d, f'max_over_time({n}[{t.kv_window}])'))}\n>= {num(t.kv_pressure)}"
    storm = f"{_alt(d.preemptions, lambda n: _sum(d, f'increase({n}[5m])'))}\n> {num(t.preemptions_per_5m)}"
    q = t.queue_window
    gen_now = _alt(d.generation, lambda n: _sum(d, f"rate({n}[5m])"))
    gen_before = _alt(d.generation, lambda n: _sum(d, f"rate({n}[5m] offset 5m)"))
    queue = (
        f"(\n  {_alt(d.waiting, lambda n: _sum(d, f'deriv({n}[{q}])'))} * {_seconds(q)}\n  > {num(t.queue_growth)}\n)\n"
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
                f"{num(t.admission_kv_free_below * 100)}% and no prompt tokens processed"
            },
        ),
        Alert(
            "LLMEngineKVPressure",
            kv,
            t.kv_for,
            {"severity": "warning", **src, "code": "KV_PRESSURE"},
            {
                "summary": f"{d.where}: KV cache {{{{ $value | humanizePercentage }}}} full (peak over {t.kv_window})"
            },
        ),
        Alert(
            "LLMEnginePreemptionStorm",
            storm,
            t.preemption_for,
            {"severity": "warning", **src, "code": "PREEMPTION_STORM"},
            {"summary": f'{d.where}: {{{{ $value | printf "%.0f" }}}} {d.preemption_word} in the last 5m'},
        ),
        Alert(
            "LLMEngineQueueGrowing",
            queue,
            t.queue_for,
            {"severity": "warning", **src, "code": "QUEUE_GROWING"},
            {
                "summary": f'{d.where}: waiting requests trending up by {{{{ $value | printf "%.0f" }}}} per {q} at flat throughput'
            },
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
        limit = num(factor * slo.budget)
        rules.append(
            Alert(
                "LLMTTFTBudgetBurn",
                f"{_ratio_name(d, long)} > {limit}\nand\n{_ratio_name(d, short)} > {limit}",
                t.burn_for,
                {
                    "severity": "critical",
                    "source": d.source,
                    "code": "TTFT_BUDGET_BURN",
                    "window": f"{long}/{short}",
                },
                {
                    "summary": f"{where}: {{{{ $value | humanizePercentage }}}} of requests waited over {slo.le} s "
                    f"for the first token in the last {long} (and {short}): the {num(slo.objective * 100)}% TTFT "
                    f"SLO's error budget burns {num(factor)}x too fast"
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
            {
                "summary": f'{d.where}: serves requests but has no TTFT bucket at le="{slo.le}": the SLO cannot be evaluated'
            },
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
        out.append(
            Record(f"{label}:{d.record_prefix}_seconds:p95_rate5m", f"{q}\nand on ({label})\n({guard})")
        )
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
        out.append(
            Record(f"{g}:{d.errors.removesuffix('_total')}:ratio_rate5m", f"{errors}\n/ ({total} > 0)")
        )
    return out


def build_groups(slo: SLO | None = None, thresholds: Thresholds | None = None) -> list[Group]:
    slo = slo or SLO()
    t = thresholds or Thresholds()
    groups = [agent_group(t)]
    for d in DIALECTS:
        rules: list[Record | Alert] = [
            *p95_rules(d),
            *request_rules(d),
            *slo_rules(d, slo, t),
            *engine_alerts(d, t),
        ]
        groups.append(Group(f"llmconsole-engines-{d.source}", tuple(rules)))
    return groups
