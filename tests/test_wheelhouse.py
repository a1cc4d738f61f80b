"""Air-gapped install: build a wheelhouse from this checkout (pip wheel, with the machine's package
index, as on a connected machine), then install it into a fresh virtualenv with ``--no-index`` while
every index setting points at a closed loopback port and pip's own config is ignored — so any attempt to
reach an index would fail the install. The installed ``llmconsole`` then runs (``--help``, ``probe
--file``) and finds its package data (the advisory file, the calculator data).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "data" / "metrics" / "vllm-0.32-cpu.loaded.prom"
NOWHERE = "http://127.0.0.1:9/simple"  # the discard port on loopback: nothing listens there


def run(
    cmd: list[str], env: dict[str, str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    assert out.returncode == 0, (
        f"{' '.join(cmd[:6])} failed ({out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    )
    return out


@pytest.mark.timeout(280)
def test_wheelhouse_installs_and_runs_offline(tmp_path: Path) -> None:
    house = tmp_path / "wheelhouse"
    run([sys.executable, "-m", "pip", "wheel", "--quiet", str(ROOT), "-w", str(house)])
    wheels = sorted(p.name for p in house.glob("*.whl"))
    assert any(w.startswith("llmconsole-") for w in wheels) and any(w.startswith("textual-") for w in wheels)

    target = tmp_path / "offline-venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(target)
    py = target / "bin" / "python"
    offline = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PIP_")},
        "PIP_CONFIG_FILE": os.devnull,  # no site or user pip config (its find-links or extra index)
        "PIP_NO_INDEX": "1",
        "PIP_INDEX_URL": NOWHERE,
        "PIP_EXTRA_INDEX_URL": NOWHERE,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_DEFAULT_TIMEOUT": "3",
    }
    installed = run(
        [str(py), "-m", "pip", "install", "--no-index", "--find-links", str(house), "llmconsole"], env=offline
    )
    assert "Successfully installed" in installed.stdout

    exe = target / "bin" / "llmconsole"
    clean = {k: v for k, v in offline.items() if k != "PYTHONPATH"}
    helped = run([str(exe), "--help"], env=clean, timeout=60)
    assert "llmconsole" in helped.stdout and "probe" in helped.stdout
    probed = run([str(exe), "probe", "--file", str(FIXTURE), "--json"], env=clean, timeout=60)
    report = json.loads(probed.stdout)
    assert report["engine"] == "vllm" and report["models"] == ["tiny-llama"]
    code = "import agents, agents.exposure as e; print(agents.__file__); print(e.load_advisories().as_of)"
    data = run([str(py), "-I", "-c", code], env=clean, timeout=60)  # -I: never this checkout's copy
    where, as_of = data.stdout.split()
    assert where.startswith(str(target)) and as_of == "2026-09"  # the installed copy, not this checkout
