"""The model, GPU and API catalogs (``data/*.json``, each entry with its source and date), name lookup with
closest-match suggestions, and ``[calculator]`` price overrides applied on top.

Names resolve case-insensitively by slug, alias, display name or Hugging Face repo, with spaces and
underscores read as dashes (``"Llama 3.3 70B"`` → ``llama-3.3-70b``; ``"NVIDIA H100 80GB HBM3"`` →
``h100-80gb``). A partial name that several entries share (``a100``: 40 GB and 80 GB, SXM and PCIe) is
never guessed: :class:`CalcError` lists the matches. Unknown names raise it listing the closest slugs.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from importlib import resources
from typing import Any

from console.calc.errors import CalcError
from console.calc.hfconfig import spec_from_config
from console.calc.models import ModelSpec
from console.calc.units import GB, MiB


@dataclass(frozen=True, slots=True)
class Gpu:
    """One accelerator: memory, bandwidth, dense compute and $/hour (per GPU)."""

    slug: str
    name: str
    memory_gb: float  # vendor nominal, GB = 1e9 B
    memory_mib: int | None  # total as nvidia-smi reports it; None when not sourced
    bandwidth_gb_s: float
    bf16_tflops: float  # dense
    fp8_tflops: float | None  # dense; None = no FP8 tensor cores
    default_hourly: float
    default_hourly_note: str = ""
    on_demand: tuple[float, float] | None = None
    spot: tuple[float, float] | None = None
    price_source: str = ""
    price_checked: str | None = None
    spec_source: str = ""
    notes: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    overridden: bool = False  # default_hourly comes from [calculator] gpu_hourly

    @property
    def nominal_bytes(self) -> int:
        return round(self.memory_gb * GB)

    @property
    def usable_bytes(self) -> int | None:
        return self.memory_mib * MiB if self.memory_mib is not None else None


@dataclass(frozen=True, slots=True)
class Api:
    """One hosted API's list price per 1M input and output tokens."""

    slug: str
    name: str
    provider: str
    kind: str  # "frontier" | "hosted-open" | "custom"
    input_per_mtok: float
    output_per_mtok: float
    checked: str | None
    source: str
    model: str | None = None  # the catalog model it serves (hosted open-weight APIs)
    notes: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    overridden: bool = False

    def blended(self, input_share: float) -> float:
        """USD per 1M tokens for a mix of ``input_share`` input and the rest output."""
        return input_share * self.input_per_mtok + (1 - input_share) * self.output_per_mtok


def normalize(name: str) -> str:
    """``"NVIDIA H100 80GB HBM3"`` → ``"nvidia-h100-80gb-hbm3"``: lower case, runs of spaces/underscores → '-'."""
    return re.sub(r"[\s_]+", "-", name.strip().lower())


def _load(name: str) -> dict[str, Any]:
    text = resources.files("console.calc").joinpath("data", name).read_text(encoding="utf-8")
    return json.loads(text)


@functools.cache
def model_entries() -> tuple[dict[str, Any], ...]:
    return tuple(_load("models.json")["models"])


@functools.cache
def _builtin_models() -> tuple[ModelSpec, ...]:
    return tuple(
        spec_from_config(e["config"], slug=e["slug"], name=e["name"], where=f"catalog {e['slug']}", meta=e)
        for e in model_entries()
    )


@functools.cache
def _builtin_gpus() -> tuple[Gpu, ...]:
    return tuple(_gpu(e) for e in _load("gpus.json")["gpus"])


@functools.cache
def _builtin_apis() -> tuple[Api, ...]:
    return tuple(_api(e) for e in _load("apis.json")["apis"])


def _gpu(e: Mapping[str, Any]) -> Gpu:
    pair = lambda v: tuple(v) if v else None  # noqa: E731
    return Gpu(
        slug=e["slug"],
        name=e["name"],
        memory_gb=e["memory_gb"],
        memory_mib=e["memory_mib"],
        bandwidth_gb_s=e["bandwidth_gb_s"],
        bf16_tflops=e["bf16_tflops"],
        fp8_tflops=e["fp8_tflops"],
        default_hourly=e["default_hourly"],
        default_hourly_note=e.get("default_hourly_note", ""),
        on_demand=pair(e.get("on_demand")),
        spot=pair(e.get("spot")),
        price_source=e.get("price_source", ""),
        price_checked=e.get("price_checked"),
        spec_source=e.get("spec_source", ""),
        notes=tuple(e.get("notes", ())),
        aliases=tuple(e.get("aliases", ())),
    )


def _api(e: Mapping[str, Any]) -> Api:
    return Api(
        slug=e["slug"],
        name=e["name"],
        provider=e["provider"],
        kind=e["kind"],
        input_per_mtok=float(e["input_per_mtok"]),
        output_per_mtok=float(e["output_per_mtok"]),
        checked=e.get("checked"),
        source=e["source"],
        model=e.get("model"),
        notes=tuple(e.get("notes", ())),
        aliases=tuple(e.get("aliases", ())),
    )


class _Index:
    """Names → entries, with suggestions."""

    def __init__(self, kind: str, entries: Iterable[Any], extra_names: Any) -> None:
        self.kind = kind
        self.entries = tuple(entries)
        self.by_name: dict[str, Any] = {}
        for entry in self.entries:
            for name in (entry.slug, *entry.aliases, entry.name, *extra_names(entry)):
                self.by_name.setdefault(normalize(name), entry)
        for entry in self.entries:  # slugs win over aliases
            self.by_name[normalize(entry.slug)] = entry

    def get(self, name: str) -> Any | None:
        key = normalize(name)
        return self.by_name.get(key) or self.by_name.get(key.removeprefix("nvidia-"))

    def resolve(self, name: str) -> Any:
        found = self.get(name)
        if found is not None:
            return found
        matches = self.family(name)
        if len(matches) > 1:
            listed = ", ".join(f"{e.slug} ({e.name})" for e in matches[:8]) + (
                ", …" if len(matches) > 8 else ""
            )
            raise CalcError(f"ambiguous {self.kind} {name!r}: it matches {listed}; give one of these slugs")
        raise CalcError(f"unknown {self.kind} {name!r}{self.suggestion(name)}")

    def family(self, name: str) -> list[Any]:
        """Entries that a partial name could mean: every word of it starts a word of the entry's slug, name
        or aliases (``a100`` → the 40 GB, 80 GB SXM and 80 GB PCIe cards)."""
        words = [w for w in re.split(r"[-/]+", normalize(name).removeprefix("nvidia-")) if w]
        if not words:
            return []
        out = []
        for entry in self.entries:
            have = {
                w
                for n in (entry.slug, entry.name, *entry.aliases)
                for w in re.split(r"[-/]+", normalize(n))
                if w
            }
            if all(any(h.startswith(w) for h in have) for w in words):
                out.append(entry)
        return out

    def suggestion(self, name: str) -> str:
        slugs = [e.slug for e in self.entries]
        names = list(self.by_name)
        close = difflib.get_close_matches(normalize(name), names, n=6, cutoff=0.5)
        picked = list(dict.fromkeys(self.by_name[c].slug for c in close))[:3]
        if not picked:
            picked = [s for s in slugs if normalize(name).split("-")[0] in s][:3]
        return f" (closest: {', '.join(picked)})" if picked else f" (known: {', '.join(slugs[:8])}, ...)"


@dataclass(frozen=True)
class Catalog:
    """The three catalogs, with overrides applied. Build with :func:`catalog`."""

    models: tuple[ModelSpec, ...]
    gpus: tuple[Gpu, ...]
    apis: tuple[Api, ...]

    @functools.cached_property
    def _models(self) -> _Index:
        return _Index("model", self.models, lambda m: (m.hf_repo or "", (m.hf_repo or "").split("/")[-1]))

    @functools.cached_property
    def _gpus(self) -> _Index:
        return _Index("GPU", self.gpus, lambda g: ())

    @functools.cached_property
    def _apis(self) -> _Index:
        return _Index("API", self.apis, lambda a: ())

    def model(self, name: str) -> ModelSpec:
        return self._models.resolve(name)

    def gpu(self, name: str) -> Gpu:
        return self._gpus.resolve(name)

    def api(self, name: str) -> Api:
        return self._apis.resolve(name)

    def find_gpu(self, name: str | None) -> Gpu | None:
        """The catalog GPU an NVML name (``"NVIDIA H100 80GB HBM3"``) stands for, or None."""
        return self._gpus.get(name) if name else None

    def find_api(self, name: str) -> Api | None:
        return self._apis.get(name)

    def find_model(self, name: str | None) -> ModelSpec | None:
        """The catalog model a served name stands for (``meta-llama/Llama-3.3-70B-Instruct``), or None."""
        if not name:
            return None
        return self._models.get(name) or self._models.get(name.rsplit("/", 1)[-1])

    def apis_for_model(self, slug: str) -> tuple[Api, ...]:
        return tuple(a for a in self.apis if a.model == slug)

    def suggest_gpu(self, name: str) -> str:
        return self._gpus.suggestion(name)


def catalog(
    gpu_hourly: Mapping[str, float] | None = None,
    api_prices: Mapping[str, tuple[float, float]] | None = None,
    extra_apis: Iterable[Api] = (),
) -> Catalog:
    """The built-in catalogs with ``[calculator]`` overrides: $/hour per GPU slug, (input, output) per API
    slug, and extra APIs. Unknown slugs raise :class:`CalcError` (the settings loader reports them first)."""
    base = Catalog(_builtin_models(), _builtin_gpus(), _builtin_apis())
    gpus = {g.slug: g for g in base.gpus}
    for slug, price in (gpu_hourly or {}).items():
        gpu = base.gpu(slug)
        gpus[gpu.slug] = replace(gpu, default_hourly=float(price), overridden=True)
    apis = {a.slug: a for a in base.apis}
    for extra in extra_apis:
        apis[extra.slug] = extra
    for slug, (inp, out) in (api_prices or {}).items():
        api = apis.get(slug) or base.api(slug)
        apis[api.slug] = replace(api, input_per_mtok=float(inp), output_per_mtok=float(out), overridden=True)
    return Catalog(base.models, tuple(gpus.values()), tuple(apis.values()))


@functools.cache
def builtin() -> Catalog:
    """The catalogs as shipped (no overrides)."""
    return catalog()
