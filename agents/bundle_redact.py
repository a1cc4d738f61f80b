"""What an incident bundle leaves out or masks, on top of the agent's :class:`agents.redact.Redactor`.

* **Environment**: only allow-listed names are kept (engine, CUDA/NCCL/torch and locale settings, the
  collect_env rule); any name containing secret, token, key, password, passwd, credential or auth is
  dropped even when allow-listed. The values kept still pass through the redactor.
* **Authorization headers**: the value of any ``Authorization`` / ``Proxy-Authorization`` / ``X-Api-Key``
  / ``Api-Key`` header or field in text is replaced by ``***`` (the redactor alone masks ``Bearer``
  tokens, not ``Basic`` credentials).
* **Prompts and completions**: log lines of request logging (``prompt:``, ``prompt_token_ids``,
  ``messages``, ``GenerateReqInput(``, ``output:`` …) are replaced by one placeholder line. The canary's
  own prompt (``"ping"``, sent by the agent) is the only prompt in a bundle.
* **Host masking** (:class:`HostMasker`, ``llmconsole bundle --mask-hosts``): host names and IP addresses
  become consistent placeholders (``host-1``, ``192.0.2.1``, ``2001:db8::1``); loopback and unspecified
  addresses stay. The mapping is written to a separate file, never into the bundle.
Pure (stdlib only).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping

SECRET_NAME_RE = re.compile(r"secret|token|key|passw(?:or)?d|credential|auth", re.IGNORECASE)
ENV_ALLOW_PREFIXES = (
    "VLLM_",
    "SGLANG_",
    "TGI_",
    "CUDA_",
    "NCCL_",
    "TORCH",
    "PYTORCH_",
    "NVIDIA_",
    "CUBLAS",
    "CUDNN",
    "OMP_",
    "MKL_",
    "HF_",
    "HUGGINGFACE_",
    "TRANSFORMERS_",
    "TRITON_",
    "FLASHINFER_",
    "XFORMERS_",
    "LLMCONSOLE_",
    "LC_",
    "PYTHON",
    "VIRTUAL_ENV",
    "LD_LIBRARY_PATH",
    "HIP_",
    "ROCM_",
    "GLOO_",
    "UCX_",
)
ENV_ALLOW_NAMES = frozenset(
    {"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "MAX_JOBS"}
)
MASK = "***"

_AUTH_RE = re.compile(
    r"(?P<k>\b(?:proxy-)?authorization|\bx-api-key|\bapi-key)(?P<sep>[\"']?\s*[:=]\s*[\"']?|\s*[\"'],\s*[\"'])(?P<v>[^\r\n\"']+)",
    re.IGNORECASE,
)
# Request/response logging of vLLM (--enable-log-requests / --enable-log-outputs), SGLang (--log-requests)
# and TGI: a line with any of these carries user content. Quotes may be JSON-escaped (``\\"prompt\\":``).
# Each marker is a literal (found with str.find, fast on megabytes of snapshots) and the pattern that must
# match where the literal starts.
_Q = r"\\?[\"']"
_MARKERS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (lit, re.compile(rx))
    for lit, rx in (
        ("prompt", rf"prompt(?:: |=|{_Q}\s*:|_token_ids|_embeds)"),
        ("messages", rf"messages(?:{_Q}\s*:|=\[)"),
        ("ReqInput(", r"ReqInput\("),
        ("CompletionRequest(", r"CompletionRequest\("),
        ("output", rf"output(?:: {_Q}|: \[|s=\[|_text)"),
        ("text", rf"text(?:{_Q}\s*:|={_Q})"),
        ("inputs", rf"inputs(?:{_Q}\s*:|={_Q})"),
    )
)


def has_content(text: str) -> bool:
    """Whether ``text`` carries request or response content by one of the request-logging markers."""
    for literal, precise in _MARKERS:
        i = text.find(literal)
        while i >= 0:
            if precise.match(text, i):
                return True
            i = text.find(literal, i + 1)
    return False


_JSON_STRING_RE = re.compile(r'"(?:[^"\\]|\\.)*"')
CONTENT_PLACEHOLDER = "[line removed by llmconsole bundle: request or response content]"

RULES = (
    "configured secret values (engine env entries named *KEY*, *TOKEN*, *SECRET*, *PASSWORD*), also JSON-escaped: masked as ***",
    "credential shapes (sk-…, hf_…, Bearer <token>, URL passwords, api_key=/token:/password= values): masked as ***",
    "Authorization, Proxy-Authorization, X-Api-Key and Api-Key values: masked as ***",
    "environment: only allow-listed names kept; names containing secret, token, key, password, credential or auth dropped",
    "prompts and completions: request-logging lines replaced by a placeholder; the canary's own prompt ('ping') excepted",
    "stack dumps: py-spy without --locals (no variable values)",
)
HOST_MASK_RULE = (
    "host names and IP addresses replaced by consistent placeholders (mapping kept outside the bundle)"
)


def allowed_env(env: Mapping[str, str]) -> tuple[dict[str, str], dict[str, int]]:
    """(the entries a bundle may show, counts of what was withheld and why)."""
    kept: dict[str, str] = {}
    secret = other = 0
    for name, value in env.items():
        if SECRET_NAME_RE.search(name):
            secret += 1
        elif name in ENV_ALLOW_NAMES or name.startswith(ENV_ALLOW_PREFIXES):
            kept[name] = value
        else:
            other += 1
    return kept, {"secret_like_names": secret, "not_allow_listed": other}


def mask_auth_headers(text: str) -> str:
    """``text`` with the value of every Authorization-style header or field replaced by ``***``."""
    if "uthoriz" not in text and "pi-key" not in text.lower():
        return text
    return _AUTH_RE.sub(lambda m: m["k"] + m["sep"] + MASK, text)


def drop_content_lines(lines: Iterable[str]) -> tuple[list[str], int]:
    """(the lines with request/response content replaced by a placeholder, how many were replaced)."""
    out, n = [], 0
    for line in lines:
        if has_content(line):
            out.append(CONTENT_PLACEHOLDER)
            n += 1
        else:
            out.append(line)
    return out, n


def drop_content_strings(jsonl: str) -> tuple[str, int]:
    """JSON text (one document per line) with every string value that carries request/response content
    replaced by the placeholder (e.g. an engine's ``stderr_tail`` line that logged a prompt)."""
    if not has_content(jsonl):
        return jsonl, 0
    n = 0
    placeholder = '"' + CONTENT_PLACEHOLDER + '"'

    def one(m: re.Match[str]) -> str:
        nonlocal n
        if has_content(m.group()):
            n += 1
            return placeholder
        return m.group()

    lines = jsonl.split("\n")
    return "\n".join(_JSON_STRING_RE.sub(one, line) if has_content(line) else line for line in lines), n


# --- host masking ------------------------------------------------------------------------------------------

_IPV4_RE = re.compile(
    r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\w.]*\d)"
)
_IPV6_RE = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")


class HostMasker:
    """Consistent placeholders for host names and IP addresses across every file of a bundle.

    ``names``: the host names to hide (configured names, ssh targets, names agents report); each is
    matched as a whole word, case-insensitively, and so is its first label (``gpu01`` of
    ``gpu01.example.com``). Every IPv4/IPv6 address that is not loopback or unspecified is replaced by an
    address from the documentation ranges. :attr:`mapping` is what was replaced (for the separate file).
    """

    def __init__(self, names: Iterable[str] = ()) -> None:
        self.mapping: dict[str, str] = {}
        self._names: dict[str, str] = {}
        self._v4 = self._v6 = 0
        for name in names:
            self.add_name(name)
        self._name_re: re.Pattern[str] | None = None

    def add_name(self, name: str) -> None:
        name = name.strip().strip("[]").lower()
        if not name or self._is_ip(name) or name in ("localhost", "127.0.0.1"):
            return
        forms = [name] + ([name.split(".", 1)[0]] if "." in name else [])
        for form in forms:
            if len(form) >= 2 and form not in self._names:
                placeholder = f"host-{len(set(self._names.values())) + 1}"
                if form != name and name in self._names:
                    placeholder = self._names[name]
                self._names[form] = placeholder
                self.mapping[form] = placeholder
        self._name_re = None

    def placeholder(self, name: str) -> str | None:
        return self._names.get(name.strip().lower())

    @staticmethod
    def _is_ip(text: str) -> bool:
        try:
            ipaddress.ip_address(text)
        except ValueError:
            return False
        return True

    def _ip(self, text: str) -> str:
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            return text
        if addr.is_loopback or addr.is_unspecified:
            return text
        key = str(addr)
        got = self.mapping.get(key)
        if got is None:
            if addr.version == 4:
                self._v4 += 1
                n = self._v4
                got = f"{('192.0.2', '198.51.100', '203.0.113')[min((n - 1) // 254, 2)]}.{(n - 1) % 254 + 1}"
            else:
                self._v6 += 1
                got = f"2001:db8::{self._v6:x}"
            self.mapping[key] = got
        return got

    def __call__(self, text: str) -> str:
        text = _IPV4_RE.sub(lambda m: self._ip(m.group()), text)
        if "::" in text or text.count(":") >= 2:
            text = _IPV6_RE.sub(
                lambda m: self._ip(m.group()) if m.group().count(":") >= 2 else m.group(), text
            )
        if self._names:
            if self._name_re is None:
                alts = "|".join(re.escape(n) for n in sorted(self._names, key=len, reverse=True))
                self._name_re = re.compile(rf"(?<![\w-])(?:{alts})(?![\w-])", re.IGNORECASE)
            text = self._name_re.sub(lambda m: self._names[m.group().lower()], text)
        return text

    def path(self, path: str) -> str:
        """A bundle path with its host-named components replaced (``hosts/gpu01/…`` → ``hosts/host-1/…``)."""
        return "/".join(self._names.get(part.lower(), part) for part in path.split("/"))


__all__ = [
    "CONTENT_PLACEHOLDER",
    "ENV_ALLOW_NAMES",
    "ENV_ALLOW_PREFIXES",
    "HOST_MASK_RULE",
    "RULES",
    "SECRET_NAME_RE",
    "HostMasker",
    "allowed_env",
    "drop_content_lines",
    "drop_content_strings",
    "has_content",
    "mask_auth_headers",
]
