"""Grounding: where in the source document an extracted value came from.

For each value, in order: an exact match (case-insensitive), a match after collapsing whitespace,
or a fuzzy match (rapidfuzz partial-ratio alignment, score >= FUZZY_MIN) — each gives the character
span in the original text. A value found nowhere gets `None`: the hallucination signal that routes
a document to human review. Amounts and dates may be written differently in the answer than in the
document ("9.00" vs "RM9.00" is still exact; "2018-12-25" vs "25/12/2018" is not found). A number
is looked for as documents print it: 1250.5 as "1,250.50", "1250.50", "1.250,50" or "1250.5".
Nested answers (objects, arrays of line items) are grounded leaf by leaf, keyed by path:
`vendor.name`, `line_items[2].amount`.
"""

from __future__ import annotations

import re
from typing import Any

FUZZY_MIN = 85.0


def locate(value: Any, source: str) -> dict[str, Any] | None:
    if value is None or isinstance(value, (dict, list, bool)) or str(value).strip() == "":
        return None
    if isinstance(value, (int, float)):
        return _locate_number(value, source)
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


def _locate_number(value: float, source: str) -> dict[str, Any] | None:
    lower = source.lower()
    for form in number_forms(value):
        for m in re.finditer(re.escape(form), lower):
            before = lower[m.start() - 1] if m.start() else " "
            after = lower[m.end()] if m.end() < len(lower) else " "
            if not (before.isdigit() or after.isdigit()):  # "25.00" is not inside "125.00"
                return {"start": m.start(), "end": m.end(), "match": "number", "score": 100.0}
    return None


def number_forms(value: float) -> list[str]:
    """How a document may print a number, most specific first; a negative one also unsigned (a debit
    column prints -950.00 as 950.00)."""
    forms = _forms(value) + (_forms(-value) if value < 0 else [])
    return list(dict.fromkeys(forms))


def _forms(value: float) -> list[str]:
    forms = [f"{value:,.2f}", f"{value:.2f}", f"{value:,.2f}".replace(",", " ").replace(".", ","),
             f"{value:,.2f}".replace(",", "_").replace(".", ",").replace("_", ".")]
    if float(value).is_integer():
        forms += [f"{int(value):,}", str(int(value))]
    else:
        forms.append(repr(float(value)))
    return forms


def leaves(value: Any, path: str = "") -> list[tuple[str, Any]]:
    """(path, value) of every scalar in a nested answer."""
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in leaves(v, f"{path}.{k}" if path else k)]
    if isinstance(value, list):
        return [leaf for i, v in enumerate(value) for leaf in leaves(v, f"{path}[{i}]")]
    return [(path, value)]


def ground(fields: dict[str, Any], source: str) -> dict[str, dict[str, Any] | None]:
    """A span (or None) per top-level scalar field, and per leaf of nested ones, keyed by path."""
    return {path: locate(value, source) for path, value in leaves(fields)}
