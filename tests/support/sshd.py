"""Test helper: a real OpenSSH server on 127.0.0.1 with generated host and user keys.

``Sshd(tmp)`` writes a host key, a user key, an authorized_keys file, a known_hosts file naming the host
key for ``[127.0.0.1]:<port>``, and an sshd_config (StrictModes no, keys only, TCP forwarding on), then
runs ``sshd -D -e -f <config>`` as the current user. ``client_options`` are the ssh options that use
exactly those files and nothing from ``~/.ssh`` (``-F /dev/null``, StrictHostKeyChecking=yes).

``skip_reason()`` says why the tests cannot run here (no sshd/ssh-keygen, or not root), or None.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import psutil

SSHD_PATHS = ("/usr/sbin/sshd", "/usr/bin/sshd", "/usr/local/sbin/sshd")


def sshd_binary() -> str | None:
    found = shutil.which("sshd")
    return found or next((p for p in SSHD_PATHS if os.access(p, os.X_OK)), None)


def skip_reason() -> str | None:
    if sshd_binary() is None:
        return "no OpenSSH server (apt-get install openssh-server)"
    if shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        return "no OpenSSH client (apt-get install openssh-client)"
    if os.geteuid() != 0:
        return "sshd needs root here (privilege separation); run the SSH tests as root"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sshd:
    def __init__(self, tmp: Path, port: int | None = None) -> None:
        self.dir = tmp / "sshd"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.user = os.environ.get("USER") or "root"
        self.proc: subprocess.Popen | None = None
        self.log = self.dir / "sshd.log"
        for name in ("host_key", "user_key"):
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(self.dir / name)],
                check=True,
                stdin=subprocess.DEVNULL,
                timeout=30,
            )
            (self.dir / name).chmod(0o600)
        (self.dir / "authorized_keys").write_text((self.dir / "user_key.pub").read_text())
        host_pub = (self.dir / "host_key.pub").read_text().split()
        self.known_hosts = self.dir / "known_hosts"
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {host_pub[0]} {host_pub[1]}\n")
        self.config = self.dir / "sshd_config"
        self.config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {self.dir / 'host_key'}",
                    f"PidFile {self.dir / 'sshd.pid'}",
                    f"AuthorizedKeysFile {self.dir / 'authorized_keys'}",
                    "StrictModes no",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "PermitRootLogin prohibit-password",
                    "AllowTcpForwarding yes",
                    "AllowAgentForwarding no",
                    "X11Forwarding no",
                    "PermitTTY no",
                    "LogLevel VERBOSE",
                    "",
                ]
            )
        )

    @property
    def target(self) -> str:
        return f"{self.user}@127.0.0.1"

    @property
    def client_options(self) -> tuple[str, ...]:
        return (
            "-F",
            "/dev/null",
            "-p",
            str(self.port),
            "-i",
            str(self.dir / "user_key"),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "ConnectTimeout=5",
        )

    def start(self, timeout: float = 10.0) -> None:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege-separation directory sshd insists on
        binary = sshd_binary()
        assert binary is not None
        log = open(self.log, "ab")  # noqa: SIM115 - handed to the child
        try:
            self.proc = subprocess.Popen(
                [binary, "-D", "-e", "-f", str(self.config)], stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
            ):
                return
            time.sleep(0.05)
        raise RuntimeError(f"sshd did not listen on {self.port}: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL the daemon and every session process it forked (so open tunnels drop too)."""
        if self.proc is None:
            return
        try:
            procs = [psutil.Process(self.proc.pid), *psutil.Process(self.proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            procs = []
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.send_signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        psutil.wait_procs(procs, timeout=5)
        self.proc = None
