"""`llmconsole rules`: the shipped file is the generator's default output, the SLO arguments move the
bucket boundary and the burn-rate thresholds, every bad argument is one line with exit code 2, and the
real `promtool` (Debian's prometheus package) accepts the rules and passes their unit tests."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from console.cli import main
from console.rules import SLO, Alert, Record, build_groups, rules_yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "llmconsole-rules.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "tests" / "llmconsole-rules.test.yml"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not installed (Debian: apt-get install --no-install-recommends prometheus)",
)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["rules", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def burn_thresholds(text: str) -> set[str]:
    return set(re.findall(r"ratio_rate\w+ > ([0-9.e-]+)", text))


def test_shipped_file_is_the_default_output(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys)
    assert code == 0 and err == ""
    assert RULES.read_text() == out == rules_yaml(), (
        "regenerate: llmconsole rules > deploy/prometheus/llmconsole-rules.yml"
    )


def test_default_slo_is_99_percent_within_one_second(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys)
    assert burn_thresholds(out) == {"0.144", "0.06"}  # 14.4 x 1% and 6 x 1%
    assert set(re.findall(r'le="([^"]*)"', out)) == {"1.0"}


def test_slo_arguments_move_the_boundary_and_the_thresholds(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--slo-ttft", "0.5", "--slo-objective", "0.999")
    assert code == 0
    assert burn_thresholds(out) == {"0.0144", "0.006"}
    assert set(re.findall(r'le="([^"]*)"', out)) == {"0.5"}
    assert "--slo-ttft 0.5 --slo-objective 0.999" in out.splitlines()[0]
    # 0.5 s is a vLLM bucket but not an SGLang one: said once, on stderr, and the rules still print
    assert err.count("\n") == 1 and "not a default TTFT bucket of SGLang" in err


@pytest.mark.parametrize(("arg", "le"), [("2", "2.0"), ("10", "10.0"), ("1", "1.0"), ("0.25", "0.25")])
def test_le_is_written_in_float_form(capsys: pytest.CaptureFixture[str], arg: str, le: str) -> None:
    code, out, _ = run(capsys, "--slo-ttft", arg)
    assert code == 0
    assert set(re.findall(r'le="([^"]*)"', out)) == {le}


def test_objective_scales_the_budget() -> None:
    for objective in (0.95, 0.99, 0.995, 0.9999):
        text = rules_yaml(SLO(objective=objective))
        expected = {f"{14.4 * (1 - objective):.10g}", f"{6 * (1 - objective):.10g}"}
        assert burn_thresholds(text) == expected, objective


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--slo-ttft", "0"], "positive"),
        (["--slo-ttft", "-1"], "positive"),
        (["--slo-ttft", "nan"], "positive"),
        (["--slo-ttft", "inf"], "positive"),
        (["--slo-ttft", "fast"], "not a number"),
        (["--slo-objective", "1"], "between 0 and 1"),
        (["--slo-objective", "0"], "between 0 and 1"),
        (["--slo-objective", "99"], "between 0 and 1"),
        (["--slo-objective", "ninety"], "not a fraction"),
        (["--slo-objective", "0.9"], "could never fire"),  # 14.4 x 10% > 100%: the fast page is dead
        (["--slo-ttft"], "expected one argument"),
        (["--bogus"], "unrecognized arguments"),
    ],
)
def test_bad_arguments_are_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("llmconsole rules: error:"), err
    assert needle in err and "Traceback" not in err


def test_every_engine_alert_exists_for_each_source() -> None:
    alerts: dict[str, set[str]] = {}
    for group in build_groups():
        for rule in group.rules:
            if isinstance(rule, Alert):
                alerts.setdefault(rule.labels["source"], set()).add(rule.alert)
    engine = {
        "LLMEngineStalled",
        "LLMEngineAdmissionStalled",
        "LLMEngineKVPressure",
        "LLMEnginePreemptionStorm",
        "LLMEngineQueueGrowing",
        "LLMTTFTBudgetBurn",
        "LLMTTFTSLOUnmeasurable",
    }
    assert alerts == {
        "agent": {"LLMConsoleAgentAlert", "LLMConsoleAgentDown"},
        "llmconsole": engine,
        "vllm": engine,
        "sglang": engine,
    }


@needs_promtool
def test_promtool_checks_the_shipped_rules() -> None:
    proc = subprocess.run(
        [PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    n_rules = sum(len(g.rules) for g in build_groups())
    assert f"SUCCESS: {n_rules} rules found" in proc.stdout


@needs_promtool
def test_promtool_checks_rules_for_another_slo(tmp_path: Path) -> None:
    path = tmp_path / "rules.yml"
    path.write_text(rules_yaml(SLO(ttft_s=0.25, objective=0.9995)))
    proc = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@needs_promtool
def test_promtool_unit_tests_pass() -> None:
    """Each alert firing and staying silent, zero traffic included (deploy/prometheus/tests)."""
    proc = subprocess.run(
        [PROMTOOL, "test", "rules", str(RULE_TESTS)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


@needs_promtool
def test_promtool_unit_tests_catch_a_broken_rule(tmp_path: Path) -> None:
    """The unit tests are not vacuous: a rules file without the short burn window fails them."""
    broken = RULES.read_text().replace(
        "\n        and\n        model:llmconsole_engine_ttft_slo_errors:ratio_rate5m > 0.144", ""
    )
    assert broken != RULES.read_text()
    (tmp_path / "tests").mkdir()
    (tmp_path / "llmconsole-rules.yml").write_text(broken)
    shutil.copy(RULE_TESTS, tmp_path / "tests" / RULE_TESTS.name)
    proc = subprocess.run(
        [PROMTOOL, "test", "rules", str(tmp_path / "tests" / RULE_TESTS.name)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "LLMTTFTBudgetBurn" in proc.stdout + proc.stderr


def test_rules_objects_are_plain_data() -> None:
    """build_groups is pure: same input, equal output; every rule is a Record or an Alert with an expr."""
    a, b = build_groups(), build_groups()
    assert a == b
    assert all(isinstance(r, Record | Alert) and r.expr.strip() for g in a for r in g.rules)
