"""Exposure audit: listener classification, dangerous switches, advisory ranges, and a real agent that
flags an engine bound to 0.0.0.0 with --trust-remote-code, VLLM_SERVER_DEV_MODE and an old version."""

from __future__ import annotations

import json
import os
import sys
from importlib import resources
from pathlib import Path

import pytest

from agents.alerts import EngineObservation, EngineRules, ScrapeOutcome
from agents.config import Thresholds
from agents.engines import get_adapter
from agents.exposure import (
    LAUNCH_MARKER,
    ExposureAudit,
    advisories_from_dict,
    classify_port,
    dangerous_switches,
    describe_listeners,
    load_advisories,
    parse_version,
    version_in_log,
)
from tests.support.agentproc import free_port, kill_everything
from tests.support.secure_agent import SecureAgent, write_config


def test_version_ordering() -> None:
    order = [
        "0.5",
        "0.6.0",
        "0.6.2",
        "0.8.0.dev1",
        "0.8.0rc1",
        "0.8.0",
        "0.8.0.post1",
        "0.10.1",
        "0.10.1.1",
        "0.11.0",
        "1.0",
    ]
    keys = [parse_version(v) for v in order]
    assert all(k is not None for k in keys)
    assert keys == sorted(keys)  # type: ignore[type-var]
    assert parse_version("0.32.0+cpu") == parse_version("0.32.0")
    assert parse_version("not-a-version") is None and parse_version("") is None


def test_advisory_file_is_dated_sourced_and_parses() -> None:
    raw = json.loads(resources.files("agents").joinpath("advisories.json").read_text())
    assert raw["as_of"] == "2026-09" and "osv.dev" in raw["compiled"]
    adv = load_advisories()
    assert len(adv.advisories) == len(raw["advisories"]) >= 20
    for a in adv.advisories:
        assert a.summary and (a.id or a.ghsa)
        # public pages only: the advisory itself first (OSV by GHSA id, else the CVE record)
        refs = a.source.split(" (")[0].split("; ")
        assert all(r.startswith("https://") for r in refs), a.source
        assert (a.ghsa or a.id or "?") in refs[0]
        assert not (a.precondition or "").endswith(" only")  # describe() adds it
        for r in a.ranges:
            assert set(r) <= {"introduced", "fixed", "last_affected"}
            assert all(parse_version(v) is not None for v in r.values())


@pytest.mark.parametrize(
    ("version", "present", "absent"),
    [
        (
            "0.8.4",
            {"CVE-2025-30165", "CVE-2025-32444", "CVE-2025-47277", "CVE-2026-48746"},
            {"CVE-2024-9052", "CVE-2025-29783"},
        ),
        ("0.8.1", {"CVE-2024-9052"}, {"CVE-2024-9053", "CVE-2025-29783"}),
        ("0.7.9", {"CVE-2025-29783", "CVE-2024-9052"}, {"CVE-2025-24357"}),
        ("0.10.1", {"CVE-2025-48956", "CVE-2026-22807"}, {"CVE-2025-30165"}),
        ("0.10.1.1", {"CVE-2026-22807"}, {"CVE-2025-48956"}),
        ("0.22.0", set(), {"CVE-2026-48746", "CVE-2026-41523"}),
        ("0.32.0", set(), {"CVE-2024-11041"}),
    ],
)
def test_advisory_ranges(version: str, present: set[str], absent: set[str]) -> None:
    hits = {a.id for a in load_advisories().matching("vllm", version)}
    assert present <= hits and not (absent & hits)
    if version == "0.32.0":
        assert hits == set()


def test_sglang_entries_without_ranges_never_match() -> None:
    adv = load_advisories()
    assert adv.matching("sglang", "0.4.0") == [] and any(a.package == "sglang" for a in adv.advisories)


def test_version_comes_from_the_last_launch_in_the_log() -> None:
    lines = [
        f"{LAUNCH_MARKER} e1:abc at ...",
        "(APIServer pid=1) INFO [api_server.py:1] vLLM API server version 0.8.4",
        f"{LAUNCH_MARKER} e1:def at ...",
        "(APIServer pid=2) INFO [api_server.py:1] vLLM API server version 0.32.0",
    ]
    vllm = get_adapter("vllm")
    assert version_in_log(vllm, lines) == ("0.32.0", lines[3])
    assert version_in_log(vllm, lines[:2])[0] == "0.8.4"
    assert version_in_log(vllm, lines[:1]) == (None, None)
    assert version_in_log(vllm, ["vLLM API server version 0.8.4.garbage!"]) == (None, None)  # not a version
    assert version_in_log(get_adapter("tgi"), lines) == (None, None)  # no pattern for TGI: not checked


def test_dangerous_switches() -> None:
    argv = [
        "vllm",
        "serve",
        "m",
        "--host",
        "0.0.0.0",
        "--port",
        "8000",
        "--trust-remote-code",
        "--middleware",
        "x.y",
        "--enable-log-requests",
        "--ngrok-authtoken-file=/x",
        "--log-requests",
    ]
    env = {
        "VLLM_SERVER_DEV_MODE": "1",
        "VLLM_ALLOW_INSECURE_SERIALIZATION": "0",
        "HF_HUB_OFFLINE": "0",
        "DO_NOT_TRACK": "1",
        "LD_PRELOAD": "/x.so",
    }
    found = {s.switch: s for s in dangerous_switches(get_adapter("vllm"), argv, env)}
    # vLLM's own flags and variables, and the common ones; not TGI's --ngrok* nor SGLang's --log-requests
    assert set(found) == {
        "--host 0.0.0.0",
        "--trust-remote-code",
        "--middleware",
        "--enable-log-requests",
        "VLLM_SERVER_DEV_MODE=1",
        "HF_HUB_OFFLINE=0",
        "LD_PRELOAD=/x.so",
    }
    assert "CVE-2026-22807" in found["--trust-remote-code"].reason
    assert found["--middleware"].source == "https://docs.vllm.ai/en/stable/cli/serve/"
    assert found["--host 0.0.0.0"].source is None and "source" not in found["--host 0.0.0.0"].evidence()
    tgi_argv = ["text-generation-launcher", *argv[3:]]
    tgi = {s.switch for s in dangerous_switches(get_adapter("tgi"), tgi_argv, env)}
    assert tgi == {"--trust-remote-code", "--ngrok-authtoken-file", "HF_HUB_OFFLINE=0", "LD_PRELOAD=/x.so"}
    sglang = {s.switch for s in dangerous_switches(get_adapter("sglang"), argv, {})}
    assert sglang == {"--host 0.0.0.0", "--trust-remote-code", "--log-requests"}
    clean = ["vllm", "serve", "m", "--host", "127.0.0.1", "--port", "8000"]
    assert dangerous_switches(get_adapter("vllm"), clean, {"HF_HUB_OFFLINE": "1"}) == []


def test_listener_classification_feeds_exposed_listener() -> None:
    rows = describe_listeners(
        [
            (10, "127.0.0.1", 8000),
            (10, "0.0.0.0", 8000),
            (11, "0.0.0.0", 29500),
            (11, "::", 41234),
            (12, "0.0.0.0", 8001),
        ],
        api_port=8000,
        metrics_port=8001,
        process_name=lambda pid: f"proc{pid}",
    )
    what = {(ip, port): w for _, ip, port, w in rows}
    assert what[("127.0.0.1", 8000)] == ""  # loopback: not classified
    assert "HTTP API" in what[("0.0.0.0", 8000)] and "metrics" in what[("0.0.0.0", 8001)]
    assert (
        "TCPStore" in what[("0.0.0.0", 29500)]
        and what[("::", 41234)].startswith("unknown")
        and "proc11" in what[("::", 41234)]
    )
    assert classify_port(6379, api_port=1, metrics_port=None).startswith("Ray GCS")
    rules = EngineRules(Thresholds())
    obs = EngineObservation(
        t=0.0,
        wall="2026-01-01T00:00:00Z",
        state="ready",
        stats={},
        scrape=ScrapeOutcome(ok=True),
        listeners=rows,
    )
    alert = next(a for a in rules.evaluate(obs) if a.code == "EXPOSED_LISTENER")
    assert "4 listener(s)" in alert.summary and "0.0.0.0:29500 (torch.distributed TCPStore" in alert.summary
    assert {r["port"] for r in alert.evidence["listeners"]} == {8000, 29500, 41234, 8001}


def test_exposure_audit_alerts_keep_since_and_survive_a_broken_file() -> None:
    audit = ExposureAudit("vllm", ["vllm", "serve", "m", "--trust-remote-code"], {})
    first = audit.alerts("T1")
    assert [a.code for a in first] == ["DANGEROUS_FLAG"]
    audit.refresh(["vLLM API server version 0.9.0"])
    second = {a.code: a for a in audit.alerts("T2")}
    assert second["DANGEROUS_FLAG"].since == "T1" and second["ENGINE_ADVISORY"].since == "T2"
    adv = second["ENGINE_ADVISORY"]
    assert (
        adv.summary.startswith("vLLM 0.9.0: affected by") and adv.evidence["advisory_file_as_of"] == "2026-09"
    )
    assert "(multi-node V0 only)" in adv.summary or any(x["precondition"] for x in adv.evidence["advisories"])
    broken = ExposureAudit(
        "vllm",
        ["x"],
        {},
        advisories=advisories_from_dict(
            {"format": "llmconsole.advisories/1", "as_of": "t", "engines": {}, "advisories": []}
        ),
    )
    broken.refresh(["vLLM API server version 0.1.0"])
    assert broken.alerts("T") == ()
    with pytest.raises(ValueError, match="format"):
        advisories_from_dict({"format": "other"})


WRAPPER = """
import os, sys
print("(APIServer pid=%d) INFO [api_server.py:1839] vLLM API server version 0.8.4" % os.getpid(), flush=True)
os.execv(sys.executable, [sys.executable, "-m", "agents.sim", "--dialect", "vllm", *sys.argv[1:]])
"""


def test_real_agent_flags_an_exposed_dangerous_old_engine(tmp_path: Path) -> None:
    """An old vLLM (its log says 0.8.4; the wrapper prints that before becoming the simulated engine) bound
    to 0.0.0.0 with --trust-remote-code and VLLM_SERVER_DEV_MODE=1, next to a clean engine."""
    wrapper = tmp_path / "old_vllm.py"
    wrapper.write_text(f"#!{sys.executable}\n" + WRAPPER)  # an executable of its own, listed below
    wrapper.chmod(0o700)
    engines = [
        {
            "id": "risky",
            "kind": "vllm",
            "model": "sim-old",
            "port": free_port(),
            "host": "0.0.0.0",
            "command": [str(wrapper)],
            "args": ["--load", "1", "--trust-remote-code"],
            "env": {"VLLM_SERVER_DEV_MODE": "1"},
        },
        {
            "id": "clean",
            "kind": "vllm",
            "model": "sim-new",
            "port": free_port(),
            "command": [sys.executable, "-m", "agents.sim", "--dialect", "vllm"],
            "args": ["--load", "1"],
        },
    ]
    port = free_port()
    allowed = {"allowed_executables": [str(wrapper), os.path.realpath(sys.executable)]}
    agent = SecureAgent(write_config(tmp_path, port, engines, agent=allowed), port)
    agent.start()

    def codes(snap: dict, eid: str) -> dict[str, dict]:
        return {a["code"]: a for a in next(e for e in snap["engines"] if e["id"] == eid)["alerts"]}

    try:
        snap = agent.wait(
            "exposure alerts",
            lambda s: (
                {"EXPOSED_LISTENER", "DANGEROUS_FLAG", "ENGINE_ADVISORY"} <= set(codes(s, "risky"))
                and all(e["state"] == "ready" for e in s["engines"])
            ),
            timeout=40,
        )
    finally:
        kill_everything(agent, tmp_path / "state")
    risky = codes(snap, "risky")
    listeners = risky["EXPOSED_LISTENER"]["evidence"]["listeners"]
    assert any(
        r["ip"] == "0.0.0.0" and r["port"] == engines[0]["port"] and "HTTP API" in r["what"]
        for r in listeners
    )
    switches = {s["switch"] for s in risky["DANGEROUS_FLAG"]["evidence"]["switches"]}
    assert {"--trust-remote-code", "VLLM_SERVER_DEV_MODE=1", "--host 0.0.0.0"} <= switches
    advisory = risky["ENGINE_ADVISORY"]
    assert advisory["severity"] == "warning" and advisory["evidence"]["version"] == "0.8.4"
    assert "CVE-2025-30165" in {a["id"] for a in advisory["evidence"]["advisories"]}
    assert "vLLM API server version 0.8.4" in advisory["evidence"]["version_source"]
    assert not {"EXPOSED_LISTENER", "DANGEROUS_FLAG", "ENGINE_ADVISORY"} & set(
        codes(snap, "clean")
    )  # sim says 0.32.0
