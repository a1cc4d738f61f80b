"""established_to_port against real sockets on loopback: a real listener, real clients in another process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.conncount import established_to_port

pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")

# A client process: opens N connections to HOST:PORT, says "ready", and holds them until stdin closes.
CLIENT = """
import socket, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
held = [socket.create_connection((host, port)) for _ in range(n)]
print("ready", flush=True)
sys.stdin.read()
"""


class Server:
    """A listening socket that accepts every pending connection into ``accepted``."""

    def __init__(self, family: int, host: str) -> None:
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(64)
        self.sock.settimeout(5)
        self.host = host
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []

    def accept(self, n: int) -> None:
        for _ in range(n):
            conn, _ = self.sock.accept()
            self.accepted.append(conn)

    def close(self) -> None:
        for conn in self.accepted:
            conn.close()
        self.sock.close()


class Clients:
    """N client connections held by a separate process (as a user's HTTP clients would be)."""

    def __init__(self, server: Server, n: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CLIENT, server.host, str(server.port), str(n)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"
        self.pid = self.proc.pid

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server(socket.AF_INET, "127.0.0.1")
    try:
        yield s
    finally:
        s.close()


def wait_for(predicate, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_counts_each_established_client_and_not_the_listener(server):
    assert established_to_port(server.port) == 0  # listening only
    clients = Clients(server, 3)
    try:
        server.accept(3)
        assert established_to_port(server.port) == 3
    finally:
        clients.close()
    # The clients closed their ends: the server's sockets leave ESTABLISHED (CLOSE_WAIT).
    assert wait_for(lambda: established_to_port(server.port) == 0)


def test_counts_connections_not_yet_accepted_by_the_server(server):
    """A hung front end that never calls accept() still has the kernel's established connections."""
    clients = Clients(server, 2)
    try:
        assert established_to_port(server.port) == 2
    finally:
        clients.close()


def test_pids_narrow_the_count_to_sockets_they_hold(server):
    clients = Clients(server, 2)
    try:
        server.accept(2)
        assert established_to_port(server.port, pids=[os.getpid()]) == 2  # this process holds the server ends
        assert established_to_port(server.port, pids=[clients.pid]) == 0  # it holds only client ends
        gone = max(int(p) for p in os.listdir("/proc") if p.isdigit()) + 10_000
        # No pid readable: every socket on the port counts (the tables of this namespace).
        assert established_to_port(server.port, pids=[gone]) == 2
    finally:
        clients.close()


def test_excluded_processes_own_connections_are_left_out(server):
    """The agent's own scrapes and canaries are not clients: exclude_pids drops the connections they open."""
    clients = Clients(server, 2)
    own = socket.create_connection(("127.0.0.1", server.port))
    try:
        server.accept(3)
        assert established_to_port(server.port) == 3
        assert established_to_port(server.port, exclude_pids=[os.getpid()]) == 2
        assert established_to_port(server.port, exclude_pids=[clients.pid]) == 1
    finally:
        own.close()
        clients.close()


def test_ipv6_loopback_is_counted():
    if not socket.has_ipv6 or not Path("/proc/net/tcp6").exists():
        pytest.skip("no IPv6 here")
    try:
        server = Server(socket.AF_INET6, "::1")
    except OSError:
        pytest.skip("no ::1 here")
    try:
        clients = Clients(server, 2)
        try:
            server.accept(2)
            assert established_to_port(server.port) == 2
        finally:
            clients.close()
    finally:
        server.close()


def test_unreadable_proc_is_none_not_zero(tmp_path):
    assert established_to_port(8000, proc=tmp_path) is None
    (tmp_path / "net").mkdir()
    assert established_to_port(8000, proc=tmp_path) is None


def test_malformed_rows_are_skipped(tmp_path):
    net = tmp_path / "net"
    net.mkdir()
    header = (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    )
    good = (
        "   0: 0100007F:1F40 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 4242 1\n"
    )
    listen = (
        "   1: 0100007F:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4243 1\n"
    )
    junk = "   2: garbage\n   3: 0100007F:ZZZZ 0100007F:D431 01 0 0 0 0 0 4244 1\n"
    (net / "tcp").write_text(header + good + listen + junk)
    assert established_to_port(0x1F40, proc=tmp_path) == 1  # tcp6 missing: IPv4 alone still counts
    assert established_to_port(0x1F41, proc=tmp_path) == 0
