"""`llmconsole bench HOST/ENGINE` over SSH: a second tunnel, with the host's own ssh settings, to the
engine's port on the remote loopback. The end-to-end test needs a real OpenSSH server (tests/support/sshd.py)
and is skipped where there is none."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from console.bench.target import engine_tunnel_host
from console.cli import main
from console.settings import HostConfig
from console.tunnels import ssh_argv
from tests.support.agentproc import free_port, kill_everything, sim
from tests.support.secure_agent import SecureAgent, write_tokens
from tests.support.secure_agent import write_config as secure_config
from tests.support.sshd import Sshd, skip_reason


def test_engine_tunnel_forwards_to_the_engine_port_with_the_hosts_ssh_settings() -> None:
    host = HostConfig(
        name="gpu01",
        url="http://127.0.0.1:9300",
        ssh="ops@gpu01",
        ssh_options=("-J", "bastion"),
        token_env="TOKEN",
    )
    argv = ssh_argv("ssh", engine_tunnel_host(host, "llama", 8001), 5555)
    assert argv[:4] == ["ssh", "-N", "-L", "127.0.0.1:5555:127.0.0.1:8001"]
    assert argv[-4:] == ["-J", "bastion", "--", "ops@gpu01"]


@pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")
def test_fleet_engine_through_ssh(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    agent_port, engine_port = free_port(), free_port()
    engines = [
        {
            "id": "e1",
            "kind": "vllm",
            "model": "sim-llama",
            "port": engine_port,
            "gpus": [0],
            "command": sim("vllm"),
            "args": ["--tick-ms", "2"],
        }
    ]
    tokens = write_tokens(tmp_path / "tokens", ops="operator")  # a fleet benchmark needs the operator role
    config = secure_config(tmp_path, agent_port, engines, agent={"tokens_file": str(tmp_path / "tokens")})
    agent = SecureAgent(config, agent_port, token=tokens["ops"])
    (tmp_path / "ops.token").write_text(tokens["ops"] + "\n")
    (tmp_path / "ops.token").chmod(0o600)
    sshd = Sshd(tmp_path)
    agent.start()
    sshd.start()
    try:
        agent.wait("engine ready", lambda s: any(e["state"] == "ready" for e in s["engines"]), timeout=30)
        console = tmp_path / "console.toml"
        console.write_text(
            f'[[console.hosts]]\nname = "h1"\nurl = "http://127.0.0.1:{agent_port}"\n'
            f"ssh = {json.dumps(sshd.target)}\nssh_options = {json.dumps(list(sshd.client_options))}\n"
            f'token_file = "{tmp_path / "ops.token"}"\n'
        )
        code = main(
            [
                "bench",
                "h1/e1",
                "--config",
                str(console),
                "--quiet",
                "--json",
                "--max-requests",
                "4",
                "--input-len",
                "32",
                "--output-len",
                "4",
            ]
        )
        out, err = capsys.readouterr()
        assert code == 0, err
        doc = json.loads(out)
        assert doc["target"]["fleet"]["route"] == "ssh" and doc["completed"] == 4
        assert not doc["target"]["base_url"].endswith(f":{engine_port}")  # through the tunnel's local port
    finally:
        sshd.kill()
        kill_everything(agent, tmp_path / "state")
