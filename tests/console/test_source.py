"""HttpFleetSource against real servers on loopback: a real agent with simulated engines, a dead port,
a server that accepts and never answers, one that speaks schema v2, one that answers garbage or 503."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agents.auth import hash_token
from agents.schema import History
from console.fixturesource import FixtureFleetSource
from console.fleet import HostError
from console.httpsource import HttpFleetSource
from console.settings import ConsoleConfig, HostConfig
from console.tokens import read_token
from tests.console.conftest import FLEET, SNAPSHOTS
from tests.support.agentproc import Agent, free_port, kill_everything, sim, write_config

TOKEN = "llmc_test_operator_token"


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, bytes]] = {}

    def do_GET(self) -> None:  # noqa: N802
        status, body = self.routes.get(self.path.split("?")[0], (404, b'{"error": "no such endpoint"}'))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def serve(routes: dict[str, tuple[int, bytes]]) -> Iterator[str]:
    """A real HTTP server on loopback answering fixed bodies; yields its URL."""
    handler = type("H", (_Handler,), {"routes": routes})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.asynccontextmanager
async def blackhole():
    """Accepts connections and never answers (a SIGSTOPped agent, a dead tunnel)."""
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        for w in held:
            w.close()
        server.close()
        await server.wait_closed()


def config(*hosts: HostConfig, timeout: float = 0.5) -> ConsoleConfig:
    return ConsoleConfig(hosts=hosts, request_timeout_s=timeout)


async def test_dead_port_blackhole_v2_and_garbage_each_get_their_error_without_delaying_others() -> None:
    v2 = (SNAPSHOTS / "v2.json").read_bytes()
    good = (SNAPSHOTS / "full.json").read_bytes()
    with (
        serve({"/v1/snapshot": (200, v2)}) as v2_url,
        serve(
            {"/v1/snapshot": (503, b'{"error": "no snapshot yet: the agent is starting"}')}
        ) as starting_url,
        serve({"/v1/snapshot": (200, b"<html>proxy login</html>")}) as garbage_url,
        serve(
            {
                "/v1/snapshot": (200, good),
                "/v1/history": (200, b'{"schema":"llmconsole.history/1","host":"x","snapshots":[]}'),
            }
        ) as good_url,
    ):
        async with blackhole() as stall_url, blackhole() as stall2_url:
            hosts = [
                HostConfig(name="dead", url=f"http://127.0.0.1:{free_port()}"),
                HostConfig(name="stall", url=stall_url),
                HostConfig(name="stall2", url=stall2_url),
                HostConfig(name="v2", url=v2_url),
                HostConfig(name="starting", url=starting_url),
                HostConfig(name="garbage", url=garbage_url),
                HostConfig(name="good", url=good_url),
                # ssh to a closed loopback port: the tunnel cannot come up, the host is unreachable
                HostConfig(
                    name="tunnel",
                    url="http://127.0.0.1:9300",
                    ssh="ops@127.0.0.1",
                    ssh_options=("-o", f"Port={free_port()}", "-o", "ConnectTimeout=2"),
                ),
            ]
            src = HttpFleetSource(config(*hosts, timeout=0.5))
            try:
                t0 = time.monotonic()
                results = {r.host: r for r in await src.poll()}
                elapsed = time.monotonic() - t0
                first_tunnel = results["tunnel"].error
                deadline = time.monotonic() + 30  # the refused tunnel fails on its own, outside the round
                while src.tunnels.state("tunnel").status == "starting" and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                results["tunnel"] = next(r for r in await src.poll() if r.host == "tunnel")
            finally:
                await src.aclose()
    assert first_tunnel.kind in ("connecting", "unreachable"), (
        first_tunnel
    )  # a starting tunnel never stalls a round
    assert list(results) == [h.name for h in hosts]  # one result per host, in config order
    assert elapsed < 0.95, f"two stalled hosts must not add up: round took {elapsed:.2f}s"
    assert (
        results["dead"].error == HostError("unreachable", "connection refused")
        and results["dead"].rtt_s is None
    )
    assert (
        results["stall"].error.kind == "unreachable"
        and results["stall"].error.message == "timed out after 0.5s"
    )
    assert (
        results["v2"].error.kind == "incompatible"
        and results["v2"].error.found_schema == "llmconsole.snapshot/2"
    )
    assert "llmconsole.snapshot/2" in results["v2"].error.message
    starting = results["starting"].error
    assert (starting.kind, starting.status) == (
        "http",
        503,
    ) and starting.message == "HTTP 503: no snapshot yet: the agent is starting"
    assert (
        results["garbage"].error.kind == "bad_payload" and "invalid JSON" in results["garbage"].error.message
    )
    tunnel = results["tunnel"].error
    assert tunnel.kind == "unreachable" and "ssh tunnel" in tunnel.message, tunnel
    good_r = results["good"]
    assert good_r.ok and good_r.snapshot.seq == 48213 and good_r.rtt_s is not None and good_r.rtt_s < 0.5
    assert good_r.received_at >= t0


async def test_url_for_hook_and_its_failure() -> None:
    good = (SNAPSHOTS / "minimal.json").read_bytes()
    with serve({"/v1/snapshot": (200, good), "/v1/history": (404, b"{}")}) as url:

        async def url_for(host: HostConfig) -> str:
            if host.name == "broken":
                raise RuntimeError("ssh: connect to host gpu09 port 22: No route to host")
            return url

        hosts = (
            HostConfig(name="via", url="http://10.0.0.1:9300", ssh="ops@gpu08"),
            HostConfig(name="broken", url="http://10.0.0.1:9300", ssh="ops@gpu09"),
        )
        src = HttpFleetSource(config(*hosts), url_for=url_for)
        try:
            via, broken = await src.poll()
        finally:
            await src.aclose()
    assert via.ok and via.snapshot.host == "cpu-box" and via.history == ()  # history 404: polled anyway
    assert broken.error == HostError("unreachable", "ssh: connect to host gpu09 port 22: No route to host")


def test_tokens_from_env_and_file(tmp_path: Path) -> None:
    h_env = HostConfig(name="a", url="http://x:1", token_env="LLMC_TOKEN_TEST")
    assert read_token(h_env, {"LLMC_TOKEN_TEST": " tok \n"}) == ("tok", None)
    assert read_token(h_env, {}) == (None, "actions disabled on a: $LLMC_TOKEN_TEST is not set")
    f = tmp_path / "tok"
    f.write_text("secret\n")
    assert read_token(HostConfig(name="b", url="http://x:1", token_file=f), {}) == ("secret", None)
    missing = read_token(HostConfig(name="c", url="http://x:1", token_file=tmp_path / "nope"), {})
    assert missing[0] is None and "cannot read" in missing[1] and "No such file" in missing[1]
    assert read_token(HostConfig(name="d", url="http://x:1"), {})[1].startswith(
        "actions disabled on d: no token"
    )


async def test_action_without_token_is_refused_locally_and_a_stalled_post_is_unknown() -> None:
    async with blackhole() as url:
        hosts = (
            HostConfig(name="notoken", url=url, token_env="LLMC_UNSET_VAR"),
            HostConfig(name="stall", url=url, token_env="LLMC_SET_VAR"),
        )
        src = HttpFleetSource(config(*hosts, timeout=0.3), environ={"LLMC_SET_VAR": "x"})
        try:
            refused = await src.action("notoken", "e1", "restart")
            unknown = await src.action("stall", "e1", "restart")
        finally:
            await src.aclose()
    assert (
        refused.outcome == "refused"
        and refused.message == "actions disabled on notoken: $LLMC_UNSET_VAR is not set"
    )
    assert src.action_block("stall") is None
    assert unknown.outcome == "unknown" and "re-check" in unknown.message


def wait_snap(agent: Agent, what: str, cond, timeout: float = 90.0) -> dict:
    """Agent.wait with the operator token (this agent refuses unauthenticated reads)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert agent.proc is not None and agent.proc.poll() is None, "agent exited"
        try:
            r = httpx.get(agent.url + "/v1/snapshot", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=2)
            if r.status_code == 200 and cond(r.json()):
                return r.json()
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def agent(tmp_path: Path):
    port = free_port()
    tokens = tmp_path / "tokens"
    tokens.write_text(f"op operator {hash_token(TOKEN)}\n")
    engines = [
        {
            "id": "vllm-a",
            "kind": "vllm",
            "model": "sim-llama",
            "port": free_port(),
            "gpus": [0],
            "command": sim("vllm"),
            "args": ["--load", "2"],
        },
        {
            "id": "tgi-b",
            "kind": "tgi",
            "model": "sim-mistral",
            "port": free_port(),
            "gpus": [1],
            "command": sim("tgi"),
            "args": ["--load", "1"],
        },
    ]
    a = Agent(write_config(tmp_path, port, engines, {"tokens_file": str(tokens)}), port)
    a.start()
    try:
        yield a
    finally:
        kill_everything(a, tmp_path / "state")


async def test_real_agent_snapshot_history_logs_and_restart(agent: Agent) -> None:
    await asyncio.to_thread(
        wait_snap,
        agent,
        "engines ready",
        lambda s: all(e["state"] == "ready" for e in s["engines"]) and len(s["engines"]) == 2,
        90,
    )
    host = HostConfig(name="local", url=agent.url, token_env="LLMC_TEST_TOKEN")
    noauth = HostConfig(name="noauth", url=agent.url)
    src = HttpFleetSource(config(host, noauth, timeout=2.0), environ={"LLMC_TEST_TOKEN": TOKEN})
    try:
        (first, refused) = await src.poll()
        (second, _) = await src.poll()
        history = await src.history("local")
        logs = await src.logs("local", "vllm-a", 20)
        missing = await src.logs("local", "nope", 20)
        result = await src.action("local", "vllm-a", "restart")
        bad = await src.action("local", "nope", "restart")
    finally:
        await src.aclose()
    assert first.ok and {e.id for e in first.snapshot.engines} == {"vllm-a", "tgi-b"}
    assert (refused.error.kind, refused.error.status) == ("unauthorized", 401)  # never "unreachable"
    assert refused.error.message.startswith("not authorized (HTTP 401): no token configured for this host")
    assert first.snapshot.gpu_source == "simulated" and all(e.simulated for e in first.snapshot.engines)
    assert len(first.history) >= 2 and [s.seq for s in first.history] == sorted(s.seq for s in first.history)
    assert second.ok and second.history == ()  # history only on first contact
    assert isinstance(history, History) and history.snapshots
    assert isinstance(logs, list) and 0 < len(logs) <= 20
    assert isinstance(missing, HostError) and missing.kind == "http" and "no engine 'nope'" in missing.message
    assert result.outcome == "accepted" and result.status == 202 and result.state is not None
    assert bad.outcome == "refused" and bad.status == 404
    pid = first.snapshot.engine("vllm-a").pid
    await asyncio.to_thread(
        wait_snap,
        agent,
        "a new vllm-a process",
        lambda s: next(e for e in s["engines"] if e["id"] == "vllm-a")["pid"] not in (None, pid),
        90,
    )


async def test_real_agent_refuses_a_wrong_token(agent: Agent) -> None:
    await asyncio.to_thread(wait_snap, agent, "snapshot", lambda s: len(s["engines"]) == 2, 90)
    host = HostConfig(name="local", url=agent.url, token_env="LLMC_TEST_TOKEN")
    src = HttpFleetSource(config(host, timeout=2.0), environ={"LLMC_TEST_TOKEN": "wrong"})
    try:
        result = await src.action("local", "vllm-a", "stop")
    finally:
        await src.aclose()
    assert result.outcome == "refused" and result.status == 401 and "operator bearer token" in result.message


async def test_fixture_source_replays_recorded_fleet() -> None:
    src = FixtureFleetSource.from_dir(FLEET)
    first = {r.host: r for r in await src.poll()}
    assert first["gpu01"].ok and len(first["gpu01"].history) > 100  # graphs start with the recorded past
    assert first["gpu05"].error.kind == "incompatible"
    t1 = src.clock()
    for _ in range(src.rounds - 1):
        last = {r.host: r for r in await src.poll()}
    assert src.clock() == t1 + (src.rounds - 1) * src.step_s and src.ended
    assert last["gpu04"].error is not None and last["gpu04"].error.kind == "unreachable"
    assert last["gpu03"].snapshot.seq == first["gpu03"].snapshot.seq + 1  # answered twice, then repeats
    assert await src.poll() == [] and src.clock() == t1 + (src.rounds - 1) * src.step_s  # ended: time holds
    assert (await src.action("gpu01", "llama-8b", "restart")).outcome == "refused"
    logs = await src.logs("gpu01", "llama-8b", 5)
    assert isinstance(logs, list) and len(logs) == 5


async def test_fixture_source_from_snapshot_and_history_files() -> None:
    src = FixtureFleetSource([SNAPSHOTS / "full.json", SNAPSHOTS / "history.json"])
    full, hist = src.hosts
    assert full.name == "gpu01" and len(full.snapshots) == 1 and len(hist.snapshots) >= 2
    first = await src.poll()
    second = await src.poll()
    assert first[0].snapshot.seq == second[0].snapshot.seq == 48213  # one snapshot: answered forever
    assert second[1].snapshot.seq > first[1].snapshot.seq  # a history replays one snapshot per poll
    assert src.clock() - first[0].received_at == src.step_s


# --- the protocol module and combined sources ------------------------------------------------------------


def test_fleet_protocol_and_payload_modules_are_pure_and_shared_by_the_sources() -> None:
    import json as _json
    import subprocess
    import sys

    http = {"httpx", "socket", "gzip", "ssl", "asyncio", "console.httpsource", "console.tunnels", "textual"}
    for module in ("console.fleet", "console.payload", "console.state"):
        probe = f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))"
        root = Path(__file__).resolve().parents[2]
        out = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=root, check=True
        )
        assert not http & set(_json.loads(out.stdout)), module
    import console.fixturesource as fixturesource
    import console.fleet as fleet
    import console.httpsource as httpsource
    import console.messages as messages
    import console.state as state

    for source in (httpsource, fixturesource):
        assert source.HostResult is fleet.HostResult and source.ActionResult is fleet.ActionResult
    assert state.HostResult is fleet.HostResult and messages.ActionResult is fleet.ActionResult


class _Broken:
    """A source whose poll raises (a bug in it): the combined source must carry on without it."""

    async def poll(self) -> list:
        raise RuntimeError("boom")

    def action_block(self, host: str) -> str | None:
        return "never"

    def problems(self) -> list[str]:
        return []

    async def aclose(self) -> None:
        raise RuntimeError("close failed too")


async def test_combined_source_survives_a_raising_source_and_names_it() -> None:
    from console.combined import CombinedFleetSource

    fixture = FixtureFleetSource.from_dir(FLEET)
    combined = CombinedFleetSource([_Broken(), fixture])  # type: ignore[list-item]
    results = await combined.poll()
    assert {r.host for r in results} == {h.name for h in fixture.hosts}
    assert combined.problems() == ["source #1 failed: RuntimeError: boom"]
    assert combined.action_block("gpu01") == fixture.action_block("gpu01")  # routed to the host's own source
    assert combined.action_block("nowhere") == "unknown host 'nowhere'"
    got = await combined.logs("gpu01", "llama-8b", 5)
    assert got == await fixture.logs("gpu01", "llama-8b", 5)
    await combined.aclose()  # one source failing to close does not stop the others


def test_build_fleet_source_picks_what_the_config_asks_for() -> None:
    from console.combined import CombinedFleetSource
    from console.promsource import PrometheusFleetSource
    from console.settings import PrometheusConfig
    from console.source import build_fleet_source

    host = HostConfig(name="a", url="http://127.0.0.1:9")
    prom = PrometheusConfig(name="p", url="http://127.0.0.1:9")
    only_hosts = build_fleet_source(ConsoleConfig(hosts=(host,)))
    only_prom = build_fleet_source(ConsoleConfig(prometheus=(prom,)))
    both = build_fleet_source(ConsoleConfig(hosts=(host,), prometheus=(prom,)))
    assert isinstance(only_hosts, HttpFleetSource) and isinstance(only_prom, PrometheusFleetSource)
    assert isinstance(both, CombinedFleetSource) and [type(s) for s in both.sources] == [
        HttpFleetSource,
        PrometheusFleetSource,
    ]
    assert both.action_block("a") == only_hosts.action_block("a")  # a direct host keeps its own route
    for s in (only_hosts, only_prom, both):
        asyncio.run(s.aclose())
