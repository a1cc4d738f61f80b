"""The engine detail's presenters: the agent's probe lines in an engine log, the latency percentiles,
load and SLO panels (dashes for what the agent did not send, one duration rule), and the state history
as one line per transition with durations."""

from __future__ import annotations

from agents.schema import EngineEvent, EngineSnapshot, EngineStats, SloStatus, SloWindow, rfc3339
from console.views.detail import event_lines, event_runs
from console.views.loglines import CANARY_MARK, is_loopback, is_probe_line
from console.views.percentiles import latency_table, latency_title, load_lines, load_title, slo_lines


def text(parts) -> str:
    return "".join(t for t, _ in parts)


def rows(parts) -> list[str]:
    """event_lines: one part per line."""
    return [t for t, _ in parts]


def tones(parts, needle: str) -> set[str]:
    return {tone for t, tone in parts if needle in t}


# --- probe lines ------------------------------------------------------------------------------------


def test_the_agents_own_probe_requests_are_recognised_by_request_line_and_loopback_client() -> None:
    vllm = '(APIServer pid=23246) INFO:     127.0.0.1:54321 - "GET /metrics HTTP/1.1" 200 OK'
    assert is_probe_line(vllm)
    assert is_probe_line('INFO:     127.0.0.1:40022 - "GET /health HTTP/1.1" 200 OK')  # SGLang, bare uvicorn
    assert is_probe_line('INFO:     127.0.0.1:40022 - "GET /metrics/ HTTP/1.1" 200 OK')  # after a redirect
    assert is_probe_line('INFO:     ::1:40022 - "GET /health HTTP/1.1" 503 Service Unavailable')
    assert is_probe_line(
        '\x1b[32mINFO\x1b[0m:     127.0.0.1:1 - "GET /health HTTP/1.1" \x1b[32m200 OK\x1b[0m'
    )
    marked = f'INFO:     127.0.0.1:5 - "POST /v1/completions?{CANARY_MARK}=1 HTTP/1.1" 200 OK'
    assert is_probe_line(marked)


def test_other_requests_and_other_clients_are_kept() -> None:
    # a user's Prometheus scraping from another machine is not the agent
    assert not is_probe_line('INFO:     10.0.0.7:51234 - "GET /metrics HTTP/1.1" 200 OK')
    # a user's completion over loopback (a local proxy) is not the canary unless marked
    assert not is_probe_line('INFO:     127.0.0.1:5 - "POST /v1/completions HTTP/1.1" 200 OK')
    assert not is_probe_line('INFO:     127.0.0.1:5 - "GET /v1/models HTTP/1.1" 200 OK')
    assert not is_probe_line('INFO:     127.0.0.1:5 - "GET /healthz HTTP/1.1" 200 OK')
    stats = "(APIServer pid=1) INFO 11-29 12:09:21 [loggers.py:236] Engine 000: Avg prompt throughput: 1.0"
    assert not is_probe_line(stats)
    assert not is_probe_line('ERROR something said "GET /metrics HTTP/1.1" 200 in a message')
    assert not is_probe_line("")
    assert is_loopback("127.3.4.5") and is_loopback("[::1]") and is_loopback("::ffff:127.0.0.1")
    assert not is_loopback("10.127.0.1") and not is_loopback("::2")


# --- numbers panel -----------------------------------------------------------------------------------

FULL = EngineStats(
    requests_running=20.0,
    requests_waiting=758.0,
    kv_cache_usage=0.956,
    preemptions_per_s=9.95,
    ttft_p50_s=0.164,
    ttft_p95_s=1.24,
    ttft_p99_s=38.6,
    itl_p50_s=0.012,
    itl_p95_s=0.04,
    itl_p99_s=0.09,
    e2e_p50_s=3.1,
    e2e_p95_s=8.2,
    e2e_p99_s=192.0,
    queue_time_p50_s=0.0,
    queue_time_p95_s=0.12,
    queue_time_p99_s=0.4,
    preemptions_in_window=398.0,
    requests_waiting_capacity=700.0,
    requests_waiting_deferred=58.0,
    rate_window_s=5.0,
    percentile_window_s=60.0,
)


def engine(**kw) -> EngineSnapshot:
    return EngineSnapshot(**{"id": "llama", "kind": "vllm", "state": "ready", **kw})


def test_percentiles_table_with_windows_and_the_duration_rule() -> None:
    table = latency_table(FULL)
    lines = text(table).splitlines()
    assert lines[0].split() == ["p50", "p95", "p99"]
    assert lines[1].split() == ["TTFT", "164ms", "1.24s", "38s"]
    assert lines[2].split() == ["TPOT/ITL", "12ms", "40ms", "90ms"]
    assert lines[3].split() == ["End-to-end", "3.10s", "8.20s", "3m12s"]
    assert lines[4].split() == ["Queue", "0ms", "120ms", "400ms"]
    assert latency_title(FULL) == "Latency · over 1m00s"
    assert load_title(FULL) == "Load · rates over 5s"
    stale = latency_table(FULL, live=False)
    assert tones(stale, "164ms") == {"stale"}  # not current: never in the live look


def test_absent_values_are_dashes_never_numbers() -> None:
    lines = text(latency_table(EngineStats(ttft_p95_s=0.5))).splitlines()
    assert lines[1].split() == ["TTFT", "—", "500ms", "—"] and lines[2].split() == ["TPOT/ITL", "—", "—", "—"]
    assert latency_title(EngineStats()) == "Latency · window not reported"
    assert latency_title(None) == "Latency · window not reported"
    empty = text(load_lines(engine(stats=None)))
    assert "running — · waiting — · conns —" in empty and "preemptions — · — in window" in empty
    assert "0" not in empty  # nothing made up
    tgi = text(load_lines(engine(stats=EngineStats(requests_running=2.0))))
    assert "KV cache n/a" in tgi  # stats without the gauge: the engine has none


def test_load_shows_preemptions_rate_and_count_waiting_by_reason_connections_and_kv_eta() -> None:
    parts = load_lines(engine(stats=FULL, client_connections=34, kv_eta_s=130.0))
    lines = text(parts).splitlines()
    assert lines[0] == "running 20 · waiting 758 · conns 34"
    assert lines[1] == "waiting for capacity 700 · deferred 58"
    assert lines[2] == "preemptions 9.9/s · 398 in 1m00s"
    assert lines[3] == "KV cache 95.6% · full in 2m10s"
    assert tones(parts, "9.9/s") == {"warn"} and tones(parts, "2m10s") == {"warn"}
    calm = text(load_lines(engine(stats=EngineStats(preemptions_per_s=0.0, kv_cache_usage=0.2))))
    assert "preemptions 0/s" in calm and "not rising" in calm


def test_slo_panel_budget_and_burn_per_window() -> None:
    assert slo_lines(None) == []
    slo = SloStatus(
        ttft_s=0.5,
        objective=0.99,
        source="histogram",
        budget_left=0.42,
        windows=(
            SloWindow(window_s=300.0, burn_rate=14.4),
            SloWindow(window_s=3600.0, burn_rate=0.5),
            SloWindow(window_s=21600.0),
        ),
    )
    parts = slo_lines(slo)
    lines = text(parts).splitlines()
    assert lines[0] == "TTFT ≤ 500ms for 99% (histogram)"
    assert lines[1] == "budget left 42%  burn 5m00s ×14.4  burn 1h00m ×0.5  burn 6h00m no requests"
    assert tones(parts, "×14.4") == {"warn"} and tones(parts, "×0.5") == {"live"}
    spent = slo_lines(SloStatus(ttft_s=0.5, objective=0.99, source="canary", budget_left=-0.1, problem="p"))
    assert tones(spent, "-10%") == {"crit"} and text(spent).endswith("\np")


# --- state history -----------------------------------------------------------------------------------

T = 1_750_000_000.0


def ev(offset: float, state: str, reason: str | None = None, **kw) -> EngineEvent:
    return EngineEvent(at=rfc3339(T + offset), state=state, reason=reason, **kw)


def test_repeated_reports_fold_into_one_line_per_transition_with_a_live_duration() -> None:
    events = (
        ev(0, "starting", "launched"),
        ev(30, "ready", "ready: readiness check passed"),
        ev(30.5, "ready", "healthy"),
        *(ev(400 + i, "hung", f"no token progress for {81 + i} s") for i in range(40)),
    )
    e = engine(state="hung", events=events)
    assert [r.state for r in event_runs(e)] == ["starting", "ready", "hung"]
    lines = rows(event_lines(e, T + 592))
    assert len(lines) == 3  # not one line per second
    assert "hung" in lines[0] and "for 3m12s" in lines[0] and "no token progress for 81 s" in lines[0]
    assert "ready" in lines[1] and "6m10s" in lines[1] and "ready: readiness check passed" in lines[1]
    assert "starting" in lines[2] and "30s" in lines[2] and "≥" not in lines[2]
    assert rows(event_lines(e, T + 600))[0].count("for 3m20s") == 1  # it counts up
    assert "for" not in rows(event_lines(e))[0].split("no token")[0]  # no clock: no duration


def test_the_oldest_kept_state_is_a_lower_bound_unless_it_is_the_launch() -> None:
    e = engine(state="hung", events=tuple(ev(i, "hung", f"no progress {i}") for i in range(20)))
    (line,) = rows(event_lines(e, T + 30))
    assert "for ≥30s" in line  # older events were dropped: it has been hung at least that long


def test_exits_stay_separate_transitions() -> None:
    events = (ev(0, "ready"), ev(10, "exited", "exited 1", exit_code=1), ev(10, "backoff", "restart in 5s"))
    lines = rows(event_lines(engine(state="backoff", events=events), T + 12))
    assert [line.split()[1] for line in lines] == ["backoff", "exited", "ready"]
    assert "exit code 1" in lines[1] and "for 2s" in lines[0]
