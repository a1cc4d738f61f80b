"""The console's side of config.toml: [console], [[console.hosts]] and [thresholds]."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.config import ConfigError, Thresholds, table_keys
from console.settings import ConsoleConfig, HostConfig, console_config_from_dict, load_console_config

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "config"
CONFIGS = sorted(DATA.glob("*.toml"))


def console_expectation(path: Path) -> str:
    for line in path.read_text().splitlines()[:2]:
        name, _, expected = line.removeprefix("# ").partition(": ")
        if name == "console":
            return expected.replace("{file}", str(path))
    raise AssertionError(f"{path.name} has no '# console: ...' line")


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_data_configs_console_side(path: Path) -> None:
    expected = console_expectation(path)
    if expected == "ok":
        assert isinstance(load_console_config(path), ConsoleConfig)
    else:
        with pytest.raises(ConfigError) as info:
            load_console_config(path)
        assert str(info.value) == expected


def test_repo_config_loads_for_the_console() -> None:
    console = load_console_config(ROOT / "config.toml")
    assert [h.name for h in console.hosts] == ["local"]
    assert console.hosts[0].url == "http://127.0.0.1:9300" and console.hosts[0].tunnel_port == 9300
    assert console.thresholds.ttft_p95_s == 0.2


def test_no_hosts_is_valid() -> None:
    console = console_config_from_dict({})
    assert console.hosts == ()
    assert (console.refresh_s, console.request_timeout_s, console.stale_after_s) == (1.0, 2.0, 5.0)
    assert console.thresholds == Thresholds()


def test_full_console_values() -> None:
    path = DATA / "good_full.toml"
    console = load_console_config(path)
    assert (console.refresh_s, console.request_timeout_s, console.stale_after_s) == (0.5, 1.0, 3.0)
    gpu01, gpu02 = console.hosts
    assert gpu01 == HostConfig(
        name="gpu01", url="http://127.0.0.1:9300", ssh="ops@gpu01", ssh_options=("-o", "ProxyJump=bastion"),
        remote_port=9400, token_env="LLMCONSOLE_TOKEN",
    )  # fmt: skip
    assert gpu01.tunnel_port == 9400
    assert gpu02.token_file == DATA / "gpu02.token"  # relative to the config file
    assert gpu02.tunnel_port == 9443
    assert console.thresholds.hung_after_s == 60.0  # [thresholds] shared with the agent
    assert console.host("gpu02") is gpu02 and console.host("x") is None
    assert console.source == path


def test_tunnel_port_defaults_from_the_url_scheme() -> None:
    assert HostConfig(name="a", url="https://a/").tunnel_port == 443
    assert HostConfig(name="a", url="http://a").tunnel_port == 80


def test_console_ignores_agent_tables() -> None:
    # the agent's tables are not the console's business (a broken [agent] still lets the console start)
    console = console_config_from_dict({"agent": {"interval_s": "fast", "engines": 7}})
    assert console.hosts == ()


def test_mistakes_name_file_table_and_key() -> None:
    with pytest.raises(ConfigError) as info:
        console_config_from_dict({"console": {"refesh_s": 1}}, file="ops.toml")
    assert str(info.value) == 'ops.toml: [console]: unknown key "refesh_s" (did you mean "refresh_s"?)'
    with pytest.raises(ConfigError) as info:
        console_config_from_dict(
            {"console": {"hosts": [{"name": "a", "url": "http://x", "ssh": "a b"}]}}, file="ops.toml"
        )
    assert (
        str(info.value)
        == 'ops.toml: [[console.hosts]] #1 (name "a") ssh: expected "user@host" or "host", got "a b"'
    )
    with pytest.raises(ConfigError) as info:
        console_config_from_dict(
            {"console": {"hosts": [{"name": "a", "url": "http://x", "ssh_options": ["-v", 3]}]}}
        )
    assert (
        str(info.value)
        == 'config.toml: [[console.hosts]] #1 (name "a") ssh_options[1]: expected a string, got 3'
    )


_KEYS = list(table_keys(ConsoleConfig)) + list(table_keys(HostConfig)) + list(table_keys(Thresholds))
_key = st.sampled_from(_KEYS) | st.text(max_size=6)
_scalar = (
    st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=10)
    | st.sampled_from(["http://127.0.0.1:9300", "https://h:1/", "ops@gpu01", "-x", "TOKEN"])
)
_value = st.recursive(
    _scalar,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_key, inner, max_size=5),
    max_leaves=15,
)
_hosts = st.lists(st.dictionaries(_key, _value, max_size=7), max_size=3)
_console = st.dictionaries(_key, _value, max_size=5).flatmap(
    lambda d: _hosts.map(lambda h: {**d, "hosts": h}) | st.just(d)
)
_document = st.fixed_dictionaries(
    {}, optional={"console": _console | _value, "thresholds": st.dictionaries(_key, _value, max_size=4) | _value,
                  "agent": _value}
) | st.dictionaries(_key, _value, max_size=3)  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_document)
def test_random_documents_only_raise_config_error(doc: dict[str, Any]) -> None:
    try:
        console = console_config_from_dict(doc, file="fuzz.toml")
    except ConfigError as e:
        assert str(e).startswith("fuzz.toml: ") and "\n" not in str(e), str(e)
    else:
        assert len({h.name for h in console.hosts}) == len(console.hosts)
        assert all(h.url.startswith(("http://", "https://")) for h in console.hosts)
