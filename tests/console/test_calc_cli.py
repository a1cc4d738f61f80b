"""`llmconsole calc`: JSON keys and values for scripts, readable text, catalogs, [calculator] overrides, and every
bad input as one line on stderr with exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from console.cli import main

ROOT = Path(__file__).resolve().parents[2]
HF = ROOT / "tests" / "data" / "hf"
GiB = 2**30


@pytest.fixture(autouse=True)
def no_user_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the developer's config.toml out: run from an empty directory with no config anywhere."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LLMCONSOLE_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["calc", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str, code: int = 0) -> dict:
    got, out, err = run(capsys, *argv, "--json")
    assert got == code, err
    return json.loads(out)


VRAM_KEYS = {
    "weights_bytes",
    "kv_bytes_per_token",
    "kv_budget_bytes",
    "kv_tokens",
    "max_concurrent_seqs",
    "max_context_tokens",
    "fits",
    "warnings",
}
BREAKEVEN_KEYS = {
    "self_host_cost_per_day",
    "api_blended_per_mtok",
    "break_even_tokens_per_day",
    "capacity_tokens_per_day",
    "reachable",
    "monthly_cost_self_host",
    "monthly_cost_api",
}


def test_vram_json_int4_on_a100(capsys: pytest.CaptureFixture[str]) -> None:
    d = run_json(
        capsys,
        "vram",
        "--model",
        "llama-3.3-70b",
        "--gpu",
        "a100-80gb",
        "--gpus",
        "1",
        "--quant",
        "int4",
        "--gpu-memory-utilization",
        "0.9",
    )
    assert d.keys() >= VRAM_KEYS
    assert d["fits"] is True and d["overhead"] == "vllm" and d["quant"] == "int4"
    assert d["weights_bytes"] / 1e9 == pytest.approx(39.8, abs=0.05)
    assert d["kv_bytes_per_token"] == 327_680
    assert 98_000 <= d["kv_tokens"] <= 106_000
    assert d["max_concurrent_seqs"] in (12, 13)
    assert d["max_context_tokens"] == d["kv_tokens"]
    assert d["kv_budget_bytes"] == d["kv_budget_per_gpu_bytes"]
    flat = d["modes"]["flat"]
    assert flat["kv_budget_bytes"] / 1e9 == pytest.approx(37.7, abs=0.05)
    assert d["model"]["source"] and d["gpu"]["price_checked"]


def test_vram_example_does_not_fit_and_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    d = run_json(
        capsys,
        "vram",
        "--model",
        "Llama 3.3 70B Instruct",
        "--gpu",
        "NVIDIA A100-SXM4-80GB",
        "--quant",
        "bf16",
        "--overhead",
        "flat",
        code=1,
    )
    assert d["fits"] is False and d["verdict"] == "does-not-fit"
    assert d["weights_bytes"] / 1e9 == pytest.approx(141.1, abs=0.05)
    assert d["kv_tokens"] == 0 and d["max_concurrent_seqs"] == 0 and d["max_context_tokens"] == 0
    assert d["margin_per_gpu_bytes"] < 0
    assert any(w.startswith("does not fit") for w in d["warnings"])


def test_vram_local_config_and_native_format(capsys: pytest.CaptureFixture[str]) -> None:
    d = run_json(capsys, "vram", "--model", str(HF / "gpt-oss-120b"), "--gpu", "h100-80gb")
    assert d["quant"] == "mxfp4" and d["fits"] is True
    assert d["kv_bytes_per_token"] == 73_728
    assert any("MoE VRAM trap" in w for w in d["warnings"])
    d = run_json(
        capsys,
        "vram",
        "--model",
        str(HF / "DeepSeek-V3" / "config.json"),
        "--gpu",
        "h200",
        "--gpus",
        "8",
        "--kv-dtype",
        "fp8",
    )
    assert d["kv_bytes_per_token"] == 35_136 and d["block_size"] == 64 and d["quant"] == "fp8"


def test_vram_text_shows_both_modes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "vram", "--model", "llama-3.3-70b", "--gpu", "a100-80gb", "--quant", "int4")
    assert code == 0 and err == ""
    assert "vLLM-style, util 0.92 (GiB) *" in out and "rule of thumb (GB)" in out
    assert "FITS" in out and "115,121" in out  # the flat mode's token count sits beside the vLLM one
    assert "* the verdict: vLLM-style" in out and "params × bytes + KV + ~7 GB" in out
    assert "disagree" not in out  # both columns say FITS


def test_breakeven_claim_a(capsys: pytest.CaptureFixture[str]) -> None:
    d = run_json(capsys, "breakeven", "--gpu-hourly", "2.50", "--gpus", "1", "--api", "claude-opus-4.5")
    assert d.keys() >= BREAKEVEN_KEYS
    assert d["self_host_cost_per_day"] == 60.0 and d["api_blended_per_mtok"] == pytest.approx(11.0)
    assert d["break_even_tokens_per_day"] / 1e6 == pytest.approx(5.45, abs=0.01)
    assert d["capacity_tokens_per_day"] is None and d["reachable"] is None
    assert d["monthly_cost_self_host"] == pytest.approx(1825.0) and d["monthly_cost_api"] is None


def test_breakeven_claim_b_unreachable(capsys: pytest.CaptureFixture[str]) -> None:
    d = run_json(
        capsys,
        "breakeven",
        "--gpu-hourly",
        "2.50",
        "--gpus",
        "1",
        "--price-in",
        "0.5",
        "--price-out",
        "0.5",
        "--model",
        "llama-3.3-70b",
        "--gpu",
        "a100-80gb",
        "--quant",
        "int4",
        "--tokens-per-day",
        "150e6",
    )
    assert d["break_even_tokens_per_day"] == pytest.approx(120e6)
    assert 75e6 <= d["capacity_tokens_per_day"] <= 110e6
    assert d["reachable"] is False
    assert d["deployments_needed"] == 2
    assert d["monthly_cost_self_host"] == pytest.approx(2 * 1825.0)
    assert d["monthly_cost_api"] == pytest.approx(150e6 * 0.5 / 1e6 * 730 / 24)
    assert d["capacity"]["batch"] > 0


def test_breakeven_seed_scenario_does_not_fit(capsys: pytest.CaptureFixture[str]) -> None:
    d = run_json(
        capsys,
        "breakeven",
        "--gpu-hourly",
        "2.5",
        "--api",
        "together-llama-3.3-70b",
        "--model",
        "llama-3.3-70b",
        "--gpu",
        "a100-80gb",
        "--quant",
        "bf16",
    )
    assert d["capacity_tokens_per_day"] == 0 and d["reachable"] is False and d["capacity"]["fits"] is False


def test_breakeven_text(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "breakeven",
        "--gpu-hourly",
        "2.5",
        "--api",
        "claude-opus-4.5",
        "--model",
        "llama-3.3-70b",
        "--gpu",
        "a100-80gb",
        "--quant",
        "int4",
        "--tokens-per-day",
        "10M",
    )
    assert code == 2  # "10M" is not a number for argparse: one line, exit 2
    code, out, _ = run(
        capsys,
        "breakeven",
        "--gpu-hourly",
        "2.5",
        "--api",
        "claude-opus-4.5",
        "--model",
        "llama-3.3-70b",
        "--gpu",
        "a100-80gb",
        "--quant",
        "int4",
        "--tokens-per-day",
        "1e7",
    )
    assert code == 0
    assert "break-even  5.45M tokens/day" in out
    assert "reachable   yes" in out
    assert "self-hosting is cheaper" in out


def test_breakeven_gpu_price_from_catalog_and_config(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    d = run_json(capsys, "breakeven", "--gpu", "h100-80gb", "--model", "llama-3.1-8b", "--api", "gpt-5")
    assert d["gpu_hourly"] == 2.69
    cfg = tmp_path / "calc.toml"
    cfg.write_text(
        "[calculator]\nops_cost_per_month = 730\ninput_share = 0.5\n[calculator.gpu_hourly]\nh100-80gb = 2.0\n"
        "[calculator.api_prices]\ngpt-5 = { input = 1, output = 3 }\n"
    )
    d = run_json(
        capsys,
        "breakeven",
        "--gpu",
        "h100-80gb",
        "--model",
        "llama-3.1-8b",
        "--api",
        "gpt-5",
        "--config",
        str(cfg),
    )
    assert d["gpu_hourly"] == 2.0 and d["input_share"] == 0.5
    assert d["api_blended_per_mtok"] == pytest.approx(2.0)
    assert d["self_host_cost_per_day"] == pytest.approx(2.0 * 24 + 730 / (730 / 24))
    # the top-level option works too: `llmconsole --config X calc ...`
    assert (
        main(["--config", str(cfg), "calc", "breakeven", "--gpu", "h100-80gb", "--api", "gpt-5", "--json"])
        == 0
    )
    assert json.loads(capsys.readouterr().out)["gpu_hourly"] == 2.0
    # ./config.toml is found without --config
    (tmp_path / "config.toml").write_text(cfg.read_text())
    assert (
        run_json(capsys, "breakeven", "--gpu", "h100-80gb", "--api", "gpt-5", "--model", "llama-3.1-8b")[
            "gpu_hourly"
        ]
        == 2.0
    )


@pytest.mark.parametrize("kind", ["models", "gpus", "apis"])
def test_catalog_listings(capsys: pytest.CaptureFixture[str], kind: str) -> None:
    d = run_json(capsys, kind)
    items = d[kind]
    assert len(items) >= 12
    for item in items:
        assert item["slug"] == item["slug"].lower() and " " not in item["slug"]
        assert item["source" if kind != "gpus" else "price_source"]
    code, out, _ = run(capsys, kind)
    assert code == 0 and items[0]["slug"] in out


def test_two_columns_that_disagree_are_explained(capsys: pytest.CaptureFixture[str]) -> None:
    """2 × A100 80GB, BF16, 32K: vLLM-style fits by a hair, the rule of thumb does not; the text says which
    column is the verdict (the *), what each column is, and why they differ."""
    code, out, err = run(
        capsys,
        "vram",
        "--model",
        "llama-3.3-70b",
        "--gpu",
        "a100-80gb",
        "--gpus",
        "2",
        "--quant",
        "bf16",
        "--seq-len",
        "32768",
    )
    assert code == 0 and err == ""
    verdict = next(line for line in out.splitlines() if line.startswith("verdict"))
    assert "FITS (+0.66 GiB/GPU to spare)" in verdict and "DOES NOT FIT (short 2.92 GB/GPU)" in verdict
    assert "* the verdict: vLLM-style, util 0.92 (GiB) (--overhead vllm); the exit code follows it." in out
    assert "The columns disagree (FITS vs DOES NOT FIT)" in out and "borderline" in out
    # the rows add up: weights + overheads + reserve + KV budget = memory (vLLM-style, GiB)
    rows = {line[:30].strip(): line[30:].split()[0] for line in out.splitlines() if "GiB" in line[30:45]}
    parts = ("weights per GPU", "overheads per GPU", "reserve (1 − util) per GPU", "KV budget per GPU")
    assert sum(float(rows[p]) for p in parts) == pytest.approx(float(rows["memory per GPU"]), abs=0.02)
    assert float(rows["KV spare per GPU"]) == pytest.approx(0.66, abs=0.005)
    # the other column as the verdict: exit 1, and the star moves
    code, out, _ = run(
        capsys,
        "vram",
        "--model",
        "llama-3.3-70b",
        "--gpu",
        "a100-80gb",
        "--gpus",
        "2",
        "--quant",
        "bf16",
        "--seq-len",
        "32768",
        "--overhead",
        "flat",
    )
    assert code == 1 and "rule of thumb (GB) *" in out


def test_ambiguous_gpu_names_list_the_matches(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "vram", "--model", "llama-3.3-70b", "--gpu", "a100")
    assert code == 2 and out == "" and len(err.splitlines()) == 1
    assert "ambiguous GPU 'a100'" in err
    for slug in ("a100-40gb", "a100-80gb", "a100-80gb-pcie"):
        assert slug in err
    code, _, err = run(capsys, "vram", "--model", "llama-3.3-70b", "--gpu", "h100")
    assert code == 2 and "h100-80gb" in err and "h100-pcie" in err
    # exact names, NVML names and unique partial names still resolve
    for name in ("a100-80gb", "NVIDIA A100-SXM4-80GB", "h100-sxm", "a100-40"):
        assert run(capsys, "vram", "--model", "llama-3.1-8b", "--gpu", name)[0] == 0, name


def _short_context_model(tmp_path: Path, context: int) -> Path:
    cfg = json.loads((HF / "Mistral-7B-v0.1" / "config.json").read_text())
    cfg["max_position_embeddings"] = context
    cfg.pop("sliding_window", None)
    path = tmp_path / "short" / "config.json"
    path.parent.mkdir()
    path.write_text(json.dumps(cfg))
    return path


def test_sequence_longer_than_the_context_is_its_own_verdict(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    model = str(_short_context_model(tmp_path, 2048))
    # no --seq-len: the model's context (2,048), not 8,192
    d = run_json(capsys, "vram", "--model", model, "--gpu", "h100-80gb")
    assert d["seq_len"] == 2048 and d["verdict"] == "fits" and d["context_limit_tokens"] == 2048
    # a longer one: its own verdict and message, exit 1, memory figures still shown
    code, out, err = run(capsys, "vram", "--model", model, "--gpu", "h100-80gb", "--seq-len", "8192")
    assert code == 1 and err == ""
    verdict = next(line for line in out.splitlines() if line.startswith("verdict"))
    assert verdict.count("LONGER THAN CONTEXT (2,048 tokens)") == 2 and "FITS" not in verdict
    assert "sequence length 8,192 is longer than" in out and "context of 2,048 tokens" in out
    d = run_json(capsys, "vram", "--model", model, "--gpu", "h100-80gb", "--seq-len", "8192", code=1)
    assert d["verdict"] == "exceeds-context" and d["fits"] is False and d["margin_per_gpu_bytes"] > 0
    # a catalog model with a long context keeps the 8,192 default
    assert run_json(capsys, "vram", "--model", "llama-3.1-8b", "--gpu", "h100-80gb")["seq_len"] == 8192


def test_vram_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["calc", "vram", "--help"]) == 0
    out = capsys.readouterr().out
    assert "exit status:" in out and "1  the verdict is no" in out and "2  bad input" in out


BAD = [
    (
        ["vram", "--model", "llama-3.3-7b", "--gpu", "a100-80gb"],
        "unknown model 'llama-3.3-7b' (closest: llama-3.3-70b",
    ),
    (["vram", "--model", "llama-3.3-70b", "--gpu", "a101"], "unknown GPU 'a101'"),
    (
        ["vram", "--model", "llama-3.3-70b", "--gpu", "a100-80gb", "--gpus", "0"],
        "--gpus must be 1 or more, got 0",
    ),
    (
        ["vram", "--model", "llama-3.3-70b", "--gpu", "a100-80gb", "--gpus", "-2"],
        "--gpus must be 1 or more, got -2",
    ),
    (
        ["vram", "--model", "llama-3.3-70b", "--gpu", "a100-80gb", "--seq-len", "0"],
        "--seq-len must be 1 or more",
    ),
    (
        ["vram", "--model", "llama-3.3-70b", "--gpu", "a100-80gb", "--gpu-memory-utilization", "nan"],
        "--gpu-memory-utilization",
    ),
    (
        ["vram", "--model", "llama-3.3-70b", "--gpu", "a100-80gb", "--quant", "mxfp4"],
        "mxfp4 covers MoE experts only",
    ),
    (["vram", "--model", "llama-3.3-70b", "--gpu", "a100-80gb", "--quant", "int3"], "invalid choice: 'int3'"),
    (
        ["vram", "--model", str(HF / "broken" / "missing-hidden-size.json"), "--gpu", "h100-80gb"],
        "missing required field 'hidden_size'",
    ),
    (["vram", "--model", str(HF / "broken" / "truncated.json"), "--gpu", "h100-80gb"], "not valid JSON"),
    (["vram", "--model", "./no/such/dir", "--gpu", "h100-80gb"], "no such file"),
    (["vram", "--gpu", "h100-80gb"], "the following arguments are required: --model"),
    (
        ["breakeven", "--gpu-hourly", "-1", "--price-in", "1", "--price-out", "1"],
        "--gpu-hourly must be greater than 0, got -1",
    ),
    (
        ["breakeven", "--gpu-hourly", "0", "--price-in", "1", "--price-out", "1"],
        "--gpu-hourly must be greater than 0",
    ),
    (
        ["breakeven", "--gpu-hourly", "inf", "--price-in", "1", "--price-out", "1"],
        "--gpu-hourly must be greater than 0",
    ),
    (
        ["breakeven", "--gpu-hourly", "2", "--price-in", "-1", "--price-out", "1"],
        "--price-in must be 0 or more",
    ),
    (
        ["breakeven", "--gpu-hourly", "2", "--api", "opus", "--price-in", "1", "--price-out", "1"],
        "either --api NAME or --price-in/--price-out",
    ),
    (["breakeven", "--gpu-hourly", "2", "--price-in", "1"], "both --price-in USD and --price-out USD"),
    (["breakeven", "--gpu-hourly", "2", "--api", "gpt-6"], "unknown API 'gpt-6' (closest: gpt-5"),
    (["breakeven", "--api", "gpt-5"], "give --gpu-hourly USD"),
    (
        ["breakeven", "--gpu-hourly", "2", "--api", "gpt-5", "--model", "llama-3.1-8b"],
        "--model needs --gpu for the capacity estimate",
    ),
    (
        ["breakeven", "--gpu-hourly", "2", "--api", "gpt-5", "--input-share", "2"],
        "--input-share must be between 0 and 1",
    ),
    (
        ["breakeven", "--gpu-hourly", "2", "--api", "gpt-5", "--tokens-per-day", "-5"],
        "--tokens-per-day must be greater than 0",
    ),
    (
        [
            "breakeven",
            "--gpu-hourly",
            "2",
            "--api",
            "gpt-5",
            "--model",
            "llama-3.1-8b",
            "--gpu",
            "l4",
            "--utilization",
            "0",
        ],
        "--utilization must be in (0, 1]",
    ),
    (["breakeven", "--gpu-hourly", "abc", "--api", "gpt-5"], "invalid float value: 'abc'"),
    ([], "choose a calculator"),
]


@pytest.mark.parametrize(("argv", "message"), BAD, ids=[" ".join(a[:3]) + "|" + m[:30] for a, m in BAD])
def test_bad_input_is_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("llmconsole calc")
    assert message in lines[0]
    assert "Traceback" not in err


def test_bad_config_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[calculator.gpu_hourly]\nh100-80gbb = 2\n")
    code, out, err = run(capsys, "gpus", "--config", str(cfg))
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1
    assert err.startswith(
        f"llmconsole calc gpus: error: {cfg}: [calculator.gpu_hourly] h100-80gbb: unknown GPU 'h100-80gbb' "
        "(closest: h100-80gb"
    )


def test_installed_entry_point_and_package_data() -> None:
    """The real console script, in a clean process: the JSON catalogs ship as package data."""
    exe = Path(sys.executable).with_name("llmconsole")
    env = {**os.environ, "XDG_CONFIG_HOME": "/nonexistent"}
    env.pop("LLMCONSOLE_CONFIG", None)
    out = subprocess.run(
        [str(exe), "calc", "vram", "--model", "qwen3-235b-a22b", "--gpu", "h200", "--gpus", "8", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
        env=env,
    )
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    assert d["kv_bytes_per_token"] == 192_512 and d["kv_bytes_per_token_per_gpu"] == 48_128 and d["fits"]


def test_calculator_math_never_imports_textual() -> None:
    """The math, catalogs, presenters and CLI load without Textual (the screen alone needs it)."""
    code = (
        "import importlib, pkgutil, sys, console.calc as c\n"
        "names = [m.name for m in pkgutil.iter_modules(c.__path__, 'console.calc.')]\n"
        "[importlib.import_module(n) for n in names]\n"
        "print(len(names), 'textual' in sys.modules, 'widgets' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    count, textual, widgets = out.stdout.split()
    assert int(count) >= 15 and textual == "False" and widgets == "False"
