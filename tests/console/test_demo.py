"""`llmconsole demo` with real processes: the fleet comes up, the scripted incidents show as alerts, and
whatever stops the demo (SIGTERM, SIGHUP, a crash inside the console) leaves no process and no work dir.

The generated configs are checked against the real config loaders, and the fleet plan for every host count.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import httpx
import pytest

from agents.config import agent_config_from_dict
from console.demo_fleet import FAST, NORMAL, WATCHED, _is_zombie, agent_toml, plan_fleet, watched_argv
from console.settings import console_config_from_dict

ROOT = Path(__file__).resolve().parents[2]
INCIDENTS = {"llama-70b": "ENGINE_HUNG", "deepseek-v2": "CRASH_LOOP", "llama-kv": "KV_PRESSURE"}


# --- helpers ------------------------------------------------------------------------------------------


def demo(*args: str, **kw) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "console.cli", "demo", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        **kw,
    )


def read_config(proc: subprocess.Popen[str], timeout: float = 120.0) -> str:
    """stdout up to the '# end of console config' line (the demo prints it once the fleet is ready; it gives
    up itself after 90 s, so its own error is what a failure shows)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()  # read the pipe itself: a buffered readline would hide lines from select
    sel = selectors.DefaultSelector()
    sel.register(fd, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    data = b""
    while time.monotonic() < deadline:
        if sel.select(timeout=0.5):
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            data += chunk
            if b"\n# end of console config\n" in data:
                return data.decode()
    lines = [data.decode(errors="replace")]
    if proc.poll() is None:
        proc.kill()
    _out, err = proc.communicate(timeout=10)
    raise AssertionError(
        f"demo printed no config (rc={proc.returncode}): {''.join(lines)[-2000:]}\nstderr: {err[-2000:]}"
    )


def stat_state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def demo_pids(workdir: Path) -> set[int]:
    """Every process (zombies included) whose environment or command line names the work dir."""
    needle = str(workdir).encode()
    found = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        pid = int(entry.name)
        try:
            blob = Path(f"/proc/{pid}/environ").read_bytes() + Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if needle in blob:
            found.add(pid)
    return found


def alive(pids: set[int]) -> set[int]:
    """Those of ``pids`` that still exist, as a process or as a zombie."""
    return {p for p in pids if stat_state(p) is not None}


def cleanup(proc: subprocess.Popen[str], workdir: Path) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)
    for pid in demo_pids(workdir):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def wait_gone(pids: set[int], timeout: float) -> set[int]:
    deadline = time.monotonic() + timeout
    while alive(pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive(pids)


class Fleet:
    """The demo's fleet as the test sees it: console config hosts, polled with their operator tokens."""

    def __init__(self, text: str) -> None:
        self.config = tomllib.loads(text)
        self.hosts = [
            (h["name"], h["url"], Path(h["token_file"]).read_text().strip())
            for h in self.config["console"]["hosts"]
        ]

    def snaps(self) -> dict[str, dict]:
        out = {}
        for name, url, token in self.hosts:
            r = httpx.get(url + "/v1/snapshot", headers={"Authorization": f"Bearer {token}"}, timeout=3)
            assert r.status_code == 200, r.text
            out[name] = r.json()
        return out

    def wait(self, what: str, cond, timeout: float) -> dict[str, dict]:
        deadline = time.monotonic() + timeout
        snaps: dict[str, dict] = {}
        while time.monotonic() < deadline:
            try:
                snaps = self.snaps()
            except httpx.HTTPError:
                snaps = {}
            if snaps and cond(snaps):
                return snaps
            time.sleep(0.5)
        summary = {
            h: [(e["id"], e["state"], [a["code"] for a in e["alerts"]]) for e in s["engines"]]
            for h, s in snaps.items()
        }
        raise AssertionError(f"timed out waiting for {what}: {summary}")


def engines(snaps: dict[str, dict]) -> list[dict]:
    return [e for s in snaps.values() for e in s["engines"]]


# --- the plan and the generated configs (pure) ----------------------------------------------------------


@pytest.mark.parametrize("hosts", [1, 2, 3, 5])
def test_plan_puts_every_incident_once_and_all_dialects_on_every_host(hosts: int) -> None:
    plans = plan_fleet(hosts, NORMAL)
    assert [p.name for p in plans] == [f"demo-gpu{i + 1:02d}" for i in range(hosts)]
    ids = [e.id for p in plans for e in p.engines]
    for incident in INCIDENTS:
        assert ids.count(incident) == 1
    for p in plans:
        assert {e.kind for e in p.engines} == {"vllm", "sglang", "tgi"}
        assert len({e.id for e in p.engines}) == len(p.engines)
    assert any("hang@60" in e.args for p in plans for e in p.engines)
    assert any("hang@8" in e.args for p in plan_fleet(hosts, FAST) for e in p.engines)


@pytest.mark.parametrize("hosts", [1, 3])
def test_the_first_host_has_one_watched_engine_the_demo_starts_itself(hosts: int) -> None:
    plans = plan_fleet(hosts, FAST)
    watched = [(p.name, e) for p in plans for e in p.engines if not e.managed]
    assert watched == [("demo-gpu01", WATCHED)]
    argv = watched_argv(WATCHED, 12345)
    assert argv[1:5] == ["-m", "agents.sim", "--dialect", "vllm"] and argv[5:7] == ["--port", "12345"]


def test_generated_agent_config_loads_with_the_real_loader(tmp_path: Path) -> None:
    plan = plan_fleet(1, NORMAL)[0]
    ports = {e.id: (20000 + i, 21000 + i if e.kind == "tgi" else None) for i, e in enumerate(plan.engines)}
    text = agent_toml(plan, tmp_path, 19999, ports, NORMAL)
    assert "DEMO VALUES" in text
    cfg = agent_config_from_dict(tomllib.loads(text))
    assert cfg.gpu_source == "simulated" and cfg.stop_engines_on_exit is True
    assert cfg.listen == "127.0.0.1:19999" and cfg.tokens_file == tmp_path / "tokens"
    assert (
        cfg.thresholds.hung_after_s == NORMAL.hung_after_s
        and cfg.canary_interval_s == NORMAL.canary_interval_s
    )
    assert [e.id for e in cfg.engines] == [e.id for e in plan.engines]
    for e in cfg.engines:
        if not e.managed:  # the watched engine: the demo starts it, the agent only watches it
            assert e.command is None and e.args == () and e.restart_command is None
            continue
        assert (
            e.command is not None
            and e.command[1:4] == ("-m", "agents.sim", "--dialect")
            and e.command[4] == e.kind
        )
    assert [e.id for e in cfg.engines if not e.managed] == [WATCHED.id]
    assert "# WATCHED (managed = false): started outside its agent" in text
    tgi = next(e for e in cfg.engines if e.kind == "tgi")
    assert tgi.metrics_port is not None


# --- bad input ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--hosts", "0"], "llmconsole demo: error: argument --hosts: must be between 1 and 16"),
        (["--hosts", "many"], "llmconsole demo: error: argument --hosts: expected a whole number"),
        (
            ["--bogus"],
            "llmconsole demo: error: unrecognized arguments: --bogus",
        ),  # argparse reports it at the top
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(args: list[str], fragment: str) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "console.cli", "demo", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(fragment), r.stderr
    assert "Traceback" not in r.stderr


def test_non_empty_workdir_is_refused_and_kept(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    r = subprocess.run(
        [sys.executable, "-m", "console.cli", "demo", "--no-ui", "--workdir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "not empty" in r.stderr, r.stderr
    assert (tmp_path / "precious.txt").read_text() == "keep me"


# --- the fleet, headless ------------------------------------------------------------------------------


def test_headless_fleet_shows_incidents_and_sigterm_leaves_nothing(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    started = time.monotonic()
    proc = demo("--no-ui", "--fast", "--hosts", "2", "--workdir", str(workdir))
    try:
        text = read_config(proc)
        ready_s = time.monotonic() - started
        # the printed config is a valid console config, with 0600 token files under the work dir
        console_cfg = console_config_from_dict(tomllib.loads(text))
        assert [h.name for h in console_cfg.hosts] == ["demo-gpu01", "demo-gpu02"]
        for h in console_cfg.hosts:
            assert h.url.startswith("http://127.0.0.1:") and h.token_file is not None
            assert h.token_file.is_relative_to(workdir) and h.token_file.stat().st_mode & 0o777 == 0o600
        assert "# agent demo-gpu01 http://127.0.0.1:" in text
        assert f"#   watched on demo-gpu01/{WATCHED.id}: started outside its agent" in text
        fleet = Fleet(text)

        # reads need the token (the agents have a tokens file), the generated one works
        name, url, _token = fleet.hosts[0]
        assert httpx.get(url + "/v1/snapshot", timeout=3).status_code == 401
        snaps = fleet.snaps()
        assert all(s["gpu_source"] == "simulated" for s in snaps.values())
        assert {e["kind"] for e in engines(snaps)} == {"vllm", "sglang", "tgi"}
        # every engine came up before the config was printed; only the crash-looping one may be restarting since
        assert not [
            e["id"]
            for e in engines(snaps)
            if e["state"] in ("stopped", "starting") and e["id"] != "deepseek-v2"
        ]

        def incidents(snaps: dict[str, dict]) -> bool:
            by_id = {e["id"]: {a["code"] for a in e["alerts"]} for e in engines(snaps)}
            return all(code in by_id[eid] for eid, code in INCIDENTS.items())

        snaps = fleet.wait("the scripted incidents", incidents, timeout=90)
        incidents_s = time.monotonic() - started
        hung = next(e for e in engines(snaps) if e["id"] == "llama-70b")
        assert hung["state"] == "hung"
        # the watched engine beside the managed ones, labelled as such, with its refused actions explained
        (watched,) = [e for e in engines(snaps) if e["managed"] is False]
        assert (
            watched["id"] == WATCHED.id
            and watched["state"] == "ready"
            and watched["watch"]["kind_seen"] == "vllm"
        )
        assert all("set " in why and "_command" in why for why in watched["actions"].values())
        assert all(
            e["actions"] == {"start": None, "stop": None, "restart": None}
            for e in engines(snaps)
            if e["managed"] and e["id"] != WATCHED.id
        )
        assert watched["pid"] is not None and any(
            p["engine_id"] == WATCHED.id for s in snaps.values() for g in s["gpus"] for p in g["processes"]
        )
        crashy = next(e for e in engines(snaps) if e["id"] == "deepseek-v2")
        assert crashy["restarts"] >= 3

        # the console config's token is an operator token: a restart is accepted
        healthy_host, healthy_url, token = next(
            h for h in fleet.hosts if any(e["id"] == "qwen-7b" for e in snaps[h[0]]["engines"])
        )
        r = httpx.post(
            healthy_url + "/v1/engines/qwen-7b/restart",
            headers={"Authorization": f"Bearer {token}"},
            timeout=5,
        )
        assert r.status_code == 202, r.text

        ours = demo_pids(workdir)
        serving = {  # the crash-looping engine may have died since the snapshot: only live pids count
            e["pid"] for e in engines(snaps) if e["pid"] and e["state"] in ("ready", "degraded", "hung")
        }
        serving = {pid for pid in serving if not _is_zombie(pid)}
        assert serving <= ours, "every serving engine is found by the /proc scan"
        assert len(ours) >= 2 + len(serving) + 1, "agents, engines and at least one worker"
        print(
            f"demo: config printed after {ready_s:.1f}s, incidents after {incidents_s:.1f}s, {len(ours)} processes"
        )

        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        stop_s = time.monotonic() - t0
        left = wait_gone(ours, timeout=3)
        assert not left, f"left behind: {left}"
        assert not demo_pids(workdir)
        assert not workdir.exists()
        assert stop_s < 10, f"teardown took {stop_s:.1f}s"
    finally:
        cleanup(proc, workdir)


def test_sighup_with_keep_stops_everything_and_keeps_the_work_dir(tmp_path: Path) -> None:
    workdir = tmp_path / "kept"
    proc = demo("--no-ui", "--fast", "--hosts", "1", "--keep", "--workdir", str(workdir))
    try:
        Fleet(read_config(proc)).wait(
            "one engine ready", lambda s: any(e["state"] == "ready" for e in engines(s)), 30
        )
        ours = demo_pids(workdir)
        assert ours
        proc.send_signal(signal.SIGHUP)
        proc.wait(20)
        assert not wait_gone(ours, timeout=3)
        assert not demo_pids(workdir)
        assert (workdir / "console.toml").is_file() and (workdir / "demo-gpu01" / "agent.log").is_file()
        assert f"work directory kept: {workdir}" in proc.stderr.read()  # type: ignore[union-attr]
    finally:
        cleanup(proc, workdir)


CRASHING_CONSOLE = """
import json, sys, httpx
import console.launch

def boom(config, *, source=None, title=None):
    seen = []
    for h in config.hosts:
        token = h.token_file.read_text().strip()
        snap = httpx.get(h.url + "/v1/snapshot", headers={"Authorization": "Bearer " + token}, timeout=3).json()
        seen.append([h.name, {e["id"]: e["state"] for e in snap["engines"]}])
    print(json.dumps({"title": title, "hosts": seen}), flush=True)
    raise RuntimeError("console exploded")

console.launch.run_console = boom
from console.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_crash_inside_the_console_stops_the_fleet(tmp_path: Path) -> None:
    workdir = tmp_path / "crash"
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASHING_CONSOLE, "demo", "--fast", "--hosts", "1", "--workdir", str(workdir)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=90)
        assert proc.returncode != 0
        assert "console exploded" in err
        seen = json.loads(out.strip().splitlines()[-1])
        assert seen["title"] == "llmconsole demo (SIMULATED fleet)"
        # the console is opened only once every engine has left "starting"
        assert [h for h, _ in seen["hosts"]] == ["demo-gpu01"]
        # (the crash-looping engine may already be restarting by then)
        waiting = [
            e for _, states in seen["hosts"] for e, s in states.items() if s in ("stopped", "starting")
        ]
        assert set(waiting) <= {"deepseek-v2"}, seen
        assert not alive(demo_pids(workdir))
        assert not workdir.exists()
    finally:
        cleanup(proc, workdir)


def test_a_stopped_fleet_leaves_its_process_no_subreaper(tmp_path: Path) -> None:
    """The fleet makes its process a child subreaper while it runs (orphaned engines come back to be
    reaped) and undoes that on stop: what the process runs next (a test session) keeps its orphans away."""
    script = f"""
import sys
from pathlib import Path
from console.demo_fleet import FAST, DemoFleet, plan_fleet
from console.demo_procs import is_subreaper
fleet = DemoFleet(Path({str(tmp_path / "w")!r}), plan_fleet(1, FAST), FAST)
fleet.prepare()
before = is_subreaper()
fleet.start()
during = is_subreaper()
fleet.stop()
print(before, during, is_subreaper())
"""
    got = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert got.returncode == 0, got.stderr[-2000:]
    assert got.stdout.split() == ["False", "True", "False"], got.stdout
