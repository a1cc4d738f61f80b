"""The API's limits as pure units: connection admission (caps, eviction order, peers), the audit rate limit
for unauthenticated denials, the in-flight bound, the post-acceptance state, path-free and JSON errors."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from agents.api import Guard, accepted_state, create_app, without_paths
from agents.audit import AuditLog
from agents.auth import TokenStore
from agents.connguard import SHED_SLACK, ConnectionTable, Limits, peer_key
from agents.denials import OTHER_PEERS, DenialLimiter

# --- connection admission ---------------------------------------------------------------------------------


class Conn:
    def __init__(self, name: str) -> None:
        self.name, self.evicted = name, False

    def evict(self) -> None:
        self.evicted = True

    def __repr__(self) -> str:
        return self.name


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_peer_buckets() -> None:
    assert peer_key("127.0.0.1") is None and peer_key("::1") is None and peer_key("::ffff:127.0.0.1") is None
    assert peer_key(None) is None
    assert peer_key("10.0.0.5") == "10.0.0.5" and peer_key("::ffff:10.0.0.5") == "10.0.0.5"
    assert peer_key("2001:db8:1:2:aaaa::1") == peer_key("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert peer_key("2001:db8:1:3::1") != peer_key("2001:db8:1:2::1")


def test_a_remote_peer_over_its_cap_loses_its_own_oldest_waiting_socket() -> None:
    clock = Clock()
    table = ConnectionTable(Limits(max_connections=100, per_peer=2, evict_after_s=1.0), clock)
    a1, a2, b1 = Conn("a1"), Conn("a2"), Conn("b1")
    assert table.admit(b1, "10.0.0.9") == "ok"
    assert table.admit(a1, "10.0.0.5") == "ok" and table.admit(a2, "10.0.0.5") == "ok"
    clock.now = 2.0
    a3 = Conn("a3")
    assert table.admit(a3, "10.0.0.5") == "ok"
    assert a1.evicted and not a2.evicted and not b1.evicted  # its own oldest, never another peer's
    table.busy(a2)
    a4 = Conn("a4")
    assert table.admit(a4, "10.0.0.5") == "shed"  # a3 waited less than evict_after_s; a2 is busy
    assert not a2.evicted and not a3.evicted and table.shed == 1
    loopback = [Conn(f"l{i}") for i in range(10)]
    assert all(table.admit(c, "127.0.0.1") == "ok" for c in loopback)  # tunnels: no per-peer cap


def test_the_total_cap_evicts_oldest_waiting_then_sheds_then_resets() -> None:
    clock = Clock()
    table = ConnectionTable(Limits(max_connections=3, evict_after_s=1.0), clock)
    c = [Conn(f"c{i}") for i in range(4)]
    for conn in c[:3]:
        assert table.admit(conn, "127.0.0.1") == "ok"
    table.busy(c[0])
    clock.now = 5.0
    assert table.admit(c[3], "127.0.0.1") == "ok"
    assert not c[0].evicted and c[1].evicted and not c[2].evicted  # busy skipped, then the oldest waiting
    table.waiting(c[0])  # c0's answer is done: it waits again, newest of all
    clock.now = 10.0
    assert table.admit(Conn("x"), "127.0.0.1") == "ok" and c[2].evicted and not c[0].evicted
    for conn in list(table._waiting):  # noqa: SLF001 - make every socket busy
        table.busy(conn)
    assert table.admit(Conn("y"), "127.0.0.1") == "shed"
    shed = 1
    while table.admit(z := Conn("z"), "127.0.0.1") == "shed":  # answered 503 while there is slack...
        table.busy(z)
        shed += 1
    assert shed == SHED_SLACK and len(table) == 3 + SHED_SLACK and table.reset == 1  # ...then reset


def test_connection_cap_follows_the_descriptor_limit() -> None:
    assert Limits.for_fd_limit(1024).max_connections == 1024 - 256 - SHED_SLACK
    assert Limits.for_fd_limit(1_000_000).max_connections == 4096
    assert Limits.for_fd_limit(100).max_connections == 32


def test_the_agent_raises_its_open_file_soft_limit_to_the_hard_limit() -> None:
    code = (
        "import resource; from agents.connguard import raise_fd_limit;"
        "h = resource.getrlimit(resource.RLIMIT_NOFILE)[1];"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, h));"
        "got = raise_fd_limit();"
        "want = 65536 if h == resource.RLIM_INFINITY else min(h, 65536);"
        "assert got == want == resource.getrlimit(resource.RLIMIT_NOFILE)[0], (got, want)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


# --- audit rate limit -------------------------------------------------------------------------------------


def test_denials_a_few_in_full_then_one_summary_per_window() -> None:
    clock = Clock()
    lim = DenialLimiter(full=3, window_s=60, clock=clock)
    verdicts = [lim.admit("10.0.0.5")[0] for _ in range(10)]
    assert verdicts == [True] * 3 + [False] * 7
    assert lim.admit("10.0.0.6")[0] is True  # per peer
    assert lim.due() == [] and lim.next_due() == 60.0
    clock.now = 59.9
    assert lim.due() == []
    clock.now = 60.0
    full, due = lim.admit("10.0.0.5")  # a new window starts; the old one's summary is handed over first
    assert full is True and [(s.peer, s.suppressed) for s in due] == [("10.0.0.5", 8 - 1)]
    assert lim.flush() == []  # 10.0.0.6 suppressed nothing; 10.0.0.5's new window neither
    lim2 = DenialLimiter(full=1, max_peers=2, clock=clock)
    for peer in ("a", "b", "c", "d", "c"):
        lim2.admit(peer)
    assert {s.peer: s.suppressed for s in lim2.flush()} == {OTHER_PEERS: 2}  # memory bounded


# --- answers ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "before", "reported", "want"),
    [
        ("stop", "ready", "ready", "stopping"),
        ("stop", "hung", "hung", "stopping"),
        ("stop", "backoff", "backoff", "stopped"),
        ("stop", "ready", "stopped", "stopped"),
        ("start", "stopped", "stopped", "starting"),
        ("start", "backoff", "backoff", "starting"),
        ("restart", "ready", "ready", "stopping"),
        ("restart", "failed", "failed", "starting"),
        ("restart", "ready", "starting", "starting"),
    ],
)
def test_the_accepted_state(action: str, before: str, reported: str, want: str) -> None:
    assert accepted_state(action, before, reported) == want


def test_without_paths() -> None:
    assert without_paths("command '/usr/bin/sh' is not allowed") == "command '…/sh' is not allowed"
    assert (
        without_paths("cannot write /var/lib/llmconsole/audit.log: EROFS")
        == "cannot write …/audit.log: EROFS"
    )
    assert without_paths("start/stop/restart, 1/2 done, a / b") == "start/stop/restart, 1/2 done, a / b"
    assert without_paths("see ~/x/y and ./rel/p") == "see …/y and …/p"
    assert without_paths("--model=/models/llama, probe http://127.0.0.1:8000/health") == (
        "--model=…/llama, probe http://127.0.0.1:8000/health"
    )


async def test_requests_in_flight_are_bounded_with_json_503() -> None:
    release = asyncio.Event()

    async def slow(scope: dict, receive, send) -> None:
        await release.wait()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": b"{}"})

    guard = Guard(slow, max_in_flight=2)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=guard), base_url="http://127.0.0.1"
    ) as client:
        first = [asyncio.create_task(client.get("/")) for _ in range(2)]
        while guard.in_flight < 2:
            await asyncio.sleep(0.01)
        shed = await client.get("/")
        assert (
            shed.status_code == 503 and shed.headers["retry-after"] == "1" and "busy" in shed.json()["error"]
        )
        release.set()
        assert [r.status_code for r in await asyncio.gather(*first)] == [200, 200]
    assert guard.in_flight == 0 and guard.shed == 1


class BrokenRuntime:
    """An ApiRuntime whose history read fails (what a bug would look like to the API)."""

    history_s = 60.0

    def latest(self):
        return None

    def latest_json(self):
        return None

    def engine_ids(self):
        return []

    def engine_state(self, engine_id):
        return None

    async def history_json(self, seconds):
        raise RuntimeError("boom at /srv/secret/place")

    async def logs(self, engine_id, lines):
        return []

    async def act(self, engine_id, action):
        return "stopped"


async def test_an_unexpected_error_is_a_json_500_without_details(tmp_path: Path) -> None:
    app = create_app(BrokenRuntime(), TokenStore(), AuditLog(tmp_path / "audit.log"))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        r = await client.get("/v1/history")
    assert r.status_code == 500 and r.headers["content-type"] == "application/json"
    assert "internal error" in r.json()["error"] and "/srv" not in r.text and "boom" not in r.text
    assert json.loads(r.content)


async def test_a_failing_redactor_fails_closed_with_json_500(tmp_path: Path) -> None:
    def broken(text: str) -> str:
        raise ValueError("redactor bug")

    class Runtime(BrokenRuntime):
        def latest_json(self):
            return '{"secret": "hf_abcdefghijklmnopqrstuvwxyz"}'

    app = create_app(Runtime(), TokenStore(), AuditLog(tmp_path / "audit.log"), redact=broken)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1"
    ) as client:
        r = await client.get("/v1/snapshot")
    assert r.status_code == 500 and r.headers["content-type"] == "application/json"
    assert "hf_" not in r.text and "internal error" in r.json()["error"]  # never the unredacted body
