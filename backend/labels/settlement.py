"""What a receipt says was paid: the amount tendered minus the change given back.

A receipt that prints "CASH 50.00" and, a line or two below, "CHANGE 20.20" has settled 29.80, whatever
its subtotal, tax and total lines say. `settled(text)` reads that pair of lines; `Conventions` (the
`settles` rule of an amount field) uses it to check a predicted total: where the training labels of the
field equal the settled amount (learned, not assumed), a prediction that disagrees by more than cash
rounding is replaced by the settled amount, if the document prints it.

A line is a *tendered* (*change*) line when its words, once its amounts, currency markers and punctuation
are taken out, are one of the label profile's tendered (change) labels (`profile.py`); its amount is on
the same line, or alone on the next one. The change line must follow the tendered line within the
profile's `change_within` lines. A document without such a pair gives None and nothing is checked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from backend.labels.profile import Profile, load_profile
from backend.values import AMOUNT, CURRENCY_MARKER, parse_decimal

ROUNDING = Decimal("0.10")  # cash rounding: a total and what was settled may differ by this much


def _label(line: str) -> str:
    """The line's words without its amounts, currency markers and punctuation, upper case."""
    words = CURRENCY_MARKER.sub(" ", AMOUNT.sub(" ", line))
    return " ".join(re.sub(r"[^\w\s]", " ", words).upper().split())


@dataclass(frozen=True)
class Settlement:
    """A tendered line and the change line after it: their amounts, and the lines (indexes into
    `text.split("\\n")`) that print those amounts."""

    tendered: Decimal
    change: Decimal
    tendered_line: int
    change_line: int

    @property
    def paid(self) -> Decimal:
        return self.tendered - abs(self.change)


def _amount(rows: list[tuple[int, str]], k: int) -> tuple[Decimal, int] | None:
    """The amount on row `k`, or alone on row `k + 1` (a label and its value printed on two lines), and
    the line that prints it."""
    found = [parse_decimal(m.group(1)) for m in AMOUNT.finditer(rows[k][1])]
    if found and found[-1] is not None:
        return found[-1], rows[k][0]
    if k + 1 < len(rows) and not _label(rows[k + 1][1]):
        found = [parse_decimal(m.group(1)) for m in AMOUNT.finditer(rows[k + 1][1])]
        return (found[-1], rows[k + 1][0]) if found and found[-1] is not None else None
    return None


def settlement(text: str, profile: Profile | None = None) -> Settlement | None:
    """The last tendered line that a change line follows with a positive difference; None when the
    document has no such pair."""
    profile = profile or load_profile()
    rows = [(i, line.strip()) for i, line in enumerate(text.split("\n")) if line.strip()]
    found = None
    for k, (_, line) in enumerate(rows):
        if _label(line) not in profile.tendered:
            continue
        tendered = _amount(rows, k)
        if tendered is None:
            continue
        for j in range(k + 1, min(k + 1 + profile.change_within, len(rows))):
            if _label(rows[j][1]) in profile.change:
                change = _amount(rows, j)
                if change is not None and tendered[0] - abs(change[0]) > 0:
                    found = Settlement(tendered[0], change[0], tendered[1], change[1])
                break
    return found


def settled(text: str, profile: Profile | None = None) -> Decimal | None:
    """Tendered minus change, from the last tendered line that a change line follows; None when the
    document has no such pair or the difference is not positive."""
    pair = settlement(text, profile)
    return None if pair is None else pair.paid


def printed(amount: Decimal, text: str) -> bool:
    """Whether the document prints this amount (as any of its amount spans)."""
    return any(parse_decimal(m.group(1)) == amount for m in AMOUNT.finditer(text))


def check_settled(value: Any, document: str, profile: Profile | None = None) -> Any:
    """`value`, or the amount the document settled (tendered minus change) where the two differ by more
    than cash rounding and the document prints that amount."""
    number, paid = parse_decimal(value), settled(document, profile)
    if number is None or paid is None or abs(number - paid) <= ROUNDING or not printed(paid, document):
        return value
    return f"{paid:f}"
