"""Launch requests are data: check an engine's argv, environment and model against the agent's policy.

Pure (stdlib only, no config imports), so ``agents.config`` can use :func:`secret_in_argv` while loading.
Rules (reliability.md §3.9–§3.10):

* **No secrets in argv** (always, at config load): argv is world-readable (``ps``, ``/proc/<pid>/cmdline``)
  and the supervisor writes it into the engine log. ``--api-key VALUE``, ``--hf-token``, ``hf_...`` values
  and the like are refused with a pointer to ``env``; the message never repeats the value.
* **No NUL or control characters** in argv, environment or model (always).
* **Executables** (``[agent] allowed_executables``): when set, the resolved, real path of argv[0] must be
  one of the listed paths (also resolved), and neither it nor its folder may be writable by others.
  When unset every executable is allowed and the agent warns once at start-up.
* **Models** (``[agent] model_roots``, ``allow_hub_ids``): a model given as a path must resolve (realpath:
  ``..`` and symlinks followed) under one of the roots; a hub id (``org/name``) is allowed only when
  ``allow_hub_ids = true``. Without model_roots, paths are not confined and hub ids are allowed unless
  ``allow_hub_ids = false``.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

# Flags whose value is a credential (names normalized: lower case, leading dashes dropped, "_" -> "-").
SECRET_FLAGS = frozenset({
    "token", "hf-token", "hub-token", "huggingface-token", "auth-token", "access-token", "authtoken",
    "ngrok-authtoken", "password", "passwd", "secret", "secret-key", "client-secret",
})  # fmt: skip
_API_KEY_SUFFIXES = ("api-key", "api-keys", "apikey")
# Values that are credentials whatever flag carries them.
SECRET_VALUE_RE = re.compile(r"\bhf_[A-Za-z0-9]{30,}\b|\bsk-[A-Za-z0-9_-]{20,}|\bBearer\s+\S{8,}", re.IGNORECASE)
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
HUB_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?")
ENV_HINT = 'pass it through env instead, e.g. env = { VLLM_API_KEY = "..." } (TGI: API_KEY; hub: HF_TOKEN)'


def _flag_name(token: str) -> str | None:
    if not token.startswith("-") or token in ("-", "--"):
        return None
    return token.lstrip("-").split("=", 1)[0].lower().replace("_", "-")


def is_secret_flag(token: str) -> bool:
    name = _flag_name(token)
    return name is not None and (name in SECRET_FLAGS or name.endswith(_API_KEY_SUFFIXES))


def secret_in_argv(argv: Iterable[str]) -> str | None:
    """A one-line refusal when ``argv`` carries an obvious secret (the value is never repeated); else None."""
    for i, token in enumerate(argv):
        if is_secret_flag(token):
            flag = token.split("=", 1)[0]
            return (
                f"item {i} ({flag!r}) puts a secret on the command line, where `ps`, /proc/<pid>/cmdline and the "
                f"engine log show it; {ENV_HINT}"
            )
        if SECRET_VALUE_RE.search(token):
            return f"item {i} looks like a credential (token or API key); never put secrets in argv; {ENV_HINT}"
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

    @classmethod
    def of(cls, agent: object) -> LaunchPolicy:
        """From an AgentConfig (duck-typed: this module never imports the config)."""
        return cls(
            allowed_executables=getattr(agent, "allowed_executables", None),
            model_roots=getattr(agent, "model_roots", None),
            allow_hub_ids=getattr(agent, "allow_hub_ids", None),
        )

    @property
    def hub_ids_allowed(self) -> bool:
        return self.allow_hub_ids if self.allow_hub_ids is not None else self.model_roots is None

    def warnings(self) -> list[str]:
        """What an operator should hear once at start-up about this policy."""
        out = []
        if self.allowed_executables is None:
            out.append(
                "[agent] allowed_executables is not set: engines may run any executable; list the engine "
                "binaries (absolute paths) to refuse everything else"
            )
        if self.model_roots is None:
            out.append("[agent] model_roots is not set: model paths are not confined to allow-listed folders")
        return out


def check_executable(argv0: str, allowed: Sequence[Path] | None) -> str | None:
    """None when ``argv0`` (already resolved on PATH by the caller) may run under ``allowed``."""
    if allowed is None:
        return None
    if not os.path.isabs(argv0):
        return f"executable {argv0!r} was not found on PATH, so it cannot match [agent] allowed_executables"
    real = os.path.realpath(argv0)
    if real not in {os.path.realpath(os.path.expanduser(str(p))) for p in allowed}:
        shown = argv0 if real == argv0 else f"{argv0} (resolves to {real})"
        return f"executable {shown} is not in [agent] allowed_executables"
    for path in (real, os.path.dirname(real)):
        try:
            mode = os.stat(path).st_mode
        except OSError as exc:
            return f"executable {real}: {exc.strerror or exc}"
        if mode & stat.S_IWOTH and not (stat.S_ISDIR(mode) and mode & stat.S_ISVTX):
            return f"executable {real}: {path} is writable by others, so anyone could replace it"
    return None


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
        or check_executable(argv[0], policy.allowed_executables)
        or check_model(model, policy, cwd)
    )


# --- redaction ---------------------------------------------------------------------------------------

SECRET_ENV_RE = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
MIN_SECRET_LEN = 8  # shorter values are not replaced (they would mangle unrelated text); warned about
_PATTERN = re.compile(
    r"(?P<k>(?:api[_-]?key|hf[_-]?token|auth[_-]?token|access[_-]?token|secret(?:[_-]?key)?|password|passwd))"
    r"(?P<sep>\\?[\"']?\s*[:=]\s*\\?[\"']?)(?P<v>[^\s\"'\\,;}\]]{4,})"
    r"|(?P<b>\bBearer\s+)[A-Za-z0-9._~+/=-]{8,}"
    r"|\bhf_[A-Za-z0-9]{20,}"
    r"|\bsk-[A-Za-z0-9_-]{20,}",
    re.IGNORECASE,
)
MASK = "***"
# The pattern only runs when one of these (lower-cased) appears: a fast path for large clean bodies.
_TRIGGERS = ("api_key", "api-key", "apikey", "hf_", "hf-token", "auth_token", "auth-token", "access_token",
             "access-token", "secret", "passw", "bearer", "sk-")


def _mask(m: re.Match[str]) -> str:
    if m.group("k"):
        return m.group("k") + m.group("sep") + MASK
    if m.group("b"):
        return m.group("b") + MASK
    return m.group(0)[:3] + MASK


def secret_values(env: Mapping[str, str]) -> list[str]:
    """Values of ``env`` whose names say they are secrets (``*KEY*``, ``*TOKEN*``, ``*SECRET*`` ...)."""
    return [v for k, v in env.items() if SECRET_ENV_RE.search(k) and v]


class Redactor:
    """Replace known secret values (and their JSON-escaped forms) and common credential shapes
    (``api_key=...``, ``Bearer ...``, ``hf_...``, ``sk-...``) with ``***``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        import json

        values: set[str] = set()
        self.too_short = 0
        for s in secrets:
            if len(s) < MIN_SECRET_LEN:
                self.too_short += 1
                continue
            values.add(s)
            values.add(json.dumps(s)[1:-1])
        self.secrets = tuple(sorted(values, key=len, reverse=True))

    def __call__(self, text: str) -> str:
        for s in self.secrets:
            if s in text:
                text = text.replace(s, MASK)
        low = text.lower()
        if not any(t in low for t in _TRIGGERS):
            return text
        return _PATTERN.sub(_mask, text)
