"""Redaction: mask configured secret values and credential-shaped tokens in text the agent hands out.

Used on every API response body (agents/apiguard.py) and, same-length, on engine log files in place
(agents/supervisor/logs.py). Pure (stdlib only).

What is masked
    * **Configured secrets**: every value (>= 8 characters) of an engine ``env`` entry whose name says it
      is a secret (``*KEY*``, ``*TOKEN*``, ``*SECRET*``, ``*PASSWORD*`` ...), also in its JSON-escaped
      forms (as a JSON string shows it, once and twice escaped) — wherever it appears.
    * **Token shapes**, on word boundaries: ``sk-...`` (20+ characters with a digit), ``hf_...`` (30+),
      ``Bearer <credential>``, URL passwords (``scheme://user:PASSWORD@host``), and ``key=value`` /
      ``"key": "value"`` / ``--key value`` where the key names a credential (api_key, token, secret,
      password, passwd ...) *and the value looks like one*: 8+ characters with a digit, mixed case, a
      base64 symbol, or 24+ characters — never a number, ``null`` or an ``$ENV`` reference, so prose such
      as ``passwd: Permission denied`` is left alone.

Cost: the configured values are plain substring searches; every pattern starts with a literal (``sk-``,
``hf_``, ``://``) or is found through a literal search of the lower-cased text (``token``, ``bearer`` ...)
that includes the separator, so ordinary ids like ``task-a``, ``disk-1`` or ``sk-learn`` cost the same as
any other text (bench/bench_redact.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping

MASK = "***"
MIN_SECRET_LEN = 8  # shorter values are not replaced (they would mangle unrelated text); warned about
SECRET_ENV_RE = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)

Span = tuple[int, int]

# --- token shapes with a literal prefix (case-sensitive: the regex engine scans for the literal) ------
# The lookbehind sits after the literal so the literal-prefix scan stays; it demands a word boundary.
_SK = re.compile(r"sk-(?<![\w.-]sk-)(?P<v>[A-Za-z0-9_-]{20,})")
_HF = re.compile(r"hf_(?<![\w.-]hf_)(?P<v>[A-Za-z0-9]{30,})")
URL_PASSWORD_RE = re.compile(r"://[^/\s:@\"'<>]{1,256}:(?P<v>[^/\s@\"'<>]{1,256})@")

# --- case-insensitive families: a lower-case literal gate (with the separator in a lookahead), then the
# precise pattern matched at that position of the original text -------------------------------------
_VALUE = r"(?P<v>[^\s\"'\\,;}\])<>&]+)"
_SEP = r"(?P<sep>\\?[\"']?[ \t]*[:=][ \t]*\\?[\"']?|[ \t]+)"
_KEYS = r"api[_-]?key|token|secret(?:[_-]?key)?|passw(?:or)?d"
_GATE_SEP = r"(?=\\?[\"']?[ \t]*[:=]|[ \t])"
_KEY_VALUE = re.compile(r"(?P<k>" + _KEYS + ")" + _SEP + _VALUE, re.I)
_FAMILIES: tuple[tuple[re.Pattern[str], re.Pattern[str]], ...] = (
    (re.compile(r"api(?=[_-]?key" + _GATE_SEP + ")"), _KEY_VALUE),
    (re.compile(r"token" + _GATE_SEP), _KEY_VALUE),
    (re.compile(r"secret(?=(?:[_-]?key)?" + _GATE_SEP + ")"), _KEY_VALUE),
    (re.compile(r"passw(?=(?:or)?d" + _GATE_SEP + ")"), _KEY_VALUE),
    (
        re.compile(r"bearer(?=\s)"),
        re.compile(r"(?<![\w-])(?P<k>bearer)(?P<sep>\s+)(?P<v>[A-Za-z0-9._~+/=-]+)", re.I),
    ),
)
_NOT_SECRET = frozenset(
    {
        "null",
        "none",
        "true",
        "false",
        "undefined",
        "redacted",
        "<redacted>",
        "unset",
        "not-set",
        "infinity",
        "-infinity",
        "+infinity",
        "nan",
    }
)
_NUMBER_RE = re.compile(r"[-+]?[0-9][0-9._:eE+-]*")
_B64_SYMBOLS = frozenset("+/=_")
_CODE = frozenset("[](){}")  # messages[0], f(x): code, not a key


def looks_like_credential(value: str) -> bool:
    """True for a value that could be a key or password; False for words, numbers and references."""
    if len(value) < MIN_SECRET_LEN or value.lower() in _NOT_SECRET or value.startswith(("$", "%", "{", "<")):
        return False
    if set(value) <= {"*"} or _NUMBER_RE.fullmatch(value) or _CODE & set(value):
        return False
    if any(c.isdigit() for c in value) or _B64_SYMBOLS & set(value) or len(value) >= 24:
        return True
    rest = value[1:]
    return any(c.isupper() for c in rest) and any(c.islower() for c in value)


def secret_values(env: Mapping[str, str]) -> list[str]:
    """Values of ``env`` whose names say they are secrets (``*KEY*``, ``*TOKEN*``, ``*SECRET*`` ...)."""
    return [v for k, v in env.items() if SECRET_ENV_RE.search(k) and v]


def _escaped_forms(secret: str) -> set[str]:
    once = json.dumps(secret)[1:-1]
    forms = {secret, once, json.dumps(secret, ensure_ascii=False)[1:-1], json.dumps(once)[1:-1]}
    return {f for f in forms if f}


def merge(spans: Iterable[Span]) -> list[Span]:
    """Sorted, non-overlapping spans covering the same characters."""
    out: list[Span] = []
    for start, end in sorted(spans):
        if out and start <= out[-1][1]:
            if end > out[-1][1]:
                out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


class Redactor:
    """Mask configured secret values (and their JSON-escaped forms) and credential-shaped tokens.

    ``redactor(text)`` replaces each masked run with ``***``; :meth:`mask_bytes` replaces each masked
    byte with ``*`` (same length, for files rewritten in place); :meth:`spans` says what would be masked.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        values: set[str] = set()
        self.too_short = 0
        for s in secrets:
            if len(s) < MIN_SECRET_LEN:
                self.too_short += 1
                continue
            values |= _escaped_forms(s)
        self.secrets = tuple(sorted(values, key=len, reverse=True))
        # The same values as they appear in UTF-8 bytes decoded as Latin-1 (one character per byte).
        self._byte_secrets = tuple(
            sorted({v.encode("utf-8").decode("latin-1") for v in values}, key=len, reverse=True)
        )

    # --- what to mask ---------------------------------------------------------------------------------
    def spans(self, text: str) -> list[Span]:
        """Character spans of ``text`` to mask (sorted, merged)."""
        return self._spans(text, self.secrets)

    def _spans(self, text: str, secrets: tuple[str, ...]) -> list[Span]:
        found: list[Span] = []
        for s in secrets:
            i = text.find(s)
            while i >= 0:
                found.append((i, i + len(s)))
                i = text.find(s, i + 1)
        for rx in (_SK, _HF):
            found += [m.span("v") for m in rx.finditer(text) if looks_like_token(m["v"])]
        found += [m.span("v") for m in URL_PASSWORD_RE.finditer(text)]
        low = text.lower()
        aligned = len(low) == len(text)  # str.lower() kept every position (true for all but a few letters)
        for gate, precise in _FAMILIES:
            if aligned:
                matches = (precise.match(text, g.start()) for g in gate.finditer(low))
            else:
                matches = precise.finditer(text) if gate.search(low) else iter(())
            for m in matches:
                if m is not None and _is_key_value(text, m):
                    found.append(m.span("v"))
        return merge(found)

    # --- masking --------------------------------------------------------------------------------------
    def __call__(self, text: str) -> str:
        spans = self.spans(text)
        if not spans:
            return text
        out, last = [], 0
        for start, end in spans:
            out += [text[last:start], MASK]
            last = end
        out.append(text[last:])
        result = "".join(out)
        # A secret could in principle re-form around a mask; mask again until none is left (each pass
        # shortens the text, so this ends).
        while any(s in result for s in self.secrets):
            for s in self.secrets:
                result = result.replace(s, MASK)
        return result

    def byte_spans(self, data: bytes) -> list[Span]:
        """Byte spans of ``data`` (any encoding, UTF-8 expected) to mask."""
        return self._spans(data.decode("latin-1"), self._byte_secrets)

    def redact_bytes(self, data: bytes) -> bytes:
        """``data`` with each masked run replaced by ``***`` (as :meth:`__call__` does for text)."""
        return self.replace_spans(data, self.byte_spans(data))

    @staticmethod
    def replace_spans(data: bytes, spans: list[Span]) -> bytes:
        """``data`` with each of ``spans`` (sorted, disjoint) replaced by ``***``."""
        if not spans:
            return data
        out, last = [], 0
        for start, end in spans:
            out += [data[last:start], MASK.encode()]
            last = end
        out.append(data[last:])
        return b"".join(out)

    def mask_bytes(self, data: bytes) -> bytes:
        """``data`` with every masked byte replaced by ``*`` (same length)."""
        spans = self.byte_spans(data)
        if not spans:
            return data
        buf = bytearray(data)
        for start, end in spans:
            buf[start:end] = b"*" * (end - start)
        return bytes(buf)


def looks_like_token(value: str) -> bool:
    """An ``sk-``/``hf_`` body: a credential has digits (``sk-learn-...`` package names do not)."""
    return any(c.isdigit() for c in value)


def _is_key_value(text: str, m: re.Match[str]) -> bool:
    sep = m["sep"]
    if not (":" in sep or "=" in sep):  # whitespace only: "--api-key VALUE" / "Bearer VALUE"
        key_start = m.start("k")
        is_flag = text[max(0, key_start - 2) : key_start].endswith("-")
        if m["k"].lower() != "bearer" and not is_flag:
            return False
    return looks_like_credential(m["v"])


__all__ = [
    "MASK",
    "MIN_SECRET_LEN",
    "SECRET_ENV_RE",
    "URL_PASSWORD_RE",
    "Redactor",
    "looks_like_credential",
    "merge",
    "secret_values",
]
