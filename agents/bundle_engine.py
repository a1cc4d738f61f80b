"""An engine's versions for an incident bundle, read from the package metadata of its interpreter.

The engine's Python interpreter is its ``argv[0]`` when that is ``python…``, or the ``#!`` line of the
script ``argv[0]`` names (``/usr/bin/env python3`` resolved on the engine's PATH). Its ``site-packages``
(and ``dist-packages``) under the interpreter's prefix, and the base installation's when a virtualenv
includes system packages, are listed: ``<name>-<version>.dist-info`` folder names give the versions, no
code of the engine's is run. Which package is the engine comes from the advisory file's engine table
(``vllm``, ``sglang``, ``text-generation-inference``); versions of the libraries maintainers ask about
(torch, triton, transformers, NCCL, flashinfer …) come with it. Blocking (directory listings): run in a
worker thread.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

INTERESTING = (
    "torch",
    "triton",
    "transformers",
    "tokenizers",
    "safetensors",
    "xformers",
    "flashinfer",
    "flashinfer-python",
    "numpy",
    "pyzmq",
    "ray",
    "nvidia-ml-py",
    "pynvml",
    "accelerate",
    "huggingface-hub",
    "llmconsole",
    "vllm",
    "sglang",
    "text-generation-inference",
    "sgl-kernel",
    "outlines",
    "xgrammar",
)
INTERESTING_PREFIXES = ("nvidia-", "vllm-", "torch-")
MAX_PACKAGES = 80
_PYTHON_RE = re.compile(r"python(?:[0-9][0-9.]*)?")
_DIST_RE = re.compile(r"(?P<name>.+?)-(?P<version>[0-9][^-]*?)(?:-py[0-9.]+)?\.(?:dist|egg)-info")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def interpreter_of(argv: Sequence[str], env: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(the engine's Python interpreter, None) or (None, why it has none that can be read)."""
    if not argv:
        return None, "the engine has no command"
    exe = argv[0]
    if _PYTHON_RE.fullmatch(os.path.basename(exe)):
        return exe, None
    try:
        with open(exe, "rb") as fh:
            head = fh.read(512)
    except OSError as exc:
        return None, f"cannot read {os.path.basename(exe)}: {exc.strerror or exc}"
    if not head.startswith(b"#!"):
        return (
            None,
            f"{os.path.basename(exe)} is not a Python interpreter or script (no version from package metadata)",
        )
    words = head[2:].split(b"\n", 1)[0].decode("utf-8", "replace").split()
    if not words:
        return None, f"{os.path.basename(exe)} has an empty #! line"
    interp = words[0]
    if os.path.basename(interp) == "env":
        name = next((w for w in words[1:] if not w.startswith("-")), None)
        found = shutil.which(name, path=env.get("PATH")) if name else None
        if found is None:
            return None, f"#!/usr/bin/env {name}: not found on the engine's PATH"
        interp = found
    if not _PYTHON_RE.fullmatch(os.path.basename(interp)):
        return None, f"{os.path.basename(exe)} runs {os.path.basename(interp)}, not Python"
    return interp, None


def site_dirs(interpreter: str) -> list[Path]:
    """The site-packages folders of ``interpreter``'s prefix (the path as given: a virtualenv's
    ``bin/python`` is a link whose target belongs to another prefix), plus the base installation's when
    its ``pyvenv.cfg`` includes system site packages."""
    prefix = Path(interpreter).parent.parent
    prefixes = [prefix]
    cfg = prefix / "pyvenv.cfg"
    try:
        text = cfg.read_text(errors="replace")
    except OSError:
        text = ""
    if re.search(r"include-system-site-packages\s*=\s*true", text, re.I):
        home = re.search(r"^home\s*=\s*(.+)$", text, re.M)
        if home:
            prefixes.append(Path(home.group(1).strip()).parent)
    out: list[Path] = []
    for pre in prefixes:
        for lib in ("lib", "lib64"):
            base = pre / lib
            try:
                pythons = sorted(p for p in base.iterdir() if p.name.startswith("python"))
            except OSError:
                continue
            for py in pythons:
                for leaf in ("site-packages", "dist-packages"):
                    if (py / leaf).is_dir() and (py / leaf) not in out:
                        out.append(py / leaf)
        if pre == Path("/usr") and Path("/usr/lib/python3/dist-packages").is_dir():
            out.append(Path("/usr/lib/python3/dist-packages"))
    return out


def installed(dirs: Sequence[Path]) -> dict[str, str]:
    """Normalized distribution name -> version, from ``*.dist-info`` / ``*.egg-info`` folder names."""
    found: dict[str, str] = {}
    for d in dirs:
        try:
            names = os.listdir(d)
        except OSError:
            continue
        for entry in names:
            m = _DIST_RE.fullmatch(entry)
            if m:
                found.setdefault(normalize(m["name"]), m["version"])
    return found


def engine_versions(
    argv: Sequence[str],
    env: Mapping[str, str],
    package: str | None,
    log_version: str | None,
    log_line: str | None,
) -> dict[str, Any]:
    """The engine's version (package metadata first, else its log), where it came from, and the versions
    of the libraries that matter to its maintainers."""
    interp, why = interpreter_of(argv, env)
    dirs = site_dirs(interp) if interp else []
    packages = installed(dirs)
    wanted = {normalize(n) for n in INTERESTING} | ({normalize(package)} if package else set())
    shown = {n: v for n, v in sorted(packages.items()) if n in wanted or n.startswith(INTERESTING_PREFIXES)}
    shown = dict(list(shown.items())[:MAX_PACKAGES])
    version, source = None, None
    if package and normalize(package) in packages:
        version, source = (
            packages[normalize(package)],
            f"package metadata ({package}) in {dirs[0].parent.parent.parent if dirs else '?'}",
        )
    elif log_version:
        version, source = log_version, f"engine log: {log_line}" if log_line else "engine log"
    notes = []
    if interp is None:
        notes.append(why)
    elif not dirs:
        notes.append(f"no site-packages found for {interp}")
    elif package and normalize(package) not in packages:
        notes.append(f"{package} is not installed in the engine's interpreter ({interp})")
    return {
        "engine_package": package,
        "version": version,
        "version_source": source,
        "interpreter": interp,
        "site_packages": [str(d) for d in dirs],
        "packages": shown,
        "notes": notes,
    }
