"""The metrics-drift guard's own logic, on recorded expositions (fast; part of the normal suite).

The e2e stage runs the same check against a live vLLM (test_vllm_e2e.py::test_metrics_drift_guard).
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from agents.engines import get_adapter
from tests.e2e.support.drift import NEWER_THAN_STAGE, check, metric_groups

DATA = Path(__file__).resolve().parents[1] / "data" / "metrics"
WANTED = get_adapter("vllm").wanted()


def exposed(text: str) -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append(dict(s.labels))
    return out


def without(text: str, *prefixes: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.startswith(prefixes)) + "\n"


def test_groups_cover_exactly_what_the_adapter_reads() -> None:
    grouped = {n for names in metric_groups().values() for n in names}
    assert grouped | set(NEWER_THAN_STAGE) == set(WANTED)  # names newer than the stage's vLLM are known too
    assert not grouped & set(NEWER_THAN_STAGE)


def test_recorded_vllm_032_has_no_drift() -> None:
    report = check(exposed((DATA / "vllm-0.32-cpu.loaded.prom").read_text()), WANTED)
    assert report.ok, report.explain()


def test_a_missing_current_name_is_named() -> None:
    text = without(
        (DATA / "vllm-0.32-cpu.loaded.prom").read_text(),
        "vllm:kv_cache_usage_perc",
        "# HELP vllm:kv_cache_usage_perc",
        "# TYPE vllm:kv_cache_usage_perc",
    )
    report = check(exposed(text), WANTED)
    assert not report.ok
    assert report.missing == (("kv_cache_usage", "vllm:kv_cache_usage_perc"),)
    assert "vllm:kv_cache_usage_perc" in report.explain()


def test_only_an_older_name_is_reported_as_drift_not_silently_accepted() -> None:
    text = (
        (DATA / "vllm-0.32-cpu.loaded.prom")
        .read_text()
        .replace("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds")
    )
    report = check(exposed(text), WANTED)
    assert {lg for lg, _ in report.fallback_only} == {"itl_bucket", "itl_sum", "itl_count"}
    assert not report.missing


def test_absent_fallback_names_do_not_fail_the_guard() -> None:
    names = exposed((DATA / "vllm-0.32-cpu.loaded.prom").read_text())
    fallbacks = {n for alts in metric_groups().values() for n in alts[1:]}
    assert fallbacks and not fallbacks & names.keys()  # 0.32 exposes none of the older names ...
    assert check(names, WANTED).ok  # ... and that is fine


def test_a_lost_label_is_named() -> None:
    text = (DATA / "vllm-0.32-cpu.loaded.prom").read_text().replace('engine="0",', "")
    report = check(exposed(text), WANTED)
    assert ("vllm:num_requests_running", "engine") in report.unlabelled


def test_an_adapter_name_unknown_to_the_guard_fails_it() -> None:
    report = check(
        exposed((DATA / "vllm-0.32-cpu.loaded.prom").read_text()), WANTED | {"vllm:brand_new_total"}
    )
    assert report.uncovered == ("vllm:brand_new_total",)
    assert not report.ok
