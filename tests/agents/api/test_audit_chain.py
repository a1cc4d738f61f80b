"""The keyed audit log on a real filesystem: every tamper (edit, forged re-chain, removal, reordering,
truncation, junk, lost head or key) is found and named; rotation, old-format logs, other writers and
threads keep the chain valid; any single-byte change anywhere is detected."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.audit import (
    CONTINUED,
    GENESIS,
    AuditLog,
    AuditUnavailable,
    create_key,
    line_hash,
    read_head,
    read_key,
    verify_log,
)

REPO = Path(__file__).resolve().parents[3]


def fill(path: Path, n: int, **kw: object) -> AuditLog:
    log = AuditLog(path, host="h1", agent_version="0.1", **kw)  # type: ignore[arg-type]
    for i in range(n):
        log.append(
            request_id=f"r{i}",
            actor="alice",
            role="operator",
            auth="bearer",
            remote="127.0.0.1",
            action="stop",
            engine="e1",
            result="allowed",
        )
    return log


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def write_lines(path: Path, items: list[bytes]) -> None:
    path.write_bytes(b"".join(items))


def test_records_are_numbered_chained_and_the_key_and_head_sit_beside_the_log(tmp_path: Path) -> None:
    path = tmp_path / "state" / "audit.log"
    fill(path, 4)
    recs = [json.loads(x) for x in lines(path)]
    assert [r["seq"] for r in recs] == [1, 2, 3, 4]
    assert [r["prev_mac"] for r in recs[1:]] == [r["mac"] for r in recs[:-1]]
    assert all(list(r)[-1] == "mac" and r["mac"].startswith("hmac-sha256:") for r in recs)
    key_file = tmp_path / "state" / "audit.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and stat.S_IMODE(path.stat().st_mode) == 0o600
    key = read_key(key_file)
    assert key is not None and len(key) == 32 and key.hex() not in path.read_text()  # never in the log
    head = read_head(tmp_path / "state" / "audit.head")
    assert head is not None and (head.seq, head.mac) == (4, recs[-1]["mac"]) and head.valid(key)
    v = verify_log(path)
    assert v.ok and (v.records, v.first_seq, v.last_seq, v.bad_line) == (4, 1, 4, None)
    assert v.summary() == f"audit log {path}: 4 records intact, last seq 4 at {recs[-1]['at']}"


def test_a_forged_edit_with_the_chain_recomputed_is_detected(tmp_path: Path) -> None:
    """The old attack on the unkeyed chain: edit a line, then recompute every later link (here with
    plain SHA-256 and with an attacker's own HMAC key) and the head. Without audit.key it fails."""
    path = tmp_path / "audit.log"
    fill(path, 5)
    for forge in ("sha256", "other-key"):
        original = path.read_bytes()
        head_before = (tmp_path / "audit.head").read_bytes()
        items, prev = lines(path), None
        for i, raw in enumerate(items):
            rec = json.loads(raw)
            if i == 2:
                rec["actor"] = "mallory"
            if i >= 2:
                rec["prev_mac"] = prev
                del rec["mac"]
                body = json.dumps(rec, separators=(",", ":")).encode()
                if forge == "sha256":
                    rec["mac"] = "hmac-sha256:" + hashlib.sha256(body).hexdigest()
                else:
                    import hmac

                    rec["mac"] = "hmac-sha256:" + hmac.new(b"k" * 32, body, hashlib.sha256).hexdigest()
                items[i] = json.dumps(rec, separators=(",", ":")).encode() + b"\n"
            prev = json.loads(items[i])["mac"]
        write_lines(path, items)
        head = json.loads(head_before)
        head["mac"] = prev
        (tmp_path / "audit.head").write_text(json.dumps(head))
        v = verify_log(path)
        assert not v.ok and v.bad_line == 3 and "edited" in (v.problem or ""), forge
        path.write_bytes(original)
        (tmp_path / "audit.head").write_bytes(head_before)
        assert verify_log(path).ok


def test_a_plain_edit_is_named_at_its_own_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    fill(path, 4)
    items = lines(path)
    items[1] = items[1].replace(b'"result":"allowed"', b'"result":"denied"')
    write_lines(path, items)
    v = verify_log(path)
    assert (v.ok, v.bad_line) == (False, 2) and v.problem == "edited (its HMAC does not match its content)"
    assert v.summary().startswith(f"audit log {path}: line 2: edited")


def test_removed_middle_line_and_swapped_lines_are_out_of_sequence(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    fill(path, 5)
    original = lines(path)
    write_lines(path, original[:2] + original[3:])
    v = verify_log(path)
    assert (
        v.bad_line == 3 and v.problem == "out of sequence: seq 4 after seq 2 (records removed or reordered)"
    )
    write_lines(path, original[:1] + [original[2], original[1]] + original[3:])
    v = verify_log(path)
    assert v.bad_line == 2 and "out of sequence: seq 3 after seq 1" in (v.problem or "")
    write_lines(path, original + [original[4]])  # a record replayed at the end
    v = verify_log(path)
    assert v.bad_line == 6 and "reordered or duplicated" in (v.problem or "")


@pytest.mark.parametrize("cut", [1, 3, 5])
def test_lines_cut_off_the_end_are_detected_by_the_head(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "audit.log"
    fill(path, 5)
    write_lines(path, lines(path)[: 5 - cut])
    v = verify_log(path)
    assert not v.ok and v.bad_line == 6 - cut
    end = f"seq {5 - cut}" if cut < 5 else "no keyed record"
    assert v.problem == f"truncated: the head says the last record is seq 5, the file ends at {end}"


def test_a_line_cut_mid_way_junk_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    fill(path, 3)
    original = path.read_bytes()
    path.write_bytes(original[:-20])
    v = verify_log(path)
    assert v.bad_line == 3 and "incomplete last line" in (v.problem or "")
    path.write_bytes(original + b"rm -rf /\n")
    v = verify_log(path)
    assert v.bad_line == 4 and "not a JSON object" in (v.problem or "")
    path.write_bytes(original + b'{"actor":"mallory","action":"stop"}\n')
    assert "record without a MAC after keyed records" in (verify_log(path).problem or "")
    path.write_bytes(original + b"\n")
    assert verify_log(path).problem == "blank line (not a record)"


def test_a_missing_or_altered_head_and_a_missing_key_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = fill(path, 3)
    head_file, key_file = tmp_path / "audit.head", tmp_path / "audit.key"
    head = head_file.read_bytes()
    head_file.unlink()
    v = verify_log(path)
    assert not v.ok and v.problem == f"head file {head_file} is missing: truncation cannot be ruled out"
    rec = json.loads(head)
    rec["seq"] = 2  # rolled back to hide seq 3 (the attacker cannot recompute head_mac)
    rec["mac"] = json.loads(lines(path)[1])["mac"]
    head_file.write_text(json.dumps(rec))
    assert verify_log(path).problem == f"head file {head_file} was altered (its HMAC does not match)"
    head_file.write_text("{not json")
    assert "head file is malformed" in (verify_log(path).problem or "")
    head_file.write_bytes(head)
    key = key_file.read_bytes()
    key_file.unlink()
    v = verify_log(path)
    assert v.bad_line == 1 and v.problem == f"keyed record but the key {key_file} is missing: cannot verify"
    # a new writer must not mint a new key over keyed records: that would launder any edit
    with pytest.raises(AuditUnavailable, match="audit key missing"):
        AuditLog(path).append(action="stop", result="allowed")
    assert not key_file.exists()
    key_file.write_bytes(key)
    os.chmod(key_file, 0o600)
    assert verify_log(path).ok
    log.append(action="start", result="allowed")
    assert verify_log(path).last_seq == 4


def test_a_malformed_or_symlinked_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    (tmp_path / "audit.key").write_text("not a key\n")
    with pytest.raises(AuditUnavailable) as exc:
        AuditLog(path).append(action="stop", result="allowed")
    assert "malformed" in str(exc.value) and str(tmp_path) not in str(exc.value)
    assert "audit key file is malformed" in (verify_log(path).problem or "")
    (tmp_path / "audit.key").unlink()
    (tmp_path / "elsewhere").write_text("a" * 64 + "\n")
    (tmp_path / "audit.key").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(AuditUnavailable):
        AuditLog(path).append(action="stop", result="allowed")


def test_a_key_others_can_read_is_noted(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    fill(path, 1)
    os.chmod(tmp_path / "audit.key", 0o644)
    v = verify_log(path)
    assert v.ok and any("readable by group or others (mode 0644)" in n for n in v.notes)


def test_concurrent_appends_from_threads_and_two_writers_keep_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    a, b = AuditLog(path), AuditLog(path)  # e.g. two handles on one state_dir: the flock serialises them
    barrier = threading.Barrier(4)

    def work(log: AuditLog, who: str) -> None:
        barrier.wait()
        for i in range(15):
            log.append(actor=who, action="restart", engine=f"e{i}", result="allowed")

    threads = [threading.Thread(target=work, args=(log, f"t{i}")) for i, log in enumerate((a, b, a, b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    v = verify_log(path)
    assert v.ok and v.records == 60 and v.last_seq == 60
    assert [json.loads(x)["seq"] for x in lines(path)] == list(range(1, 61))


def test_concurrent_key_creation_yields_one_key(tmp_path: Path) -> None:
    key_file = tmp_path / "audit.key"
    got: list[bytes] = []
    barrier = threading.Barrier(6)

    def make() -> None:
        barrier.wait()
        got.append(create_key(key_file))

    threads = [threading.Thread(target=make) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 6 and len(set(got)) == 1 and read_key(key_file) == got[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit.key"]  # no temp files left


def test_prepare_creates_the_key_before_any_record(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "state" / "audit.log")
    log.prepare()
    assert stat.S_IMODE((tmp_path / "state" / "audit.key").stat().st_mode) == 0o600
    assert verify_log(log.path).summary() == f"audit log {log.path}: no records yet"
    blocked = tmp_path / "file"
    blocked.write_text("")
    with pytest.raises(AuditUnavailable) as exc:
        AuditLog(blocked / "audit.log").prepare()  # its directory is a file
    assert str(blocked) not in str(exc.value) and exc.value.path == blocked / "audit.log"


def test_agent_records_are_accepted(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log", host="h1")
    rec = log.append_agent("restart", engine="e1", result="allowed: exited with code 1, attempt 2")
    log.append(
        actor="agent", role=None, auth="internal", remote=None, action="adopt", engine="e2", result="allowed"
    )
    assert (rec["actor"], rec["auth"], rec["remote"], rec["action"], rec["engine"]) == (
        "agent",
        "internal",
        None,
        "restart",
        "e1",
    )
    assert [r["action"] for r in log.tail(5)] == ["restart", "adopt"] and log.tail(5, engine="e2")[0][
        "seq"
    ] == 2
    assert verify_log(log.path).ok
    with pytest.raises(TypeError, match="set by the log itself"):
        log.append(action="x", seq=99)


def test_an_unwritable_log_refuses_without_a_path_and_the_chain_recovers(tmp_path: Path) -> None:
    log = fill(tmp_path / "audit.log", 2)
    log.path = Path("/dev/full")  # every write fails with ENOSPC
    with pytest.raises(AuditUnavailable) as exc:
        log.append(action="start", result="allowed")
    assert str(exc.value) == "audit log not writable: No space left on device" and "/dev" not in str(
        exc.value
    )
    log.path = tmp_path / "audit.log"
    log.append(action="start", result="allowed")
    v = verify_log(log.path)
    assert v.ok and v.last_seq == 3


def test_a_short_write_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    """A record that does not fit (RLIMIT_FSIZE, like a full disk) is cut back off: the log stays intact."""
    path = tmp_path / "audit.log"
    fill(path, 2)
    size = path.stat().st_size
    code = (
        "import resource, signal, sys\n"
        "from agents.audit import AuditLog, AuditUnavailable\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({size + 100}, resource.RLIM_INFINITY))\n"
        f"log = AuditLog({str(path)!r})\n"
        "try:\n    log.append(action='start', result='x' * 5000)\n"
        "except AuditUnavailable as exc:\n    print('refused:', exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert out.stdout.startswith("refused: audit log not writable"), out.stderr
    assert path.stat().st_size == size and verify_log(path).ok


def test_rotation_by_copytruncate_or_move_continues_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = fill(path, 3)
    (tmp_path / "audit.log.1").write_bytes(path.read_bytes())
    os.truncate(path, 0)  # logrotate copytruncate, while the writer runs
    log.append(action="stop", result="allowed")
    first = json.loads(lines(path)[0])
    assert (first["action"], first["actor"], first["seq"]) == (CONTINUED, "agent", 4)
    v = verify_log(path)
    assert v.ok and (v.records, v.first_seq, v.last_seq) == (2, 4, 5)
    assert v.notes == ("continues a rotated-out file that ended at seq 3",)
    path.rename(tmp_path / "audit.log.2")  # rotation by moving, then an agent restart
    fill(path, 1)
    assert [json.loads(x)["seq"] for x in lines(path)] == [6, 7] and verify_log(path).ok


def test_a_file_cut_at_the_start_is_not_mistaken_for_rotation(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    fill(path, 4)
    write_lines(path, lines(path)[2:])
    v = verify_log(path)
    assert v.bad_line == 1 and "out of sequence: seq 3 after seq 0" in (v.problem or "")


@pytest.mark.parametrize("restart", [False, True])
def test_records_written_after_a_cut_leave_the_gap_visible(tmp_path: Path, restart: bool) -> None:
    path = tmp_path / "audit.log"
    log = fill(path, 5)
    write_lines(path, lines(path)[:3])
    (AuditLog(path) if restart else log).append(action="stop", result="allowed")
    assert json.loads(lines(path)[-1])["seq"] == 6  # the head is the authority, not the cut file
    v = verify_log(path)
    assert (
        v.bad_line == 4 and v.problem == "out of sequence: seq 6 after seq 3 (records removed or reordered)"
    )


@pytest.mark.parametrize("head", ["deleted", "garbage", "forged"])
def test_a_cut_hidden_by_removing_the_head_is_not_healed_by_the_next_record(
    tmp_path: Path, head: str
) -> None:
    """Cut lines off the end and delete or overwrite the head: the next writer must not adopt the cut file as
    the truth and write a fresh head silently; it records what it found, and verify fails there."""
    path = tmp_path / "audit.log"
    fill(path, 5)
    write_lines(path, lines(path)[:3])
    head_file = tmp_path / "audit.head"
    if head == "deleted":
        head_file.unlink()
    elif head == "garbage":
        head_file.write_text("{}")
    else:
        rec = json.loads(head_file.read_bytes())
        rec["seq"], rec["mac"] = 3, json.loads(lines(path)[2])["mac"]  # consistent with the cut file, no key
        head_file.write_text(json.dumps(rec))
    AuditLog(path).append(action="stop", result="allowed")
    notice = json.loads(lines(path)[3])
    assert notice["actor"] == "agent" and notice["action"] in ("audit-head-missing", "audit-head-altered")
    assert notice["seq"] == 4 and json.loads(lines(path)[4])["seq"] == 5
    v = verify_log(path)
    assert v.bad_line == 4 and "found the head file" in (v.problem or "") and "cut off" in (v.problem or "")


def test_a_partial_last_line_is_not_glued_to_the_next_record(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    fill(path, 2)
    with open(path, "ab") as f:
        f.write(b'{"at":"2026-')  # a crash mid-write by some other process
    AuditLog(path).append(action="stop", result="allowed")
    assert json.loads(lines(path)[-1])["seq"] == 3
    v = verify_log(path)
    assert v.bad_line == 3 and "not a JSON object" in (v.problem or "")


def test_a_head_that_lags_one_record_is_accepted_with_a_note(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    fill(path, 3)
    head = (tmp_path / "audit.head").read_bytes()
    AuditLog(path).append(action="stop", result="allowed")
    (tmp_path / "audit.head").write_bytes(head)  # as if the agent died between the record and its head
    v = verify_log(path)
    assert v.ok and v.last_seq == 4 and v.notes == ("head lags 1 record(s) (agent stopped while writing?)",)
    AuditLog(path).append(action="start", result="allowed")  # a new writer catches the head up
    assert read_head(tmp_path / "audit.head").seq == 5 and verify_log(path).notes == ()  # type: ignore[union-attr]


def _legacy(path: Path, n: int) -> list[bytes]:
    """Lines as the old unkeyed writer wrote them (prev_hash = SHA-256 of the line before)."""
    out, prev = [], GENESIS
    for i in range(n):
        line = json.dumps(
            {"at": "2025-01-01T00:00:00.000000Z", "action": "stop", "n": i, "prev_hash": prev},
            separators=(",", ":"),
        ).encode()
        out.append(line + b"\n")
        prev = line_hash(line)
    write_lines(path, out)
    return out


def test_an_old_unkeyed_log_is_kept_and_pinned_by_the_first_keyed_record(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    _legacy(path, 3)
    v = verify_log(path)
    assert v.ok and v.legacy == 3 and v.records == 0 and "unkeyed old-format log" in v.notes[0]
    fill(path, 2)
    recs = [json.loads(x) for x in lines(path)]
    assert recs[3]["seq"] == 1 and recs[3]["prev_mac"] == line_hash(lines(path)[2])
    v = verify_log(path)
    assert v.ok and (v.legacy, v.records, v.last_seq) == (3, 2, 2)
    assert v.summary().startswith(
        f"audit log {path}: 2 records intact (after 3 legacy unkeyed records on lines 1-3)"
    )
    keyed = lines(path)[3:]
    forged = _legacy(tmp_path / "forged", 3)  # the same old lines ...
    forged_rec = json.loads(forged[1])
    forged_rec["action"] = "start"  # ... one edited and the unkeyed chain recomputed after it
    forged[1] = json.dumps(forged_rec, separators=(",", ":")).encode() + b"\n"
    rec2 = json.loads(forged[2])
    rec2["prev_hash"] = line_hash(forged[1])
    forged[2] = json.dumps(rec2, separators=(",", ":")).encode() + b"\n"
    write_lines(path, forged + keyed)
    v = verify_log(path)
    assert v.bad_line == 4 and "legacy unkeyed records before it were changed" in (v.problem or "")
    write_lines(path, forged[:2] + lines(tmp_path / "forged")[2:] + keyed)
    v = verify_log(path)
    assert v.bad_line == 3 and "legacy unkeyed record does not chain" in (v.problem or "")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_single_byte_change_or_cut_is_detected(tmp_path: Path, data: st.DataObject) -> None:
    path = tmp_path / "audit.log"
    if not path.exists():
        fill(path, 4)
        (tmp_path / "good").write_bytes(path.read_bytes())
    good = (tmp_path / "good").read_bytes()
    kind = data.draw(st.sampled_from(["flip", "delete", "insert"]))
    i = data.draw(st.integers(0, len(good) - 1))
    if kind == "flip":
        bad = good[:i] + bytes([good[i] ^ data.draw(st.integers(1, 255))]) + good[i + 1 :]
    elif kind == "delete":
        j = data.draw(st.integers(i + 1, len(good)))
        bad = good[:i] + good[j:]
    else:
        bad = good[:i] + data.draw(st.binary(min_size=1, max_size=8)) + good[i:]
    path.write_bytes(bad)
    v = verify_log(path)
    assert not v.ok and "\n" not in v.summary()
    path.write_bytes(good)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    content=st.binary(max_size=400), head=st.one_of(st.none(), st.binary(max_size=200)), keyed=st.booleans()
)
def test_verify_never_raises_on_arbitrary_files(
    tmp_path: Path, content: bytes, head: bytes | None, keyed: bool
) -> None:
    path = tmp_path / "audit.log"
    path.write_bytes(content)
    key_file, head_file = tmp_path / "audit.key", tmp_path / "audit.head"
    key_file.unlink(missing_ok=True)
    if keyed:
        key_file.write_text("ab" * 32 + "\n")
    head_file.unlink(missing_ok=True)
    if head is not None:
        head_file.write_bytes(head)
    v = verify_log(path)
    assert isinstance(v.ok, bool) and "\n" not in v.summary() and (v.ok or v.problem)


def test_writers_in_separate_processes_keep_one_chain(tmp_path: Path) -> None:
    """Two processes appending to one log at once (the log's flock serialises them)."""
    path = tmp_path / "audit.log"
    AuditLog(path).prepare()
    code = (
        "import sys\nfrom agents.audit import AuditLog\n"
        f"log = AuditLog({str(path)!r})\n"
        "sys.stdin.readline()\n"
        "for i in range(150):\n    log.append(actor=sys.argv[1], action='stop', result='allowed')\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, f"p{i}"], cwd=REPO, stdin=subprocess.PIPE)
        for i in range(2)
    ]
    try:
        for p in procs:  # both are imported and waiting: start them together
            assert p.stdin is not None
            p.stdin.write(b"go\n")
            p.stdin.flush()
        assert [p.wait(timeout=60) for p in procs] == [0, 0]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    v = verify_log(path)
    assert v.ok and v.records == 300, v.summary()


def test_a_last_record_replaced_by_a_fork_does_not_match_the_head(tmp_path: Path) -> None:
    """Roll the log and head back one record, let the agent write a different record 4, then restore the
    head that named the original record 4: same seq, different record."""
    path, head_file = tmp_path / "audit.log", tmp_path / "audit.head"
    fill(path, 3)
    log3, head3 = path.read_bytes(), head_file.read_bytes()
    AuditLog(path).append(action="stop", result="allowed")
    head4 = head_file.read_bytes()
    path.write_bytes(log3)
    head_file.write_bytes(head3)
    AuditLog(path).append(action="start", result="allowed")
    assert verify_log(path).ok  # on its own the fork is a valid chain (the rollback limit, see README)
    head_file.write_bytes(head4)
    v = verify_log(path)
    assert not v.ok and v.problem == "record seq 4 is not the one the head recorded (replaced?)"
