"""The bundle format (agents/bundle_files.py): manifest + sha256 round trip, verification naming the first
bad file, and safe reading of hostile archives (traversal, absolute paths, links, devices, bombs)."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import time
from pathlib import Path

import pytest

from agents.bundle_files import (
    MANIFEST,
    BundleError,
    BundleWriter,
    ReadLimits,
    extract_to,
    path_problem,
    read_bundle,
    safe_component,
    verify_bundle,
    write_archive,
)


def _bundle() -> tuple[bytes, dict]:
    w = BundleWriter()
    w.add_json("hosts/h1/host.json", {"uname": "Linux"})
    w.add_jsonl("hosts/h1/snapshots.jsonl", [{"seq": 1}, {"seq": 2}])
    w.add_text("hosts/h1/engines/e1/log-tail.txt", "line one\nline two\n")
    w.note_missing("kernel log", "denied", "h1")
    fields = {"created_at": "2026-01-01T00:00:00.000Z", "hosts": [{"name": "h1"}], "reason": "test"}
    return w.build(fields, mtime=1_700_000_000), w.manifest(fields)


def _rebuild(members: dict[str, bytes]) -> bytes:
    return write_archive(list(members.items()), mtime=1_700_000_000)


def test_round_trip_lists_every_file_with_sha256_and_size_manifest_first() -> None:
    data, manifest = _bundle()
    verdict = verify_bundle(data)
    assert verdict.ok, verdict.problem
    assert list(verdict.members)[0] == MANIFEST
    listed = {f["path"]: f for f in verdict.manifest["files"]}
    assert set(listed) == set(verdict.members) - {MANIFEST}
    import hashlib

    for path, entry in listed.items():
        assert entry["size"] == len(verdict.members[path])
        assert entry["sha256"] == hashlib.sha256(verdict.members[path]).hexdigest()
    assert verdict.manifest["schema"] == "llmconsole.bundle/1"
    assert verdict.manifest["missing"] == [{"host": "h1", "what": "kernel log", "why": "denied"}]
    assert "3 files intact" in verdict.summary() and "reason: test" in verdict.summary()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:  # plain files, no owner names, no absolute paths
        for m in tar.getmembers():
            assert m.isreg() and not m.name.startswith("/") and m.uname == "" and m.mode == 0o644


def test_verify_names_the_first_bad_file() -> None:
    data, _ = _bundle()
    members = read_bundle(data)
    tampered = dict(members)
    tampered["hosts/h1/snapshots.jsonl"] = b'{"seq": 1}\n{"seq": 3}\n'
    got = verify_bundle(_rebuild(tampered))
    assert not got.ok and got.problem == "hosts/h1/snapshots.jsonl: sha256 does not match the manifest"

    resized = dict(members)
    resized["hosts/h1/host.json"] += b" "
    assert verify_bundle(_rebuild(resized)).problem.startswith("hosts/h1/host.json: size ")

    gone = {k: v for k, v in members.items() if k != "hosts/h1/engines/e1/log-tail.txt"}
    assert (
        verify_bundle(_rebuild(gone)).problem
        == "hosts/h1/engines/e1/log-tail.txt: listed in the manifest but missing from the archive"
    )

    extra = {**members, "hosts/h1/extra.txt": b"x"}
    assert (
        verify_bundle(_rebuild(extra)).problem
        == "hosts/h1/extra.txt: in the archive but not listed in the manifest"
    )

    no_manifest = {k: v for k, v in members.items() if k != MANIFEST}
    assert verify_bundle(_rebuild(no_manifest)).problem == "manifest.json: missing"


def test_other_schema_major_and_foreign_json_are_refused() -> None:
    data, _ = _bundle()
    members = read_bundle(data)
    for schema, want in (
        ("llmconsole.bundle/2", "is not readable here"),
        ("llmconsole.bundle/1.3", None),
        ("other/1", "not an llmconsole bundle"),
    ):
        m = json.loads(members[MANIFEST])
        m["schema"] = schema
        got = verify_bundle(_rebuild({**members, MANIFEST: json.dumps(m).encode()}))
        if want is None:
            assert got.ok, got.problem  # a minor version is read
        else:
            assert not got.ok and want in got.problem and got.problem.startswith("manifest.json: ")
    got = verify_bundle(_rebuild({**members, MANIFEST: b"[1, 2]"}))
    assert got.problem == "manifest.json: not a JSON object"


def test_truncated_and_garbage_archives_are_one_line_problems(tmp_path: Path) -> None:
    data, _ = _bundle()
    cut = verify_bundle(data[: len(data) // 2])
    assert not cut.ok and "truncated" in cut.problem and "\n" not in cut.problem
    for lost in range(1, 60):  # the tail only: the tar end marker and the gzip trailer (CRC, length)
        tail = verify_bundle(data[:-lost])
        assert not tail.ok and "truncated" in tail.problem, (lost, tail.problem)
    flipped = bytearray(data)
    flipped[-5] ^= 0xFF  # the stored length disagrees: the gzip trailer is checked
    assert not verify_bundle(bytes(flipped)).ok
    assert "gzip" in verify_bundle(b"not a bundle at all").problem
    plain = io.BytesIO()
    with tarfile.open(fileobj=plain, mode="w") as tar:  # a tar that is not gzipped
        tar.addfile(tarfile.TarInfo("manifest.json"), io.BytesIO(b""))
    assert not verify_bundle(plain.getvalue()).ok
    assert "cannot open" in verify_bundle(tmp_path / "nope.tar.gz").problem


def _hostile(add) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        add(tar)
    return buf.getvalue()


def _file(tar: tarfile.TarFile, name: str, data: bytes = b"x", **attrs) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for k, v in attrs.items():
        setattr(info, k, v)
    tar.addfile(info, io.BytesIO(data))


def _special(tar: tarfile.TarFile, name: str, kind: bytes, **attrs) -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    for k, v in attrs.items():
        setattr(info, k, v)
    tar.addfile(info)


@pytest.mark.parametrize(
    ("build", "why"),
    [
        (lambda t: _file(t, "../evil.txt"), "'..' component"),
        (lambda t: _file(t, "hosts/../../evil.txt"), "'..' component"),
        (lambda t: _file(t, "/etc/cron.d/evil"), "absolute path"),
        (lambda t: _file(t, "C:/evil"), "absolute path"),
        (lambda t: _file(t, "a\\..\\evil"), "backslash"),
        (lambda t: _file(t, "a/\nb"), "control character"),
        (lambda t: _file(t, "a//b"), "empty"),
        (lambda t: _special(t, "link", tarfile.SYMTYPE, linkname="/etc/passwd"), "a link"),
        (lambda t: _special(t, "hard", tarfile.LNKTYPE, linkname="manifest.json"), "a link"),
        (lambda t: _special(t, "dev", tarfile.CHRTYPE, devmajor=1, devminor=3), "a device"),
        (lambda t: _special(t, "blk", tarfile.BLKTYPE, devmajor=8, devminor=0), "a device"),
        (lambda t: _special(t, "fifo", tarfile.FIFOTYPE), "a FIFO"),
        (lambda t: _special(t, "dir", tarfile.DIRTYPE), "a directory"),
        (lambda t: (_file(t, "a.txt"), _file(t, "a.txt")), "appears twice"),
        (lambda t: _file(t, "ok.txt", pax_headers={"path": "../../via-pax"}), "'..' component"),
    ],
)
def test_hostile_members_are_refused(build, why: str) -> None:
    with pytest.raises(BundleError, match="refused") as err:
        read_bundle(_hostile(build))
    assert why in str(err.value) and "\n" not in str(err.value)


def test_absurd_sizes_counts_and_bombs_are_refused_quickly() -> None:
    limits = ReadLimits(max_members=50, max_member_bytes=1 << 20, max_total_bytes=4 << 20)
    with pytest.raises(BundleError, match="over the 1 MiB cap"):
        read_bundle(_hostile(lambda t: _file(t, "big.bin", b"\0" * (2 << 20))), limits)
    with pytest.raises(BundleError, match="more than 50 members"):
        read_bundle(_hostile(lambda t: [_file(t, f"f{i}") for i in range(60)]), limits)
    # A gzip bomb: 256 MiB of zeros in one member compress to 250 KiB; reading stops at the cap.
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9) as gz:
        info = tarfile.TarInfo("bomb.bin")
        info.size = 256 << 20
        gz.write(info.tobuf(format=tarfile.PAX_FORMAT))
        chunk = b"\0" * (1 << 20)
        for _ in range(256):
            gz.write(chunk)
    started = time.monotonic()
    with pytest.raises(BundleError, match="refused"):
        read_bundle(buf.getvalue(), ReadLimits(max_member_bytes=2 << 30, max_total_bytes=8 << 20))
    assert time.monotonic() - started < 5
    # A pax header that claims to be huge never gets read into memory beyond the stream cap.
    bomb = io.BytesIO()
    with gzip.GzipFile(fileobj=bomb, mode="wb", compresslevel=9) as gz:
        pax = tarfile.TarInfo("././@PaxHeader")
        pax.type, pax.size = tarfile.XHDTYPE, 64 << 20
        gz.write(pax.tobuf(format=tarfile.USTAR_FORMAT))
        for _ in range(64):
            gz.write(b"9" * (1 << 20))
    with pytest.raises(BundleError):
        read_bundle(bomb.getvalue(), ReadLimits(max_total_bytes=4 << 20))


def test_extract_to_writes_only_under_a_new_directory(tmp_path: Path) -> None:
    data, _ = _bundle()
    dest = tmp_path / "out"
    written = extract_to(read_bundle(data), dest)
    assert sorted(p.relative_to(dest).as_posix() for p in written) == sorted(read_bundle(data))
    assert (dest / "hosts/h1/engines/e1/log-tail.txt").read_text() == "line one\nline two\n"
    assert {p for p in tmp_path.rglob("*") if p.is_file()} == set(written)
    with pytest.raises(BundleError, match="cannot create"):
        extract_to(read_bundle(data), dest)  # never into an existing directory
    with pytest.raises(BundleError, match="refused"):
        extract_to({"../escape.txt": b"x"}, tmp_path / "other")
    assert not (tmp_path / "escape.txt").exists()


def test_writer_checks_paths_and_keeps_to_its_budget() -> None:
    w = BundleWriter(budget_bytes=100)
    assert w.add("a.txt", b"x" * 60)
    assert not w.add("b.txt", b"y" * 60, what="the big file", host="h")
    assert w.missing == [
        {
            "host": "h",
            "what": "the big file",
            "why": "left out: the bundle's size cap of 100 bytes was reached",
        }
    ]
    for bad in ("../x", "/abs", "manifest.json", "a b", "a.txt"):
        with pytest.raises(ValueError):
            w.add(bad, b"")
    for name in ("..", ".", "a/b", "gpu 01", "", "x" * 500):
        safe = safe_component(name)
        assert path_problem(safe) is None and "/" not in safe and len(safe) <= 101
