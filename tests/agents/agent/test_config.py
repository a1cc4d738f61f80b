"""Strict config loading for the agent: [agent] + [thresholds]; one clear line per mistake."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents import config as cfg
from agents import tomltables
from agents.config import (
    AgentConfig,
    EngineConfig,
    Supervision,
    Thresholds,
    agent_config_from_dict,
    load_agent_config,
)
from agents.tomltables import ConfigError, find_config

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "tests" / "data" / "config"
CONFIGS = sorted(DATA.glob("*.toml"))


def expectation(path: Path, side: str) -> str:
    """The first lines of each data file say what each loader must answer: "ok" or the exact error."""
    for line in path.read_text().splitlines()[:2]:
        name, _, expected = line.removeprefix("# ").partition(": ")
        if name == side:
            return expected.replace("{file}", str(path))
    raise AssertionError(f"{path.name} has no '# {side}: ...' line")


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_data_configs(path: Path) -> None:
    expected = expectation(path, "agent")
    if expected == "ok" and "agent" not in tomltables.read_toml(path):
        # valid for the agent's tables, but the agent needs an [agent] table to start (issue 10 §9)
        assert isinstance(agent_config_from_dict(tomltables.read_toml(path), file=str(path)), AgentConfig)
        with pytest.raises(
            ConfigError, match=r"(is empty|has no \[agent\] table); the agent needs an \[agent\] table"
        ):
            load_agent_config(path)
    elif expected == "ok":
        assert isinstance(load_agent_config(path), AgentConfig)
    else:
        with pytest.raises(ConfigError) as info:
            load_agent_config(path)
        assert str(info.value) == expected


def test_data_configs_cover_every_error_kind() -> None:
    names = {p.stem for p in CONFIGS}
    assert len([n for n in names if n.startswith("bad_")]) >= 40
    assert {"good_full", "good_empty"} <= names


def test_repo_config_loads() -> None:
    agent = load_agent_config(ROOT / "config.toml")
    assert [e.kind for e in agent.engines] == ["vllm", "sglang", "tgi"]
    # engines become simulated by their command alone
    for engine in agent.engines:
        assert engine.command == ("llmconsole", "sim-engine", "--dialect", engine.kind)
    text = (ROOT / "config.toml").read_text()
    assert (
        '# command = ["/opt/vllm/bin/python", "-m", "vllm.entrypoints.openai.api_server"]' in text
    )  # the real engine, commented
    assert agent.listen_port == 9300


def test_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    agent = agent_config_from_dict({})
    assert (agent.listen, agent.listen_host, agent.listen_port) == ("127.0.0.1:9300", "127.0.0.1", 9300)
    assert (agent.interval_s, agent.history_s, agent.stats_window_s) == (1.0, 900.0, 60.0)
    assert agent.state_dir == tmp_path / ".local" / "state" / "llmconsole"
    assert agent.log_dir == agent.state_dir / "logs"
    assert agent.gpu_source == "nvml"
    assert (agent.canary_interval_s, agent.canary_timeout_s) == (10.0, 5.0)
    assert agent.scrape_timeout_s == pytest.approx(0.8)
    assert agent.metrics_max_bytes == 16 * 1024 * 1024
    assert agent.stop_engines_on_exit is False and agent.tokens_file is None
    assert agent.supervision == Supervision(
        backoff_initial_s=10,
        backoff_max_s=300,
        backoff_reset_s=600,
        start_retries=3,
        startup_timeout_s=1800,
        stop_timeout_s=30,
        gpu_release_timeout_s=120,
    )
    assert agent.engines == ()
    assert agent.thresholds == Thresholds()
    assert (agent.thresholds.ttft_p95_s, agent.thresholds.hung_after_s, agent.thresholds.kv_pressure) == (
        0.2,
        30.0,
        0.95,
    )
    assert (agent.thresholds.crash_loop_restarts, agent.thresholds.crash_loop_window_s) == (3, 600.0)


def test_scrape_timeout_default_is_capped() -> None:
    assert agent_config_from_dict({"agent": {"interval_s": 5}}).scrape_timeout_s == pytest.approx(4.0)
    assert agent_config_from_dict({"agent": {"interval_s": 30}}).scrape_timeout_s == 10.0
    assert agent_config_from_dict({"agent": {"interval_s": 2, "scrape_timeout_s": 2}}).scrape_timeout_s == 2.0


def test_engine_defaults_and_supervision_inheritance() -> None:
    data = {
        "agent": {
            "backoff_initial_s": 20,
            "stop_timeout_s": 45,
            "engines": [
                {"id": "a", "kind": "vllm", "model": "m", "port": 8000},
                {"id": "b", "kind": "sglang", "model": "m", "port": 8001, "stop_timeout_s": 5},
            ],
        }
    }
    a, b = agent_config_from_dict(data).engines
    assert a == EngineConfig(id="a", kind="vllm", model="m", port=8000, supervision=a.supervision)
    assert (a.host, a.gpus, a.command, a.args, a.env) == ("127.0.0.1", (), None, (), {})
    assert (a.canary, a.autostart, a.metrics_port, a.served_model_name) == (True, True, None, None)
    assert (a.supervision.backoff_initial_s, a.supervision.stop_timeout_s) == (20.0, 45.0)
    assert (b.supervision.backoff_initial_s, b.supervision.stop_timeout_s) == (20.0, 5.0)
    assert b.supervision.backoff_max_s == 300.0


def test_full_config_values() -> None:
    path = DATA / "good_full.toml"
    agent = load_agent_config(path)
    assert (agent.listen_host, agent.listen_port) == ("::1", 9400)
    assert agent.interval_s == 2.0 and isinstance(agent.interval_s, float)  # ints are accepted as numbers
    assert agent.state_dir == DATA / "state"  # relative to the config file's directory
    assert agent.log_dir == Path("/var/log/llmconsole")
    assert agent.tokens_file == DATA / "tokens.toml"
    assert agent.source == path
    llama, tgi = agent.engines
    assert llama.gpus == (0, 1) and isinstance(llama.gpus, tuple)
    assert llama.command == ("python", "-m", "vllm.entrypoints.openai.api_server")
    assert llama.env == {"VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1"}
    assert llama.supervision.backoff_max_s == 600.0 and llama.supervision.start_retries == 0
    assert llama.supervision.backoff_initial_s == 5.0  # inherited from [agent]
    assert tgi.metrics_port == 9000 and tgi.supervision == agent.supervision
    assert agent.thresholds.queue_growing_intervals == 3
    assert agent.engine("tgi.7b") is tgi and agent.engine("x") is None


def test_launch_spec() -> None:
    base = pytest.importorskip("agents.engines.base")
    agent = load_agent_config(DATA / "good_full.toml")
    spec = agent.engines[0].launch_spec()
    assert isinstance(spec, base.LaunchSpec)
    assert (spec.id, spec.model, spec.port, spec.host, spec.gpus) == (
        "llama",
        "/models/llama",
        8000,
        "0.0.0.0",
        (0, 1),
    )
    assert spec.command == ("python", "-m", "vllm.entrypoints.openai.api_server")
    assert spec.args == ("--max-model-len", "8192") and spec.served_model_name == "llama-3"
    assert agent.engines[1].launch_spec().metrics_port == 9000


def test_config_objects_are_frozen() -> None:
    agent = agent_config_from_dict({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        agent.interval_s = 2  # type: ignore[misc]


def test_agent_ignores_console_tables_but_not_unknown_ones() -> None:
    # [console] is the console's business: a broken one does not stop the agent
    agent_config_from_dict({"console": {"refresh_s": "soon", "hosts": 3}})
    with pytest.raises(
        ConfigError, match=r"^config.toml: unknown table \[consol\] \(did you mean \[console\]\?\)$"
    ):
        agent_config_from_dict({"consol": {}})
    with pytest.raises(ConfigError, match=r"^config.toml: unknown table \[zzz\]$"):
        agent_config_from_dict({"zzz": {}})
    assert agent_config_from_dict({"calculator": {"anything": [1, {"x": 2}]}}).engines == ()


def test_listen_forms() -> None:
    assert cfg.parse_listen("localhost:80") == ("localhost", 80)
    assert cfg.parse_listen("[::1]:9300") == ("::1", 9300)
    for bad in ("9300", "host:", ":9300", "host:0", "host:99999", "a b:1", "::1:9300"):
        with pytest.raises(ValueError):
            cfg.parse_listen(bad)


# --- reading files --------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_agent_config(missing)
    assert str(info.value) == f"config file not found: {missing}"


def test_unreadable_and_undecodable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r": cannot read: Is a directory$"):
        load_agent_config(tmp_path)
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b'[agent]\nlisten = "caf\xe9"\n')
    with pytest.raises(ConfigError) as info:
        load_agent_config(bad)
    assert str(info.value) == f"{bad}: line 2: not valid UTF-8"


def test_error_names_the_file_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "config.toml").write_text('[agent]\ninterval_s = "fast"\n')
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_agent_config("config.toml")
    assert str(info.value) == 'config.toml: [agent] interval_s: expected a number, got "fast"'


def test_a_file_without_an_agent_table_is_an_error_for_the_agent(tmp_path: Path) -> None:
    """issue 10 §9: an empty file, or one written for the console only, never starts the agent on defaults."""
    empty = tmp_path / "empty.toml"
    empty.write_text("# nothing here\n")
    with pytest.raises(ConfigError) as info:
        load_agent_config(empty)
    assert (
        str(info.value)
        == f"{empty}: is empty; the agent needs an [agent] table (see the repository's config.toml)"
    )
    console_only = tmp_path / "console.toml"
    console_only.write_text("[console]\nrefresh_s = 1.0\n\n[thresholds]\nttft_p95_s = 0.3\n")
    with pytest.raises(ConfigError, match=r"console.toml: has no \[agent\] table;"):
        load_agent_config(console_only)
    bare = tmp_path / "bare.toml"
    bare.write_text("[agent]\n")  # an explicit (empty) [agent] table: every default, on purpose
    assert load_agent_config(bare).listen == "127.0.0.1:9300"
    assert agent_config_from_dict({}).engines == ()  # the dict-level validator stays lenient


def test_agent_cli_refuses_a_config_without_agent_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from agents.cli import main

    empty = tmp_path / "empty.toml"
    empty.write_text("")
    assert main(["--config", str(empty)]) == 2
    err = capsys.readouterr().err
    assert (
        err.count("\n") == 1
        and "is empty; the agent needs an [agent] table" in err
        and "Traceback" not in err
    )


def test_launch_policy_keys() -> None:
    agent = agent_config_from_dict(
        {
            "agent": {
                "allowed_python_modules": ["vllm.entrypoints.openai.api_server", "my_pkg.serve"],
                "allowed_env_overrides": ["LD_LIBRARY_PATH", "PYTHONPATH"],
            }
        }
    )
    assert agent.allowed_python_modules == ("vllm.entrypoints.openai.api_server", "my_pkg.serve")
    assert agent.allowed_env_overrides == ("LD_LIBRARY_PATH", "PYTHONPATH")
    defaults = agent_config_from_dict({})
    assert defaults.allowed_python_modules is None and defaults.allowed_env_overrides == ()
    with pytest.raises(ConfigError, match=r'allowed_python_modules\[0\]: "-c" is not a Python module name'):
        agent_config_from_dict({"agent": {"allowed_python_modules": ["-c"]}}, file="c.toml")
    with pytest.raises(
        ConfigError,
        match=r'allowed_env_overrides\[0\]: "PYTHONPAHT" is not a guarded variable .*'
        r'\(did you mean "PYTHONPATH"\?\)$',
    ):
        agent_config_from_dict({"agent": {"allowed_env_overrides": ["PYTHONPAHT"]}}, file="c.toml")


# --- find_config --------------------------------------------------------------------------------------


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    return path


def test_find_config_order(tmp_path: Path) -> None:
    cwd, home = tmp_path / "cwd", tmp_path / "home"
    cwd.mkdir()
    explicit = _touch(tmp_path / "explicit.toml")
    env_file = _touch(tmp_path / "env.toml")
    user = _touch(home / ".config" / "llmconsole" / "config.toml")
    env = {"LLMCONSOLE_CONFIG": str(env_file)}
    # 4. the user's config
    assert find_config(None, cwd=cwd, environ={}, home=home) == user
    # 3. $LLMCONSOLE_CONFIG beats the user's config
    assert find_config(None, cwd=cwd, environ=env, home=home) == env_file
    # 2. ./config.toml beats $LLMCONSOLE_CONFIG (DESIGN.md's order)
    local = _touch(cwd / "config.toml")
    assert find_config(None, cwd=cwd, environ=env, home=home) == local
    # 1. --config beats everything
    assert find_config(str(explicit), cwd=cwd, environ=env, home=home) == explicit


def test_find_config_none_and_xdg(tmp_path: Path) -> None:
    assert find_config(None, cwd=tmp_path, environ={}, home=tmp_path / "home") is None
    xdg = _touch(tmp_path / "xdg" / "llmconsole" / "config.toml")
    assert (
        find_config(None, cwd=tmp_path, environ={"XDG_CONFIG_HOME": str(tmp_path / "xdg")}, home=tmp_path)
        == xdg
    )


def test_find_config_missing_explicit_paths(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.toml")
    with pytest.raises(ConfigError) as info:
        find_config(missing, cwd=tmp_path, environ={}, home=tmp_path)
    assert str(info.value) == f"config file not found: {missing}"
    with pytest.raises(ConfigError) as info:
        find_config(None, cwd=tmp_path, environ={"LLMCONSOLE_CONFIG": missing}, home=tmp_path)
    assert str(info.value) == f"config file not found: {missing} (from $LLMCONSOLE_CONFIG)"


def test_find_config_uses_the_real_environment_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = _touch(tmp_path / "via-env.toml")
    monkeypatch.chdir(tmp_path / "..")
    monkeypatch.setenv("LLMCONSOLE_CONFIG", str(target))
    if not (Path.cwd() / "config.toml").exists():
        assert find_config(None) == target


# --- property: random TOML-ish documents only ever raise ConfigError -------------------------------------

_KEYS = (
    list(cfg.table_keys(AgentConfig)) + list(cfg.table_keys(Thresholds)) + list(cfg.table_keys(EngineConfig))
)
_key = st.sampled_from(_KEYS) | st.text(max_size=6)
_scalar = (
    st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats()
    | st.text(max_size=10)
    | st.sampled_from(["vllm", "tgi", "127.0.0.1:9300", "nvml", "[::1]:1"])
)
_value = st.recursive(
    _scalar,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_key, inner, max_size=5),
    max_leaves=15,
)
_engine = st.dictionaries(_key, _value, max_size=8) | st.fixed_dictionaries(
    {
        "id": st.text(max_size=4),
        "kind": st.sampled_from(["vllm", "sglang", "tgi", "x"]),
        "model": st.text(max_size=3),
        "port": st.integers(-1, 70000),
    },
    optional={
        "gpus": st.lists(st.integers(-2, 3), max_size=3),
        "command": st.lists(st.text(max_size=3), max_size=2),
        "backoff_max_s": st.floats(),
        "metrics_port": st.integers(0, 70000),
    },
)
_agent = st.dictionaries(_key, _value, max_size=8).flatmap(
    lambda d: st.lists(_engine, max_size=3).map(lambda engines: {**d, "engines": engines}) | st.just(d)
)
_document = st.fixed_dictionaries(
    {},
    optional={
        "agent": _agent | _value,
        "thresholds": st.dictionaries(_key, _value, max_size=5) | _value,
        "console": _value,
        "calculator": _value,
    },
) | st.dictionaries(
    st.sampled_from(["agent", "thresholds", "console", "calculator", "agnet"]) | _key, _value, max_size=4
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_document)
def test_random_documents_only_raise_config_error(doc: dict[str, Any]) -> None:
    try:
        agent = agent_config_from_dict(doc, file="fuzz.toml")
    except ConfigError as e:
        message = str(e)
        assert message.startswith("fuzz.toml: ") and "\n" not in message, message
    else:
        assert isinstance(agent, AgentConfig)
        assert agent.interval_s > 0 and agent.history_s >= agent.interval_s
        assert len({e.id for e in agent.engines}) == len(agent.engines)


def test_environment_is_not_consulted_for_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMCONSOLE_CONFIG", os.devnull)
    assert agent_config_from_dict({}).interval_s == 1.0


def test_agent_host_name_is_optional_and_checked() -> None:
    assert cfg.agent_config_from_dict({"agent": {}}).host is None  # the machine's hostname is used
    assert cfg.agent_config_from_dict({"agent": {"host": "demo-gpu01"}}).host == "demo-gpu01"
    for bad in ("gpu 01", "", "a/b", "x" * 254):
        with pytest.raises(ConfigError, match=r"\[agent\] host"):
            cfg.agent_config_from_dict({"agent": {"host": bad}})


def test_the_runtime_reports_the_configured_host(tmp_path: Path) -> None:
    from agents.runtime import AgentRuntime

    config = cfg.agent_config_from_dict(
        {"agent": {"host": "demo-gpu07", "state_dir": str(tmp_path), "gpu_source": "none"}}
    )
    assert AgentRuntime(config).collector.host == "demo-gpu07"


# --- watched engines (managed = false, issue 13) ------------------------------------------------------------


def _one_engine(**keys: Any) -> dict[str, Any]:
    return {"agent": {"engines": [{"id": "w", "kind": "vllm", "model": "m", "port": 8000, **keys}]}}


def test_watched_engine_keys() -> None:
    e = agent_config_from_dict(
        _one_engine(
            managed=False,
            restart_command=["systemctl", "restart", "vllm@w"],
            stop_command=["docker", "stop", "vllm-w"],
            stop_timeout_s=5,
        )
    ).engines[0]
    assert e.managed is False and e.restart_command == ("systemctl", "restart", "vllm@w")
    assert e.action_command("stop") == ("docker", "stop", "vllm-w") and e.action_command("start") is None
    assert e.supervision.stop_timeout_s == 5.0
    managed = agent_config_from_dict(_one_engine()).engines[0]
    assert managed.managed is True and managed.restart_command is None and managed.start_command is None
    assert agent_config_from_dict({}).allowed_action_commands is None
    assert agent_config_from_dict(
        {"agent": {"allowed_action_commands": ["/usr/local/bin/restart-vllm"]}}, base_dir=Path("/etc")
    ).allowed_action_commands == (Path("/usr/local/bin/restart-vllm"),)


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"command": ["vllm", "serve"]}, "command does not apply to a watched engine (managed = false)"),
        ({"command": ["vllm"], "args": ["--x"], "env": {"A": "b"}}, "command, args, env do not apply"),
        ({"autostart": False, "backoff_initial_s": 3}, "autostart, backoff_initial_s do not apply"),
    ],
)
def test_launch_keys_on_a_watched_engine_are_named(keys: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        agent_config_from_dict(_one_engine(managed=False, **keys), file="c.toml")
    text = str(info.value)
    assert text.startswith('c.toml: [agent] [[agent.engines]] #1 (id "w"): ') or text.startswith(
        'c.toml: [[agent.engines]] #1 (id "w"): '
    ), text
    assert message in text and "\n" not in text and "restart_command" in text


def test_action_commands_on_a_managed_engine_are_an_error() -> None:
    with pytest.raises(
        ConfigError, match=r"stop_command, restart_command apply only to a watched engine \(managed = false\)"
    ):
        agent_config_from_dict(_one_engine(restart_command=["x"], stop_command=["y"]), file="c.toml")


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ([], "restart_command: must not be empty"),
        (["systemctl", ""], r"restart_command\[1\]: must not be empty"),
        (["systemctl", "restart\nx"], "restart_command: command item 1 contains a NUL or control character"),
        (
            ["docker", "login", "--password", "hunter2hunter2"],
            "restart_command: item 2: flag '--password' takes a secret",
        ),
    ],
)
def test_bad_action_commands(command: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        agent_config_from_dict(_one_engine(managed=False, restart_command=command), file="c.toml")
    assert "hunter2" not in str(info.value) and "env =" not in str(info.value)
