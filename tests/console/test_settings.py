"""The console's side of config.toml: [console], [[console.hosts]] and [thresholds]."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.config import AgentConfig
from agents.thresholds import Thresholds
from agents.tomltables import ConfigError, table_keys
from console.rules import AGENT_JOB
from console.settings import (
    AGENT_KEYS,
    DEFAULT_MATCH,
    ConsoleConfig,
    HostConfig,
    PrometheusConfig,
    console_config_from_dict,
    load_console_config,
    parse_matchers,
)

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
    assert [h.name for h in console.hosts] == [
        "local"
    ] and console.prometheus == ()  # the example is commented
    assert "# [[console.prometheus]]" in (ROOT / "config.toml").read_text()
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
        name="gpu01",
        url="http://127.0.0.1:9300",
        ssh="ops@gpu01",
        ssh_options=("-o", "ProxyJump=bastion"),
        remote_port=9400,
        token_env="LLMCONSOLE_TOKEN",
    )
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


def test_stray_agent_keys_are_sent_to_the_agents_table() -> None:
    # the console names where a stray key belongs without loading the agent's tables: its list of the
    # agent's keys is exactly the agent's table, so every such key gets the same hint as on the agent side
    assert table_keys(AgentConfig) == AGENT_KEYS
    for key in ("backoff_max_s", "tokens_file"):
        with pytest.raises(ConfigError) as info:
            console_config_from_dict({key: 1}, file="ops.toml")
        expected = f'ops.toml: unknown top-level key "{key}" (did you mean to put it under [agent]?)'
        assert str(info.value) == expected


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


def test_prometheus_entries_with_defaults_and_paths(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[[console.prometheus]]\nname = "site-a"\nurl = "https://prom.example:9090"\ntoken_file = "prom.token"\n'
        'tls_ca = "ca.pem"\nmatch = \'job="llmconsole", env=~"prod.*"\'\nrefresh_s = 10\nstale_after_s = 60\n\n'
        '[[console.prometheus]]\nname = "vm"\nurl = "http://vm:8428/prometheus"\nbasic_auth_user = "ops"\n'
        'basic_auth_password_file = "/etc/vm.pass"\n'
    )
    a, vm = load_console_config(path).prometheus
    assert a == PrometheusConfig(
        name="site-a",
        url="https://prom.example:9090",
        match='job="llmconsole", env=~"prod.*"',
        token_file=tmp_path / "prom.token",
        tls_ca=tmp_path / "ca.pem",
        refresh_s=10.0,
        stale_after_s=60.0,
    )
    assert (vm.basic_auth_user, vm.basic_auth_password_file, vm.match) == (
        "ops",
        Path("/etc/vm.pass"),
        DEFAULT_MATCH,
    )
    assert (vm.refresh_s, vm.stale_after_s, vm.query_timeout_s) == (2.0, 45.0, 10.0)
    assert f'job="{AGENT_JOB}"' == DEFAULT_MATCH  # the job name the shipped rules expect


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"name": "p", "url": "http://x", "match": "job=x"},
            'match: expected label matchers such as job="llmconsole" (double-quoted values), got "job=x"',
        ),
        ({"name": "p", "url": "http://x", "match": '__name__="up"'}, "match: must not match __name__"),
        (
            {"name": "p", "url": "http://x", "match": 'a="1" b="2"'},
            "match: expected a comma between label matchers",
        ),
        ({"name": "p", "url": "prom:9090"}, 'url: expected an http:// or https:// URL, got "prom:9090"'),
        ({"name": "p", "url": "http://x", "tls_ca": "/ca.pem"}, "tls_ca: only applies to an https:// url"),
        (
            {
                "name": "p",
                "url": "http://x",
                "token_file": "/t",
                "basic_auth_user": "u",
                "basic_auth_password_file": "/p",
            },
            "token_file: set either token_file or basic_auth_user + basic_auth_password_file, not both",
        ),
        (
            {"name": "p", "url": "http://x", "basic_auth_user": "u"},
            "basic_auth_password_file: basic auth needs both basic_auth_user and basic_auth_password_file",
        ),
        (
            {"name": "p", "url": "http://x", "basic_auth_user": "a:b", "basic_auth_password_file": "/p"},
            "basic_auth_user: must be non-empty, without spaces, control characters or ':'",
        ),
        (
            {"name": "p", "url": "http://x", "refresh_s": 10, "stale_after_s": 5},
            "stale_after_s: must be at least refresh_s (10.0), got 5.0",
        ),
        ({"name": "p", "url": "http://x", "mtach": 'job="a"'}, 'unknown key "mtach" (did you mean "match"?)'),
        ({"url": "http://x"}, 'missing required key "name"'),
    ],
)
def test_prometheus_mistakes_are_one_line(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        console_config_from_dict({"console": {"prometheus": [entry]}}, file="ops.toml")
    assert str(info.value).startswith("ops.toml: [[console.prometheus]] #1") and message in str(info.value), (
        str(info.value)
    )


def test_prometheus_names_are_unique() -> None:
    entries = [{"name": "p", "url": "http://a"}, {"name": "p", "url": "http://b"}]
    with pytest.raises(ConfigError) as info:
        console_config_from_dict({"console": {"prometheus": entries}})
    assert (
        str(info.value)
        == 'config.toml: [[console.prometheus]] #2 (name "p") name: duplicate name "p" (also entry #1)'
    )


def test_matchers_keep_promql_escapes() -> None:
    assert parse_matchers('job="a\\"b", x!~"y|z"') == [("job", "=", 'a\\"b'), ("x", "!~", "y|z")]
    assert parse_matchers("") == []


_KEYS = [
    *table_keys(ConsoleConfig),
    *table_keys(HostConfig),
    *table_keys(PrometheusConfig),
    *table_keys(Thresholds),
]
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
    {},
    optional={
        "console": _console | _value,
        "thresholds": st.dictionaries(_key, _value, max_size=4) | _value,
        "agent": _value,
    },
) | st.dictionaries(_key, _value, max_size=3)


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
