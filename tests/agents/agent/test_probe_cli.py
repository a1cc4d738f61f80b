"""`llmconsole probe` (agents/probe_cli.py, an agent-side verb): files, live scrapes of a real loopback HTTP
server, and every bad input, run through the console's CLI as a user runs it.

Expected numbers are computed from the exposition text and the measured interval, never copied from
the probe's own output.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from agents.probe import NEEDS_TWO, NOT_EXPOSED, NOT_IN_TEXT, ProbeError, probe_texts
from console.cli import main

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "tests" / "data" / "metrics"
LOADED = DATA / "vllm-0.32-cpu.loaded.prom"  # scraped first (counters lower)
IDLE = DATA / "vllm-0.32-cpu.idle.prom"  # scraped later, same server
TGI = DATA / "tgi-v3-constructed.prom"
SGLANG = DATA / "sglang-recent-constructed.prom"
PREFIX = "llmconsole probe: error: "


def series(path: Path, name: str) -> float:
    """The value of the one sample line of ``name`` (with or without labels) in ``path``."""
    hits = [line for line in path.read_text().splitlines() if line.startswith((name + "{", name + " "))]
    assert len(hits) == 1, name
    return float(hits[0].split()[-1])


def run_main(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["probe", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, out: str, err: str, *fragments: str) -> None:
    assert code == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(PREFIX), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


# --- a real HTTP server on loopback --------------------------------------------------------------------
class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a handler still sleeping must not hold up the test's teardown

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # the probe hanging up on a slow or huge response is the point of some tests


class Exposition:
    """Serves ``bodies`` in turn (the last one repeats); records the paths asked for."""

    def __init__(self, bodies: list[bytes], status: int = 200, delay_s: float = 0.0) -> None:
        self.bodies, self.status, self.delay_s = bodies, status, delay_s
        self.paths: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                owner.paths.append(self.path)
                body = owner.bodies[min(len(owner.paths), len(owner.bodies)) - 1]
                if owner.delay_s:
                    time.sleep(owner.delay_s)
                self.send_response(owner.status)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> Exposition:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def free_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    yield port  # closed: nothing listens there


def cli() -> list[str]:
    script = ROOT / ".venv" / "bin" / "llmconsole"
    return [str(script)] if script.exists() else [sys.executable, "-m", "console.cli"]


def run_cli(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    return subprocess.run(
        [*cli(), "probe", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=env,
        check=False,
    )


# --- live scrapes --------------------------------------------------------------------------------------
def test_url_is_scraped_twice_and_rates_come_from_the_measured_interval():
    with Exposition([LOADED.read_bytes(), IDLE.read_bytes()]) as server:
        done = run_cli(f"http://127.0.0.1:{server.port}", "--interval", "0.4", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert server.paths == ["/metrics", "/metrics"]  # a bare host:port gets /metrics, scraped twice
    source = report["source"]
    assert source["url"] == f"http://127.0.0.1:{server.port}/metrics" and source["scrapes"] == 2
    dt = source["dt_s"]
    assert 0.3 < dt < 5
    gen = "vllm:generation_tokens_total"
    expected = (series(IDLE, gen) - series(LOADED, gen)) / dt
    assert expected > 0
    assert report["engine"] == "vllm" and report["models"] == ["tiny-llama"]
    assert report["stats"]["generation_tokens_per_s"] == pytest.approx(expected, rel=1e-9)
    assert report["stats"]["prompt_tokens_per_s"] == 0.0  # the counter did not move: 0, not null
    assert report["stats"]["requests_running"] == series(IDLE, "vllm:num_requests_running")
    assert report["stats"]["e2e_p95_s"] is not None  # 11 requests finished between the scrapes
    assert report["stats"]["ttft_p50_s"] is None  # ...but none got its first token in between
    assert report["null_reasons"]["ttft_p50_s"] == "nothing observed between the scrapes"


def test_full_metrics_path_is_kept_and_a_table_is_printed(capsys):
    with Exposition([LOADED.read_bytes(), IDLE.read_bytes()]) as server:
        code, out, err = run_main(
            capsys, f"http://127.0.0.1:{server.port}/engine/metrics", "--interval", "0.2"
        )
    assert code == 0, err
    assert server.paths == ["/engine/metrics", "/engine/metrics"]
    rows = dict(line.split(None, 1) for line in out.splitlines() if line.strip())
    assert rows["engine"] == "vllm"
    assert rows["generation_tokens_per_s"].endswith("tokens/s")
    assert rows["kv_cache_usage"] == f"{series(IDLE, 'vllm:kv_cache_usage_perc') * 100:.1f} %"


def test_connection_refused(capsys, free_port):
    code, out, err = run_main(capsys, f"http://127.0.0.1:{free_port}", "--timeout", "3")
    assert_one_line_error(code, out, err, f"127.0.0.1:{free_port}", "connection refused")


def test_http_error_status(capsys):
    with Exposition([b"oops"], status=503) as server:
        code, out, err = run_main(capsys, f"http://127.0.0.1:{server.port}", "--interval", "0.1")
    assert_one_line_error(code, out, err, "HTTP 503")


def test_total_deadline(capsys):
    with Exposition([LOADED.read_bytes()], delay_s=1.5) as server:
        started = time.monotonic()
        code, out, err = run_main(capsys, f"http://127.0.0.1:{server.port}", "--timeout", "0.3")
        elapsed = time.monotonic() - started
    assert_one_line_error(code, out, err, "within 0.3s")
    assert elapsed < 1.4


def test_byte_cap(capsys, monkeypatch):
    monkeypatch.setattr("agents.probe_cli.MAX_BYTES", 4096)
    with Exposition([LOADED.read_bytes()]) as server:
        code, out, err = run_main(capsys, f"http://127.0.0.1:{server.port}", "--interval", "0.1")
    assert_one_line_error(code, out, err, "larger than 4096 bytes")


def test_undetectable_dialect_over_http(capsys):
    with Exposition([b"# TYPE up gauge\nup 1\n"]) as server:
        code, out, err = run_main(capsys, f"http://127.0.0.1:{server.port}", "--interval", "0.1")
    assert_one_line_error(code, out, err, "no vLLM, SGLang or TGI metric names found; pass --engine")


# --- files ---------------------------------------------------------------------------------------------
def test_two_files_with_dt(capsys):
    code, out, err = run_main(capsys, "--file", str(LOADED), "--file", str(IDLE), "--dt", "10", "--json")
    assert code == 0, err
    report = json.loads(out)
    gen = "vllm:generation_tokens_total"
    assert report["stats"]["generation_tokens_per_s"] == pytest.approx(
        (series(IDLE, gen) - series(LOADED, gen)) / 10
    )
    assert report["source"] == {"files": [str(LOADED), str(IDLE)], "scrapes": 2, "dt_s": 10.0}
    assert report["problems"] == []
    assert set(report) == {"engine", "simulated", "models", "stats", "problems", "null_reasons", "source"}


def test_one_file_gives_gauges_and_says_why_the_rest_is_null(capsys):
    code, out, err = run_main(capsys, "--file", str(TGI), "--json")
    assert code == 0, err
    report = json.loads(out)
    stats, why = report["stats"], report["null_reasons"]
    assert report["engine"] == "tgi" and report["models"] == []
    assert stats["requests_waiting"] == series(TGI, "tgi_queue_size")
    assert stats["kv_cache_usage"] is None and why["kv_cache_usage"] == NOT_EXPOSED
    assert stats["ttft_p95_s"] is None and why["ttft_p95_s"] == NOT_EXPOSED
    assert stats["generation_tokens_per_s"] is None and why["generation_tokens_per_s"] == NEEDS_TWO
    assert set(why) == {k for k, v in stats.items() if v is None}


def test_table_for_one_file_marks_both_null_reasons(capsys):
    code, out, err = run_main(capsys, "--file", str(TGI))
    assert code == 0, err
    rows = dict(line.split(None, 1) for line in out.splitlines() if line.strip() and "problems" not in line)
    assert rows["kv_cache_usage"] == "— (not exposed by this engine)"
    assert rows["e2e_p95_s"] == "— (needs two scrapes)"
    assert rows["requests_running"] == f"{series(TGI, 'tgi_batch_current_size'):g} requests"


def test_forced_engine_is_used_and_a_mismatch_is_reported(capsys):
    code, out, err = run_main(capsys, "--file", str(SGLANG), "--engine", "vllm", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["engine"] == "vllm"
    assert all(v is None for v in report["stats"].values())
    assert any("no vllm metric names" in p for p in report["problems"])


def test_subprocess_file_run_prints_a_table():
    done = run_cli("--file", str(SGLANG))
    assert done.returncode == 0, done.stderr
    assert "sglang" in done.stdout and "Qwen/Qwen2.5-7B-Instruct" in done.stdout


# --- an agent-side verb ---------------------------------------------------------------------------------
def test_probe_is_loaded_only_when_invoked():
    # the console's parser knows the verb without importing it; running it imports it
    code = (
        "import sys; from console import cli; cli.build_parser(); before = 'agents.probe_cli' in sys.modules; "
        f"cli.main(['probe', '--file', {str(TGI)!r}]); print(before, 'agents.probe_cli' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "False True"


def test_a_global_config_option_is_not_handed_to_probe(capsys):
    # `llmconsole --config X probe ...` runs as before: the probe reads no config
    code = main(["--config", "/nonexistent/config.toml", "probe", "--file", str(TGI), "--json"])
    out, err = capsys.readouterr()
    assert (code, err) == (0, "") and json.loads(out)["engine"] == "tgi"


# --- bad input -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--file", "/nonexistent/metrics.prom"], "no such file"),
        (["--file", str(DATA)], "directory"),
        (["--file", str(LOADED), "--file", str(IDLE)], "--dt"),
        (["--file", str(LOADED), "--file", str(IDLE), "--dt", "0"], "positive"),
        (["--file", str(LOADED), "--file", str(IDLE), "--dt", "-3"], "positive"),
        (["--file", str(LOADED), "--file", str(IDLE), "--dt", "nan"], "positive"),
        (["--file", str(LOADED), "--dt", "5"], "two --file"),
        (["--file", str(LOADED), "--file", str(IDLE), "--file", str(TGI), "--dt", "1"], "not 3"),
        (["http://127.0.0.1:9", "--file", str(LOADED)], "not both"),
        ([], "give a URL or --file"),
        (["ftp://127.0.0.1/metrics"], "http://"),
        (["http://"], "no host"),
        (["http://127.0.0.1:99999"], "bad URL"),
        (["127.0.0.1:8000"], "http://"),
        (["http://127.0.0.1:9", "--interval", "0"], "--interval"),
        (["http://127.0.0.1:9", "--timeout", "-1"], "--timeout"),
        (["http://127.0.0.1:9", "--dt", "3"], "--dt"),
        (["--engine", "llamacpp", "--file", str(LOADED)], "invalid choice"),
        (["--dt", "soon", "--file", str(LOADED)], "invalid float"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, argv, fragment):
    code, out, err = run_main(capsys, *argv)
    assert_one_line_error(code, out, err, fragment)


def test_empty_and_foreign_files(capsys, tmp_path):
    empty = tmp_path / "empty.prom"
    empty.write_bytes(b"")
    assert_one_line_error(*run_main(capsys, "--file", str(empty)), "empty")
    foreign = tmp_path / "node.prom"
    foreign.write_text("# TYPE node_load1 gauge\nnode_load1 0.5\n")
    assert_one_line_error(*run_main(capsys, "--file", str(foreign)), "pass --engine")
    binary = tmp_path / "junk.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    assert_one_line_error(*run_main(capsys, "--file", str(binary)))


def test_subprocess_error_has_no_traceback(free_port):
    done = run_cli(f"http://127.0.0.1:{free_port}/metrics", "--timeout", "3")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith(PREFIX) and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


# --- the pure core -------------------------------------------------------------------------------------
def test_probe_texts_one_text_has_gauges_only():
    result = probe_texts([LOADED.read_text()], None)
    assert result.engine == "vllm" and result.scrapes == 1 and result.dt_s is None
    assert result.stats["requests_running"] == series(LOADED, "vllm:num_requests_running")
    rates = [
        k for k in result.stats if k.endswith("_per_s") or k.endswith("_s") or k == "prefix_cache_hit_rate"
    ]
    assert rates and all(result.stats[k] is None and result.null_reasons[k] == NEEDS_TWO for k in rates)


def test_probe_texts_accepts_bytes_and_computes_percentiles_from_the_window():
    result = probe_texts([LOADED.read_bytes(), IDLE.read_bytes()], 2.0)
    e2e = result.stats["e2e_p95_s"]
    assert e2e is not None and math.isfinite(e2e) and e2e > 0


def test_probe_texts_reports_swapped_scrapes():
    result = probe_texts([IDLE.read_text(), LOADED.read_text()], 1.0)
    assert any("went backwards" in p for p in result.problems)


def test_probe_texts_reports_a_dialect_change_between_scrapes():
    result = probe_texts([LOADED.read_text(), TGI.read_text()], 1.0)
    assert result.engine == "vllm"
    assert any("scrape 2 looks like tgi" in p for p in result.problems)


def test_probe_texts_missing_metric_of_a_known_engine_is_not_called_unsupported():
    text = "\n".join(line for line in LOADED.read_text().splitlines() if "kv_cache_usage_perc" not in line)
    result = probe_texts([text], None)
    assert result.stats["kv_cache_usage"] is None and result.null_reasons["kv_cache_usage"] == NOT_IN_TEXT


@pytest.mark.parametrize(
    ("texts", "dt", "engine", "fragment"),
    [
        ([], None, "auto", "one or two"),
        (["a 1\n"] * 3, 1.0, "auto", "one or two"),
        (["vllm:x 1\n", "vllm:x 2\n"], None, "auto", "seconds between"),
        (["vllm:x 1\n", "vllm:x 2\n"], math.inf, "auto", "positive"),
        (["up 1\n"], None, "auto", "pass --engine"),
        ([""], None, "vllm", "empty"),
        (["vllm:x 1\n"], None, "nope", "valid kinds"),
    ],
)
def test_probe_texts_errors(texts, dt, engine, fragment):
    with pytest.raises(ProbeError) as info:
        probe_texts(texts, dt, engine)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_simulated_engine_is_labelled(capsys, tmp_path):
    text = LOADED.read_text() + '# TYPE llmconsole_simulated gauge\nllmconsole_simulated{dialect="vllm"} 1\n'
    path = tmp_path / "sim.prom"
    path.write_text(text)
    code, out, _ = run_main(capsys, "--file", str(path), "--json")
    assert code == 0 and json.loads(out)["simulated"] is True
    code, out, _ = run_main(capsys, "--file", str(path))
    assert code == 0 and "SIMULATED" in out.splitlines()[0]
    code, out, _ = run_main(capsys, "--file", str(LOADED), "--json")
    assert json.loads(out)["simulated"] is False
