"""Command-line and environment building shared by the adapters.

The rule for flags the agent manages (bind host, port, model, served model name, metrics port):

* a flag whose value comes from a LaunchSpec field is always emitted once, with the spec's value, and
  any copy of it in ``spec.args`` (``--port 9000`` or ``--port=9000``, or a short alias) is dropped: the
  agent probes ``spec.host``/``spec.port``, so the engine must listen exactly there;
* a flag whose value the adapter chooses itself (TGI's ``--prometheus-port`` when ``spec.metrics_port`` is
  None, SGLang's ``--enable-metrics``) yields to ``spec.args``: it is added only when args lack it.

Everything else in ``spec.args`` is passed through unchanged, after the managed flags.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from agents.engines.base import LaunchSpec

# Set for every engine: no hub downloads at run time, no usage statistics or telemetry.
TELEMETRY_OFF: Mapping[str, str] = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "VLLM_DO_NOT_TRACK": "1",
    "DO_NOT_TRACK": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
}


@dataclass(frozen=True, slots=True)
class Flag:
    """A managed flag: its spellings (the first is emitted) and whether it takes several values."""

    names: tuple[str, ...]
    many: bool = False  # argparse nargs="+": the value runs until the next token that starts with "-"

    @property
    def name(self) -> str:
        return self.names[0]


def has_flag(args: Sequence[str], flag: Flag) -> bool:
    """True when ``args`` holds ``flag`` in any spelling, bare or as ``--flag=value``."""
    return any(_spelling(token, flag) is not None for token in args)


def drop_flag(args: Sequence[str], flag: Flag) -> list[str]:
    """``args`` without every occurrence of ``flag`` and its value(s)."""
    out: list[str] = []
    i = 0
    while i < len(args):
        token = args[i]
        form = _spelling(token, flag)
        if form is None:
            out.append(token)
            i += 1
            continue
        i += 1
        if form == "bare" and i < len(args) and not args[i].startswith("-"):  # value(s) follow
            i += 1
            while flag.many and i < len(args) and not args[i].startswith("-"):
                i += 1
    return out


def _spelling(token: str, flag: Flag) -> str | None:
    for name in flag.names:
        if token == name:
            return "bare"
        if token.startswith(name + "=") and name.startswith("--"):
            return "joined"
    return None


def assemble(
    prefix: Sequence[str],
    managed: Sequence[tuple[Flag, str | None]],
    defaults: Sequence[tuple[Flag, str | None]],
    args: Sequence[str],
) -> list[str]:
    """prefix (command + model) + managed flags (spec values, copies in args dropped) + defaults args lack + args.

    A value of None in ``managed`` means "not set by the spec": the flag is neither emitted nor dropped.
    A value of None in ``defaults`` means a switch without a value.
    """
    rest = list(args)
    argv = list(prefix)
    for flag, value in managed:
        if value is None:
            continue
        rest = drop_flag(rest, flag)
        argv += [flag.name, value]
    for flag, value in defaults:
        if has_flag(rest, flag):
            continue
        argv += [flag.name] if value is None else [flag.name, value]
    return argv + rest


def build_env(
    spec: LaunchSpec, base: Mapping[str, str], extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """``base`` + CUDA_VISIBLE_DEVICES (only when the spec names GPUs) + opt-outs + ``extra`` + spec.env."""
    env = dict(base)
    if spec.gpus:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in spec.gpus)
    env.update(TELEMETRY_OFF)
    env.update(extra or {})
    env.update(spec.env)
    return env
