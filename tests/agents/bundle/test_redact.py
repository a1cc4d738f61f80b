"""The redactor (agents/redact.py): configured secrets always masked, in every escaped form; credential
shapes masked on word boundaries; ordinary ids and prose untouched; secret-looking ids cost no more."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.launchguard import Redactor as ReexportedRedactor
from agents.redact import MASK, Redactor, looks_like_credential, merge, secret_values

ROOT = Path(__file__).resolve().parents[3]
HISTORY = ROOT / "tests" / "data" / "fleet" / "gpu01.history.json.gz"

ORDINARY = [
    "passwd: Permission denied",
    "/etc/passwd: No such file or directory",
    "task-a disk-1 sk-learn risk-2 whisk-3 hf_hub",
    '{"id": "task-a", "engine_id": "disk-1", "model": "sk-learn-model-for-tests"}',
    "sk-learn-contrib-imbalanced-learn-extras",  # 20+ characters after sk-, but no digit: a package name
    "max_tokens=16 prompt_tokens_per_s=120.5 tokens: 12345678",
    "the token is good; secret: yes; password: none",
    "Bearer authentication required",
    "api_key = null, api_key: $VLLM_API_KEY, token=${HF_TOKEN}, password=********",
    "INFO 11-29 12:01:14 [api_server.py:1839] vLLM API server version 0.8.4",
    "GET http://127.0.0.1:8000/metrics HTTP/1.1 200",
    "{% set token = messages[0] %}",
]

MASKED = [  # (text, what must be gone, what must stay)
    ("api_key=abc123def456", "abc123def456", "api_key="),
    ('{"api_key": "abc123def456"}', "abc123def456", '{"api_key": "'),
    ('\\"password\\": \\"Xy9abcdefgh\\"', "Xy9abcdefgh", '\\"password\\": \\"'),
    ("VLLM_API_KEY=hunter2hunter2", "hunter2hunter2", "VLLM_API_KEY="),
    ("secret_key = 'AbCdEfGhIjK'", "AbCdEfGhIjK", "secret_key = '"),
    ("vllm serve m --api-key s3cr3tvalue99", "s3cr3tvalue99", "--api-key "),
    ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9xyz", "eyJhbGciOiJIUzI1NiJ9xyz", "Authorization: Bearer "),
    ("key sk-proj-abcdefghij0123456789XYZ end", "abcdefghij0123456789XYZ", "key sk-"),
    ("hub hf_" + "a1" * 17 + " end", "a1a1a1a1", "hub hf_"),
    ("proxy https://user:pa55word@host:3128/x", "pa55word", "https://user:"),
    ("GET /v1/models?token=Zk39xQ2mLp0w&x=1", "Zk39xQ2mLp0w", "&x=1"),
]


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_text_is_unchanged(text: str) -> None:
    r = Redactor(["configured-secret-0001"])
    assert r(text) == text
    assert r.mask_bytes(text.encode()) == text.encode()


@pytest.mark.parametrize(("text", "gone", "kept"), MASKED)
def test_credential_shapes_are_masked(text: str, gone: str, kept: str) -> None:
    r = Redactor()
    out = r(text)
    assert gone not in out and kept in out and MASK in out
    on_disk = r.mask_bytes(text.encode())
    assert len(on_disk) == len(text.encode()) and gone.encode() not in on_disk and kept.encode() in on_disk


def test_configured_secrets_and_their_escaped_forms() -> None:
    secret = 'pa"ss\\wörd-1234'
    r = Redactor([secret, "short"])
    assert r.too_short == 1
    text = f"x {secret} y"
    assert r(text) == f"x {MASK} y"
    for body in (json.dumps(text), json.dumps(text, ensure_ascii=False), json.dumps(json.dumps(text))):
        out = r(body)
        assert MASK in out and "1234" not in out  # the secret's tail is gone in every escaped form
    raw = f"log: {secret}\n".encode()
    assert secret.encode() not in r.mask_bytes(raw) and len(r.mask_bytes(raw)) == len(raw)
    assert ReexportedRedactor is Redactor  # launchguard keeps the old import path


def test_secret_values_pick_secret_names() -> None:
    env = {
        "VLLM_API_KEY": "a",
        "HF_TOKEN": "b",
        "DB_PASSWORD": "c",
        "PATH": "/bin",
        "HF_HOME": "/h",
        "EMPTY_KEY": "",
    }
    assert sorted(secret_values(env)) == ["a", "b", "c"]


def test_looks_like_credential() -> None:
    for yes in ("abc123def", "AbCdEfGhIj", "a+b/c=d_e", "correcthorsebatterystapleok"):
        assert looks_like_credential(yes), yes
    for no in (
        "Permission",
        "denied",
        "null",
        "$VLLM_API_KEY",
        "12345678",
        "0.123456e5",
        "********",
        "short1",
    ):
        assert not looks_like_credential(no), no


def test_merge_spans() -> None:
    assert merge([(5, 8), (0, 2), (1, 3), (8, 9)]) == [(0, 3), (5, 9)]


# --- properties ---------------------------------------------------------------------------------------

_secret = st.text(min_size=8, max_size=24).filter(lambda s: "*" not in s)


@settings(max_examples=300, deadline=None)
@given(secret=_secret, before=st.text(max_size=30), after=st.text(max_size=30))
def test_a_configured_secret_is_always_masked(secret: str, before: str, after: str) -> None:
    r = Redactor([secret])
    text = before + secret + after
    assert secret not in r(text)
    for body in (json.dumps(text), json.dumps(text, ensure_ascii=False), json.dumps(json.dumps(text))):
        assert secret not in r(body)
        assert json.dumps(secret)[1:-1] not in r(body)
    raw = text.encode("utf-8", "surrogatepass")
    masked = r.mask_bytes(raw)
    assert len(masked) == len(raw) and secret.encode("utf-8", "surrogatepass") not in masked


_id = st.from_regex(r"[a-z]{1,6}(-[a-z0-9]{1,6}){0,2}", fullmatch=True)


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(st.tuples(_id, st.floats(allow_nan=False)), min_size=1, max_size=20))
def test_ids_and_numbers_are_never_touched(rows: list[tuple[str, float]]) -> None:
    engines = [
        {"id": i, "engine_id": i, "tokens": n, "api_key": n, "token_id": i, "max_tokens": i} for i, n in rows
    ]
    body = json.dumps({"engines": engines, "ids": [i for i, _ in rows]})
    r = Redactor(["configured-secret-0001"])
    assert r(body) == body


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=200))
def test_arbitrary_text_never_raises_and_keeps_length_on_disk(text: str) -> None:
    r = Redactor(["configured-secret-0001"])
    assert isinstance(r(text), str)
    raw = text.encode("utf-8", "surrogatepass")
    assert len(r.mask_bytes(raw)) == len(raw)


# --- cost ---------------------------------------------------------------------------------------------


def _history_body(limit: int = 590_000) -> str:
    """A /v1/history body of about 0.59 MB from a recorded fleet (tests/data/fleet)."""
    doc = json.loads(gzip.decompress(HISTORY.read_bytes()))
    snaps, size = [], 0
    for snap in doc["snapshots"]:
        snaps.append(snap)
        size += len(json.dumps(snap))
        if size >= limit:
            break
    return json.dumps({**doc, "snapshots": snaps})


def _best_of(fn, repeats: int = 7) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def test_secret_looking_ids_cost_no_more_than_plain_ids() -> None:
    """The old quick check matched `sk-` in `task-a`/`disk-1` and ran the full pattern (10x); the bound here
    is loose (3x, best of 7) so a loaded machine cannot fail it, bench/bench_redact.py measures the ratio."""
    plain = _history_body()
    renamed = {"llama-8b": "task-a", "qwen-7b": "disk-1", "mistral-7b": "sk-learn", "llama-hang": "risk-2"}
    tricky = plain
    for old, new in renamed.items():
        tricky = tricky.replace(f'"{old}"', f'"{new}"')
    assert tricky.count("sk-") > 500
    r = Redactor(["configured-secret-0001", "another-configured-0002"])
    assert r(plain) == plain and r(tricky) == tricky
    ratio = _best_of(lambda: r(tricky)) / _best_of(lambda: r(plain))
    assert ratio < 3.0, ratio
