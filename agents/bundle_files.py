"""The incident bundle's file format (``llmconsole.bundle/1``): writing, safe reading, verification.

A bundle is one gzip-compressed tar of regular files under relative paths, with ``manifest.json`` first.
The manifest lists every other file with its SHA-256 and size (``files``), plus who, when, why, versions,
the redaction rules applied and what could not be collected (``missing``). Nothing else is allowed in the
archive: no directories, links, devices, absolute paths or ``..``.

Reading (:func:`read_bundle`) never trusts the archive: the decompressed stream is counted against a cap
(a gzip bomb stops there), members are read in one forward pass, and any link, device, FIFO, sparse file,
absolute or escaping path, control character, duplicate name, oversized member, or too many members ends
the read with one :class:`BundleError` line. :func:`extract_to` writes what was read into a new directory
(``O_EXCL | O_NOFOLLOW``, parents created by it alone). :func:`verify_bundle` checks the manifest and
every listed file. Stdlib only: the console imports it (``llmconsole bundle verify``, replay).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import tarfile
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

SCHEMA = "llmconsole.bundle/1"
SCHEMA_PREFIX = "llmconsole.bundle/"
MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 16 * 2**20
_SHA_RE = re.compile(r"[0-9a-f]{64}")
_COMPONENT_RE = re.compile(r"[A-Za-z0-9_.@+=-]+")
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9_.@+=-]")


class BundleError(Exception):
    """A bundle that cannot be read or written safely; the message is one line."""


@dataclass(frozen=True, slots=True)
class ReadLimits:
    """Caps for reading an untrusted bundle."""

    max_members: int = 20_000
    max_member_bytes: int = 512 * 2**20
    max_total_bytes: int = 2 * 2**30  # decompressed, headers included
    max_path_chars: int = 400


DEFAULT_LIMITS = ReadLimits()


# --- paths -------------------------------------------------------------------------------------------------


def safe_component(name: str, *, max_chars: int = 100) -> str:
    """``name`` as one path component that needs no quoting: other characters become ``_``; never empty,
    ``.`` or ``..``."""
    out = _UNSAFE_CHARS.sub("_", name)[:max_chars]
    return out if out and out.strip(".") else "_" + out


def path_problem(name: str, max_chars: int = DEFAULT_LIMITS.max_path_chars) -> str | None:
    """Why ``name`` is not an acceptable member path (relative, plain components, no ``..``), or None."""
    if not name:
        return "empty path"
    if len(name) > max_chars:
        return f"path longer than {max_chars} characters"
    if name.startswith("/") or re.match(r"[A-Za-z]:", name):
        return "absolute path"
    if "\\" in name or any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        return "backslash or control character in path"
    for part in name.split("/"):
        if part in ("", ".", ".."):
            return "path with an empty, '.' or '..' component"
        if not _COMPONENT_RE.fullmatch(part):
            return "path with characters outside [A-Za-z0-9_.@+=-]"
    return None


def _shown(name: str) -> str:
    return name[:120].encode("unicode_escape").decode("ascii") + ("…" if len(name) > 120 else "")


# --- writing -----------------------------------------------------------------------------------------------


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class BundleWriter:
    """Collects files in memory under a byte budget, then writes the archive with its manifest.

    :meth:`add` refuses a file that would pass ``budget_bytes`` (uncompressed) and records why in
    ``missing``; paths are checked (:func:`path_problem`: a bad one is a programming error, ValueError).
    """

    budget_bytes: int = 256 * 2**20
    files: dict[str, bytes] = field(default_factory=dict)
    missing: list[dict[str, Any]] = field(default_factory=list)
    used: int = 0

    def left(self) -> int:
        return self.budget_bytes - self.used

    def add(self, path: str, data: bytes, *, what: str | None = None, host: str | None = None) -> bool:
        problem = path_problem(path)
        if problem or path == MANIFEST:
            raise ValueError(f"bundle path {path!r}: {problem or 'reserved'}")
        if path in self.files:
            raise ValueError(f"bundle path {path!r} added twice")
        if len(data) > self.left():
            self.note_missing(
                what or path,
                f"left out: the bundle's size cap of {_mib(self.budget_bytes)} was reached",
                host,
            )
            return False
        self.files[path] = data
        self.used += len(data)
        return True

    def add_text(self, path: str, text: str, **kw: Any) -> bool:
        return self.add(path, text.encode("utf-8", "surrogateescape"), **kw)

    def add_json(self, path: str, obj: Any, **kw: Any) -> bool:
        return self.add_text(path, json.dumps(obj, indent=1, ensure_ascii=False, default=str) + "\n", **kw)

    def add_jsonl(self, path: str, rows: Iterable[Any], **kw: Any) -> bool:
        lines = (r if isinstance(r, str) else json.dumps(r, ensure_ascii=False, default=str) for r in rows)
        return self.add_text(path, "".join(line + "\n" for line in lines), **kw)

    def note_missing(self, what: str, why: str, host: str | None = None) -> None:
        entry: dict[str, Any] = {"what": what, "why": why}
        if host is not None:
            entry = {"host": host, **entry}
        self.missing.append(entry)

    def manifest(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """The manifest: ``fields`` (who, when, why, versions, ...) plus ``missing`` and ``files``."""
        listed = [{"path": p, "sha256": sha256(d), "size": len(d)} for p, d in self.files.items()]
        return {"schema": SCHEMA, **fields, "missing": list(self.missing), "files": listed}

    def build(self, fields: Mapping[str, Any], *, mtime: float, compresslevel: int = 6) -> bytes:
        """The archive (tar.gz bytes): ``manifest.json`` first, then every file in the order added."""
        manifest = json.dumps(self.manifest(fields), indent=1, ensure_ascii=False).encode() + b"\n"
        return write_archive(
            [(MANIFEST, manifest), *self.files.items()], mtime=mtime, compresslevel=compresslevel
        )


def write_archive(members: Iterable[tuple[str, bytes]], *, mtime: float, compresslevel: int = 6) -> bytes:
    """A tar.gz of regular files (mode 0644, owner 0, no user or group names, the given mtime)."""
    buf = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=compresslevel, mtime=int(mtime)) as gz,
        tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as tar,
    ):
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), int(mtime), 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB" if n >= 2**20 else f"{n} bytes"


# --- reading -----------------------------------------------------------------------------------------------


class _Counted(io.RawIOBase):
    """The decompressed stream, counted: past ``limit`` bytes it raises BundleError (a gzip bomb ends here)."""

    def __init__(self, raw: BinaryIO, limit: int) -> None:
        self._gz = gzip.GzipFile(fileobj=raw, mode="rb")
        self.limit, self.seen = limit, 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        want = self.limit + 1 - self.seen if n is None or n < 0 else min(n, self.limit + 1 - self.seen)
        data = self._gz.read(max(want, 1))
        self.seen += len(data)
        if self.seen > self.limit:
            raise BundleError(f"the archive expands beyond {_mib(self.limit)}: refused")
        return data


def read_bundle(
    source: str | os.PathLike[str] | bytes, limits: ReadLimits = DEFAULT_LIMITS
) -> dict[str, bytes]:
    """Every member of the archive (path -> bytes, in archive order), refusing anything unsafe.
    BundleError (one line) for an unreadable, truncated, hostile or oversized archive."""
    raw: BinaryIO
    if isinstance(source, bytes | bytearray):
        raw = io.BytesIO(source)
    else:
        try:
            raw = open(source, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise BundleError(f"cannot open: {exc.strerror or exc}") from None
    try:
        return _read_members(_Counted(raw, limits.max_total_bytes), limits)
    except BundleError:
        raise
    except (EOFError, gzip.BadGzipFile, zlib.error, tarfile.TarError, OSError) as exc:
        raise BundleError(_read_error(exc)) from None
    finally:
        raw.close()


def _read_error(exc: BaseException) -> str:
    if isinstance(exc, EOFError):
        return "truncated: the compressed stream ends early"
    if isinstance(exc, gzip.BadGzipFile | zlib.error):
        return f"not a readable gzip stream: {exc}"
    if isinstance(exc, tarfile.TarError):
        return f"not a readable tar archive: {exc}"
    return f"cannot read: {getattr(exc, 'strerror', None) or exc}"


def _read_members(stream: _Counted, limits: ReadLimits) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    total = 0
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            name = member.name
            if len(out) >= limits.max_members:
                raise BundleError(f"more than {limits.max_members} members: refused")
            kind = _kind_problem(member)
            if kind:
                raise BundleError(f"{_shown(name)}: {kind}: refused")
            problem = path_problem(name, limits.max_path_chars)
            if problem:
                raise BundleError(f"{_shown(name)}: {problem}: refused")
            if name in out:
                raise BundleError(f"{_shown(name)}: appears twice: refused")
            if member.size > limits.max_member_bytes:
                raise BundleError(
                    f"{_shown(name)}: {member.size} bytes, over the {_mib(limits.max_member_bytes)} cap: refused"
                )
            total += member.size
            if total > limits.max_total_bytes:
                raise BundleError(f"members total more than {_mib(limits.max_total_bytes)}: refused")
            fh = tar.extractfile(member)
            data = fh.read() if fh is not None else b""
            if len(data) != member.size:
                raise BundleError(f"{_shown(name)}: truncated ({len(data)} of {member.size} bytes)")
            out[name] = data
    while stream.read(1 << 16):  # to the end: the gzip trailer's CRC and length are checked only there
        pass
    return out


def _kind_problem(member: tarfile.TarInfo) -> str | None:
    if member.issym() or member.islnk():
        return "a link"
    if member.ischr() or member.isblk():
        return "a device"
    if member.isfifo():
        return "a FIFO"
    if member.isdir():
        return "a directory (bundles hold files only)"
    if member.issparse():
        return "a sparse file"
    if not member.isreg():
        return f"not a regular file (type {member.type!r})"
    return None


def extract_to(members: Mapping[str, bytes], dest: str | os.PathLike[str]) -> list[Path]:
    """Write ``members`` (from :func:`read_bundle`) under ``dest``, a directory this call creates (it must
    not exist). Files are created exclusively without following links; every path is re-checked."""
    root = Path(dest)
    try:
        root.mkdir(mode=0o700)
    except OSError as exc:
        raise BundleError(f"cannot create {root}: {exc.strerror or exc}") from None
    written = []
    for name, data in members.items():
        problem = path_problem(name)
        if problem:
            raise BundleError(f"{_shown(name)}: {problem}: refused")
        target = root.joinpath(*name.split("/"))
        parent = target.parent
        parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not parent.resolve().is_relative_to(root.resolve()):
            raise BundleError(f"{_shown(name)}: resolves outside the destination: refused")
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        written.append(target)
    return written


# --- verification ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """What :func:`verify_bundle` found. ``problem`` names the first bad file; None when intact."""

    ok: bool
    problem: str | None = None
    manifest: dict[str, Any] | None = None
    members: dict[str, bytes] | None = None

    def summary(self) -> str:
        if not self.ok or self.manifest is None:
            return self.problem or "not verified"
        m = self.manifest
        hosts = m.get("hosts") if isinstance(m.get("hosts"), list) else []
        names = ", ".join(str(h.get("name")) for h in hosts if isinstance(h, dict)) or "none"
        size = sum(int(f.get("size", 0)) for f in m.get("files", []))
        missing = m.get("missing") or []
        text = (
            f"{len(m.get('files', []))} files intact ({_mib(size)}), schema {m.get('schema')}, "
            f"created {m.get('created_at')}, hosts: {names}"
        )
        if m.get("reason"):
            text += f", reason: {str(m['reason'])[:200]}"
        if missing:
            text += f"; {len(missing)} item(s) could not be collected (see manifest 'missing')"
        return text


def schema_problem(value: object) -> str | None:
    """Why ``value`` is not a bundle schema this code reads (``llmconsole.bundle/1`` or ``/1.x``), or None."""
    if not isinstance(value, str) or not value.startswith(SCHEMA_PREFIX):
        return f"not an llmconsole bundle (schema {str(value)[:60]!r})"
    version = value[len(SCHEMA_PREFIX) :]
    if version.split(".", 1)[0] != SCHEMA.rsplit("/", 1)[1]:
        return f"bundle schema {value[:60]} is not readable here (this llmconsole reads {SCHEMA}.x)"
    return None


def check_manifest(members: Mapping[str, bytes]) -> tuple[dict[str, Any] | None, str | None]:
    """(manifest, None) when ``manifest.json`` and every file it lists check out, else (manifest or None,
    the first problem: ``PATH: why``)."""
    raw = members.get(MANIFEST)
    if raw is None:
        return None, f"{MANIFEST}: missing"
    if len(raw) > MAX_MANIFEST_BYTES:
        return None, f"{MANIFEST}: larger than {_mib(MAX_MANIFEST_BYTES)}"
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return None, f"{MANIFEST}: not JSON: {str(exc)[:120]}"
    if not isinstance(manifest, dict):
        return None, f"{MANIFEST}: not a JSON object"
    problem = schema_problem(manifest.get("schema"))
    if problem:
        return manifest, f"{MANIFEST}: {problem}"
    files = manifest.get("files")
    if not isinstance(files, list):
        return manifest, f"{MANIFEST}: 'files' is not a list"
    listed: set[str] = set()
    for entry in files:
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            return manifest, f"{MANIFEST}: a 'files' entry without a path"
        path, digest, size = entry["path"], entry.get("sha256"), entry.get("size")
        if path in listed or path == MANIFEST:
            return manifest, f"{MANIFEST}: {_shown(path)} listed twice"
        listed.add(path)
        if not isinstance(digest, str) or not _SHA_RE.fullmatch(digest) or type(size) is not int:
            return manifest, f"{_shown(path)}: the manifest's sha256 or size is malformed"
        data = members.get(path)
        if data is None:
            return manifest, f"{_shown(path)}: listed in the manifest but missing from the archive"
        if len(data) != size:
            return manifest, f"{_shown(path)}: size {len(data)} bytes, the manifest says {size}"
        if sha256(data) != digest:
            return manifest, f"{_shown(path)}: sha256 does not match the manifest"
    extra = [p for p in members if p != MANIFEST and p not in listed]
    if extra:
        return manifest, f"{_shown(extra[0])}: in the archive but not listed in the manifest"
    return manifest, None


def verify_bundle(source: str | os.PathLike[str] | bytes, limits: ReadLimits = DEFAULT_LIMITS) -> Verdict:
    """Read ``source`` safely and check its manifest and every file's size and SHA-256."""
    try:
        members = read_bundle(source, limits)
    except BundleError as exc:
        return Verdict(False, str(exc))
    manifest, problem = check_manifest(members)
    if problem is not None:
        return Verdict(False, problem, manifest, members)
    return Verdict(True, None, manifest, members)


__all__ = [
    "DEFAULT_LIMITS",
    "MANIFEST",
    "SCHEMA",
    "BundleError",
    "BundleWriter",
    "ReadLimits",
    "Verdict",
    "check_manifest",
    "extract_to",
    "path_problem",
    "read_bundle",
    "safe_component",
    "schema_problem",
    "sha256",
    "verify_bundle",
    "write_archive",
]
