"""Argument checks shared by the client and the worker: seconds to
nanoseconds, priorities, counts. Every error names the argument, the value
and what is accepted."""

from __future__ import annotations

import math
from typing import Optional, Union

PRIORITIES = ("critical", "high", "normal", "low")

Seconds = Union[int, float]


def seconds_ns(field: str, value: Optional[Seconds], *, none: int, zero_ok: bool = True) -> int:
    """`value` seconds as integer nanoseconds; None gives `none`."""
    if value is None:
        return none
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{field} {value!r}: must be a number of seconds or None")
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
        accepted = "at least 0" if zero_ok else "more than 0"
        raise ValueError(f"{field} {value!r}: must be a finite number of seconds, {accepted}, or None")
    ns = int(round(value * 1e9))
    if ns >= 2**62:
        raise ValueError(f"{field} {value!r}: too long (at most about 146 years)")
    return ns


def priority(value: Union[str, int]) -> int:
    """A priority name or number as the engine's 0..3."""
    if isinstance(value, str) and value in PRIORITIES:
        return PRIORITIES.index(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(PRIORITIES):
        return value
    raise ValueError(f"priority {value!r}: must be one of {', '.join(PRIORITIES)} or 0..3")


def count(field: str, value: Optional[int], *, low: int, high: int) -> int:
    """An optional count in low..high; None gives 0 (the engine's default)."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{field} {value!r}: must be an integer in {low}..{high} or None")
    return value
