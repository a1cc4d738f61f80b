"""Launch requests are data: executable allow-list, model roots, hub ids, secrets and control characters
in argv — unit checks, a Hypothesis fuzz of the model guard, and a real agent that refuses engines."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.config import agent_config_from_dict
from agents.launchguard import (
    BUILTIN_PYTHON_MODULES,
    GUARDED_ENV,
    LaunchPolicy,
    Redactor,
    check_env,
    check_executable,
    check_launcher,
    check_model,
    refusal,
    secret_in_argv,
    secret_repeated,
)
from agents.server import startup_warnings
from agents.tomltables import ConfigError
from tests.support.agentproc import free_port, kill_everything
from tests.support.secure_agent import SecureAgent, write_config, write_tokens


@pytest.mark.parametrize(
    "argv",
    [
        ["--api-key", "x"],
        ["--api_key=x"],
        ["--admin-api-key", "x"],
        ["--hf-token", "x"],
        ["--token", "x"],
        ["--ngrok-authtoken", "x"],
        ["--password=x"],
        ["--model", "hf_" + "A" * 34],
        ["Bearer abcdefghijkl"],
        # inside the strings a shell or an interpreter runs (issue 10 §5)
        ["sh", "-c", "vllm serve m --api-key x"],
        ["sh", "-c", "exec vllm serve m --api-key=x"],
        ["bash", "-lc", "HF_TOKEN=hunter2hunter2 vllm serve m"],
        ["python3", "-c", "key = 'sk-abcdefghij0123456789XYZ'"],
        ["sh", "-c", "curl -H 'Authorization: Bearer abcdefghijkl' http://h"],
        ["--hf-overrides", '{"api_key": "Xy12345678"}'],
        ["sh", "-c", "pip download --index-url https://u:pa55word@pypi.example/simple x"],
        ["--auth_token=Zk39xQ2mLp0w"],
    ],
)
def test_secrets_in_argv_are_refused(argv: list[str]) -> None:
    problem = secret_in_argv(argv)
    assert problem is not None and "env" in problem
    for value in ("hf_AAAA", "abcdefgh", "hunter2", "sk-abc", "Xy1234", "pa55word", "Zk39x"):
        assert value not in problem


@pytest.mark.parametrize(
    "argv",
    [
        ["--max-num-batched-tokens", "8192"],
        ["--tokenizer", "/m"],
        ["--max-total-tokens", "4"],
        ["--enable-tokenizer-info-endpoint"],
        ["--skip-tokenizer-init"],
        ["--max-tokens", "5"],
        ["--served-model-name", "sk-learn-model-for-tests"],
        ["sh", "-c", "HF_TOKEN=$HF_TOKEN exec vllm serve m"],
        ["--chat-template", "{% set token = messages[0] %}{{ bos_token }}"],
        ["--hf-overrides", '{"pad_token": "<|endoftext|>"}'],
        ["python", "-c", "print('passwd: Permission denied')"],
    ],
)
def test_ordinary_flags_are_not_secrets(argv: list[str]) -> None:
    assert secret_in_argv(argv) is None


def test_config_refuses_secret_args_naming_the_engine() -> None:
    data = {
        "agent": {
            "engines": [
                {
                    "id": "llama",
                    "kind": "vllm",
                    "model": "m",
                    "port": 8000,
                    "args": ["--api-key", "s3cr3t-value"],
                }
            ]
        }
    }
    with pytest.raises(ConfigError) as err:
        agent_config_from_dict(data, file="c.toml")
    text = str(err.value)
    assert (
        text.startswith('c.toml: [[agent.engines]] #1 (id "llama") args:')
        and "env" in text
        and "s3cr3t" not in text
    )


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
    assert "outside [agent] model_roots" in (
        check_model(str(root / "llama" / ".." / ".." / "outside"), confined) or ""
    )
    assert "outside" in (check_model(str(root / "escape"), confined) or "")  # symlink escape
    assert "hub id" in (check_model("meta-llama/Llama-3.1-8B", confined) or "")
    assert (
        check_model("meta-llama/Llama-3.1-8B", LaunchPolicy(model_roots=(root,), allow_hub_ids=True)) is None
    )
    assert check_model("meta-llama/Llama-3.1-8B", LaunchPolicy()) is None  # no policy: allowed
    assert "hub id" in (check_model("org/name", LaunchPolicy(allow_hub_ids=False)) or "")
    assert "control character" in (check_model("a\nb", LaunchPolicy()) or "")
    assert "neither" in (check_model("$(rm -rf /)", confined) or "")
    rel = check_model("./llama", confined, cwd=str(root))
    assert rel is None


def test_refusal_checks_argv_env_and_model() -> None:
    policy = LaunchPolicy()
    assert refusal([sys.executable, "-m", "agents.sim"], {"A": "1"}, "m", policy) is None
    assert "NUL" in (refusal([sys.executable, "a\0b"], {}, "m", policy) or "")
    assert "environment" in (refusal([sys.executable], {"A": "x\ny"}, "m", policy) or "")


# --- the built-in launcher allow-list (issue 10 §5) --------------------------------------------------------

LLMCONSOLE = os.path.join(os.path.dirname(sys.executable), "llmconsole")
BUILTIN_OK = [
    ["vllm", "serve", "m"],
    ["/opt/vllm/bin/vllm", "serve", "m"],
    ["text-generation-launcher", "--model-id", "m"],
    [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", "m"],
    [sys.executable, "-m", "vllm.entrypoints.cli.main", "serve", "m"],
    ["python3", "-m", "sglang.launch_server"],
    ["python3.12", "-u", "-m", "sglang.launch_server"],
    [sys.executable, "-mvllm.entrypoints.openai.api_server"],
    [LLMCONSOLE, "sim-engine", "--dialect", "vllm"],
    [sys.executable, "-m", "agents.sim", "--dialect", "tgi"],
]
BUILTIN_REFUSED = [  # (argv, what the one-line reason must name)
    (["/bin/sh", "-c", "exec vllm serve m"], "not a built-in engine launcher"),
    (["bash", "-c", "vllm serve m"], "not a built-in engine launcher"),
    ([sys.executable, "-c", "import os; os.system('id')"], "not -c CODE"),
    ([sys.executable, "-I", "-c", "pass"], "not -c CODE"),
    ([sys.executable, "/tmp/serve.py"], "not '/tmp/serve.py'"),
    ([sys.executable, "-m", "http.server"], "not -m http.server"),
    ([sys.executable, "-X", "dev", "-m", "agents.sim"], "not switch '-X'"),
    ([sys.executable], "not an interactive interpreter"),
    ([LLMCONSOLE, "agent"], "'llmconsole agent' is not a built-in engine launcher"),
    (["/usr/bin/env", "vllm", "serve"], "not a built-in engine launcher"),
    (["/nonexistent/bin/vllm-engine"], "/nonexistent/bin/vllm-engine"),
]


@pytest.mark.parametrize("argv", BUILTIN_OK, ids=lambda a: " ".join(os.path.basename(x) for x in a[:3]))
def test_builtin_launchers_run_without_an_allow_list(argv: list[str]) -> None:
    assert check_launcher(argv, LaunchPolicy()) is None


@pytest.mark.parametrize(("argv", "why"), BUILTIN_REFUSED, ids=lambda a: str(a)[:40])
def test_everything_else_is_refused_naming_the_key_to_set(argv: list[str], why: str) -> None:
    problem = check_launcher(argv, LaunchPolicy())
    assert problem is not None and why in problem and "\n" not in problem
    assert "[agent] allowed_executables" in problem or "[agent] allowed_python_modules" in problem


def test_an_explicit_allow_list_replaces_the_builtin_one(tmp_path: Path) -> None:
    engine = tmp_path / "my-engine"
    engine.write_text("#!/bin/sh\n")
    engine.chmod(0o755)
    python = os.path.realpath(sys.executable)
    policy = LaunchPolicy(allowed_executables=(engine, Path(python)))
    assert (
        check_launcher([str(engine), "--port", "1"], policy) is None
    )  # not a built-in name: allowed, listed
    assert check_launcher([sys.executable, "-m", "agents.sim"], policy) is None  # built-in modules by default
    assert "not in [agent] allowed_executables" in (check_launcher(["/usr/bin/vllm", "serve"], policy) or "")
    assert "not -c CODE" in (check_launcher([python, "-c", "pass"], policy) or "")  # interpreters: -m only
    own = LaunchPolicy(allowed_executables=(Path(python),), allowed_python_modules=("my_pkg.serve",))
    assert check_launcher([python, "-m", "my_pkg.serve"], own) is None
    problem = check_launcher([python, "-m", "agents.sim"], own) or ""
    assert "allowed_python_modules (my_pkg.serve)" in problem and "built-in" not in problem
    # allowed_python_modules alone also applies to the built-in, name-matched interpreters
    assert (
        check_launcher(
            ["python3", "-m", "my_pkg.serve"], LaunchPolicy(allowed_python_modules=("my_pkg.serve",))
        )
        is None
    )


def test_builtin_launchers_writable_by_others_are_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # no sticky bit: anyone may replace the file
    fake = shared / "vllm"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    assert "writable by others" in (check_launcher([str(fake), "serve"], LaunchPolicy()) or "")


@pytest.mark.parametrize("name", GUARDED_ENV)
def test_code_injection_variables_are_refused_unless_allowed(name: str) -> None:
    argv = [sys.executable, "-m", "agents.sim"]
    problem = refusal(argv, {name: "/srv/x", "VLLM_CPU_KVCACHE_SPACE": "1"}, "m", LaunchPolicy())
    assert (
        problem is not None
        and name in problem
        and "[agent] allowed_env_overrides" in problem
        and "/srv/x" not in problem
    )
    assert refusal(argv, {name: "/srv/x"}, "m", LaunchPolicy(allowed_env_overrides=(name,))) is None
    assert check_env({"HF_HOME": "/h", "CUDA_HOME": "/c"}, LaunchPolicy()) is None


def test_a_secret_env_value_repeated_in_argv_is_refused() -> None:
    env = {"VLLM_API_KEY": "sentinel-value-12", "TOKENIZERS_PARALLELISM": "false"}
    problem = secret_repeated(["vllm", "serve", "m", "--x", "pre-sentinel-value-12"], env)
    assert problem is not None and "VLLM_API_KEY" in problem and "sentinel" not in problem
    assert secret_repeated(["vllm", "serve", "m", "--x", "false"], env) is None


def _refusals(config_path: Path) -> dict[str, str | None]:
    """What the agent's launch guard says about each engine of a config, built as AgentRuntime builds it."""
    from agents.config import load_agent_config
    from agents.engines import get_adapter
    from agents.runtime import resolve_executable, scrubbed_env

    config = load_agent_config(config_path)
    policy = LaunchPolicy.of(config)
    base = scrubbed_env(os.environ)
    out = {}
    for engine in config.engines:
        adapter, spec = get_adapter(engine.kind), engine.launch_spec()
        argv = resolve_executable(adapter.argv(spec), base.get("PATH"))
        out[engine.id] = refusal(argv, adapter.env(spec, base), engine.model, policy)
    return out


def test_shipped_demo_and_e2e_configs_pass_the_default_guard(tmp_path: Path) -> None:
    from console import demo_fleet
    from tests.e2e.support import rig

    root = Path(__file__).resolve().parents[3]
    assert set(_refusals(root / "config.toml").values()) == {None}  # llmconsole sim-engine, as shipped
    for i, host in enumerate(demo_fleet.plan_fleet(2, demo_fleet.FAST)):
        ports = {e.id: (free_port(), free_port() if e.kind == "tgi" else None) for e in host.engines}
        path = tmp_path / f"demo{i}.toml"
        path.write_text(demo_fleet.agent_toml(host, tmp_path / f"h{i}", free_port(), ports, demo_fleet.FAST))
        assert set(_refusals(path).values()) == {None}, host.name
    engines = [
        rig.vllm_engine(
            "main",
            Path(sys.executable),
            tmp_path,
            "run",
            ["--max-model-len", "256"],
            cache_root=tmp_path / "cache",
        )
    ]
    path = rig.write_config(tmp_path / "e2e.toml", free_port(), tmp_path / "state", engines)
    assert _refusals(path) == {"main": None}  # <venv python> -m vllm.entrypoints.openai.api_server


def test_builtin_modules_are_the_documented_ones() -> None:
    assert BUILTIN_PYTHON_MODULES == (
        "vllm.entrypoints.openai.api_server",
        "vllm.entrypoints.cli.main",
        "sglang.launch_server",
        "agents.sim",
    )


_argv_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)


@settings(max_examples=300, deadline=None)
@given(
    argv=st.lists(_argv_text, min_size=1, max_size=6),
    env=st.dictionaries(
        st.sampled_from(["PATH", "VLLM_API_KEY", "PYTHONPATH", "HF_TOKEN", "X"]), _argv_text, max_size=3
    ),
)
def test_the_guard_never_raises(argv: list[str], env: dict[str, str]) -> None:
    problem = refusal(argv, env, "m", LaunchPolicy())
    assert problem is None or ("\n" not in problem and problem)


@settings(max_examples=200, deadline=None)
@given(
    before=_argv_text.filter(lambda t: "'" not in t and '"' not in t),
    flag=st.sampled_from(["--api-key", "--hf-token", "--token", "--password", "--admin-api-key"]),
    shell=st.sampled_from(["sh", "bash"]),
)
def test_a_secret_flag_inside_a_shell_string_is_always_found(before: str, flag: str, shell: str) -> None:
    problem = secret_in_argv([shell, "-c", f"{before} vllm serve m {flag} v4lue"])
    assert problem is not None and "item 2" in problem and "v4lue" not in problem


def test_startup_warns_once_when_no_allow_list() -> None:
    config = agent_config_from_dict(
        {
            "agent": {
                "engines": [
                    {"id": "e", "kind": "vllm", "model": "m", "port": 8000, "env": {"VLLM_API_KEY": "short"}}
                ]
            }
        }
    )
    warnings = startup_warnings(config)
    assert any("allowed_executables is not set" in w for w in warnings)
    assert any("shorter than 8" in w for w in warnings)
    assert Redactor(["short"]).too_short == 1


_parts = st.sampled_from(
    ["..", ".", "llama", "escape", "escape2", "$(id)", "`id`", "a\nb", "nul\0", "~", "", "x;y", "..."]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(_parts, min_size=1, max_size=6), absolute=st.booleans())
def test_fuzzed_model_paths_never_escape_the_root(
    tmp_path_factory: pytest.TempPathFactory, parts: list[str], absolute: bool
) -> None:
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
        assert (
            not looks_like_path
            or real == str(root.resolve())
            or real.startswith(str(root.resolve()) + os.sep)
        ), model


def test_real_agent_refuses_engines_outside_the_policy(tmp_path: Path) -> None:
    models = tmp_path / "models"
    (models / "a").mkdir(parents=True)
    sim = [sys.executable, "-m", "agents.sim", "--dialect", "vllm"]
    engines = [
        {
            "id": "ok",
            "kind": "vllm",
            "model": str(models / "a"),
            "port": free_port(),
            "command": sim,
            "args": ["--load", "1"],
        },
        {
            "id": "badexe",
            "kind": "vllm",
            "model": str(models / "a"),
            "port": free_port(),
            "command": ["/bin/sleep"],
        },
        {"id": "badmodel", "kind": "vllm", "model": "/etc", "port": free_port(), "command": sim},
        {"id": "hub", "kind": "vllm", "model": "org/some-model", "port": free_port(), "command": sim},
    ]
    port = free_port()
    tokens = write_tokens(tmp_path / "tokens", ops="operator")
    agent_cfg = {
        "allowed_executables": [os.path.realpath(sys.executable)],
        "model_roots": [str(models)],
        "tokens_file": str(tmp_path / "tokens"),
    }
    agent = SecureAgent(write_config(tmp_path, port, engines, agent=agent_cfg), port, token=tokens["ops"])
    agent.start()
    try:
        snap = agent.wait(
            "ok ready",
            lambda s: next(e for e in s["engines"] if e["id"] == "ok")["state"] == "ready",
            timeout=40,
        )
        states = {
            e["id"]: (e["state"], e["events"][-1]["reason"] if e["events"] else None, e["pid"])
            for e in snap["engines"]
        }
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


def test_real_agent_default_policy_runs_launchers_and_refuses_the_rest(tmp_path: Path) -> None:
    """No allowed_executables: `llmconsole sim-engine` (the shipped form) runs; a shell, `python -c` and a
    PYTHONPATH override are `failed` with one line naming the key to set, and never launched."""
    engines = [
        {
            "id": "shipped",
            "kind": "vllm",
            "model": "sim-a",
            "port": free_port(),
            "command": ["llmconsole", "sim-engine", "--dialect", "vllm"],
            "args": ["--load", "1"],
        },
        {
            "id": "shell",
            "kind": "vllm",
            "model": "sim-b",
            "port": free_port(),
            "command": ["sh", "-c", f'exec {sys.executable} -m agents.sim --dialect vllm "$@"', "sh"],
        },
        {
            "id": "pyc",
            "kind": "vllm",
            "model": "sim-c",
            "port": free_port(),
            "command": [
                sys.executable,
                "-c",
                "import runpy; runpy.run_module('agents.sim', run_name='__main__')",
            ],
        },
        {
            "id": "pypath",
            "kind": "vllm",
            "model": "sim-d",
            "port": free_port(),
            "command": [sys.executable, "-m", "agents.sim", "--dialect", "vllm"],
            "env": {"PYTHONPATH": str(tmp_path)},
        },
    ]
    port = free_port()
    agent = SecureAgent(write_config(tmp_path, port, engines), port)
    agent.start()
    try:
        snap = agent.wait(
            "shipped ready",
            lambda s: next(e for e in s["engines"] if e["id"] == "shipped")["state"] == "ready",
            timeout=40,
        )
        states = {
            e["id"]: (e["state"], e["events"][-1]["reason"] if e["events"] else "", e["pid"])
            for e in snap["engines"]
        }
        assert (
            "not a built-in engine launcher" in states["shell"][1]
            and "[agent] allowed_executables" in states["shell"][1]
        )
        assert "not -c CODE" in states["pyc"][1] and "[agent] allowed_python_modules" in states["pyc"][1]
        assert "PYTHONPATH" in states["pypath"][1] and "[agent] allowed_env_overrides" in states["pypath"][1]
        for eid in ("shell", "pyc", "pypath"):
            assert states[eid][0] == "failed" and states[eid][2] is None and "\n" not in states[eid][1], (
                states[eid]
            )
        assert (
            "allowed_executables is not set: engines may run only the built-in launchers"
            in agent.stderr_text()
        )
    finally:
        kill_everything(agent, tmp_path / "state")


def test_a_bare_interpreter_name_is_warned_about_at_start() -> None:
    from types import SimpleNamespace

    from agents.launchguard import LaunchPolicy

    engines = [
        SimpleNamespace(
            id="bare", command=("python", "-m", "vllm.entrypoints.openai.api_server"), managed=True
        ),
        SimpleNamespace(id="pinned", command=("/opt/vllm/bin/python3", "-m", "vllm"), managed=True),
        SimpleNamespace(id="script", command=("vllm", "serve"), managed=True),
        SimpleNamespace(id="default", command=None, managed=True),
    ]
    warned = LaunchPolicy.engine_warnings(engines)
    assert len(warned) == 1 and warned[0].startswith("engine bare: command[0] is the bare name 'python'")
    assert "agent's PATH" in warned[0]
