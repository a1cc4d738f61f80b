"""Host readings against real processes on this machine."""

from __future__ import annotations

import subprocess
import sys

import psutil
import pytest

from agents import host, sockdiag
from agents.host import (
    CpuMeter,
    HostReading,
    Listener,
    listening_sockets,
    process_brief,
    read_host,
    tree_rss_bytes,
)

LISTENER = """
import socket, sys, time
bind = sys.argv[1]
srv = socket.socket()
srv.bind((bind, 0))
srv.listen()
port = srv.getsockname()[1]
client = socket.create_connection(("127.0.0.1", port))  # an established socket: not a listener
peer, _ = srv.accept()
print(port, flush=True)
time.sleep(60)
"""


@pytest.fixture
def spawn():
    procs: list[subprocess.Popen] = []

    def start(*args: str) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", *args], stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=5)
        if proc.stdout:
            proc.stdout.close()


SLEEPER = (
    "import sys, time; x = bytearray(int(sys.argv[1]) << 20); print('ready', flush=True); time.sleep(60)"
)


@pytest.fixture
def sleeper(spawn):
    """A child that has started (its command line and memory are in place) and sleeps."""

    def start(mib: int = 0, tag: str = "") -> subprocess.Popen:
        proc = spawn(SLEEPER + (f"  # {tag}" if tag else ""), str(mib))
        assert proc.stdout.readline().strip() == "ready"
        return proc

    return start


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=5)
    assert not psutil.pid_exists(proc.pid)
    return proc.pid


def test_listening_sockets_finds_a_child_listening_on_loopback(spawn) -> None:
    child = spawn(LISTENER, "127.0.0.1")
    port = int(child.stdout.readline())
    other = spawn(LISTENER, "0.0.0.0")
    other_port = int(other.stdout.readline())
    found = listening_sockets([child.pid, other.pid, _dead_pid()])
    assert Listener(child.pid, "127.0.0.1", port) in found
    assert Listener(other.pid, "0.0.0.0", other_port) in found
    assert len(found) == 2  # the connected client and accepted sockets are not listeners
    assert listening_sockets([child.pid]) == [(child.pid, "127.0.0.1", port)]
    assert listening_sockets([]) == []


LISTENERS_V4_V6 = """
import socket, time
socks = []
for family, ip in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::1"),
                   (socket.AF_INET6, "::"), (socket.AF_INET6, "::ffff:127.0.0.1")):
    s = socket.socket(family)
    s.bind((ip, 0))
    s.listen()
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks), flush=True)
time.sleep(60)
"""


@pytest.mark.skipif(not host._PROC_NET, reason="the /proc and netlink paths are Linux-only")
def test_proc_netlink_and_proc_table_listeners_match_psutil(spawn, monkeypatch) -> None:
    child = spawn(LISTENERS_V4_V6)
    ports = [int(p) for p in child.stdout.readline().split()]
    expected = [
        Listener(child.pid, ip, port)
        for ip, port in zip(("127.0.0.1", "0.0.0.0", "::1", "::", "::ffff:127.0.0.1"), ports, strict=True)
    ]
    via_netlink = listening_sockets([child.pid])
    assert via_netlink == sorted(expected) == host._psutil_listeners({child.pid})

    def no_netlink(family: int, state: int) -> list:
        raise OSError("netlink unavailable")

    monkeypatch.setattr(sockdiag, "_diag", no_netlink)  # e.g. a sandbox without NETLINK_SOCK_DIAG
    assert listening_sockets([child.pid]) == via_netlink  # read from /proc/net/tcp and tcp6 instead


def test_tree_rss_sums_living_pids_and_is_none_when_all_are_gone(sleeper) -> None:
    a, b = sleeper(), sleeper(mib=64)
    rss_a, rss_b = (psutil.Process(p.pid).memory_info().rss for p in (a, b))
    assert rss_b > rss_a + (60 << 20)
    both = tree_rss_bytes([a.pid, b.pid, a.pid])  # duplicates counted once
    assert both == pytest.approx(rss_a + rss_b, rel=0.05)
    assert tree_rss_bytes([a.pid, _dead_pid()]) == pytest.approx(rss_a, rel=0.05)
    assert tree_rss_bytes([_dead_pid()]) is None
    assert tree_rss_bytes([]) is None


def test_process_brief_names_a_process_and_none_when_gone(sleeper) -> None:
    child = sleeper(tag="brief-marker")
    brief = process_brief(child.pid)
    assert brief is not None and brief.startswith("python") and "brief-marker" in brief
    long_child = sleeper(tag="x" * 500)
    long_brief = process_brief(long_child.pid)
    assert long_brief is not None and len(long_brief) == 200 and long_brief.endswith("…")
    assert process_brief(_dead_pid()) is None


def test_read_host_reports_memory_and_cpu() -> None:
    reading = read_host()
    assert isinstance(reading, HostReading)
    vm = psutil.virtual_memory()
    assert reading.mem_total_bytes == vm.total
    assert reading.mem_used_bytes is not None and 0 < reading.mem_used_bytes < reading.mem_total_bytes
    second = read_host()  # primed by now
    assert second.cpu_pct is not None and 0.0 <= second.cpu_pct <= 100.0


def test_cpu_meter_is_none_until_primed() -> None:
    meter = CpuMeter()
    assert meter.read() is None
    value = meter.read()
    assert isinstance(value, float) and 0.0 <= value <= 100.0


def test_established_connections_are_counted_the_same_through_netlink_and_proc(monkeypatch) -> None:
    """Client connections to a port (FRONTEND_HUNG's evidence): the agent's own connections are not
    counted, and /proc gives the same count as netlink."""
    import socket as _socket

    from agents.collector import client_connections

    server = _socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]
    helper = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import socket,time; s=[socket.create_connection(('127.0.0.1', {port})) for _ in range(3)]; "
            "print('up', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    mine = _socket.create_connection(("127.0.0.1", port))  # this process stands in for the agent
    try:
        assert helper.stdout.readline().strip() == "up"
        via_netlink = client_connections([port])
        assert via_netlink == {port: 3}

        def no_netlink(family: int, state: int) -> list:
            raise OSError("netlink unavailable")

        monkeypatch.setattr(sockdiag, "_diag", no_netlink)
        assert client_connections([port]) == via_netlink
    finally:
        mine.close()
        helper.kill()
        helper.wait(10)
        server.close()
