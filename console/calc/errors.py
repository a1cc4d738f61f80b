"""The calculators' one error type: bad input, reported as one line."""

from __future__ import annotations


class CalcError(ValueError):
    """Bad calculator input (unknown name, out-of-range value, unusable config.json): one clear line."""
