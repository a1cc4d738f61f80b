"""Launch requests are data: executable allow-list, model roots, hub ids, secrets and control characters
in argv — unit checks, a Hypothesis fuzz of the model guard, and a real agent that refuses engines."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.config import ConfigError, agent_config_from_dict
from agents.launchguard import LaunchPolicy, Redactor, check_executable, check_model, refusal, secret_in_argv
from agents.server import startup_warnings
from tests.agents.agentproc import free_port, kill_everything
from tests.support.secure_agent import SecureAgent, write_config, write_tokens


@pytest.mark.parametrize(
    "argv",
    [["--api-key", "x"], ["--api_key=x"], ["--admin-api-key", "x"], ["--hf-token", "x"], ["--token", "x"],
     ["--ngrok-authtoken", "x"], ["--password=x"], ["--model", "hf_" + "A" * 34], ["Bearer abcdefghijkl"]],
)  # fmt: skip
def test_secrets_in_argv_are_refused(argv: list[str]) -> None:
    problem = secret_in_argv(argv)
    assert problem is not None and "env" in problem
    assert "hf_AAAA" not in problem and "abcdefgh" not in problem


@pytest.mark.parametrize(
    "argv",
    [["--max-num-batched-tokens", "8192"], ["--tokenizer", "/m"], ["--max-total-tokens", "4"], ["--enable-tokenizer-info-endpoint"],
     ["--skip-tokenizer-init"], ["--max-tokens", "5"]],
)  # fmt: skip
def test_ordinary_flags_are_not_secrets(argv: list[str]) -> None:
    assert secret_in_argv(argv) is None


def test_config_refuses_secret_args_naming_the_engine() -> None:
    data = {"agent": {"engines": [{"id": "llama", "kind": "vllm", "model": "m", "port": 8000, "args": ["--api-key", "s3cr3t-value"]}]}}
    with pytest.raises(ConfigError) as err:
        agent_config_from_dict(data, file="c.toml")
    text = str(err.value)
    assert text.startswith('c.toml: [[agent.engines]] #1 (id "llama") args:') and "env" in text and "s3cr3t" not in text


def test_executable_allow_list(tmp_path: Path) -> None:
    real = tmp_path / "bin" / "engine"
    real.parent.mkdir()
    real.write_text("#!/bin/sh\n")
    real.chmod(0o755)
    link = tmp_path / "link-to-engine"
    link.symlink_to(real)
    assert check_executable(str(real), None) is None  # no allow-list: anything goes (with a start-up warning)
    assert check_executable(str(link), [real]) is None  # compared by real path
    assert "not in [agent] allowed_executables" in (check_executable("/bin/sh", [real]) or "")
    assert "not found on PATH" in (check_executable("vllm", [real]) or "")
    real.chmod(0o757)
    assert "writable by others" in (check_executable(str(real), [real]) or "")


def test_model_policy(tmp_path: Path) -> None:
    root = tmp_path / "models"
    (root / "llama").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "escape").symlink_to(outside)
    confined = LaunchPolicy(model_roots=(root,))
    assert check_model(str(root / "llama"), confined) is None
    assert "outside [agent] model_roots" in (check_model(str(root / "llama" / ".." / ".." / "outside"), confined) or "")
    assert "outside" in (check_model(str(root / "escape"), confined) or "")  # symlink escape
    assert "hub id" in (check_model("meta-llama/Llama-3.1-8B", confined) or "")
    assert check_model("meta-llama/Llama-3.1-8B", LaunchPolicy(model_roots=(root,), allow_hub_ids=True)) is None
    assert check_model("meta-llama/Llama-3.1-8B", LaunchPolicy()) is None  # no policy: allowed
    assert "hub id" in (check_model("org/name", LaunchPolicy(allow_hub_ids=False)) or "")
    assert "control character" in (check_model("a\nb", LaunchPolicy()) or "")
    assert "neither" in (check_model("$(rm -rf /)", confined) or "")
    rel = check_model("./llama", confined, cwd=str(root))
    assert rel is None


def test_refusal_checks_argv_env_and_model() -> None:
    policy = LaunchPolicy()
    assert refusal([sys.executable, "-m", "x"], {"A": "1"}, "m", policy) is None
    assert "NUL" in (refusal([sys.executable, "a\0b"], {}, "m", policy) or "")
    assert "environment" in (refusal([sys.executable], {"A": "x\ny"}, "m", policy) or "")


def test_startup_warns_once_when_no_allow_list() -> None:
    config = agent_config_from_dict({"agent": {"engines": [
        {"id": "e", "kind": "vllm", "model": "m", "port": 8000, "env": {"VLLM_API_KEY": "short"}}]}})  # fmt: skip
    warnings = startup_warnings(config)
    assert any("allowed_executables is not set" in w for w in warnings)
    assert any("shorter than 8" in w for w in warnings)
    assert Redactor(["short"]).too_short == 1


_parts = st.sampled_from(["..", ".", "llama", "escape", "escape2", "$(id)", "`id`", "a\nb", "nul\0", "~", "", "x;y", "..."])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(_parts, min_size=1, max_size=6), absolute=st.booleans())
def test_fuzzed_model_paths_never_escape_the_root(tmp_path_factory: pytest.TempPathFactory, parts: list[str], absolute: bool) -> None:
    base = tmp_path_factory.getbasetemp() / "fuzz"
    root = base / "models"
    if not root.exists():
        (root / "llama").mkdir(parents=True)
        (base / "secret").mkdir()
        (root / "escape").symlink_to(base / "secret")
        (root / "escape2").symlink_to("../secret")
    model = ("/".join([str(root), *parts]) if absolute else "/".join(parts)) or "."
    problem = check_model(model, LaunchPolicy(model_roots=(root,)), cwd=str(root))
    if any(c in model for c in "\n\0"):
        assert problem is not None and "control" in problem
    if problem is None:
        real = os.path.realpath(os.path.join(str(root), model))
        looks_like_path = model.startswith(("/", ".", "~")) or os.path.exists(os.path.join(str(root), model))
        assert not looks_like_path or real == str(root.resolve()) or real.startswith(str(root.resolve()) + os.sep), model


def test_real_agent_refuses_engines_outside_the_policy(tmp_path: Path) -> None:
    models = tmp_path / "models"
    (models / "a").mkdir(parents=True)
    sim = [sys.executable, "-m", "agents.sim", "--dialect", "vllm"]
    engines = [
        {"id": "ok", "kind": "vllm", "model": str(models / "a"), "port": free_port(), "command": sim, "args": ["--load", "1"]},
        {"id": "badexe", "kind": "vllm", "model": str(models / "a"), "port": free_port(), "command": ["/bin/sleep"]},
        {"id": "badmodel", "kind": "vllm", "model": "/etc", "port": free_port(), "command": sim},
        {"id": "hub", "kind": "vllm", "model": "org/some-model", "port": free_port(), "command": sim},
    ]  # fmt: skip
    port = free_port()
    tokens = write_tokens(tmp_path / "tokens", ops="operator")
    agent_cfg = {"allowed_executables": [os.path.realpath(sys.executable)], "model_roots": [str(models)],
                 "tokens_file": str(tmp_path / "tokens")}  # fmt: skip
    agent = SecureAgent(write_config(tmp_path, port, engines, agent=agent_cfg), port, token=tokens["ops"])
    agent.start()
    try:
        snap = agent.wait("ok ready", lambda s: next(e for e in s["engines"] if e["id"] == "ok")["state"] == "ready", timeout=40)
        states = {e["id"]: (e["state"], e["events"][-1]["reason"] if e["events"] else None, e["pid"]) for e in snap["engines"]}
        assert states["badexe"][0] == "failed" and "not in [agent] allowed_executables" in states["badexe"][1]
        assert states["badmodel"][0] == "failed" and "outside [agent] model_roots" in states["badmodel"][1]
        assert states["hub"][0] == "failed" and "hub id" in states["hub"][1]
        assert all(states[e][2] is None for e in ("badexe", "badmodel", "hub"))  # never launched
        with agent.client() as c:
            r = c.post("/v1/engines/badexe/start")
            assert r.status_code == 409 and "refused by launch policy" in r.json()["error"]
            assert c.post("/v1/engines/hub/restart").status_code == 409
        assert "engine badexe refused by launch policy" in agent.stderr_text()
        assert "allowed_executables is not set" not in agent.stderr_text()
    finally:
        kill_everything(agent, tmp_path / "state")
