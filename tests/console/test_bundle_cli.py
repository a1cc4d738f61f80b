"""``llmconsole bundle`` end to end: a real agent reached over a real SSH tunnel (when an OpenSSH server can
run here; directly otherwise), plus a host that is down. The CLI writes a partial bundle whose manifest
says what is missing, masks host names and addresses with the mapping kept outside the bundle, and
``bundle verify`` accepts it and names the first bad file of a tampered copy. Bad input is one line, exit 2.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from agents.bundle_files import read_bundle, verify_bundle, write_archive
from tests.support.agentproc import ROOT, free_port, kill_everything, sim
from tests.support.secure_agent import SecureAgent, toml_value, write_config, write_tokens
from tests.support.sshd import Sshd, skip_reason

AGENT_HOST = "gpu-a.internal"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("bundle-cli")
    tokens = write_tokens(tmp / "tokens", ops="operator")
    port = free_port()
    engines = [
        {
            "id": "e1",
            "kind": "vllm",
            "model": "sim-a",
            "port": free_port(),
            "command": sim("vllm"),
            "args": ["--load", "2"],
        }
    ]
    config = write_config(tmp, port, engines, agent={"tokens_file": str(tmp / "tokens"), "host": AGENT_HOST})
    agent = SecureAgent(config, port, token=tokens["ops"])
    sshd = Sshd(tmp) if skip_reason() is None else None
    agent.start()
    try:
        if sshd is not None:
            sshd.start()
        agent.wait("engine ready", lambda s: s["engines"][0]["state"] == "ready", timeout=30)
        token_file = tmp / "ops.token"
        token_file.write_text(tokens["ops"] + "\n")
        token_file.chmod(0o600)
        down = free_port()
        a = {"name": "gpu-a", "url": f"http://127.0.0.1:{port}", "token_file": str(token_file)}
        if sshd is not None:
            a |= {"ssh": sshd.target, "ssh_options": list(sshd.client_options)}
        b = {"name": "gpu-b", "url": f"http://127.0.0.1:{down}", "token_file": str(token_file)}
        lines = []
        for h in (a, b):
            lines += ["[[console.hosts]]"] + [f"{k} = {toml_value(v)}" for k, v in h.items()] + [""]
        console = tmp / "console.toml"
        console.write_text("\n".join(lines))
        yield {
            "tmp": tmp,
            "config": console,
            "token": tokens["ops"],
            "ssh": sshd is not None,
            "user": sshd and sshd.user,
        }
    finally:
        if sshd is not None:
            sshd.kill()
        kill_everything(agent, tmp / "state")


def _cli(*args: str, cwd: Path, timeout: float = 90) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "console.cli", "bundle", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_partial_masked_bundle_over_the_consoles_routes(fleet: dict) -> None:
    tmp, out = fleet["tmp"], fleet["tmp"] / "incident.tar.gz"
    got = _cli(
        "--all",
        "--config",
        str(fleet["config"]),
        "--since",
        "2m",
        "--reason",
        "INC-7 gpu-a stalls",
        "-o",
        str(out),
        "--mask-hosts",
        "--timeout",
        "60",
        cwd=tmp,
    )
    assert got.returncode == 1, got.stderr  # partial: gpu-b is down
    assert "bundle written:" in got.stdout and "missing:" in got.stdout and "Traceback" not in got.stderr
    assert "gpu-b" in got.stdout  # the operator's own terminal names the host; the bundle does not
    assert out.stat().st_mode & 0o777 == 0o600
    verdict = verify_bundle(out)
    assert verdict.ok, verdict.problem
    m = verdict.manifest
    assert m["reason"] == "INC-7 host-1 stalls"  # masked like every other text
    hosts = {h["status"]: h for h in m["hosts"]}
    assert set(hosts) == {"collected", "missing"}
    done, down = hosts["collected"], hosts["missing"]
    assert done["name"] == "host-1" and done["dir"] == "hosts/host-1" and done["actor"] == "ops"
    assert (
        down["name"] == "host-2" and "unreachable" in down["error"] and "connection refused" in down["error"]
    )
    assert (
        done["route"] == (f"ssh {fleet['user']}@127.0.0.1" if fleet["ssh"] else "direct")
        and down["route"] == "direct"
    )
    assert any(x["host"] == "host-2" and x["what"].startswith("everything") for x in m["missing"])
    assert m["redaction"]["host_names_masked"] is True
    files = verdict.members
    assert f"{done['dir']}/snapshots.jsonl" in files and f"{done['dir']}/engines/e1/engine.json" in files
    snaps = [json.loads(x) for x in files[f"{done['dir']}/snapshots.jsonl"].decode().splitlines()]
    assert snaps and all(
        s["host"] == "host-3" for s in snaps
    )  # the name the agent reports has its own placeholder
    mapping = json.loads(Path(str(out) + ".hostmap.json").read_text())["mapping"]
    assert {"gpu-a": "host-1", "gpu-b": "host-2", AGENT_HOST: "host-3"}.items() <= mapping.items()
    assert Path(str(out) + ".hostmap.json").stat().st_mode & 0o777 == 0o600
    assert not any("hostmap" in p for p in files)
    names = ["gpu-a", "gpu-b", AGENT_HOST, "gpu-a.internal", os.uname().nodename]
    pattern = re.compile(
        rb"(?<![\w-])(?:" + b"|".join(re.escape(n.encode()) for n in names) + rb")(?![\w-])", re.I
    )
    leaks = [(p, pattern.search(d).group()) for p, d in files.items() if pattern.search(d)]
    assert leaks == []
    assert not any(fleet["token"].encode() in d for d in files.values())


def test_verify_accepts_a_good_bundle_and_names_the_first_bad_file(fleet: dict) -> None:
    tmp = fleet["tmp"]
    out = tmp / "good.tar.gz"
    got = _cli(
        "gpu-a", "--config", str(fleet["config"]), "--since", "60", "--engine", "e1", "-o", str(out), cwd=tmp
    )
    assert got.returncode == 0, got.stdout + got.stderr
    assert "hosts collected: gpu-a" in got.stdout
    ok = _cli("verify", str(out), cwd=tmp)
    assert ok.returncode == 0 and ok.stdout.startswith(f"bundle {out}: ok: ") and "hosts: gpu-a" in ok.stdout
    as_json = json.loads(_cli("verify", str(out), "--json", cwd=tmp).stdout)
    assert as_json["ok"] is True and as_json["schema"] == "llmconsole.bundle/1" and as_json["files"] > 5

    members = read_bundle(out)
    victim = "hosts/gpu-a/engines/e1/log-tail.txt"
    members[victim] = members[victim] + b"an inserted line\n"
    bad = tmp / "tampered.tar.gz"
    bad.write_bytes(write_archive(list(members.items()), mtime=0))
    got = _cli("verify", str(bad), cwd=tmp)
    assert got.returncode == 1 and victim in got.stderr and got.stderr.count("\n") == 1

    cut = tmp / "cut.tar.gz"
    cut.write_bytes(out.read_bytes()[:-200])
    got = _cli("verify", str(cut), cwd=tmp)
    assert got.returncode == 1 and "truncated" in got.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["gpu-a", "--since", "5x"], "--since '5x'"),
        (["gpu-z"], "unknown host 'gpu-z'"),
        ([], "name the hosts to bundle, or use --all"),
        (["gpu-a", "--all"], "not both"),
        (["gpu-a", "-o", "EXISTING"], "already exists"),
        (["verify"], "usage: llmconsole bundle verify FILE"),
        (["verify", "no-such.tar.gz"], "no such file"),
        (["gpu-a", "--json"], "--json applies to `bundle verify FILE` only"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(fleet: dict, args: list[str], message: str) -> None:
    tmp = fleet["tmp"]
    existing = tmp / "existing.tar.gz"
    existing.write_bytes(b"keep me")
    args = [str(existing) if a == "EXISTING" else a for a in args]
    if args[:1] != ["verify"]:
        args += ["--config", str(fleet["config"])]
    got = _cli(*args, cwd=tmp)
    assert got.returncode == 2, got.stdout + got.stderr
    assert message in got.stderr and got.stderr.count("\n") == 1 and "Traceback" not in got.stderr
    assert existing.read_bytes() == b"keep me"


async def test_the_consoles_size_and_time_caps_have_clear_messages(fleet: dict) -> None:
    from console.bundle_fetch import fetch_bundles
    from console.settings import load_console_config

    # Direct to the agent: the caps do not depend on the route, and an ssh started with a preexec_fn from this
    # many-threaded test process could deadlock between fork and exec (the CLI tests above cover SSH).
    hosts = [replace(h, ssh=None) for h in load_console_config(fleet["config"]).hosts if h.name == "gpu-a"]
    small = await fetch_bundles(hosts, {"since": "60"}, max_bytes=1024, timeout_s=60)
    assert small[0].data is None and small[0].kind == "too_big"
    assert small[0].error.startswith("the bundle is larger than the console's cap of 1024 bytes (--max-mib)")
    slow = await fetch_bundles(hosts, {"since": "60"}, timeout_s=0.01)
    assert slow[0].data is None and slow[0].kind == "timeout"
    assert slow[0].error == "no bundle within 0.01 s (the console's time cap, --timeout)"


def test_a_replay_source_reads_hosts_and_snapshots_in_order_and_refuses_a_tampered_bundle(
    fleet: dict,
) -> None:
    from agents.bundle_files import BundleError
    from console.bundle_read import load_bundle

    tmp = fleet["tmp"]
    out = tmp / "replay.tar.gz"
    got = _cli("--all", "--config", str(fleet["config"]), "--since", "60", "-o", str(out), cwd=tmp)
    assert got.returncode == 1, got.stderr  # gpu-b is down
    loaded = load_bundle(out)
    hosts = {h.name: h for h in loaded.hosts}
    assert (
        hosts["gpu-b"].status == "missing"
        and "unreachable" in hosts["gpu-b"].error
        and not hosts["gpu-b"].snapshots
    )
    a = hosts["gpu-a"]
    assert (
        a.status == "collected" and len(a.snapshots) >= 2 and all(s.host == AGENT_HOST for s in a.snapshots)
    )
    assert [s.seq for s in a.snapshots] == sorted(s.seq for s in a.snapshots)
    assert [s.taken_at for s in a.snapshots] == sorted(s.taken_at for s in a.snapshots)
    assert "e1" in a.logs and a.logs["e1"]
    members = read_bundle(out)
    members["hosts/gpu-a/snapshots.jsonl"] = members["hosts/gpu-a/snapshots.jsonl"][:-10]
    bad = tmp / "replay-tampered.tar.gz"
    bad.write_bytes(write_archive(list(members.items()), mtime=0))
    with pytest.raises(BundleError, match="hosts/gpu-a/snapshots.jsonl: size"):
        load_bundle(bad)
