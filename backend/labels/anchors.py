"""Where a field's values stand in their documents: the words printed just before them.

A receipt's total follows "TOTAL", "GRAND TOTAL" or "ROUNDED TOTAL RM"; a subtotal, the cash tendered
or a line item's price follows other words. A confident answer that stands after none of the words the
training labels stood after is a different amount read well, not the field's value: such an answer goes
to a person however confident the model was (`backend.inference.stages.check`).

An anchor is the last ANCHOR_WORDS words (letters only, upper-cased) before the value on its line, or,
for a value that starts its line, "^" and the previous line's last words ("^" alone on the first line).
`learn` keeps the anchors that ANCHOR_SUPPORT or more training documents share, and only for a field
whose labels nearly all stand after one (ANCHOR_SHARE of those found in their document, each judged
against the others: leave one out) — so the check rarely stops a right answer, and fields that are not
printed after a keyword (a name, an address, a date printed anywhere) get none.
"""

from __future__ import annotations

import re
from collections import Counter

ANCHOR_WORDS = 2
ANCHOR_SUPPORT = 2  # documents that must share an anchor for it to be kept
ANCHOR_SHARE = 0.95  # share of labels found in their document that must stand after a kept anchor
ANCHOR_MIN_LABELS = 20  # labels found in their documents needed to learn anchors at all
_WORD = re.compile(r"[^\W\d_]{2,}")


def positions(value: str, document: str) -> list[int]:
    """Every offset where `value` is printed in `document` as a whole (case-insensitive): "9.00" is not
    printed inside "19.00" or "9.005", but is in "RM9.00"."""
    needle = value.strip()
    if not needle:
        return []
    before = r"(?<![\d.,])" if needle[0].isdigit() else r"(?<!\w)" if needle[0].isalnum() else ""
    after = r"(?![.,]?\d)" if needle[-1].isdigit() else r"(?!\w)" if needle[-1].isalnum() else ""
    return [m.start() for m in re.finditer(before + re.escape(needle) + after, document, re.IGNORECASE)]


def anchor_at(document: str, at: int) -> str:
    """The anchor of a value printed at offset `at`."""
    line_start = document.rfind("\n", 0, at) + 1
    before = _WORD.findall(document[line_start:at].upper())
    if before:
        return " ".join(before[-ANCHOR_WORDS:])
    if line_start == 0:
        return "^"
    previous = document[document.rfind("\n", 0, line_start - 1) + 1 : line_start - 1]
    return " ".join(["^", *_WORD.findall(previous.upper())[-ANCHOR_WORDS:]])


def anchors_of(value: str, document: str) -> set[str]:
    """The anchors of every place `value` is printed in `document` (empty where it is not printed)."""
    return {anchor_at(document, at) for at in positions(value, document)}


def learn(labels: list[str], documents: list[str]) -> list[str]:
    """The anchors of a field's labels, the most shared first, or [] where they do not tell where its
    values stand (see the module's rules)."""
    per_label = [anchors_of(label, document) for label, document in zip(labels, documents)]
    per_label = [a for a in per_label if a]
    counts = Counter(a for anchors in per_label for a in anchors)
    kept_without_own = sum(any(counts[a] - 1 >= ANCHOR_SUPPORT for a in anchors) for anchors in per_label)
    if len(per_label) < ANCHOR_MIN_LABELS or kept_without_own < ANCHOR_SHARE * len(per_label):
        return []
    return [a for a, n in sorted(counts.items(), key=lambda item: (-item[1], item[0])) if n >= ANCHOR_SUPPORT]


def placed(value: str, document: str, anchors: list[str]) -> bool | None:
    """Whether `value` is printed after one of `anchors` somewhere in `document`; None where it is not
    printed as written (grounding judges such values)."""
    found = anchors_of(value, document)
    return bool(found & set(anchors)) if found else None


def describe(anchors: list[str] | set[str], most: int = 5) -> str:
    """Anchors as a person reads them: 'GRAND TOTAL', a line ending 'TOTAL', the document's start (a
    list in its order, the first `most`; a set sorted)."""

    def one(anchor: str) -> str:
        if anchor == "^":
            return "the document's start"
        return f"a line ending {anchor[2:]!r}" if anchor.startswith("^ ") else repr(anchor)

    shown = sorted(anchors) if isinstance(anchors, set) else list(anchors)
    return ", ".join(map(one, shown[:most])) + (f" and {len(shown) - most} more" if len(shown) > most else "")
