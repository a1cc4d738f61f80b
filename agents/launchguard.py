"""Launch requests are data: check an engine's argv, environment and model against the agent's policy.

Pure (the stdlib and the engine adapters' declarations; no config imports), so ``agents.config`` can use
:func:`secret_in_argv` while loading. What differs per engine (its launchers, the variables it reads its
API key from) comes from its adapter (agents/engines/). Rules:

* **No secrets in argv** (always, at config load and again at launch): argv is world-readable (``ps``,
  ``/proc/<pid>/cmdline``) and the supervisor writes it into the engine log. ``--api-key VALUE``,
  ``--hf-token``, ``hf_...``/``sk-...`` values, ``NAME_TOKEN=value``, URL passwords and the like are refused
  with a pointer to ``env``, in every argv element *and inside* strings such as ``sh -c "..."`` or
  ``python -c "..."``; so is an argv element that repeats a secret value of the engine's ``env``. The
  message never repeats the value.
* **No NUL or control characters** in argv, environment or model (always).
* **Executables**. With ``[agent] allowed_executables`` unset, the built-in engine launchers apply,
  matched by name: the adapters' ``executables`` (``vllm``, ``text-generation-launcher``),
  ``llmconsole sim-engine`` and a Python interpreter (``python``, ``python3``, ``python3.X``) running
  ``-m MODULE`` with MODULE one of :data:`BUILTIN_PYTHON_MODULES` (the adapters' ``python_modules`` and
  the simulator's). Everything else (shells, ``python -c``, scripts, other modules) is
  refused. When ``allowed_executables`` is set it replaces that list: the resolved, real path of argv[0]
  must be one of the listed paths (also resolved); an interpreter among them still runs only ``-m``
  modules of ``allowed_python_modules`` (default: the built-in modules). In both cases neither the
  executable nor its folder may be writable by others.
* **Environment**: ``LD_PRELOAD``, ``LD_AUDIT``, ``LD_LIBRARY_PATH``, ``PYTHONPATH``, ``PYTHONHOME`` and
  ``PYTHONSTARTUP`` (code-injection paths) are refused unless listed in ``[agent] allowed_env_overrides``.
* **Models** (``[agent] model_roots``, ``allow_hub_ids``): a model given as a path must resolve (realpath:
  ``..`` and symlinks followed) under one of the roots; a hub id (``org/name``) is allowed only when
  ``allow_hub_ids = true``. Without model_roots, paths are not confined and hub ids are allowed unless
  ``allow_hub_ids = false``.

Redaction lives in :mod:`agents.redact`; its names are re-exported here for compatibility.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.engines import ADAPTERS
from agents.redact import (  # noqa: F401 - re-exported for compatibility
    MASK,
    MIN_SECRET_LEN,
    SECRET_ENV_RE,
    URL_PASSWORD_RE,
    Redactor,
    looks_like_credential,
    secret_values,
)

# Flags whose value is a credential (names normalized: lower case, leading dashes dropped, "_" -> "-").
SECRET_FLAGS = frozenset(
    {
        "token",
        "hf-token",
        "hub-token",
        "huggingface-token",
        "auth-token",
        "access-token",
        "authtoken",
        "ngrok-authtoken",
        "password",
        "passwd",
        "secret",
        "secret-key",
        "client-secret",
    }
)
_API_KEY_SUFFIXES = ("api-key", "api-keys", "apikey")
# Values that are credentials whatever flag carries them.
SECRET_VALUE_RE = re.compile(
    r"\bhf_[A-Za-z0-9]{30,}\b|\bsk-(?=[A-Za-z0-9_-]*[0-9])[A-Za-z0-9_-]{20,}|\bBearer\s+\S{8,}", re.IGNORECASE
)
# NAME=VALUE / NAME:VALUE where NAME ends in a credential word (HF_TOKEN=..., api_key:...).
_ASSIGNMENT_RE = re.compile(
    r"-{0,2}(?P<name>[A-Za-z_][A-Za-z0-9_.-]*?(?:api[_-]?keys?|apikey|token|secret|secret[_-]?key|passw(?:or)?d"
    r"|credentials?))[=:](?P<value>\S+)",
    re.IGNORECASE,
)
# "api_key": "VALUE" inside a JSON argument (e.g. --hf-overrides '{...}').
_JSON_SECRET_RE = re.compile(
    r'"[\w.-]*?(?:api[_-]?key|token|secret|passw(?:or)?d)"\s*:\s*"(?P<value>[^"]+)"', re.I
)
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
HUB_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?")
HUB_TOKEN_ENV = "HF_TOKEN"  # huggingface_hub's token variable, read by every engine that downloads


def _env_hint() -> str:
    """Where a secret goes instead of argv: the first engine's API-key variable as the example, then the
    other engines' and the hub's."""
    named = [(a.display, a.secret_env_names()) for a in ADAPTERS.values() if a.secret_env_names()]
    others = [f"{display}: {', '.join(names)}" for display, names in named[1:]] + [f"hub: {HUB_TOKEN_ENV}"]
    example = named[0][1][0] if named else HUB_TOKEN_ENV
    return f'pass it through env instead, e.g. env = {{ {example} = "..." }} ({"; ".join(others)})'


ENV_HINT = _env_hint()

# The built-in engine launchers (used while [agent] allowed_executables is unset).
SIM_MODULE = "agents.sim"  # llmconsole's simulated engine
BUILTIN_PYTHON_MODULES = (*(m for a in ADAPTERS.values() for m in a.python_modules), SIM_MODULE)
_EXECUTABLES = tuple(x for a in ADAPTERS.values() for x in a.executables)
_ANY_ARGS = frozenset(_EXECUTABLES)
_OTHER_LAUNCHERS = ("python -m <engine server module>", "llmconsole sim-engine")
BUILTIN_LAUNCHERS_TEXT = ", ".join((*_EXECUTABLES, *_OTHER_LAUNCHERS))
_SUBCOMMAND = {"llmconsole": "sim-engine"}
_PYTHON_RE = re.compile(r"python(?:3(?:\.[0-9]+)?)?")
# Interpreter switches that may come before -m (no code, no paths).
_PY_SWITCHES = frozenset({"-u", "-B", "-O", "-OO", "-s", "-E", "-I", "-P", "-b", "-bb", "-q"})
# Environment variables that inject code into the engine; refused unless in [agent] allowed_env_overrides.
GUARDED_ENV = ("LD_PRELOAD", "LD_AUDIT", "LD_LIBRARY_PATH", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")


def _flag_name(token: str) -> str | None:
    if not token.startswith("-") or token in ("-", "--"):
        return None
    return token.lstrip("-").split("=", 1)[0].lower().replace("_", "-")


def is_secret_flag(token: str) -> bool:
    name = _flag_name(token)
    return name is not None and (name in SECRET_FLAGS or name.endswith(_API_KEY_SUFFIXES))


def _words(token: str) -> list[str]:
    """The shell words of a string argument (``sh -c "..."``, ``python -c "..."``), best effort."""
    if not any(c.isspace() for c in token):
        return []
    try:
        return shlex.split(token)
    except ValueError:  # unbalanced quotes: plain whitespace split
        return token.split()


def _secret_problem(part: str) -> str | None:
    """What kind of secret ``part`` (one argv element or one word inside it) carries, or None."""
    if is_secret_flag(part):
        return f"flag {part.split('=', 1)[0]!r} takes a secret"
    m = _ASSIGNMENT_RE.fullmatch(part)
    if m and looks_like_credential(m["value"].strip("\"'")):
        return f"{m['name']!r} is assigned a credential"
    if SECRET_VALUE_RE.search(part) or URL_PASSWORD_RE.search(part):
        return "it looks like a credential (token, API key or URL password)"
    j = _JSON_SECRET_RE.search(part)
    if j and looks_like_credential(j["value"]):
        return "it holds a credential in JSON"
    return None


def secret_in_argv(argv: Iterable[str]) -> str | None:
    """A one-line refusal when ``argv`` carries an obvious secret (the value is never repeated); else None.
    Every element is checked, and every shell word inside an element (``sh -c``, ``python -c`` strings)."""
    for i, token in enumerate(argv):
        problem = _secret_problem(token)
        inside = ""
        if problem is None:
            problem = next((p for w in _words(token) if (p := _secret_problem(w))), None)
            inside = " (inside its string)"
        if problem is not None:
            return (
                f"item {i}{inside}: {problem}; argv is shown by `ps`, /proc/<pid>/cmdline and the engine log, "
                f"so never put secrets in it; {ENV_HINT}"
            )
    return None


def secret_repeated(argv: Sequence[str], env: Mapping[str, str]) -> str | None:
    """A refusal when an argv element contains the value of one of the engine's secret env variables."""
    for name, value in env.items():
        if len(value) < MIN_SECRET_LEN or not SECRET_ENV_RE.search(name):
            continue
        forms = {value, json.dumps(value)[1:-1]}
        for i, token in enumerate(argv):
            if any(f in token for f in forms):
                return f"item {i} repeats the value of env {name}; argv is world-readable, so the engine must read it from env"
    return None


def control_chars(values: Iterable[str], what: str) -> str | None:
    for i, v in enumerate(values):
        if _CONTROL_RE.search(v):
            return f"{what} item {i} contains a NUL or control character"
    return None


@dataclass(frozen=True, slots=True)
class LaunchPolicy:
    allowed_executables: tuple[Path, ...] | None = None
    model_roots: tuple[Path, ...] | None = None
    allow_hub_ids: bool | None = None
    allowed_python_modules: tuple[str, ...] | None = None  # None: BUILTIN_PYTHON_MODULES
    allowed_env_overrides: tuple[str, ...] = ()

    @classmethod
    def of(cls, agent: object) -> LaunchPolicy:
        """From an AgentConfig (duck-typed: this module never imports the config)."""
        return cls(
            allowed_executables=getattr(agent, "allowed_executables", None),
            model_roots=getattr(agent, "model_roots", None),
            allow_hub_ids=getattr(agent, "allow_hub_ids", None),
            allowed_python_modules=getattr(agent, "allowed_python_modules", None),
            allowed_env_overrides=tuple(getattr(agent, "allowed_env_overrides", ()) or ()),
        )

    @property
    def hub_ids_allowed(self) -> bool:
        return self.allow_hub_ids if self.allow_hub_ids is not None else self.model_roots is None

    @property
    def python_modules(self) -> tuple[str, ...]:
        return (
            self.allowed_python_modules if self.allowed_python_modules is not None else BUILTIN_PYTHON_MODULES
        )

    def warnings(self) -> list[str]:
        """What an operator should hear once at start-up about this policy."""
        out = []
        if self.allowed_executables is None:
            out.append(
                "[agent] allowed_executables is not set: engines may run only the built-in launchers "
                f"({BUILTIN_LAUNCHERS_TEXT}), matched by name; list their absolute paths to pin them"
            )
        if self.model_roots is None:
            out.append("[agent] model_roots is not set: model paths are not confined to allow-listed folders")
        return out

    @staticmethod
    def engine_warnings(engines: Sequence[Any]) -> list[str]:
        """Per engine, once at start-up: a bare interpreter name resolves through the agent's PATH, not the
        engine's virtualenv."""
        out = []
        for e in engines:
            command = getattr(e, "command", None)
            if (
                getattr(e, "managed", True)
                and command
                and os.sep not in command[0]
                and is_interpreter(command[0])
            ):
                out.append(
                    f"engine {e.id}: command[0] is the bare name {command[0]!r}: it resolves through the agent's PATH, "
                    "not the engine's virtualenv; give the interpreter's absolute path (e.g. /opt/vllm/bin/python)"
                )
        return out


def is_interpreter(path: str) -> bool:
    """``python``, ``python3`` or ``python3.X`` (by the file name, or the name it resolves to)."""
    names = {os.path.basename(path)}
    if os.path.isabs(path):
        names.add(os.path.basename(os.path.realpath(path)))
    return any(_PYTHON_RE.fullmatch(n) for n in names)


def python_target(argv: Sequence[str]) -> tuple[str | None, str]:
    """(module, what) for an interpreter argv: the module of ``-m MODULE`` after harmless switches, or None
    and what the interpreter would run instead (for messages)."""
    i = 1
    while i < len(argv) and argv[i] in _PY_SWITCHES:
        i += 1
    if i >= len(argv):
        return None, "an interactive interpreter"
    arg = argv[i]
    if arg == "-m":
        return (argv[i + 1], f"-m {argv[i + 1]}") if i + 1 < len(argv) else (None, "-m without a module")
    if arg.startswith("-m") and len(arg) > 2:
        return arg[2:], f"-m {arg[2:]}"
    if arg.startswith("-c") or arg == "-":
        return None, f"{arg[:2]} CODE"
    return None, f"{arg[:60]!r}" if not arg.startswith("-") else f"switch {arg[:20]!r}"


def check_python(argv: Sequence[str], policy: LaunchPolicy) -> str | None:
    """None when an interpreter argv runs one of the allowed ``-m`` modules."""
    module, what = python_target(argv)
    if module is not None and module in policy.python_modules:
        return None
    listed = "built-in: " if policy.allowed_python_modules is None else ""
    return (
        f"{os.path.basename(argv[0])} may only run -m MODULE with MODULE in [agent] allowed_python_modules "
        f"({listed}{', '.join(policy.python_modules) or 'none'}), not {what}; add the module there to allow it"
    )


def check_launcher(argv: Sequence[str], policy: LaunchPolicy) -> str | None:
    """None when ``argv`` (argv[0] already resolved on PATH by the caller) may run under ``policy``."""
    argv0 = argv[0]
    if policy.allowed_executables is not None:
        problem = check_executable(argv0, policy.allowed_executables)
        if problem is None and is_interpreter(argv0):
            problem = check_python(argv, policy)
        return problem
    name = os.path.basename(argv0)
    if _PYTHON_RE.fullmatch(name):
        problem = check_python(argv, policy)
    elif name in _ANY_ARGS or (name in _SUBCOMMAND and len(argv) > 1 and argv[1] == _SUBCOMMAND[name]):
        problem = None
    else:
        what = f"{name} {argv[1]}" if name in _SUBCOMMAND and len(argv) > 1 else argv0
        return (
            f"command {what!r} is not a built-in engine launcher ({BUILTIN_LAUNCHERS_TEXT}); to run it, list its "
            "absolute path in [agent] allowed_executables"
        )
    # a missing file is left to the supervisor, which reports it as it starts the engine
    return problem or (writable_by_others(argv0) if os.path.isabs(argv0) and os.path.exists(argv0) else None)


def check_env(env: Mapping[str, str], policy: LaunchPolicy) -> str | None:
    """None unless ``env`` sets a code-injection variable that ``allowed_env_overrides`` does not list."""
    bad = [k for k in GUARDED_ENV if k in env and k not in policy.allowed_env_overrides]
    if not bad:
        return None
    return (
        f"env {', '.join(bad)} can inject code into the engine and is refused; list it in "
        f"[agent] allowed_env_overrides to allow it"
    )


def writable_by_others(executable: str) -> str | None:
    """A refusal when the real file or its folder may be replaced by any user (sticky folders excepted)."""
    real = os.path.realpath(executable)
    for path in (real, os.path.dirname(real)):
        try:
            mode = os.stat(path).st_mode
        except OSError as exc:
            return f"executable {real}: {exc.strerror or exc}"
        if mode & stat.S_IWOTH and not (stat.S_ISDIR(mode) and mode & stat.S_ISVTX):
            return f"executable {real}: {path} is writable by others, so anyone could replace it"
    return None


def check_executable(argv0: str, allowed: Sequence[Path] | None) -> str | None:
    """None when ``argv0`` (already resolved on PATH by the caller) is one of the paths ``allowed`` (by
    real path) and not replaceable by others. ``allowed=None`` checks nothing (see :func:`check_launcher`)."""
    if allowed is None:
        return None
    if not os.path.isabs(argv0):
        return f"executable {argv0!r} was not found on PATH, so it cannot match [agent] allowed_executables"
    real = os.path.realpath(argv0)
    if real not in {os.path.realpath(os.path.expanduser(str(p))) for p in allowed}:
        shown = argv0 if real == argv0 else f"{argv0} (resolves to {real})"
        return f"executable {shown} is not in [agent] allowed_executables"
    return writable_by_others(real)


def looks_like_path(model: str, cwd: str) -> bool:
    if model.startswith(("/", "./", "../", "~")) or model in (".", ".."):
        return True
    return os.path.exists(os.path.join(cwd, model))


def within(path: str, root: str) -> bool:
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:
        return False


def check_model(model: str, policy: LaunchPolicy, cwd: str | None = None) -> str | None:
    """None when ``model`` (a path or a hub id) is allowed by ``policy``."""
    if _CONTROL_RE.search(model):
        return "model contains a NUL or control character"
    base = cwd or os.getcwd()
    if looks_like_path(model, base):
        if policy.model_roots is None:
            return None
        real = os.path.realpath(os.path.join(base, os.path.expanduser(model)))
        roots = [os.path.realpath(os.path.expanduser(str(r))) for r in policy.model_roots]
        if any(within(real, r) for r in roots):
            return None
        return f"model path {model!r} resolves to {real}, outside [agent] model_roots ({', '.join(roots)})"
    if not HUB_ID_RE.fullmatch(model) or ".." in model:
        if policy.model_roots is None and policy.allow_hub_ids is None:
            return None  # no model policy configured: the engine decides what the string means
        return f"model {model!r} is neither an existing path nor a valid hub id (org/name)"
    if not policy.hub_ids_allowed:
        return (
            f"model {model!r} is a hub id, and hub ids are refused (set [agent] allow_hub_ids = true, "
            "or give a local path under model_roots)"
        )
    return None


def refusal(
    argv: Sequence[str],
    env: Mapping[str, str],
    model: str,
    policy: LaunchPolicy,
    *,
    cwd: str | None = None,
) -> str | None:
    """Why this launch is refused (one line), or None when it may run."""
    return (
        control_chars(argv, "command line")
        or control_chars([f"{k}={v}" for k, v in env.items()], "environment")
        or secret_in_argv(argv)
        or secret_repeated(argv, env)
        or check_env(env, policy)
        or check_launcher(argv, policy)
        or check_model(model, policy, cwd)
    )
