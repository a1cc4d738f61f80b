"""Merge the hosts' bundles into one ``llmconsole.bundle/1`` archive, with host masking when asked.

Each agent's archive is read safely and checked against its own manifest first (a host whose archive
fails is listed as missing, with why). Its files move under ``hosts/<console name>/`` and every one is
passed through a second redaction here: the console's own bearer tokens for every host and the credential
shapes (agents/redact.py), then Authorization values. With a :class:`agents.bundle_redact.HostMasker`, host
names (configured, ssh targets, URL hosts, names the agents report) and IP addresses in every file, path
and the manifest become placeholders; the mapping is returned for a file kept outside the bundle.
"""

from __future__ import annotations

import getpass
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from agents import __version__
from agents.bundle_files import BundleWriter, safe_component, verify_bundle
from agents.bundle_redact import HOST_MASK_RULE, RULES, HostMasker, mask_auth_headers
from agents.redact import Redactor
from agents.schema import rfc3339
from console.bundle_fetch import HostBundle
from console.settings import HostConfig

MAX_OUTPUT_BYTES = 4 * 2**30


@dataclass
class Merged:
    data: bytes
    manifest: dict[str, Any]
    mapping: dict[str, str] = field(default_factory=dict)
    collected: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


def host_names(configs: Iterable[HostConfig]) -> list[str]:
    """Names that identify the hosts: configured names, ssh targets' host part, URL hosts."""
    out: list[str] = []
    for h in configs:
        out.append(h.name)
        if h.ssh:
            out.append(h.ssh.rsplit("@", 1)[-1])
        host = urlsplit(h.url).hostname if h.url else None
        if host:
            out.append(host)
    return out


def _agent_names(manifest: dict[str, Any], members: dict[str, bytes]) -> list[str]:
    names = [str(h.get("name")) for h in manifest.get("hosts", []) if isinstance(h, dict) and h.get("name")]
    for path, data in members.items():
        if path.endswith("/host.json"):
            try:
                facts = json.loads(data)
            except ValueError:
                continue
            node = (facts.get("uname") or {}).get("nodename") if isinstance(facts, dict) else None
            if isinstance(node, str):
                names.append(node)
    return names


_Checked = tuple[HostBundle, dict[str, Any], dict[str, bytes]]


def _verified(results: Sequence[HostBundle]) -> tuple[list[_Checked], list[tuple[str, str]]]:
    """The hosts whose archive verifies against its own manifest, and (name, why) for the others."""
    checked: list[_Checked] = []
    failed: list[tuple[str, str]] = []
    for r in results:
        if r.data is None:
            failed.append((r.name, r.error or "no answer"))
            continue
        verdict = verify_bundle(r.data)
        if not verdict.ok or verdict.manifest is None or verdict.members is None:
            failed.append((r.name, f"the agent's bundle does not verify: {verdict.problem}"))
            continue
        checked.append((r, verdict.manifest, verdict.members))
    return checked, failed


def _host_masker(configs: Sequence[HostConfig], checked: list[_Checked]) -> HostMasker:
    """A masker for the configured names and every name the agents report."""
    masker = HostMasker(host_names(configs))
    for _, manifest, members in checked:
        for name in _agent_names(manifest, members):
            masker.add_name(name)
    return masker


def _add_host(
    writer: BundleWriter, checked: _Checked, clean: Callable[[str], str], masker: HostMasker | None
) -> dict[str, Any]:
    """Write one host's files (cleaned) under ``hosts/<name>/`` and its missing notes; its manifest entry."""
    r, manifest, members = checked
    agent_hosts = [h for h in manifest.get("hosts", []) if isinstance(h, dict)]
    agent_dirs = [str(h.get("dir")) + "/" for h in agent_hosts if h.get("dir")]
    target = f"hosts/{safe_component(r.name)}"
    if masker is not None:
        target = masker.path(target)
    for path, data in members.items():
        if path == "manifest.json":
            continue
        rel = next((path[len(d) :] for d in agent_dirs if path.startswith(d)), path)
        writer.add_text(
            f"{target}/{rel}", clean(data.decode("utf-8", "surrogateescape")), what=rel, host=r.name
        )
    for item in manifest.get("missing", []):
        if isinstance(item, dict):
            writer.note_missing(str(item.get("what")), str(item.get("why")), r.name)
    first = agent_hosts[0] if agent_hosts else {}
    made_by = manifest.get("created_by") if isinstance(manifest.get("created_by"), dict) else {}
    return {
        "name": r.name,
        "dir": target,
        "status": "collected",
        "agent_host": first.get("name"),
        "agent_version": first.get("agent_version"),
        "boot_id": first.get("boot_id"),
        "engines": first.get("engines", []),
        "actor": made_by.get("actor"),
        "request_id": made_by.get("request_id"),
        "agent_created_at": manifest.get("created_at"),
        "window": manifest.get("window"),
        "stack_capture": manifest.get("stack_capture"),
        "agent_redaction": (manifest.get("redaction") or {}).get("content_lines_removed"),
        "route": r.route,
        "fetch_s": r.elapsed_s,
        "missing": sum(1 for m in manifest.get("missing", []) if isinstance(m, dict)),
    }


def _manifest_fields(
    entries: list[dict[str, Any]],
    created: float,
    *,
    since_s: float,
    engine: str | None,
    reason: str | None,
    masked: bool,
) -> dict[str, Any]:
    """The merged manifest's own fields (before cleaning)."""
    return {
        "created_at": rfc3339(created),
        "created_by": {
            "tool": "llmconsole bundle",
            "version": __version__,
            "user": _user(),
            "actors": {e["name"]: e.get("actor") for e in entries if e["status"] == "collected"},
        },
        "reason": reason,
        "window": {"requested_s": since_s},
        "engine_filter": engine,
        "hosts": entries,
        "redaction": {
            "rules": list(RULES) + ([HOST_MASK_RULE] if masked else []),
            "host_names_masked": masked,
        },
    }


def merge(
    results: Sequence[HostBundle],
    configs: Sequence[HostConfig],
    *,
    since_s: float,
    engine: str | None,
    reason: str | None,
    tokens: Iterable[str] = (),
    mask_hosts: bool = False,
) -> Merged:
    """The combined archive; hosts without a usable bundle are in the manifest's ``missing``."""
    redactor = Redactor(tokens)
    writer = BundleWriter(budget_bytes=MAX_OUTPUT_BYTES)
    routes = {r.name: r.route for r in results}
    checked, failed = _verified(results)
    masker = _host_masker(configs, checked) if mask_hosts else None

    def clean(text: str) -> str:
        text = mask_auth_headers(redactor(text))
        return masker(text) if masker is not None else text

    entries = [_add_host(writer, c, clean, masker) for c in checked]
    for name, why in failed:
        entries.append(
            {"name": name, "dir": None, "status": "missing", "route": routes.get(name), "error": why}
        )
        writer.note_missing("everything (no bundle from this host)", why, name)
    created = time.time()
    fields = _manifest_fields(
        entries, created, since_s=since_s, engine=engine, reason=reason, masked=masker is not None
    )
    fields = json.loads(
        clean(json.dumps(fields))
    )  # operator text and agents' messages: redacted (and masked)
    writer.missing[:] = json.loads(clean(json.dumps(writer.missing)))
    data = writer.build(fields, mtime=created)
    return Merged(
        data,
        writer.manifest(fields),
        dict(masker.mapping) if masker else {},
        [r.name for r, _, _ in checked],
        failed,
    )


def _user() -> str | None:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return None
