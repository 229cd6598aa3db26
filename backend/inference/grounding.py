"""Grounding: where in the source document an extracted value came from.

For each value, in order: an exact match (case-insensitive), a match after collapsing whitespace,
or a fuzzy match (rapidfuzz partial-ratio alignment, score >= FUZZY_MIN) — each gives the character
span in the original text. A value found nowhere gets `None`: the hallucination signal that routes
a document to human review. Amounts and dates may be written differently in the answer than in the
document ("9.00" vs "RM9.00" is still exact; "2018-12-25" vs "25/12/2018" is not found).
"""

from __future__ import annotations

import re
from typing import Any

FUZZY_MIN = 85.0


def locate(value: Any, source: str) -> dict[str, Any] | None:
    if value is None or isinstance(value, (dict, list)) or str(value).strip() == "":
        return None
    needle = str(value).strip()
    lower = source.lower()
    at = lower.find(needle.lower())
    if at >= 0:
        return {"start": at, "end": at + len(needle), "match": "exact", "score": 100.0}
    collapsed, index = _collapse(source)
    target, _ = _collapse(needle)
    at = collapsed.find(target)
    if at >= 0 and target:
        return {"start": index[at], "end": index[at + len(target) - 1] + 1, "match": "normalized", "score": 100.0}
    from rapidfuzz import fuzz

    found = fuzz.partial_ratio_alignment(target, collapsed, score_cutoff=FUZZY_MIN)
    if found is None or found.dest_end <= found.dest_start:
        return None
    return {"start": index[found.dest_start], "end": index[found.dest_end - 1] + 1, "match": "fuzzy",
            "score": round(found.score, 1)}


def _collapse(text: str) -> tuple[str, list[int]]:
    """Lower-cased text with whitespace runs made one space, and each kept character's original index."""
    out, index = [], []
    for m in re.finditer(r"\s+|\S", text):
        out.append(" " if m.group().isspace() else m.group().lower())
        index.append(m.start())
    return "".join(out), index


def ground(fields: dict[str, Any], source: str) -> dict[str, dict[str, Any] | None]:
    return {name: locate(value, source) for name, value in fields.items()}
