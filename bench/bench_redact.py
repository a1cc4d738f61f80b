"""Redaction cost of a /v1/history-sized body: secret-looking ids against plain ids, in one process.

Run: `python bench/bench_redact.py [--kb 590] [--repeats 30]`

The body is a real recorded history (tests/data/fleet/gpu01.history.json.gz) cut to about 0.59 MB, the
size issue 10 measured. The "tricky" copy renames the engine ids to ids that look like secret prefixes
(``task-a``, ``disk-1``, ``sk-learn``, ``whisk-hf_2``): the old redactor's quick check matched ``sk-``
inside them and ran its full pattern over the whole body (10x). Both bodies go through the agent's
redactor (agents/redact.py, two configured secrets as an agent with two keyed engines has) and, as a
reference measured in the same run, through a copy of the old implementation. It prints the best time
of each and the ratio tricky/plain; the target is <= 1.5x. Outputs are checked to be unchanged.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agents.redact import Redactor  # noqa: E402

HISTORY = ROOT / "tests" / "data" / "fleet" / "gpu01.history.json.gz"
SECRETS = ("sentinel-XYZ-engine-one-0001", "sentinel-XYZ-engine-two-0002")
RENAMES = {"llama-8b": "task-a", "qwen-7b": "disk-1", "mistral-7b": "sk-learn", "llama-hang": "whisk-hf_2"}


class OldRedactor:
    """The redactor before issue 10 (agents/launchguard.py at efeceb4), kept here only as the reference."""

    _PATTERN = re.compile(
        r"(?P<k>(?:api[_-]?key|hf[_-]?token|auth[_-]?token|access[_-]?token|secret(?:[_-]?key)?|password|passwd))"
        r"(?P<sep>\\?[\"']?\s*[:=]\s*\\?[\"']?)(?P<v>[^\s\"'\\,;}\]]{4,})"
        r"|(?P<b>\bBearer\s+)[A-Za-z0-9._~+/=-]{8,}"
        r"|\bhf_[A-Za-z0-9]{20,}"
        r"|\bsk-[A-Za-z0-9_-]{20,}",
        re.IGNORECASE,
    )
    _TRIGGERS = (
        "api_key",
        "api-key",
        "apikey",
        "hf_",
        "hf-token",
        "auth_token",
        "auth-token",
        "access_token",
        "access-token",
        "secret",
        "passw",
        "bearer",
        "sk-",
    )

    def __init__(self, secrets: Iterable[str]) -> None:
        values = set()
        for s in secrets:
            values |= {s, json.dumps(s)[1:-1]}
        self.secrets = tuple(sorted(values, key=len, reverse=True))

    @staticmethod
    def _mask(m: re.Match[str]) -> str:
        if m.group("k"):
            return m.group("k") + m.group("sep") + "***"
        if m.group("b"):
            return m.group("b") + "***"
        return m.group(0)[:3] + "***"

    def __call__(self, text: str) -> str:
        for s in self.secrets:
            if s in text:
                text = text.replace(s, "***")
        low = text.lower()
        if not any(t in low for t in self._TRIGGERS):
            return text
        return self._PATTERN.sub(self._mask, text)


def history_body(kb: int) -> str:
    doc = json.loads(gzip.decompress(HISTORY.read_bytes()))
    snaps, size = [], 0
    for snap in doc["snapshots"]:
        snaps.append(snap)
        size += len(json.dumps(snap, separators=(",", ":")))
        if size >= kb * 1000:
            break
    return json.dumps({**doc, "snapshots": snaps}, separators=(",", ":"))


def best(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    out = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out = min(out, time.perf_counter() - t0)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kb", type=int, default=590, help="body size in kB (default 590, as in issue 10)")
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args()
    plain = history_body(args.kb)
    tricky = plain
    for old, new in RENAMES.items():
        tricky = tricky.replace(f'"{old}"', f'"{new}"')
    new_r, old_r = Redactor(SECRETS), OldRedactor(SECRETS)
    if new_r(plain) != plain or new_r(tricky) != tricky:
        print("error: the redactor changed an ordinary history body", file=sys.stderr)
        return 1
    print(
        f"body: {len(plain) / 1e6:.2f} MB /v1/history ({plain.count('sk-')} 'sk-' in plain ids, "
        f"{tricky.count('sk-')} in the secret-looking ids); best of {args.repeats}"
    )
    rows = []
    for name, redact in (("new (agents/redact.py)", new_r), ("old (reference)", old_r)):
        t_plain, t_tricky = (
            best(lambda r=redact: r(plain), args.repeats),
            best(lambda r=redact: r(tricky), args.repeats),
        )
        rows.append((name, t_plain, t_tricky))
        print(
            f"  {name:24s} plain ids {t_plain * 1e3:7.2f} ms   secret-looking ids {t_tricky * 1e3:7.2f} ms   "
            f"ratio {t_tricky / t_plain:5.2f}x"
        )
    ratio = rows[0][2] / rows[0][1]
    print(
        f"new redactor: secret-looking/plain = {ratio:.2f}x (target <= 1.5x): {'ok' if ratio <= 1.5 else 'OVER'}; "
        f"on secret-looking ids the old one took {rows[1][2] / rows[0][2]:.0f}x as long"
    )
    return 0 if ratio <= 1.5 else 1


if __name__ == "__main__":
    raise SystemExit(main())
