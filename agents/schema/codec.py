"""Encoding and decoding of the wire schema: plain JSON data and text to and from its dataclasses.

Reading rules (``from_dict`` / ``from_json``)
    Unknown keys are ignored at every level; a missing optional key takes its default (``None``, ``()``
    or ``False``); ``null`` for a list means an empty list; a wrong type raises :class:`SchemaError`
    naming the JSON path (``engines[1].stats.ttft_p95_s: expected number or null, got 'abc'``). ``NaN``
    and ``Infinity`` literals read as ``null``. Numbers keep their JSON type (an int stays an int).
    The ``schema`` field is checked before any other: another name or major raises :class:`SchemaMismatch`.
    ``stats.quantile_buckets`` maps percentile keys to ``[lower, upper]``: only the known percentile keys
    are read (any others are ignored unread, so its size costs nothing); ``lower`` is a finite number,
    ``upper`` a number ≥ ``lower`` or ``null`` (the ``+Inf`` bucket); anything else is a SchemaError.

Writing rules (``to_dict`` / ``to_json``)
    Keys in dataclass order; non-finite floats become ``null`` (NaN/Inf never go on the wire). A
    ``quantile_buckets`` entry a reader would refuse (unknown key, non-finite lower, NaN upper, lower above
    upper) is left out; an infinite upper is written ``null``.

Decoders and encoders are generated once per class at import time (as :mod:`dataclasses` does for
``__init__``), so decoding costs no per-field reflection: the console decodes 1,000 hosts per tick.
Stdlib only; re-exported by :mod:`agents.schema`.
"""

from __future__ import annotations

import json
import math
import typing
from collections.abc import Callable, Iterable
from dataclasses import MISSING, Field, fields
from types import NoneType, UnionType
from typing import Any, TypeVar

from agents.schema.model import PERCENTILE_KEYS, WIRE_TYPES, History, HostSnapshot, QuantileBucket
from agents.schema.vocab import HISTORY_SCHEMA, SchemaError, SchemaMismatch, is_compatible, show

T = TypeVar("T")
_ABSENT = object()
_SCALARS: dict[type, tuple[str, str]] = {
    # python type -> (type test on variable `v`, name used in errors)
    bool: ("type(v) is bool", "boolean"),
    int: ("type(v) is int", "integer"),
    float: ("(type(v) is float or type(v) is int)", "number"),
    str: ("type(v) is str", "string"),
}


# --- what the generated code calls ---------------------------------------------------------------


def _bad(key: str, expected: str, value: Any) -> SchemaError:
    return SchemaError(f"expected {expected}, got {show(value)}", key)


def _missing(key: str) -> SchemaError:
    return SchemaError("missing required key", key)


def _check_version(value: Any, expected: str) -> str:
    if not is_compatible(value, expected):
        raise SchemaMismatch(None if value is _ABSENT else value, expected)
    return value


def _sub(decode: Callable[[Any], Any], value: Any, key: str) -> Any:
    try:
        return decode(value)
    except SchemaError as e:
        raise e.under(key) from None


def _sub_list(decode: Callable[[Any], Any], value: Any, key: str) -> tuple[Any, ...]:
    if type(value) is not list:
        raise _bad(key, "array or null", value)
    out: list[Any] = []
    append = out.append
    try:
        for item in value:
            append(decode(item))
    except SchemaError as e:
        raise e.under(f"{key}[{len(out)}]") from None
    return tuple(out)


def _make_scalar_list_checker(py: type) -> Callable[[Any, str], tuple[Any, ...]]:
    test, name = _SCALARS[py]
    src = (
        "def check(value, key):\n"
        "    if type(value) is not list:\n"
        "        raise _bad(key, 'array or null', value)\n"
        "    for i, v in enumerate(value):\n"
        f"        if not {test}:\n"
        f"            raise _bad(f'{{key}}[{{i}}]', {name!r}, v)\n"
        "    return tuple(value)\n"
    )
    scope: dict[str, Any] = {"_bad": _bad}
    exec(src, scope)  # noqa: S102 - generated from the fixed table above
    return scope["check"]


_SCALAR_LIST = {py: _make_scalar_list_checker(py) for py in _SCALARS}


def _json_object(value: Any, key: str) -> dict[str, Any]:
    if type(value) is not dict:
        raise _bad(key, "object or null", value)
    return value


def _finite_json(value: Any) -> Any:
    """A copy of a JSON value with non-finite floats replaced by None (tuples become lists)."""
    if type(value) is float:
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_json(v) for v in value]
    return value


def _finite(x: Any) -> Any:
    return x if type(x) is not float or math.isfinite(x) else None


_BUCKETS_HINT = dict[str, QuantileBucket]  # the one typed map of the schema: stats.quantile_buckets


def _is_number(v: Any) -> bool:
    return type(v) is int or (type(v) is float and math.isfinite(v))


def _buckets(value: Any, key: str) -> dict[str, QuantileBucket]:
    """Decode ``quantile_buckets``: the known percentile keys only, each ``[lower, upper]``."""
    if type(value) is not dict:
        raise _bad(key, "object or null", value)
    out: dict[str, QuantileBucket] = {}
    get = value.get
    for name in PERCENTILE_KEYS:  # never iterates the object itself: unknown keys cost nothing
        pair = get(name)
        if pair is None:
            continue
        # the usual case inline (the console decodes every engine of the fleet per tick): two finite
        # numbers in order, or a finite lower and null; ``x - x == 0.0`` is false for NaN and ±inf
        if type(pair) is list and len(pair) == 2:
            lo, hi = pair
            lo_ok = type(lo) is int or (type(lo) is float and lo - lo == 0.0)
            if lo_ok and (
                hi is None or ((type(hi) is int or (type(hi) is float and hi - hi == 0.0)) and hi >= lo)
            ):
                out[name] = (lo, hi)
                continue
        out[name] = _bucket_slowly(pair, f"{key}.{name}")
    return out


def _bucket_slowly(pair: Any, path: str) -> QuantileBucket:
    """One entry outside the usual case: an infinite upper bound (the open bucket), or a SchemaError."""
    if type(pair) is not list or len(pair) != 2:
        raise _bad(path, "[lower, upper] or null", pair)
    lo, hi = pair
    if not _is_number(lo):
        raise _bad(f"{path}[0]", "finite number", lo)
    if type(hi) is float and not math.isfinite(hi):
        hi = None  # Infinity (or NaN) reads as null: the open bucket
    elif hi is not None and type(hi) is not int and type(hi) is not float:
        raise _bad(f"{path}[1]", "number or null", hi)
    if hi is not None and hi < lo:
        raise SchemaError(f"lower bound {show(lo)} above upper bound {show(hi)}", path)
    return (lo, hi)


def _buckets_out(buckets: dict[str, QuantileBucket]) -> dict[str, list[Any]]:
    """Encode ``quantile_buckets`` in wire order, leaving out any entry the reader would refuse."""
    out: dict[str, list[Any]] = {}
    for name in PERCENTILE_KEYS:
        pair = buckets.get(name)
        if pair is None:
            continue
        lo, hi = pair
        if type(hi) is float and hi == math.inf:
            hi = None
        if not _is_number(lo) or (hi is not None and not (_is_number(hi) and hi >= lo)):
            continue
        out[name] = [lo, hi]
    return out


# --- code generation -----------------------------------------------------------------------------


def _analyse(hint: Any) -> tuple[str, Any, bool]:
    """A field's type as (shape, detail, optional): shape is scalar|object|list|json."""
    optional = False
    if isinstance(hint, UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not NoneType]
        optional = len(args) != len(typing.get_args(hint))
        if len(args) != 1:
            raise TypeError(f"unsupported union {hint}")
        hint = args[0]
    if hint in _SCALARS:
        return "scalar", hint, optional
    if hint in _DECODERS or hint in WIRE_TYPES:
        return "object", hint, optional
    origin = typing.get_origin(hint)
    if origin is tuple:
        (item, _ellipsis) = typing.get_args(hint)
        return "list", item, optional
    if hint == _BUCKETS_HINT:
        return "buckets", None, optional
    if origin is dict:
        return "json", None, optional
    raise TypeError(f"unsupported wire type {hint}")


_DECODERS: dict[type, Callable[[Any], Any]] = {}
_ENCODERS: dict[type, Callable[[Any], dict[str, Any]]] = {}

# Each *_code function below returns the decoder's source lines for one field (its value ends in the local
# ``v<n>``) and the expression encoding it from ``o``; what those reference is added to ``scope``.
_Code = tuple[list[str], str]


def _field_code(f: Field[Any], n: int, hint: Any, scope: dict[str, Any]) -> _Code:
    key, var = f.name, f"v{n}"
    if "version" in f.metadata:
        scope[f"_expected{n}"] = f.metadata["version"]
        return [f"    {var} = _check_version(g({key!r}, _ABSENT), _expected{n})"], f"o.{key}"
    shape, detail, optional = _analyse(hint)
    required = f.default is MISSING and f.default_factory is MISSING
    if shape == "scalar":
        return _scalar_code(f, n, detail, optional, required, scope)
    if shape == "object":
        return _object_code(key, n, detail, required, scope)
    if shape == "list":
        return _list_code(key, n, detail, scope)
    if shape == "buckets":  # stats.quantile_buckets: null (not reported) stays None
        dec = [f"    {var} = g({key!r})", f"    if {var} is not None:"]
        dec += [f"        {var} = _buckets({var}, {key!r})"]
        return dec, f"None if o.{key} is None else _buckets_out(o.{key})"
    # a JSON object (alert evidence)
    dec = [f"    {var} = g({key!r})", f"    if {var} is None:", f"        {var} = {{}}"]
    dec += ["    else:", f"        {var} = _json_object({var}, {key!r})"]
    return dec, f"_finite_json(o.{key})"


def _scalar_code(
    f: Field[Any], n: int, py: type, optional: bool, required: bool, scope: dict[str, Any]
) -> _Code:
    key, var = f.name, f"v{n}"
    test, name = _SCALARS[py]
    test = test.replace("(v)", f"({var})")
    enc = f"_finite(o.{key})" if py is float else f"o.{key}"
    if required:
        return [
            f"    {var} = g({key!r}, _ABSENT)",
            f"    if not {test}:",
            f"        raise _missing({key!r}) if {var} is _ABSENT else _bad({key!r}, {name!r}, {var})",
        ], enc
    default = f.default
    scope[f"_default{n}"] = default
    expected = f"{name} or null" if optional else name
    dec = [f"    {var} = g({key!r})"]
    if default is None:
        dec += [f"    if {var} is not None and not {test}:"]
        dec += [f"        raise _bad({key!r}, {expected!r}, {var})"]
    else:  # e.g. simulated: bool = False, summary: str = ""; null reads as the default
        dec += [f"    if {var} is None:", f"        {var} = _default{n}", f"    elif not {test}:"]
        dec += [f"        raise _bad({key!r}, {name!r} + ' or null', {var})"]
    return dec, enc


def _object_code(key: str, n: int, cls: type, required: bool, scope: dict[str, Any]) -> _Code:
    var = f"v{n}"
    _build_if_needed(cls)
    scope[f"_dec{n}"] = _DECODERS[cls]
    scope[f"_enc{n}"] = _ENCODERS[cls]
    dec = [f"    {var} = g({key!r})"]
    if required:
        dec += [f"    if {var} is None:", f"        raise _missing({key!r})"]
        dec += [f"    {var} = _sub(_dec{n}, {var}, {key!r})"]
        return dec, f"_enc{n}(o.{key})"
    dec += [f"    if {var} is not None:", f"        {var} = _sub(_dec{n}, {var}, {key!r})"]
    return dec, f"None if o.{key} is None else _enc{n}(o.{key})"


def _list_code(key: str, n: int, item: Any, scope: dict[str, Any]) -> _Code:
    var = f"v{n}"
    dec = [f"    {var} = g({key!r})", f"    if {var} is None:", f"        {var} = ()"]
    if item in _SCALARS:
        scope[f"_chk{n}"] = _SCALAR_LIST[item]
        dec += ["    else:", f"        {var} = _chk{n}({var}, {key!r})"]
        return dec, f"[_finite(x) for x in o.{key}]" if item is float else f"list(o.{key})"
    _build_if_needed(item)
    scope[f"_dec{n}"] = _DECODERS[item]
    scope[f"_enc{n}"] = _ENCODERS[item]
    dec += ["    else:", f"        {var} = _sub_list(_dec{n}, {var}, {key!r})"]
    return dec, f"[_enc{n}(x) for x in o.{key}]"


def _build(cls: type) -> None:
    """Generate ``decode(d) -> cls`` and ``encode(obj) -> dict`` for one wire dataclass."""
    hints = typing.get_type_hints(cls)
    scope: dict[str, Any] = {
        "cls": cls,
        "_bad": _bad,
        "_missing": _missing,
        "_sub": _sub,
        "_sub_list": _sub_list,
        "_json_object": _json_object,
        "_ABSENT": _ABSENT,
        "_check_version": _check_version,
        "_finite": _finite,
        "_finite_json": _finite_json,
        "_buckets": _buckets,
        "_buckets_out": _buckets_out,
        "_show": show,
        "SchemaError": SchemaError,
        "_new": object.__new__,
    }
    dec = [
        "def decode(d):",
        "    if type(d) is not dict:",
        "        raise SchemaError(f'expected object, got {_show(d)}')",
    ]
    dec.append("    g = d.get")
    enc: dict[str, str] = {}  # key -> expression encoding it
    # the version field is checked before any other (a v2 document must not fail on types first)
    flist = sorted(fields(cls), key=lambda f: "version" not in f.metadata)
    for n, f in enumerate(flist):
        scope[f"_set{n}"] = getattr(cls, f.name).__set__  # slot descriptor, see the end
        lines, enc[f.name] = _field_code(f, n, hints[f.name], scope)
        dec += lines
    # Build the instance without __init__: the frozen-dataclass __init__ sets each slot through
    # object.__setattr__ after argument binding, which doubles the decode cost; calling the slot
    # descriptors directly does the same assignments (every value is validated above).
    dec.append("    o = _new(cls)")
    dec += [f"    _set{n}(o, v{n})" for n in range(len(flist))]
    dec.append("    return o")
    body = ", ".join(f"{f.name!r}: {enc[f.name]}" for f in fields(cls))  # wire order = field order
    src = "\n".join(dec) + "\n\ndef encode(o):\n    return {" + body + "}\n"
    exec(compile(src, f"<llmconsole.schema {cls.__name__}>", "exec"), scope)  # noqa: S102
    _DECODERS[cls] = scope["decode"]
    _ENCODERS[cls] = scope["encode"]


def _build_if_needed(cls: type) -> None:
    if cls not in _DECODERS:
        _build(cls)


for _cls in WIRE_TYPES:
    _build_if_needed(_cls)
del _cls


# --- public API -------------------------------------------------------------------------------


def to_dict(obj: Any) -> dict[str, Any]:
    """A wire dataclass as plain JSON data (lists for tuples, non-finite floats as None)."""
    try:
        encode = _ENCODERS[type(obj)]
    except KeyError:
        raise TypeError(f"not a wire type: {type(obj).__name__}") from None
    return encode(obj)


def from_dict(data: Any, cls: type[T] = HostSnapshot) -> T:  # type: ignore[assignment]
    """Decode plain JSON data into ``cls`` (default HostSnapshot) under the reading rules above."""
    try:
        decode = _DECODERS[cls]
    except KeyError:
        raise TypeError(f"not a wire type: {getattr(cls, '__name__', cls)}") from None
    return decode(data)


def _dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _nan_to_null(_constant: str) -> None:
    return None


def _loads(text: str | bytes) -> Any:
    try:
        return json.loads(text, parse_constant=_nan_to_null)
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
        raise SchemaError(f"invalid JSON: {e}") from None


def to_json(snapshot: HostSnapshot) -> str:
    """Compact JSON text of a snapshot (or any wire dataclass)."""
    return _dumps(to_dict(snapshot))


def from_json(text: str | bytes) -> HostSnapshot:
    """Decode ``GET /v1/snapshot`` text; raises SchemaError / SchemaMismatch."""
    return _DECODERS[HostSnapshot](_loads(text))


def history_to_dict(host: str, snapshots: Iterable[HostSnapshot]) -> dict[str, Any]:
    return {"schema": HISTORY_SCHEMA, "host": host, "snapshots": [to_dict(s) for s in snapshots]}


def history_to_json(host: str, snapshots: Iterable[HostSnapshot | str]) -> str:
    """``GET /v1/history`` text. Items may be snapshots or their already-encoded ``to_json`` text,
    so the agent can encode each snapshot once and keep the text in its ring buffer."""
    parts = [s if isinstance(s, str) else to_json(s) for s in snapshots]
    return f'{{"schema":{_dumps(HISTORY_SCHEMA)},"host":{_dumps(host)},"snapshots":[{",".join(parts)}]}}'


def history_from_dict(data: Any) -> History:
    return _DECODERS[History](data)


def history_from_json(text: str | bytes) -> History:
    """Decode ``GET /v1/history`` text; every snapshot in it is checked like ``from_json``."""
    return _DECODERS[History](_loads(text))
