"""The EngineAdapter contract, checked on every registered adapter."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.engines import ADAPTERS, UnknownEngine, all_wanted, get_adapter
from agents.engines.base import COUNTERS, GAUGES, HISTOGRAMS, EngineAdapter, LaunchSpec
from agents.metrics.model import MetricSet
from agents.metrics.parse import parse

DATA = Path(__file__).resolve().parents[2] / "data" / "metrics"
FIXTURES = sorted(p for p in DATA.iterdir() if p.suffix in (".prom", ".txt"))

DEFAULT_PREFIX = {
    "vllm": ["vllm", "serve"],
    "sglang": ["python", "-m", "sglang.launch_server"],
    "tgi": ["text-generation-launcher"],
}
MODEL_FLAG_WITH_CUSTOM_PREFIX = {"vllm": "--model", "sglang": "--model-path", "tgi": "--model-id"}
HOST_FLAG = {"vllm": "--host", "sglang": "--host", "tgi": "--hostname"}
OPT_OUTS = {
    "HF_HUB_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
}

adapters = pytest.mark.parametrize("adapter", list(ADAPTERS.values()), ids=list(ADAPTERS))


def spec(**kw) -> LaunchSpec:
    base = {"id": "e1", "model": "/models/tiny", "port": 8123}
    base.update(kw)
    return LaunchSpec(**base)


def flag_values(argv: list[str], flag: str) -> list[str]:
    """Every value given to ``flag`` in argv, in ``--flag v`` or ``--flag=v`` form."""
    out = []
    for i, token in enumerate(argv):
        if token == flag:
            out.append(argv[i + 1])
        elif token.startswith(flag + "="):
            out.append(token.split("=", 1)[1])
    return out


# --- registry ------------------------------------------------------------------------------------------
def test_registry_has_the_three_engines_keyed_by_kind():
    assert set(ADAPTERS) == {"vllm", "sglang", "tgi"}
    for kind, adapter in ADAPTERS.items():
        assert isinstance(adapter, EngineAdapter) and adapter.kind == kind
        assert get_adapter(kind) is adapter


@pytest.mark.parametrize("bad", ["", "VLLM", "llama.cpp", None])
def test_unknown_kind_is_a_clear_value_error(bad):
    with pytest.raises(UnknownEngine) as info:
        get_adapter(bad)
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert "\n" not in message and all(kind in message for kind in ADAPTERS)


# --- launch --------------------------------------------------------------------------------------------
@adapters
def test_argv_default_prefix_model_host_and_port(adapter):
    argv = adapter.argv(spec())
    assert argv[: len(DEFAULT_PREFIX[adapter.kind])] == DEFAULT_PREFIX[adapter.kind]
    assert argv.count("/models/tiny") == 1
    assert flag_values(argv, HOST_FLAG[adapter.kind]) == ["127.0.0.1"]
    assert flag_values(argv, "--port") == ["8123"]


@adapters
def test_custom_command_replaces_the_prefix_and_names_the_model_by_flag(adapter):
    command = ("/opt/venv/bin/python", "-m", f"{adapter.kind}.custom_entry")
    argv = adapter.argv(spec(command=command))
    assert argv[:3] == list(command)
    assert flag_values(argv, MODEL_FLAG_WITH_CUSTOM_PREFIX[adapter.kind]) == ["/models/tiny"]
    assert argv.count("/models/tiny") == 1
    assert DEFAULT_PREFIX[adapter.kind][0] not in argv


@adapters
def test_spec_fields_win_over_copies_in_args(adapter):
    host = HOST_FLAG[adapter.kind]
    args = ("--port", "9999", f"{host}=0.0.0.0", "--max-num-seqs", "4", "--served-model-name", "old")
    argv = adapter.argv(spec(host="10.0.0.5", args=args, served_model_name="tiny"))
    assert flag_values(argv, "--port") == ["8123"]
    assert flag_values(argv, host) == ["10.0.0.5"]
    assert flag_values(argv, "--served-model-name") == ["tiny"]
    assert argv[-2:] == ["--max-num-seqs", "4"]  # other args pass through, last, in order
    assert "9999" not in argv and "old" not in argv


@adapters
def test_served_model_name_only_when_given(adapter):
    assert "--served-model-name" not in adapter.argv(spec())
    argv = adapter.argv(spec(served_model_name="llama-3"))
    assert flag_values(argv, "--served-model-name") == ["llama-3"]


@adapters
def test_model_in_args_is_not_duplicated(adapter):
    flag = MODEL_FLAG_WITH_CUSTOM_PREFIX[adapter.kind]
    argv = adapter.argv(spec(args=(flag, "/other/model", "--seed", "1")))
    assert "/other/model" not in argv and argv.count("/models/tiny") == 1
    assert argv[-2:] == ["--seed", "1"]


def test_vllm_served_model_name_with_several_values_in_args_is_dropped_whole():
    argv = get_adapter("vllm").argv(
        spec(served_model_name="a", args=("--served-model-name", "x", "y", "--seed", "1"))
    )
    assert "x" not in argv and "y" not in argv and flag_values(argv, "--served-model-name") == ["a"]


def test_sglang_enables_metrics_once():
    sglang = get_adapter("sglang")
    assert sglang.argv(spec()).count("--enable-metrics") == 1
    assert sglang.argv(spec(args=("--enable-metrics",))).count("--enable-metrics") == 1


def test_tgi_metrics_port_is_unique_per_engine():
    tgi = get_adapter("tgi")
    assert flag_values(tgi.argv(spec(port=3000)), "--prometheus-port") == ["13000"]
    assert flag_values(tgi.argv(spec(port=3001)), "--prometheus-port") == ["13001"]
    assert flag_values(tgi.argv(spec(port=60000)), "--prometheus-port") == ["50000"]  # 70000 > 65535
    explicit = tgi.argv(spec(metrics_port=9100, args=("--prometheus-port", "9000")))
    assert flag_values(explicit, "--prometheus-port") == ["9100"]  # spec field wins
    chosen_by_args = tgi.argv(spec(args=("--prometheus-port=9200",)))
    assert flag_values(chosen_by_args, "--prometheus-port") == ["9200"]  # adapter default yields


def test_tgi_short_port_alias_in_args_is_replaced():
    argv = get_adapter("tgi").argv(spec(args=("-p", "80")))
    assert "-p" not in argv and flag_values(argv, "--port") == ["8123"]


@adapters
def test_env_opts_out_selects_gpus_and_lets_spec_env_win(adapter):
    base = {"PATH": "/usr/bin", "HF_HUB_OFFLINE": "0"}
    env = adapter.env(spec(gpus=(0, 2), env={"MY_VAR": "x", "DO_NOT_TRACK": "0"}), base)
    assert env["PATH"] == "/usr/bin"
    assert env["CUDA_VISIBLE_DEVICES"] == "0,2"
    assert env["HF_HUB_OFFLINE"] == "1"  # the opt-out overrides base
    assert {k: env[k] for k in OPT_OUTS if k != "DO_NOT_TRACK"} == {
        k: v for k, v in OPT_OUTS.items() if k != "DO_NOT_TRACK"
    }
    assert env["DO_NOT_TRACK"] == "0" and env["MY_VAR"] == "x"  # spec.env last
    assert base == {"PATH": "/usr/bin", "HF_HUB_OFFLINE": "0"}  # not mutated
    no_gpus = adapter.env(spec(), {})
    assert "CUDA_VISIBLE_DEVICES" not in no_gpus
    assert all(no_gpus[k] == v for k, v in OPT_OUTS.items())


def test_tgi_turns_off_its_usage_stats():
    assert get_adapter("tgi").env(spec(), {})["USAGE_STATS"] == "off"


@adapters
@pytest.mark.parametrize(
    ("host", "connect"), [("127.0.0.1", "127.0.0.1"), ("0.0.0.0", "127.0.0.1"), ("::1", "[::1]")]
)
def test_urls_connect_to_the_bound_host_and_port(adapter, host, connect):
    s = spec(host=host)
    assert adapter.health_url(s) == f"http://{connect}:8123/health"
    assert adapter.metrics_url(s) == f"http://{connect}:8123/metrics"
    assert adapter.completions_url(s) == f"http://{connect}:8123/v1/completions"


# --- metrics -------------------------------------------------------------------------------------------
@adapters
def test_empty_exposition_reads_all_none(adapter):
    r = adapter.read(MetricSet())
    assert r.kind == adapter.kind
    assert r.gauges == dict.fromkeys(GAUGES)
    assert r.counters == dict.fromkeys(COUNTERS)
    assert r.histograms == dict.fromkeys(HISTOGRAMS)
    assert r.models == () and r.parts == {}
    assert adapter.detect(MetricSet()) == 0


class RecordingMetricSet(MetricSet):
    """A MetricSet that remembers every sample name looked up."""

    def __init__(self, base: MetricSet) -> None:
        super().__init__(base.samples, base.types, base.problems, base.lines)
        self.asked: set[str] = set()

    def get(self, name: str):
        self.asked.add(name)
        return super().get(name)

    def has(self, name: str) -> bool:
        self.asked.add(name)
        return super().has(name)


@adapters
@pytest.mark.parametrize("fixture", FIXTURES, ids=[p.name for p in FIXTURES])
def test_wanted_covers_every_name_read_and_filtering_changes_nothing(adapter, fixture):
    text = fixture.read_text()
    recording = RecordingMetricSet(parse(text))
    full = adapter.read(recording)
    assert recording.asked <= adapter.wanted()
    assert adapter.read(parse(text, adapter.wanted())) == full
    assert adapter.read(parse(text, all_wanted())) == full


@adapters
def test_wanted_names_are_sample_names(adapter):
    wanted = adapter.wanted()
    assert wanted and all(isinstance(n, str) and " " not in n and "{" not in n for n in wanted)
    assert wanted <= all_wanted()


@adapters
def test_reading_is_deterministic_and_keys_are_exact(adapter):
    for fixture in FIXTURES:
        one, two = adapter.read(parse(fixture.read_text())), adapter.read(parse(fixture.read_text()))
        assert one == two
        assert set(one.gauges) == set(GAUGES) and set(one.counters) == set(COUNTERS)
        assert set(one.histograms) == set(HISTOGRAMS)
        values = [*one.gauges.values(), *one.counters.values()]
        assert all(v is None or isinstance(v, float) for v in values)


@adapters
def test_unsupported_metrics_are_none_in_every_exposition(adapter):
    logical = {*GAUGES, *COUNTERS, *HISTOGRAMS}
    assert adapter.unsupported <= logical
    for fixture in FIXTURES:
        r = adapter.read(parse(fixture.read_text()))
        values = {**r.gauges, **r.counters, **r.histograms}
        assert all(values[name] is None for name in adapter.unsupported), fixture.name


def test_every_logical_gauge_has_a_rule_to_combine_parts():
    from agents.engines._aggregate import GAUGE_COMBINE

    assert set(GAUGE_COMBINE) == set(GAUGES)


@adapters
def test_every_engine_counts_finished_requests(adapter):
    """``requests`` is never "unsupported": each engine has a finished-requests counter, read from its own
    expositions as a non-negative float."""
    assert "requests" not in adapter.unsupported
    own = [f for f in FIXTURES if adapter.detect(parse(f.read_text())) > 0.5]
    assert own, adapter.kind
    seen = [adapter.read(parse(f.read_text())).counters["requests"] for f in own]
    assert any(v is not None for v in seen)
    assert all(v is None or v >= 0 for v in seen)


def test_waiting_reasons_add_up_to_the_waiting_queue_wherever_both_are_read():
    checked = 0
    for adapter in ADAPTERS.values():
        for fixture in FIXTURES:
            g = adapter.read(parse(fixture.read_text())).gauges
            reasons = [g["requests_waiting_capacity"], g["requests_waiting_deferred"]]
            if None in reasons or g["requests_waiting"] is None:
                continue
            assert sum(reasons) == g["requests_waiting"], (
                adapter.kind,
                fixture.name,
            )  # the engine's own invariant
            checked += 1
    assert checked >= 3  # the three vLLM 0.32-shaped fixtures


# --- engine knowledge the rest of the agent asks for: identity, launchers, safety, version, simulation ----
SIM_DATA = Path(__file__).resolve().parents[2] / "data" / "sim"
# Log lines each engine prints that name its version; every adapter with version patterns lists some here.
VERSION_LINES = {
    "vllm": [
        ("(APIServer pid=7) INFO 11-29 10:00:00 [api_server.py:1839] vLLM API server version 0.8.4", "0.8.4"),
        (
            "INFO 05-01 12:00:00 [core.py:61] Initializing a V1 LLM engine (v0.11.0rc1) with config: ...",
            "0.11.0rc1",
        ),
    ],
    "sglang": [],
    "tgi": [],
}
NOT_A_VERSION_LINE = "INFO:     Uvicorn running on http://127.0.0.1:8000 (Press CTRL+C to quit) version"


@adapters
def test_identity_names_the_engine_and_its_advisory_package(adapter):
    from agents.exposure import load_advisories

    assert adapter.display.strip() and adapter.package.strip()
    assert len({a.package for a in ADAPTERS.values()}) == len(ADAPTERS)
    assert load_advisories().engines[adapter.kind].package == adapter.package
    known = {a.package for a in ADAPTERS.values()}
    assert {a.package for a in load_advisories().advisories} <= known  # no advisory for an unknown engine


@adapters
def test_default_launch_is_a_built_in_launcher(adapter):
    """The launch guard's built-in allow-list comes from the adapters: their default command passes it."""
    from agents.launchguard import (
        BUILTIN_LAUNCHERS_TEXT,
        BUILTIN_PYTHON_MODULES,
        LaunchPolicy,
        check_launcher,
    )

    assert adapter.executables or adapter.python_modules
    assert check_launcher(adapter.argv(spec()), LaunchPolicy()) is None
    assert set(adapter.python_modules) <= set(BUILTIN_PYTHON_MODULES)
    assert all(x in BUILTIN_LAUNCHERS_TEXT for x in adapter.executables)


@adapters
def test_dangerous_switches_are_explained_and_cite_only_public_pages(adapter):
    switches = adapter.dangerous_switches()
    assert switches and len({s.name for s in switches}) == len(switches)
    for s in switches:
        assert s.reason.strip(), s
        assert s.name.startswith("--") if s.is_flag else s.name.isupper() and " " not in s.name
        assert s.source is None or (s.source.startswith("https://") and "research" not in s.source), s
        assert not (s.prefix and s.expect), s
    assert "--trust-remote-code" in {s.name for s in switches}  # all three run model code with it


@adapters
def test_each_dangerous_switch_in_a_launch_is_reported(adapter):
    """Every switch the adapter declares, put into its own launch (args or env), comes out of the audit."""
    from agents.exposure import dangerous_switches

    for s in adapter.dangerous_switches():
        name = s.name + "-file" if s.prefix else s.name
        launch = spec(args=(name,)) if s.is_flag else spec(env={s.name: "0" if s.expect else "1"})
        found = dangerous_switches(adapter, adapter.argv(launch), adapter.env(launch, {}))
        assert any(f.switch.split("=", 1)[0] == name and f.reason == s.reason for f in found), (s, found)


@adapters
def test_own_default_launch_is_clean_and_a_wide_bind_is_reported(adapter):
    from agents.exposure import dangerous_switches

    clean = spec()
    assert dangerous_switches(adapter, adapter.argv(clean), adapter.env(clean, {})) == []
    wide = spec(host="0.0.0.0")
    found = dangerous_switches(adapter, adapter.argv(wide), adapter.env(wide, {}))
    assert [f.switch for f in found] == [f"{HOST_FLAG[adapter.kind]} 0.0.0.0"]
    assert adapter.bind_flags[0] == HOST_FLAG[adapter.kind]


@adapters
def test_secret_env_names_are_variable_names_the_launch_guard_points_to(adapter):
    from agents.launchguard import ENV_HINT, secret_in_argv

    names = adapter.secret_env_names()
    assert all(n.isupper() and " " not in n for n in names)
    refusal = secret_in_argv([*DEFAULT_PREFIX[adapter.kind], "--api-key", "s3cr3t-value-123"])
    assert refusal is not None and "s3cr3t" not in refusal
    for name in names:
        assert name in ENV_HINT and name in refusal


@adapters
def test_version_from_log(adapter):
    lines = VERSION_LINES[adapter.kind]
    assert bool(lines) == bool(adapter.version_patterns)  # a pattern needs an example line here
    for line, version in lines:
        assert adapter.version_from_log(line) == version
    others = [line for kind, ls in VERSION_LINES.items() if kind != adapter.kind for line, _ in ls]
    for line in [*others, NOT_A_VERSION_LINE, ""]:
        assert adapter.version_from_log(line) is None, line


@adapters
def test_simulated_engine_is_told_by_its_marker(adapter):
    """The simulated engine's marker is parsed with the scrape names, changes no reading, and no real
    engine's exposition carries it."""
    text = (SIM_DATA / f"{adapter.kind}.metrics.txt").read_text()
    sim = parse(text, adapter.scrape_names())
    assert adapter.wanted() < adapter.scrape_names()
    assert adapter.is_simulated(sim) and not adapter.is_simulated(parse(text, adapter.wanted()))
    assert adapter.read(sim) == adapter.read(parse(text, adapter.wanted()))
    assert not any(adapter.is_simulated(parse(f.read_text())) for f in FIXTURES)
