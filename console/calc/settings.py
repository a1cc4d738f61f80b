"""``[calculator]`` in ``config.toml``: price overrides (prices go stale) and calculator defaults.

Strict like every other table (agents.config's machinery): unknown keys, wrong types, unknown GPU or API
slugs are one line naming the file, the table and the key, with the closest valid name::

    [calculator]
    ops_cost_per_month = 400        # fixed operations cost added to self-hosting (USD per month)
    input_share = 0.7               # share of input tokens in the traffic (70/30: chat-like traffic)
    utilization = 0.5               # sustained fraction of peak throughput for the capacity estimate
    gpu_memory_utilization = 0.92   # vLLM's --gpu-memory-utilization for the vLLM-style sizing
    compare_apis = ["claude-opus-4.5", "together-llama-3.3-70b"]   # APIs the screen compares against
    model = "llama-3.3-70b"         # the screen's starting model and GPU
    gpu = "a100-80gb"

    [calculator.gpu_hourly]         # USD per GPU-hour, per GPU slug (`llmconsole calc gpus`)
    h100-80gb = 2.10

    [calculator.api_prices]         # USD per 1M tokens, per API slug (`llmconsole calc apis`)
    claude-opus-5 = { input = 5, output = 25 }

    [[calculator.apis]]             # an API the catalog lacks (an internal gateway, a new provider)
    slug = "my-gateway"
    input = 0.40
    output = 1.20
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from agents.tomltables import (
    ConfigError,
    Where,
    build_table,
    check_top_level,
    find_config,
    fraction,
    non_negative,
    read_toml,
    setting,
    show,
)
from console.calc.catalog import Api, Catalog, builtin, catalog, normalize
from console.calc.errors import CalcError

SLUG_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789.-"


def _share(v: float) -> str | None:
    return None if 0 <= v <= 1 else f"must be between 0 and 1, got {show(v)}"


def _slug(v: str) -> str | None:
    ok = v and v[0].isalnum() and all(c in SLUG_CHARS for c in v)
    return None if ok else f'{show(v)} is not a lower-case dashed slug (e.g. "my-gateway")'


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiPrice:
    """``[calculator.api_prices.<slug>]``: USD per 1M input and output tokens."""

    input: float = setting(check=non_negative)
    output: float = setting(check=non_negative)


@dataclass(frozen=True, slots=True, kw_only=True)
class CustomApi:
    """``[[calculator.apis]]``: an API the catalog does not list."""

    slug: str = setting(check=_slug)
    name: str | None = setting(None)
    input: float = setting(check=non_negative)
    output: float = setting(check=non_negative)
    kind: str = setting("custom", choices=("frontier", "hosted-open", "custom"))
    model: str | None = setting(None)  # the catalog model it serves, if any
    source: str = setting("config.toml")
    checked: str | None = setting(None)

    def as_api(self) -> Api:
        return Api(
            slug=self.slug,
            name=self.name or self.slug,
            provider="custom",
            kind=self.kind,
            input_per_mtok=self.input,
            output_per_mtok=self.output,
            checked=self.checked,
            source=self.source,
            model=self.model,
            overridden=True,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class CalculatorConfig:
    """``[calculator]``, validated. ``gpu_hourly``/``api_prices`` are keyed by catalog slug."""

    gpu_hourly: dict[str, float] = setting(factory=dict)
    api_prices: dict[str, Any] = setting(factory=dict)
    apis: tuple[CustomApi, ...] = setting((), label="calculator.apis", name_key="slug")
    ops_cost_per_month: float = setting(0.0, check=non_negative)
    input_share: float = setting(0.7, check=_share)
    utilization: float = setting(0.5, check=fraction)
    gpu_memory_utilization: float = setting(0.92, check=fraction)
    compare_apis: tuple[str, ...] = setting(("claude-opus-4.5", "together-llama-3.3-70b"))
    model: str = setting("llama-3.3-70b")
    gpu: str = setting("a100-80gb")
    source: Path | None = setting(None, external=True)

    def catalog(self) -> Catalog:
        """The catalogs with these overrides applied."""
        prices = {slug: (p.input, p.output) for slug, p in self.api_prices.items()}
        return catalog(self.gpu_hourly, prices, [api.as_api() for api in self.apis])


def calculator_config_from_dict(
    data: Mapping[str, Any],
    *,
    file: str = "config.toml",
    base_dir: Path | None = None,
    source: Path | None = None,
) -> CalculatorConfig:
    """Validate ``[calculator]`` of a parsed config document (other tables are left to their readers)."""
    check_top_level(data, file)
    where = Where(file, "[calculator]", base_dir)
    raw = data.get("calculator", {})
    cfg = build_table(CalculatorConfig, raw, where, defaults={"source": source})
    cat = builtin()
    hourly = _gpu_hourly(cfg.gpu_hourly, Where(file, "[calculator.gpu_hourly]"), cat)
    extra = {api.slug: api for api in cfg.apis}
    _unique_custom(cfg, where, cat)
    prices = _api_prices(cfg.api_prices, Where(file, "[calculator.api_prices]"), cat, extra)
    cfg = replace(cfg, gpu_hourly=hourly, api_prices=prices)
    _known_names(cfg, where, cat, extra)
    return cfg


def _gpu_hourly(raw: Any, where: Where, cat: Catalog) -> dict[str, float]:
    if not isinstance(raw, dict):
        raise where.error(None, f"expected a table of GPU slug = USD per hour, got {show(raw)}")
    out: dict[str, float] = {}
    for key, value in raw.items():
        gpu = _lookup(lambda k=key: cat.gpu(k), where, key)
        out[gpu.slug] = _price(value, where, key, positive=True)
    return out


def _api_prices(raw: Any, where: Where, cat: Catalog, extra: Mapping[str, CustomApi]) -> dict[str, ApiPrice]:
    if not isinstance(raw, dict):
        raise where.error(
            None, f"expected a table of API slug = {{ input = ..., output = ... }}, got {show(raw)}"
        )
    out: dict[str, ApiPrice] = {}
    for key, value in raw.items():
        slug = (
            normalize(key) if normalize(key) in extra else _lookup(lambda k=key: cat.api(k), where, key).slug
        )
        out[slug] = build_table(ApiPrice, value, where.at(f"[calculator.api_prices.{_key(key)}]"))
    return out


def _unique_custom(cfg: CalculatorConfig, where: Where, cat: Catalog) -> None:
    seen: set[str] = set()
    for i, api in enumerate(cfg.apis):
        at = where.at(f'[[calculator.apis]] #{i + 1} (slug "{api.slug}")')
        if api.slug in seen:
            raise at.error("slug", f"duplicate slug {show(api.slug)}")
        if cat.find_api(api.slug) is not None:
            raise at.error(
                "slug", f"{show(api.slug)} is already in the catalog: override it in [calculator.api_prices]"
            )
        if api.model is not None:
            _lookup(lambda m=api.model: cat.model(m), at, "model")
        seen.add(api.slug)


def _known_names(cfg: CalculatorConfig, where: Where, cat: Catalog, extra: Mapping[str, CustomApi]) -> None:
    for i, name in enumerate(cfg.compare_apis):
        if normalize(name) not in extra:
            _lookup(lambda n=name: cat.api(n), where, f"compare_apis[{i}]")
    _lookup(lambda: cat.model(cfg.model), where, "model")
    _lookup(lambda: cat.gpu(cfg.gpu), where, "gpu")


def _lookup(find: Any, where: Where, key: str) -> Any:
    try:
        return find()
    except CalcError as e:
        raise where.error(_key(key), str(e)) from None


def _price(value: Any, where: Where, key: str, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise where.error(_key(key), f"expected a number (USD), got {show(value)}")
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise where.error(_key(key), f"must be greater than 0, got {show(value)}")
    return float(value)


def _key(key: str) -> str:
    return key if all(c.isalnum() or c in "_-[]" for c in key) else f'"{key}"'


def load_calculator_config(path: str | os.PathLike[str]) -> CalculatorConfig:
    p = Path(path)
    data = read_toml(p)
    return calculator_config_from_dict(data, file=os.fspath(path), base_dir=p.resolve().parent, source=p)


def find_calculator_config(explicit: str | os.PathLike[str] | None = None) -> CalculatorConfig:
    """``[calculator]`` from the config the search order finds (defaults when there is none)."""
    path = find_config(explicit)
    return load_calculator_config(path) if path is not None else CalculatorConfig()


__all__ = [
    "ApiPrice",
    "CalculatorConfig",
    "ConfigError",
    "CustomApi",
    "calculator_config_from_dict",
    "find_calculator_config",
    "load_calculator_config",
]
