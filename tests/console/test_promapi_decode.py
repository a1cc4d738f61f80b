"""The two ways an instant-vector answer is read agree: the one-pass typed decoder (well-formed answers)
and the general reader (everything else, which names what is wrong)."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from console.promapi import _fast_vector, _samples

LABEL = st.text(min_size=1, max_size=8)
VALUE = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["NaN", "+Inf", "-Inf", "0", "1e-05", "12345678901234567890", "-0.5"]),
)
SAMPLE = st.fixed_dictionaries(
    {
        "metric": st.dictionaries(LABEL, st.text(max_size=12), max_size=5),
        "value": st.tuples(st.just(1.75e9), VALUE),
    }
)


def general(doc: dict) -> tuple[list, float | None]:
    return _samples(json.loads(json.dumps(doc))["data"]["result"])


def same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        la == lb and (va == vb or (math.isnan(va) and math.isnan(vb)))
        for (la, va), (lb, vb) in zip(a, b, strict=True)
    )


@given(st.lists(SAMPLE, max_size=20), st.lists(st.text(max_size=20), max_size=2))
def test_the_typed_decoder_reads_what_the_general_reader_reads(samples: list, warnings: list) -> None:
    doc = {"status": "success", "data": {"resultType": "vector", "result": samples}, "warnings": warnings}
    fast = _fast_vector(json.dumps(doc).encode())
    assert fast is not None
    out, at, warned = fast
    want, want_at = general(doc)
    assert same(out, want) and at == want_at and warned == tuple(warnings)


@pytest.mark.parametrize(
    "doc",
    [
        {
            "status": "success",
            "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, 2]}]},  # not a string
        },
        {
            "status": "success",
            "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, None]}]},
        },
        {"status": "success", "data": {"resultType": "matrix", "result": []}},
        {"status": "error", "errorType": "timeout", "error": "query timed out"},
        {
            "status": "success",
            "data": {"resultType": "vector", "result": [{"metric": {"a": 1}, "value": [1, "2"]}]},
        },
        {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1]}]}},
        {
            "status": "success",
            "data": {"resultType": "vector", "result": [{"metric": {}, "value": ["x", "2"]}]},
        },
        {
            "status": "success",
            "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "two"]}]},
        },
    ],
)
def test_anything_else_goes_to_the_general_reader(doc: dict) -> None:
    assert _fast_vector(json.dumps(doc).encode()) is None
    result = (doc.get("data") or {}).get("result")
    if doc["status"] == "success" and doc["data"]["resultType"] == "vector":
        with pytest.raises((TypeError, ValueError, KeyError, IndexError, AttributeError)):
            _samples(result)  # ...which refuses it too


def test_garbage_goes_to_the_general_reader() -> None:
    for body in (b"", b"<html>", b'{"status": "success"', b"\xff\xfe", b"[]", b"null"):
        assert _fast_vector(body) is None
