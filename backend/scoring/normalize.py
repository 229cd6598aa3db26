"""How two field values are compared: as a careful human would, and no looser.

- Text: Unicode NFKC, case-folded, runs of whitespace collapsed, trimmed; spaces next to
  punctuation ignored ("SDN. BHD" = "SDN.BHD", "18 , TAMAN" = "18, TAMAN").
- Amounts: when both values read as amounts (`backend.values.parse_decimal`) they are compared as
  numbers: "1,250.00" = "1250" = "RM 1250.0" = "1.250,00".
- Dates: when both values read as dates (`backend.values.parse_date`) they are compared as dates:
  "25/12/2018" = "2018-12-25" = "25 Dec 2018" = "25-12-18".
- Absent values (`backend.values.is_absent`) are no answer; metrics count them apart.
Anything else must be equal as text. How amounts, dates and absent values are read is written once, in
`backend.values`.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from backend.values import parse_date, parse_decimal


def as_text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def norm_text(value: Any) -> str:
    text = unicodedata.normalize("NFKC", as_text(value)).casefold()
    text = re.sub(r"\s+", " ", text).strip()
    return re.sub(r"\s*([.,;:/&()\-])\s*", r"\1", text)


def same_value(predicted: Any, gold: Any) -> bool:
    """Equal as amounts, else as dates, else as normalised text (both present)."""
    a, b = parse_decimal(predicted), parse_decimal(gold)
    if a is not None and b is not None:
        return a == b
    d1, d2 = parse_date(predicted), parse_date(gold)
    if d1 is not None and d2 is not None:
        return d1 == d2
    return norm_text(predicted) == norm_text(gold)


def loose(value: Any) -> str:
    """Letters and digits only: equal here but not in `same_value` means a format error."""
    return re.sub(r"[^0-9a-z]", "", norm_text(value))
