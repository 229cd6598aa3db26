"""Values that stand for "not given" (rules: `backend.values`)."""

from __future__ import annotations

from typing import Any

ABSENT_MARKERS = frozenset({"", "null", "none", "n/a", "na", "-"})


def is_absent(value: Any) -> bool:
    """Whether `value` gives nothing: None, an empty list, or a string that is blank or an absent marker."""
    if isinstance(value, str):
        return value.strip().casefold() in ABSENT_MARKERS
    return value is None or (isinstance(value, list) and not value)
