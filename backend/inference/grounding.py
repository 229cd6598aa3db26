"""Grounding: where in the source document an extracted value came from.

Each value is looked for by its kind, and gets the character span in the original text, or `None`
when it is found nowhere (the hallucination signal that routes a document to human review):
- an amount (a number, or a string that reads as one, "9.00", "RM 1,250.00") is grounded only by a
  printed number of the same value, read in the document's number style: 25 is not grounded by
  "25,000.00"; 25000 is grounded by "25,000.00" or, in a decimal-comma document, "25.000,00";
- a code (every word holds a digit: IBAN, VAT and invoice numbers, numeric dates) only by a whole
  token, spaces ignored ("AT27 2011 1830" grounds "AT2720111830"; "INV-001" is not "INV-0012");
- text (names, addresses) by an exact match (case-insensitive), a match after collapsing whitespace,
  or a fuzzy match (rapidfuzz partial-ratio alignment, score >= FUZZY_MIN).
An amount or code found only inside a longer number or token gets `match: "partial"`: a value that
was cut short, and not evidence. Nested answers (objects, arrays of line items) are grounded leaf by
leaf, keyed by path: `vendor.name`, `line_items[2].amount`.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

from backend.values import GROUPED_NUMBER, PRINTED_NUMBER, number_style, parse_amount

FUZZY_MIN = 85.0
_CODE_WORD = re.compile(r"[A-Za-z0-9./#_-]*\d[A-Za-z0-9./#_-]*")
_JOINERS = "./#_-"
# What reads as an amount rather than a code: no letters, or a currency code before a number with decimals.
_AMOUNT_TEXT = re.compile(
    r"[^A-Za-z]*\d[^A-Za-z]*|[A-Za-z]{1,3}\s?\d[\d.,' ]*[.,]\d{2}|\d[\d.,' ]*[.,]\d{2}\s?[A-Za-z]{1,3}"
)
_GROUP_AFTER = re.compile(r"\s[A-Za-z0-9]{1,4}(?![A-Za-z0-9])")
_GROUP_BEFORE = re.compile(r"(?<![A-Za-z0-9])[A-Za-z0-9]{1,4}\s$")


def locate(value: Any, source: str, *, style: str | None = None) -> dict[str, Any] | None:
    """The span of `value` in `source` (see the module's rules); `style` is the document's decimal
    mark, found from `source` when not given."""
    if value is None or isinstance(value, (dict, list, bool)) or str(value).strip() == "":
        return None
    if isinstance(value, (int, float)):
        return _locate_amount(float(value), source, style or number_style(source))
    needle = str(value).strip()
    style = style or number_style(source)
    amount = parse_amount(needle, decimal=style) if _AMOUNT_TEXT.fullmatch(needle) else None
    if amount is not None:
        return _locate_amount(amount, source, style)
    if all(_CODE_WORD.fullmatch(w) for w in needle.split()):
        return _locate_code(needle, source)
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
    return {
        "start": index[found.dest_start],
        "end": index[found.dest_end - 1] + 1,
        "match": "fuzzy",
        "score": round(found.score, 1),
    }


def _collapse(text: str) -> tuple[str, list[int]]:
    """Lower-cased text with whitespace runs made one space, and each kept character's original index."""
    out, index = [], []
    for m in re.finditer(r"\s+|\S", text):
        out.append(" " if m.group().isspace() else m.group().lower())
        index.append(m.start())
    return "".join(out), index


def _locate_amount(value: float, source: str, style: str | None) -> dict[str, Any] | None:
    partial = None
    forms = number_forms(value)
    for m in itertools.chain(PRINTED_NUMBER.finditer(source), GROUPED_NUMBER.finditer(source)):
        printed = parse_amount(m.group(), decimal=style)
        if printed is not None and abs(abs(printed) - abs(value)) < 0.005:
            return {"start": m.start(), "end": m.end(), "match": "number", "score": 100.0}
        if partial is None and any(form in m.group() for form in forms):
            partial = {"start": m.start(), "end": m.end(), "match": "partial", "score": 0.0}
    return partial


def _locate_code(needle: str, source: str) -> dict[str, Any] | None:
    """A whole token equal to `needle` (case and spaces ignored); else a token that holds it (partial)."""
    chars = [c for c in needle if not c.isspace()]
    pattern = re.compile(r"\s?".join(re.escape(c) for c in chars), re.IGNORECASE)
    partial = None
    for m in pattern.finditer(source):
        if _bounded(source, m.start(), -1) and _bounded(source, m.end() - 1, 1) and not _grouped_on(source, m):
            return {"start": m.start(), "end": m.end(), "match": "token", "score": 100.0}
        partial = partial or {"start": m.start(), "end": m.end(), "match": "partial", "score": 0.0}
    return partial


def _grouped_on(text: str, m: re.Match) -> bool:
    """Whether a code printed in groups ("AT27 2011 1830 6400") goes on past the match in another
    group that holds a digit: the match is then only part of it."""
    if not any(c.isspace() for c in m.group()):
        return False
    after = _GROUP_AFTER.match(text, m.end())
    before = _GROUP_BEFORE.search(text[max(0, m.start() - 6) : m.start()])
    return any(g is not None and any(c.isdigit() for c in g.group()) for g in (after, before))


def _bounded(text: str, at: int, step: int) -> bool:
    """Whether the token ends at index `at` going in direction `step`: no letter or digit follows,
    nor a joiner ("-", "/", ".") that a letter or digit follows ("2024-001" is inside "INV-2024-001")."""
    nxt = at + step
    if not 0 <= nxt < len(text):
        return True
    if text[nxt].isalnum():
        return False
    if text[nxt] in _JOINERS:
        far = nxt + step
        return not (0 <= far < len(text) and text[far].isalnum())
    return True


def number_forms(value: float) -> list[str]:
    """How a document may print a number, most specific first; a negative one also unsigned (a debit
    column prints -950.00 as 950.00)."""
    forms = _forms(value) + (_forms(-value) if value < 0 else [])
    return list(dict.fromkeys(forms))


def _forms(value: float) -> list[str]:
    forms = [
        f"{value:,.2f}",
        f"{value:.2f}",
        f"{value:,.2f}".replace(",", " ").replace(".", ","),
        f"{value:,.2f}".replace(",", "_").replace(".", ",").replace("_", "."),
    ]
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
    style = number_style(source)
    return {path: locate(value, source, style=style) for path, value in leaves(fields)}
