"""The agent's bundle builder (agents/bundle.write_bundle) on recorded inputs: the size cap keeps the newest
snapshots and says so, the time cap skips what is left and says so (the archive still verifies), and an
archive the API's response redaction would alter is never handed out."""

from __future__ import annotations

import json

import pytest

from agents.bundle import BundleRequest, EngineInputs, Inputs, guard_clean, write_bundle
from agents.bundle_files import BundleError, verify_bundle
from agents.redact import Redactor
from agents.schema import EngineSnapshot, EngineStats, HostSnapshot, to_json


def _snaps(n: int) -> list[tuple[HostSnapshot, str]]:
    out = []
    for i in range(1, n + 1):
        e = EngineSnapshot(
            id="e1", kind="vllm", state="ready", stats=EngineStats(requests_running=float(i % 7))
        )
        s = HostSnapshot(
            host="h1",
            seq=i,
            taken_at=f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}.000Z",
            interval_s=1.0,
            engines=(e,),
        )
        out.append((s, to_json(s)))
    return out


def _engine(**kw) -> EngineInputs:
    base = dict(
        id="e1",
        kind="vllm",
        model="m",
        state="ready",
        reason=None,
        pid=None,
        pids=(),
        restarts=0,
        argv=("/usr/bin/true",),
        env={"PATH": "/bin", "MY_TOKEN": "s3cr3t-value-123"},
        events=[],
        log_tail=["hello", "token=Abc123def456ghi"],
        log_version=None,
        log_version_line=None,
        scrapes=(),
        scrape_ring=False,
        captures=(),
    )
    return EngineInputs(**{**base, **kw})


def _inputs(n: int = 120) -> Inputs:
    return Inputs(
        host="h1",
        boot_id="b",
        history_s=900.0,
        snapshots=_snaps(n),
        engines=[_engine()],
        gpu=None,
        redact=Redactor(["s3cr3t-value-123"]),
    )


def test_a_plain_build_verifies_and_says_what_is_missing() -> None:
    result = write_bundle(_inputs(), BundleRequest(since_s=600, reason="r", actor="ops"))
    verdict = verify_bundle(result.data)
    assert verdict.ok, verdict.problem
    assert result.filename.startswith("llmconsole-bundle-h1-") and result.filename.endswith(".tar.gz")
    lines = verdict.members["hosts/h1/snapshots.jsonl"].decode().splitlines()
    assert [json.loads(x)["seq"] for x in lines] == list(range(1, 121))
    missing = {m["what"]: m["why"] for m in verdict.manifest["missing"]}
    assert "engine e1 raw /metrics scrapes" in missing  # no scrape ring for this engine: said, not silent
    log = verdict.members["hosts/h1/engines/e1/log-tail.txt"].decode()
    assert "Abc123def456ghi" not in log and "token=***" in log
    assert b"s3cr3t-value-123" not in b"".join(verdict.members.values())


def test_the_size_cap_keeps_the_newest_snapshots_and_says_so() -> None:
    full = write_bundle(_inputs(), BundleRequest())
    size = sum(f["size"] for f in full.manifest["files"])
    snap_bytes = next(f["size"] for f in full.manifest["files"] if f["path"].endswith("snapshots.jsonl"))
    result = write_bundle(_inputs(), BundleRequest(max_bytes=size - snap_bytes // 2))
    verdict = verify_bundle(result.data)
    assert verdict.ok, verdict.problem
    seqs = [json.loads(x)["seq"] for x in verdict.members["hosts/h1/snapshots.jsonl"].decode().splitlines()]
    assert 0 < len(seqs) < 120 and seqs == list(range(121 - len(seqs), 121))  # the newest, in order
    why = next(m["why"] for m in verdict.manifest["missing"] if m["what"] == "snapshots")
    assert why.startswith(f"{120 - len(seqs)} of 120 oldest snapshots left out: the bundle's size cap of")


def test_the_time_cap_skips_the_rest_and_the_bundle_still_verifies() -> None:
    result = write_bundle(_inputs(), BundleRequest(max_seconds=0.0))
    verdict = verify_bundle(result.data)
    assert verdict.ok, verdict.problem
    skipped = [m["what"] for m in verdict.manifest["missing"] if "time cap of 0 s was reached" in m["why"]]
    assert {"host facts", "snapshots", "engine e1", "alert history"} <= set(skipped)


def test_an_archive_the_response_redaction_would_change_is_never_served() -> None:
    seen: list[bytes] = []

    def build(attempt: int) -> bytes:
        seen.append(bytes([attempt]) * 8)
        return seen[-1]

    def flags_first(text: str) -> str:  # as if attempt 0's bytes looked like a credential
        return "***" if text == "\0" * 8 else text

    assert guard_clean(build, flags_first) == b"\x01" * 8 and len(seen) == 2
    with pytest.raises(BundleError, match="redaction leaves intact"):
        guard_clean(build, lambda text: text + "!")
