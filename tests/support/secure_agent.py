"""Test helper: a real `llmconsole agent` subprocess (tests/support/agentproc.py) with an environment of
the test's choosing, a bearer token for reads, optional TLS, and its stderr kept in a file for greps."""

from __future__ import annotations

import json
import ssl
from collections.abc import Mapping
from pathlib import Path

import httpx

from agents.auth import hash_token, new_token
from tests.support.agentproc import AGENT_DEFAULTS, Agent

EGRESS_GUARD_DIR = Path(__file__).resolve().parent / "egress"


def toml_value(value: object) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


def write_config(
    tmp: Path, agent_port: int, engines: list[dict], agent: dict | None = None, extra: str = ""
) -> Path:
    """Like agentproc.write_config, but engine tables may hold inline tables (``env``) and ``extra``
    TOML is appended (e.g. ``[[console.hosts]]``)."""
    settings = {
        "listen": f"127.0.0.1:{agent_port}",
        "state_dir": str(tmp / "state"),
        **AGENT_DEFAULTS,
        **(agent or {}),
    }
    lines = ["[agent]"] + [f"{k} = {toml_value(v)}" for k, v in settings.items()]
    lines += ["", "[thresholds]", "hung_after_s = 3.0"]
    for e in engines:
        lines += ["", "[[agent.engines]]"] + [f"{k} = {toml_value(v)}" for k, v in e.items()]
    path = tmp / "config.toml"
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


def write_tokens(path: Path, **roles: str) -> dict[str, str]:
    """A tokens file with one token per ``name=role``; returns name -> plain token."""
    tokens = {name: new_token() for name in roles}
    path.write_text("".join(f"{name} {role} {hash_token(tokens[name])}\n" for name, role in roles.items()))
    path.chmod(0o600)
    return tokens


class SecureAgent(Agent):
    def __init__(
        self,
        config: Path,
        port: int,
        *,
        token: str | None = None,
        env: Mapping[str, str] | None = None,
        scheme: str = "http",
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        super().__init__(config, port)
        self.url = f"{scheme}://127.0.0.1:{port}"
        self.token, self.env, self.verify = token, env, verify
        self.extra_args = ("--log-level", "info")

    def client(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return httpx.Client(
            base_url=self.url, headers=headers, timeout=5, verify=self.verify, trust_env=False
        )

    def snap(self) -> dict | None:
        try:
            with self.client() as c:
                r = c.get("/v1/snapshot")
        except httpx.HTTPError:
            return None
        return r.json() if r.status_code == 200 else None
