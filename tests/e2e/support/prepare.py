"""Set up everything the real-vLLM e2e tests need, cached outside the repository; safe to run concurrently.

    python -m tests.e2e.support.prepare        # from the repository root: install/check, print the paths

``prepare()`` returns the vLLM virtualenv's python and the tiny model's directory, building whichever is
missing (under the cache lock, so two runs never build the same thing at once). Any failure raises
SetupError with the step and the tail of its log.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.support import venv as venv_mod
from tests.e2e.support.cache import (
    CACHE_ENV,
    SetupError,
    cache_dir,
    locked,
    marker_matches,
    read_marker,
    write_marker,
)

MODEL_RECIPE = 3  # bump when tiny_model.py changes: cached models are regenerated (3: hidden 2048)
TINY_MODEL_SCRIPT = Path(__file__).with_name("tiny_model.py")


@dataclass(frozen=True, slots=True)
class Prepared:
    python: Path  # the vLLM virtualenv's interpreter
    model_dir: Path
    vllm_cache: Path  # VLLM_CACHE_ROOT for the engines (torch.compile artifacts survive between runs)
    versions: dict[str, object]
    setup_s: float  # time this call spent (near 0 when everything was cached)


def model_dir(root: Path) -> Path:
    return root / "models" / f"tiny-llama-r{MODEL_RECIPE}"


def ensure_model(root: Path, python: Path, versions: dict[str, object], log: Path) -> Path:
    target = model_dir(root)
    expected = {
        "recipe": MODEL_RECIPE,
        "transformers": versions.get("transformers"),
        "tokenizers": versions.get("tokenizers"),
    }
    if marker_matches(target, expected) and (target / "config.json").exists():
        return target
    tmp = target.with_name(target.name + ".tmp")
    for stale in (tmp, target):
        if stale.exists():
            shutil.rmtree(stale)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    proc = subprocess.run(
        [str(python), str(TINY_MODEL_SCRIPT), str(tmp)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        check=False,
    )
    with open(log, "a") as fh:
        fh.write(f"\n$ {python} {TINY_MODEL_SCRIPT} {tmp}\n{proc.stdout}")
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.strip().splitlines()[-15:])
        raise SetupError(
            f"e2e set-up failed to generate the tiny model (exit {proc.returncode}; log {log}):\n{tail}"
        )
    write_marker(tmp, expected)
    os.replace(tmp, target)
    return target


def prepare() -> Prepared:
    started = time.monotonic()
    try:
        root = cache_dir()
        log = root / "setup.log"
        with locked(root):
            python, versions = venv_mod.ensure_venv(root, log)
            model = ensure_model(root, python, versions, log)
    except SetupError:
        raise
    except OSError as exc:
        raise SetupError(
            f"e2e set-up failed in the cache (${CACHE_ENV} or ~/.cache/llmconsole-e2e): {exc}"
        ) from exc
    vllm_cache = root / "vllm-cache"
    vllm_cache.mkdir(exist_ok=True)
    return Prepared(
        python=python,
        model_dir=model,
        vllm_cache=vllm_cache,
        versions=versions,
        setup_s=round(time.monotonic() - started, 1),
    )


def main() -> int:
    try:
        got = prepare()
    except SetupError as exc:
        sys.stderr.write(f"e2e set-up: error: {exc}\n")
        return 1
    print(f"python    {got.python}")
    print(f"model     {got.model_dir}")
    print(f"versions  {got.versions}")
    print(f"took      {got.setup_s}s (model marker: {read_marker(got.model_dir)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
