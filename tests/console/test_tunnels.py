"""SSH tunnels against a REAL OpenSSH server (tests/support/sshd.py) and a real agent behind it.

The tunnel is the system ssh with generated keys and a known_hosts file holding the generated host key
(StrictHostKeyChecking=yes, ``-F /dev/null``): the same path an operator's ~/.ssh/config would take.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import psutil
import pytest

from console.settings import HostConfig
from console.tunnels import TunnelError, TunnelManager, check_options, check_target, ssh_argv, ssh_hosts
from tests.support.agentproc import ROOT, Agent, free_port, kill_everything, write_config
from tests.support.sshd import Sshd, skip_reason

needs_sshd = pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")


async def wait_status(tm: TunnelManager, name: str, wanted: set[str], timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        state = tm.state(name)
        assert state is not None
        if not seen or seen[-1] != state.status:
            seen.append(state.status)
        if state.status in wanted:
            return state, seen
        await asyncio.sleep(0.05)
    raise AssertionError(f"tunnel never reached {wanted}; went through {seen}; last: {tm.state(name)}")


@pytest.fixture
def agent(tmp_path: Path):
    port = free_port()
    config = write_config(tmp_path, port, [], agent={"gpu_source": "none"})
    proc = Agent(config, port)
    proc.start()
    try:
        proc.wait("first snapshot", lambda s: s["seq"] >= 1, timeout=20)
        yield proc
    finally:
        kill_everything(proc, tmp_path / "state")


@pytest.fixture
def sshd(tmp_path: Path):
    server = Sshd(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@needs_sshd
async def test_tunnel_reaches_the_agent_and_recovers_from_ssh_and_sshd_deaths(
    agent: Agent, sshd: Sshd
) -> None:
    host = HostConfig(name="gpu01", url=agent.url, ssh=sshd.target, ssh_options=sshd.client_options)
    tm = TunnelManager([host], backoff_initial_s=0.2, backoff_max_s=0.8, connect_timeout_s=10)
    try:
        url = await tm.url_for(host)
        assert url.startswith("http://127.0.0.1:") and url != agent.url
        async with httpx.AsyncClient(timeout=5) as client:
            snap = (await client.get(url + "/v1/snapshot")).json()
            assert snap["schema"].startswith("llmconsole.snapshot/") and snap["seq"] >= 1
            first = tm.state("gpu01")
            assert first is not None and first.status == "up" and first.restarts == 0
            cmdline = psutil.Process(first.pid).cmdline()
            assert cmdline[1:4] == ["-N", "-L", f"127.0.0.1:{first.local_port}:127.0.0.1:{agent.port}"]
            assert "ExitOnForwardFailure=yes" in cmdline and "BatchMode=yes" in cmdline
            assert cmdline[-2:] == ["--", sshd.target]

            # kill the ssh client: down/backoff, then back up by itself with a new process
            os.kill(first.pid, signal.SIGKILL)
            _, seen = await wait_status(tm, "gpu01", {"backoff", "down"})
            assert "signal 9" in tm.state("gpu01").detail
            again, _ = await wait_status(tm, "gpu01", {"up"})
            assert again.restarts >= 1 and again.pid != first.pid
            url = await tm.url_for(host)
            assert (await client.get(url + "/v1/snapshot")).status_code == 200

            # kill the SSH server (and its session processes): the tunnel goes down and url_for says why
            sshd.kill()
            await wait_status(tm, "gpu01", {"backoff"})
            await asyncio.sleep(0.5)  # at least one reconnect attempt against the dead port
            with pytest.raises(TunnelError, match="^ssh tunnel (failed|did not come up)"):  # no name repeated
                await tm.url_for(host)
            assert tm.state("gpu01").status != "up"

            # bring it back on the same port: the tunnel recovers without being asked
            sshd.start()
            back, _ = await wait_status(tm, "gpu01", {"up"}, timeout=20)
            url = await tm.url_for(host)
            assert (await client.get(url + "/v1/snapshot")).status_code == 200
            last_pid = back.pid
    finally:
        await tm.aclose()
    assert tm.state("gpu01").status == "down" and not psutil.pid_exists(last_pid)


@needs_sshd
async def test_unknown_host_key_is_refused(agent: Agent, sshd: Sshd, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong_known_hosts"
    wrong.write_text(
        f"[127.0.0.1]:{sshd.port} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMx9kWmV6l8u2d7n4Zb0JrYqF0kq3b1f8sH2pQ0yX5aB\n"
    )
    options = tuple(o.replace(str(sshd.known_hosts), str(wrong)) for o in sshd.client_options)
    host = HostConfig(name="gpu02", url=agent.url, ssh=sshd.target, ssh_options=options)
    tm = TunnelManager([host], backoff_initial_s=5, connect_timeout_s=10)
    try:
        with pytest.raises(TunnelError, match="(?i)host key"):
            await tm.url_for(host)
        assert tm.state("gpu02").status in ("down", "backoff")
    finally:
        await tm.aclose()


@needs_sshd
def test_ssh_dies_with_the_console(agent: Agent, sshd: Sshd, tmp_path: Path) -> None:
    """SIGKILL of the console process (no cleanup code runs) still ends its ssh: PR_SET_PDEATHSIG."""
    script = tmp_path / "operator_console.py"
    script.write_text(
        textwrap.dedent(f"""
        import asyncio, sys
        from console.settings import HostConfig
        from console.tunnels import TunnelManager

        async def main():
            host = HostConfig(name="h", url={agent.url!r}, ssh={sshd.target!r}, ssh_options={sshd.client_options!r})
            tm = TunnelManager([host])
            await tm.url_for(host)
            print(tm.state("h").pid, flush=True)
            await asyncio.sleep(60)

        asyncio.run(main())
    """)
    )
    for sig in (signal.SIGKILL, signal.SIGTERM):
        proc = subprocess.Popen([sys.executable, str(script)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        try:
            pid = int(proc.stdout.readline())  # type: ignore[union-attr]
            assert psutil.pid_exists(pid)
            proc.send_signal(sig)
            proc.wait(10)
            deadline = time.monotonic() + 5
            while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                assert time.monotonic() < deadline, f"ssh {pid} outlived its console after signal {sig}"
                time.sleep(0.05)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


async def test_direct_hosts_and_missing_ssh_client(tmp_path: Path) -> None:
    direct = HostConfig(name="d", url="http://127.0.0.1:9300")
    tunnelled = HostConfig(name="t", url="http://127.0.0.1:9300", ssh="ops@gpu01")
    tm = TunnelManager([direct, tunnelled], ssh_binary=str(tmp_path / "no-such-ssh"), backoff_initial_s=5)
    try:
        assert await tm.url_for(direct) == "http://127.0.0.1:9300"
        assert tm.state("d") is None
        with pytest.raises(TunnelError, match="not found"):
            await tm.url_for(tunnelled)
        assert tm.state("t").status in ("down", "backoff")
    finally:
        await tm.aclose()


def test_targets_and_options_are_validated() -> None:
    assert check_target("ops@gpu01") is None and check_target("gpu01") is None
    for bad in ("-oProxyCommand=touch /tmp/x", "ops@gpu01 -v", "a@b@c", "", "gpu\n01"):
        assert check_target(bad) is not None, bad
    assert check_options(("-f",)) is not None and check_options(("-J", "bastion")) is None
    host = HostConfig(name="x", url="http://[::1]:9400", ssh="ops@gpu01", ssh_options=("-J", "bastion"))
    argv = ssh_argv("ssh", host, 5555)
    assert argv[:4] == ["ssh", "-N", "-L", "127.0.0.1:5555:[::1]:9400"]
    assert argv[-4:] == ["-J", "bastion", "--", "ops@gpu01"]  # the target can never be read as an option
    hosts = ssh_hosts("ops@gpu01, ops@gpu02")
    assert [(h.name, h.ssh, h.tunnel_port) for h in hosts] == [
        ("gpu01", "ops@gpu01", 9300),
        ("gpu02", "ops@gpu02", 9300),
    ]
    for bad in ("ops@gpu01,ops@gpu01", "-oProxyCommand=x", ""):
        with pytest.raises(ValueError):
            ssh_hosts(bad)


@needs_sshd
async def test_fleet_source_polls_through_the_tunnel_and_shows_the_route(agent: Agent, sshd: Sshd) -> None:
    """The console's own poll path: a host with ``ssh`` is reached only through its tunnel."""
    from console.httpsource import HttpFleetSource
    from console.settings import ConsoleConfig
    from console.state import FleetState, apply

    host = HostConfig(name="gpu01", url=agent.url, ssh=sshd.target, ssh_options=sshd.client_options)
    config = ConsoleConfig(hosts=(host,), request_timeout_s=10.0)
    source = HttpFleetSource(config)  # the interactive console: a starting tunnel never stalls a round
    try:
        assert source.tunnels is not None
        result = (await source.poll())[0]
        assert result.error is not None and result.error.kind == "connecting", result
        assert result.error.message.startswith(f"connecting via ssh {sshd.target}")
        pending = apply(FleetState.initial(config, 0.0), [result], result.received_at)
        assert pending.hosts["gpu01"].status == "pending"  # not "unreachable" while the tunnel starts
        deadline = time.monotonic() + 30
        while not result.ok and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            result = (await source.poll())[0]
        assert result.ok, result.error
        assert result.route == f"ssh {sshd.target}: up"
        state = apply(FleetState.initial(config, 0.0), [result], result.received_at)
        assert state.hosts["gpu01"].status == "fresh" and state.hosts["gpu01"].route == result.route
        pid = source.tunnels.state("gpu01").pid
        sshd.kill()  # the tunnel drops: the host becomes unreachable, with the tunnel's reason
        await wait_status(source.tunnels, "gpu01", {"backoff", "down"})
        down = (await source.poll())[0]
        assert (
            not down.ok and down.error.kind in ("unreachable", "connecting") and "ssh" in down.error.message
        )
        assert not down.error.message.startswith("gpu01")  # the host's name is not repeated in its own error
        state = await wait_status(source.tunnels, "gpu01", {"backoff"})
        first = state[0].retry_in_s
        await asyncio.sleep(0.3)
        again = source.tunnels.state("gpu01")
        assert again.status != "backoff" or (first is not None and again.retry_in_s < first)  # it counts down
    finally:
        await source.aclose()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


@needs_sshd
async def test_a_tunnel_to_a_port_where_no_agent_listens_says_so(sshd: Sshd) -> None:
    from console.httpsource import HttpFleetSource
    from console.settings import ConsoleConfig

    nobody = free_port()
    host = HostConfig(
        name="gpu01", url=f"http://127.0.0.1:{nobody}", ssh=sshd.target, ssh_options=sshd.client_options
    )
    source = HttpFleetSource(ConsoleConfig(hosts=(host,), request_timeout_s=10.0), one_shot=True)
    try:
        result = (await source.poll())[0]
    finally:
        await source.aclose()
    assert not result.ok and result.error.kind == "unreachable"
    assert (
        f"the ssh tunnel is up but agent port {nobody} on 127.0.0.1 did not answer" in result.error.message
    ), result.error


def test_ssh_targets_may_name_the_agent_port() -> None:
    hosts = ssh_hosts("ops@gpu01:9400,gpu02,root@[fe80::1]:9301")
    assert [(h.name, h.ssh, h.tunnel_port) for h in hosts] == [
        ("gpu01", "ops@gpu01", 9400),
        ("gpu02", "gpu02", 9300),
        ("fe80::1", "root@fe80::1", 9301),
    ]
    for bad in ("ops@gpu01:0", "ops@gpu01:70000", "ops@gpu01:x"):
        with pytest.raises(ValueError, match="agent port"):
            ssh_hosts(bad)


@pytest.mark.parametrize(
    "argv",
    [
        ["--ssh", "nobody@127.0.0.1:1", "status"],
        ["status", "--ssh", "nobody@127.0.0.1:1"],
        ["--ssh", "nobody@127.0.0.1:1", "status", "--json"],
    ],
)
def test_status_takes_ssh_before_or_after_the_verb(argv: list[str], tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)}
    env.pop("LLMCONSOLE_CONFIG", None)
    out = subprocess.run(
        [sys.executable, "-m", "console.cli", *argv],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert out.returncode == 1, (
        out.stderr
    )  # the host was polled (and is unreachable), not "no hosts configured"
    assert "no hosts configured" not in out.stderr
    text = out.stdout + out.stderr
    assert "127.0.0.1" in text and "retrying" not in text  # a one-shot status never retries


def test_global_config_before_an_agent_side_verb_is_handed_over(tmp_path: Path) -> None:
    bad = tmp_path / "c.toml"
    bad.write_text("[agent]\nbogus = 1\n")
    out = subprocess.run(
        [sys.executable, "-m", "console.cli", "--config", str(bad), "agent"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "bogus" in out.stderr and "Traceback" not in out.stderr, out.stderr
    out = subprocess.run(
        [sys.executable, "-m", "console.cli", "--ssh", "a@b", "agent"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "--ssh does not apply" in out.stderr


def test_bad_ssh_argument_is_one_line_exit_2() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "console.cli", "--ssh", "-oProxyCommand=evil"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and "--ssh" in out.stderr
