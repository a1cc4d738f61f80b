"""``[calculator]``: overrides applied to the catalogs, and every mistake one line naming file, table and key."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from agents.tomltables import ConfigError
from console.calc.catalog import builtin
from console.calc.settings import (
    CalculatorConfig,
    calculator_config_from_dict,
    find_calculator_config,
    load_calculator_config,
)

GOOD = """
[calculator]
ops_cost_per_month = 400
input_share = 0.6
utilization = 0.45
gpu_memory_utilization = 0.9
compare_apis = ["claude-opus-5", "my-gateway"]
model = "Llama 3.1 8B Instruct"
gpu = "h100-80gb"

[calculator.gpu_hourly]
h100-80gb = 2.10
"NVIDIA A100-SXM4-80GB" = 1.2

[calculator.api_prices]
claude-opus-5 = { input = 4, output = 20 }
my-gateway = { input = 0.1, output = 0.2 }

[[calculator.apis]]
slug = "my-gateway"
name = "Internal gateway"
input = 0.40
output = 1.20
model = "llama-3.3-70b"
checked = "2026-09-01"
"""


def load(text: str) -> CalculatorConfig:
    return calculator_config_from_dict(tomllib.loads(text), file="c.toml")


def test_good_config_applies_everywhere() -> None:
    cfg = load(GOOD)
    assert (cfg.ops_cost_per_month, cfg.input_share, cfg.utilization, cfg.gpu_memory_utilization) == (
        400,
        0.6,
        0.45,
        0.9,
    )
    assert cfg.gpu_hourly == {"h100-80gb": 2.10, "a100-80gb": 1.2}  # names resolved to slugs
    cat = cfg.catalog()
    assert cat.gpu("h100-80gb").default_hourly == 2.10 and cat.gpu("h100-80gb").overridden
    assert cat.gpu("l4").default_hourly == builtin().gpu("l4").default_hourly
    opus = cat.api("claude-opus-5")
    assert (opus.input_per_mtok, opus.output_per_mtok, opus.overridden) == (4.0, 20.0, True)
    gateway = cat.api("my-gateway")
    assert (gateway.input_per_mtok, gateway.output_per_mtok, gateway.kind) == (0.1, 0.2, "custom")
    assert builtin().api("claude-opus-5").input_per_mtok == 5  # the built-in catalog is untouched


def test_defaults_without_a_table() -> None:
    cfg = calculator_config_from_dict({}, file="c.toml")
    assert cfg == CalculatorConfig()
    assert cfg.catalog().api("claude-opus-4.5").input_per_mtok == 5


BAD = [
    (
        "[calculator]\nops_cost = 1",
        'c.toml: [calculator]: unknown key "ops_cost" (did you mean "ops_cost_per_month"?)',
    ),
    ("[calculator]\ninput_share = 1.5", "c.toml: [calculator] input_share: must be between 0 and 1, got 1.5"),
    ('[calculator]\nutilization = "high"', 'c.toml: [calculator] utilization: expected a number, got "high"'),
    (
        "[calculator]\nops_cost_per_month = -5",
        "c.toml: [calculator] ops_cost_per_month: must be 0 or more, got -5.0",
    ),
    (
        "[calculator.gpu_hourly]\nh100-80gbb = 2",
        "c.toml: [calculator.gpu_hourly] h100-80gbb: unknown GPU 'h100-80gbb' (closest: h100-80gb",
    ),
    (
        "[calculator.gpu_hourly]\nh100-80gb = 0",
        "c.toml: [calculator.gpu_hourly] h100-80gb: must be greater than 0, got 0",
    ),
    (
        '[calculator.gpu_hourly]\nh100-80gb = "cheap"',
        'c.toml: [calculator.gpu_hourly] h100-80gb: expected a number (USD), got "cheap"',
    ),
    (
        "[calculator]\ngpu_hourly = 3",
        "c.toml: [calculator.gpu_hourly]: expected a table of GPU slug = USD per hour, got 3",
    ),
    (
        "[calculator.api_prices]\nclaude-opus-5 = { input = 5 }",
        'c.toml: [calculator.api_prices.claude-opus-5]: missing required key "output"',
    ),
    (
        "[calculator.api_prices]\nclaude-opus-5 = { input = 5, output = -1 }",
        "c.toml: [calculator.api_prices.claude-opus-5] output: must be 0 or more",
    ),
    (
        "[calculator.api_prices]\nclaude-opus-55 = { input = 5, output = 25 }",
        "c.toml: [calculator.api_prices] claude-opus-55: unknown API 'claude-opus-55' (closest: claude-opus-5",
    ),
    (
        "[calculator.api_prices]\nclaude-opus-5 = { input = 5, output = 25, cached = 1 }",
        'unknown key "cached"',
    ),
    ('[calculator]\ncompare_apis = ["gpt-6"]', "c.toml: [calculator] compare_apis[0]: unknown API 'gpt-6'"),
    ('[calculator]\nmodel = "llama-9"', "c.toml: [calculator] model: unknown model 'llama-9'"),
    ('[calculator]\ngpu = "tpu-v5"', "c.toml: [calculator] gpu: unknown GPU 'tpu-v5'"),
    (
        '[[calculator.apis]]\nslug = "My Gateway"\ninput = 1\noutput = 2',
        'slug: "My Gateway" is not a lower-case dashed slug',
    ),
    (
        '[[calculator.apis]]\nslug = "gpt-5"\ninput = 1\noutput = 2',
        '[[calculator.apis]] #1 (slug "gpt-5") slug: "gpt-5" is already in the catalog',
    ),
    (
        '[[calculator.apis]]\nslug = "a"\ninput = 1\noutput = 2\n[[calculator.apis]]\nslug = "a"\ninput = 1\noutput = 2',
        'duplicate slug "a"',
    ),
    (
        '[[calculator.apis]]\nslug = "a"\ninput = 1\noutput = 2\nmodel = "nope-70b"',
        "model: unknown model 'nope-70b'",
    ),
    (
        '[[calculator.apis]]\nslug = "a"\ninput = 1',
        '[[calculator.apis]] #1 (slug "a"): missing required key "output"',
    ),
    ("calculator = 3", "c.toml: [calculator]: expected a table, got 3"),
    ("[calculater]\nx = 1", "c.toml: unknown table [calculater] (did you mean [calculator]?)"),
]


@pytest.mark.parametrize(("text", "message"), BAD, ids=[m[:40] for _, m in BAD])
def test_bad_config_is_one_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        load(text)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_load_and_find(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "config.toml"
    path.write_text(GOOD)
    assert load_calculator_config(path).source == path
    assert find_calculator_config(path).ops_cost_per_month == 400
    monkeypatch.chdir(tmp_path)  # ./config.toml is next in the search order
    monkeypatch.delenv("LLMCONSOLE_CONFIG", raising=False)
    assert find_calculator_config(None).ops_cost_per_month == 400
    with pytest.raises(ConfigError, match="config file not found"):
        find_calculator_config(tmp_path / "missing.toml")


def test_no_config_anywhere_gives_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LLMCONSOLE_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert find_calculator_config(None) == CalculatorConfig()


def test_shipped_example_config_is_valid() -> None:
    """The repository's config.toml (no [calculator] yet) validates with the defaults."""
    root = Path(__file__).resolve().parents[2]
    cfg = load_calculator_config(root / "config.toml")
    assert cfg.compare_apis == CalculatorConfig().compare_apis
