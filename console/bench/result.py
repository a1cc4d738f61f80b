"""The ``llmconsole.bench/1`` result document: building it, reading it back, the table and ``--compare``.

The document's top level carries the *headline* run under ``vllm bench serve``'s key names (so a result
diffs against upstream's ``--save-result`` JSON), plus ours:

- ``schema`` (``llmconsole.bench/1``), ``date`` (UTC, display only), ``mode`` (``single``, ``sweep``,
  ``slo-search``), ``target`` (URL, metrics URL, engine kind, GPUs, fleet host/engine), ``model``,
  ``endpoint``, ``workload`` (with ``tokenization``: how lengths became characters), ``bounds``, ``slo``;
- ``runs``: every run (its ``load``, aggregates, ``engine_metrics``, ``slo_met``, ``slo_misses``);
  ``headline_run`` (index into ``runs``) and ``headline_reason``;
- ``sustained``: the throughput a deployment can be priced on (``llmconsole calc breakeven --measured``):
  with an SLO, the best run that met it; else the run with the highest total token throughput. Per GPU
  when the GPU count is known (fleet targets, or ``--gpus``);
- ``interrupted`` (Ctrl-C: partial results), ``engine_metrics`` of the headline run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from console.fileread import read_bounded

SCHEMA = "llmconsole.bench/1"
MAX_RESULT_BYTES = 256 * 1024 * 1024
# keys of a run copied to the top level (vLLM's names and ours); arrays only with --detailed
RUN_KEYS_SKIPPED = ("load", "engine_metrics", "slo_met", "slo_misses")


class ResultError(ValueError):
    """A result file that cannot be used; the message is one line."""


def headline(runs: Sequence[dict[str, Any]], with_slo: bool) -> tuple[int | None, str]:
    """The run to show at the top level, and why."""
    if not runs:
        return None, "no run"
    if with_slo:
        met = [i for i, r in enumerate(runs) if r.get("slo_met")]
        if met:
            best = max(met, key=lambda i: runs[i].get("request_throughput") or 0.0)
            return best, "the highest request throughput that met every SLO"
        return 0, "no run met the SLO: the first run is shown"
    if len(runs) == 1:
        return 0, "the only run"
    best = max(range(len(runs)), key=lambda i: runs[i].get("total_token_throughput") or 0.0)
    return best, "the highest total token throughput"


def sustained(run: dict[str, Any] | None, gpus: int | None, source: str) -> dict[str, Any] | None:
    if run is None or not run.get("completed"):
        return None
    out_tps, total_tps = run.get("output_throughput"), run.get("total_token_throughput")
    total_in, total_out = run.get("total_input_tokens") or 0, run.get("total_output_tokens") or 0
    return {
        "source": source,
        "load": run.get("load"),
        "request_throughput": run.get("request_throughput"),
        "output_tokens_per_s": out_tps,
        "total_tokens_per_s": total_tps,
        "gpus": gpus,
        "output_tokens_per_s_per_gpu": out_tps / gpus if gpus and out_tps is not None else None,
        "total_tokens_per_s_per_gpu": total_tps / gpus if gpus and total_tps is not None else None,
        "input_share": total_in / (total_in + total_out) if total_in + total_out else None,
    }


def build(
    *,
    mode: str,
    target: dict[str, Any],
    model: str,
    endpoint: str,
    workload: dict[str, Any],
    bounds: dict[str, Any],
    slo: dict[str, Any] | None,
    runs: list[dict[str, Any]],
    gpus: int | None,
    interrupted: bool,
) -> dict[str, Any]:
    idx, why = headline(runs, slo is not None)
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "mode": mode,
        "target": target,
        "model": model,
        "model_id": model,
        "endpoint": endpoint,
        "workload": workload,
        "bounds": bounds,
        "slo": slo,
        "interrupted": interrupted,
        "headline_run": idx,
        "headline_reason": why,
    }
    head = runs[idx] if idx is not None else None
    if head is not None:
        load = head.get("load") or {}
        doc.update(
            request_rate=load.get("request_rate"),
            burstiness=load.get("burstiness"),
            max_concurrency=load.get("max_concurrency"),
        )
        doc.update({k: v for k, v in head.items() if k not in RUN_KEYS_SKIPPED})
        doc["engine_metrics"] = head.get("engine_metrics")
    if slo is not None:
        met = head is not None and bool(head.get("slo_met"))
        doc["sustained"] = sustained(head, gpus, "slo") if met else None
    else:
        doc["sustained"] = sustained(head, gpus, "single run" if len(runs) == 1 else "best of sweep")
    doc["runs"] = runs
    return doc


def dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, allow_nan=False, default=_default)


def _default(obj: Any) -> Any:
    raise TypeError(f"not JSON: {type(obj).__name__}")


def load(path: str) -> dict[str, Any]:
    """A result document written by ``llmconsole bench``; ResultError (one line) for anything else."""
    raw = read_bounded(path, MAX_RESULT_BYTES, ResultError)
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ResultError(f"{path} is not JSON ({getattr(exc, 'msg', exc)})") from None
    if not isinstance(doc, dict):
        raise ResultError(f'{path} is not a benchmark result (a JSON object with "schema": {SCHEMA!r})')
    schema = doc.get("schema")
    major = SCHEMA.rsplit("/", 1)
    if not isinstance(schema, str) or not (schema == SCHEMA or schema.startswith(SCHEMA + ".")):
        found = repr(schema)[:60] if schema is not None else "no schema key"
        raise ResultError(f"{path} is not a {major[0]} result version {major[1]}.x ({found})")
    if not isinstance(doc.get("runs"), list):
        raise ResultError(f"{path}: malformed {SCHEMA} result (no runs)")
    return doc


# --- text ---------------------------------------------------------------------------------------------------
def _n(value: Any, fmt: str = "{:,.1f}") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return fmt.format(value)


def _pct(value: Any) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


ROWS: tuple[tuple[str, str, str], ...] = (
    ("completed", "completed", "{:,}"),
    ("failed", "failed", "{:,}"),
    ("incomplete", "incomplete (cancelled)", "{:,}"),
    ("duration", "duration s", "{:,.2f}"),
    ("request_throughput", "requests/s", "{:,.2f}"),
    ("request_goodput", "goodput requests/s", "{:,.2f}"),
    ("output_throughput", "output tokens/s", "{:,.1f}"),
    ("total_token_throughput", "total tokens/s", "{:,.1f}"),
    ("max_concurrent_requests", "peak concurrency", "{:,}"),
    ("total_input_tokens", "input tokens", "{:,}"),
    ("total_output_tokens", "output tokens", "{:,}"),
)
LATENCY = (("ttft", "TTFT"), ("tpot", "TPOT (vLLM def.)"), ("itl", "ITL"), ("e2el", "E2E latency"))
STATS = ("mean", "p50", "p90", "p95", "p99")
ENGINE_ROWS = (
    ("preemptions", "engine preemptions", "{:,.0f}"),
    ("max_waiting", "engine max waiting", "{:,.0f}"),
    ("max_kv_cache_usage", "engine max KV usage", "pct"),
    ("prefix_cache_hit_rate", "engine prefix-cache hits", "pct"),
)


def _load_label(run: dict[str, Any]) -> str:
    load = run.get("load") or {}
    if load.get("request_rate") is None:
        return f"c={load.get('max_concurrency')}"
    cap = f" c≤{load['max_concurrency']}" if load.get("max_concurrency") else ""
    return f"{load['request_rate']:g}/s{cap}"


def _row_values(run: dict[str, Any]) -> list[str]:
    vals = [_n(run.get(key), fmt) for key, _, fmt in ROWS]
    for m, _ in LATENCY:
        vals += [_n(run.get(f"{s}_{m}_ms"), "{:,.2f}") for s in STATS]
    em = run.get("engine_metrics") or {}
    for key, _, fmt in ENGINE_ROWS:
        vals.append(_pct(em.get(key)) if fmt == "pct" else _n(em.get(key), fmt))
    vals.append({True: "met", False: "missed", None: "—"}[run.get("slo_met")])
    return vals


def _labels() -> list[str]:
    labels = [label for _, label, _ in ROWS]
    for _, name in LATENCY:
        labels += [f"{name} {s} ms" for s in STATS]
    return labels + [label for _, label, _ in ENGINE_ROWS] + ["SLO"]


def _grid(header: list[str], columns: list[list[str]], labels: list[str]) -> list[str]:
    widths = [max(len(label) for label in labels)] + [
        max(len(h), *(len(v) for v in col)) for h, col in zip(header, columns, strict=True)
    ]
    lines = ["  ".join([" " * widths[0]] + [h.rjust(w) for h, w in zip(header, widths[1:], strict=True)])]
    for i, label in enumerate(labels):
        cells = [col[i].rjust(w) for col, w in zip(columns, widths[1:], strict=True)]
        lines.append("  ".join([label.ljust(widths[0]), *cells]).rstrip())
    return lines


def table(doc: dict[str, Any]) -> str:
    """The result as text: one column per run, the headline starred."""
    runs = doc.get("runs") or []
    wl = doc.get("workload") or {}
    tok = wl.get("tokenization") or {}
    target = doc.get("target") or {}
    head = [
        f"llmconsole bench {target.get('target')}  model {doc.get('model')}  /v1/{doc.get('endpoint')}  "
        f"engine {target.get('engine') or 'unknown'}{' (SIMULATED)' if _simulated(doc) else ''}",
        f"workload {_workload_text(wl)}; lengths by {tok.get('source', '?')}"
        f" ({_n(tok.get('chars_per_token'), '{:.2f}')} chars/token)",
    ]
    if doc.get("slo"):
        objectives = ", ".join(f"{k} ≤ {v:g} s" for k, v in doc["slo"]["objectives"].items())
        head.append(f"SLO {objectives} (at most {doc['slo']['max_error_rate']:.0%} failed)")
    if not runs:
        return "\n".join([*head, "no run"])
    best = doc.get("headline_run")
    header = [_load_label(r) + (" *" if i == best and len(runs) > 1 else "") for i, r in enumerate(runs)]
    lines = head + [""] + _grid(header, [_row_values(r) for r in runs], _labels())
    notes = [
        "TPOT = (latency − TTFT) / (output tokens − 1), as vLLM; ITL = every gap between streamed tokens"
    ]
    if len(runs) > 1:
        notes.append(f"* headline: {doc.get('headline_reason')}")
    for r in runs:
        if r.get("errors_by_class"):
            first = next(iter(r["error_examples"].items()), (None, None))
            notes.append(
                f"{_load_label(r)} errors: "
                + ", ".join(f"{k} {v}" for k, v in r["errors_by_class"].items())
                + (f" (e.g. {first[0]}: {first[1]})" if first[0] else "")
            )
        if r.get("slo_misses"):
            notes.append(f"{_load_label(r)} SLO missed: " + "; ".join(r["slo_misses"]))
    s = doc.get("sustained")
    if s:
        per_gpu = (
            f", {_n(s['total_tokens_per_s_per_gpu'])} total tokens/s per GPU ({s['gpus']} GPUs)"
            if s.get("gpus")
            else " (GPU count unknown: give --gpus N for per-GPU figures)"
        )
        notes.append(
            f"sustained ({s['source']}): {_n(s['output_tokens_per_s'])} output, "
            f"{_n(s['total_tokens_per_s'])} total tokens/s{per_gpu}"
        )
    elif doc.get("slo"):
        notes.append("sustained: no run met the SLO")
    if doc.get("interrupted"):
        notes.append("INTERRUPTED: partial results (Ctrl-C)")
    return "\n".join(lines + [""] + notes)


def _simulated(doc: dict[str, Any]) -> bool:
    em = doc.get("engine_metrics") or {}
    fleet = (doc.get("target") or {}).get("fleet") or {}
    return bool(em.get("simulated") or fleet.get("simulated"))


def _workload_text(wl: dict[str, Any]) -> str:
    kind = wl.get("kind", "?")
    if kind == "prefix-repetition":
        return (
            f"prefix-repetition ({wl.get('prefix_count')} prefixes × {wl.get('prefix_len')} + "
            f"{wl.get('suffix_len')} tokens, out {wl.get('output_len')})"
        )
    if kind == "jsonl":
        return f"jsonl {wl.get('path')}"
    return f"{kind} (in {wl.get('input_len')}, out {wl.get('output_len')})"


# --- compare ------------------------------------------------------------------------------------------------
COMPARE_KEYS: tuple[tuple[str, str, bool], ...] = (  # key, label, higher is better
    ("completed", "completed", True),
    ("failed", "failed", False),
    ("request_throughput", "requests/s", True),
    ("request_goodput", "goodput requests/s", True),
    ("output_throughput", "output tokens/s", True),
    ("total_token_throughput", "total tokens/s", True),
    ("max_concurrent_requests", "peak concurrency", True),
    *((f"{s}_{m}_ms", f"{name} {s} ms", False) for m, name in LATENCY for s in STATS),
)
ENGINE_COMPARE = (
    ("preemptions", "engine preemptions", False),
    ("max_waiting", "engine max waiting", False),
    ("max_kv_cache_usage", "engine max KV usage", False),
    ("prefix_cache_hit_rate", "engine prefix-cache hit rate", True),
)


def compare_rows(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """Key metrics of the two headline runs with the ratio B / A (None where either is missing or A is 0)."""
    rows = []
    ea, eb = a.get("engine_metrics") or {}, b.get("engine_metrics") or {}
    for src_a, src_b, keys in ((a, b, COMPARE_KEYS), (ea, eb, ENGINE_COMPARE)):
        for key, label, higher in keys:
            va, vb = src_a.get(key), src_b.get(key)
            ratio = vb / va if isinstance(va, int | float) and isinstance(vb, int | float) and va else None
            rows.append(
                {"key": key, "label": label, "a": va, "b": vb, "ratio": ratio, "higher_is_better": higher}
            )
    return rows


def compare_text(a: dict[str, Any], b: dict[str, Any], name_a: str, name_b: str) -> str:
    def who(doc: dict[str, Any]) -> str:
        t = doc.get("target") or {}
        return f"{t.get('target')} {doc.get('model')} ({t.get('engine') or '?'}, {_workload_text(doc.get('workload') or {})})"

    header = [f"A = {name_a}: {who(a)}", f"B = {name_b}: {who(b)}", ""]
    rows = compare_rows(a, b)
    labels = [r["label"] for r in rows]
    cols = [
        [_cell(r["a"]) for r in rows],
        [_cell(r["b"]) for r in rows],
        [("—" if r["ratio"] is None else f"{r['ratio']:.2f}x") for r in rows],
    ]
    return "\n".join(header + _grid(["A", "B", "B/A"], cols, labels))


def _cell(v: Any) -> str:
    if isinstance(v, float) and 0 < v < 1 and not v.is_integer():
        return f"{v:.3f}"
    return _n(v, "{:,.2f}" if isinstance(v, float) else "{:,}")
