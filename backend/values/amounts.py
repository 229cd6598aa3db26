"""Amounts as documents print them (rules: `backend.values`)."""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from backend.values.currency import CURRENCY_MARKER

# An amount as printed in running text: one or two decimals, optionally a currency marker right before it
# (group 1: the number); not part of a date, time, code, longer number or rate ("6.00%").
_NUMBER = r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d{1,2})"
AMOUNT = re.compile(
    r"(?<![\w.,/-])(?:(?:" + CURRENCY_MARKER.pattern + r")\s?)?(" + _NUMBER + r")"
    r"(?![\d.,]?\d)(?![/:%A-Za-z])",
    re.IGNORECASE,
)
# Numbers as printed: digits with "." and "," inside; and runs grouped in threes by spaces or
# apostrophes ("1 250,00", "1'250.00"), which may also be separate numbers side by side ("8 245.00").
PRINTED_NUMBER = re.compile(r"\d(?:[\d.,]*\d)?")
GROUPED_NUMBER = re.compile(r"(?<![\d.,])\d{1,3}(?:[ \u00a0'’]\d{3})+(?:[.,]\d+)?(?!\d)")

_WRITTEN = re.compile(r"(?P<pre>\D*?)(?P<num>[\d.,' ]*\d)(?P<post>\D*)")
_DECIMAL_POINT = re.compile(r"\d\.\d{2}(?!\d)")
_DECIMAL_COMMA = re.compile(r"\d,\d{2}(?!\d)")
_SIGNS = set(" .,:+-\u2212()")


def number_style(text: str) -> str | None:
    """The decimal mark a document uses ("." or ","), from the amounts with two decimals it prints;
    None when it prints none or as many of each."""
    points, commas = len(_DECIMAL_POINT.findall(text)), len(_DECIMAL_COMMA.findall(text))
    return "." if points > commas else "," if commas > points else None


def parse_amount(value: Any, *, decimal: str | None = None) -> float | None:
    """The amount as a float (for arithmetic), or None when `value` does not read as one."""
    number = parse_decimal(value, decimal=decimal)
    return None if number is None else float(number)


def parse_decimal(value: Any, *, decimal: str | None = None) -> Decimal | None:
    """The amount exactly as written, decimal places kept ("9.00" -> Decimal("9.00")), or None when
    `value` does not read as one. `decimal` is the document's decimal mark when known (`number_style`)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        return Decimal(repr(value)) if math.isfinite(value) else None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    if not isinstance(value, str):
        return None
    text = value.replace("\u00a0", " ").replace("\u202f", " ").replace("\u2019", "'").strip()
    m = _WRITTEN.fullmatch(text)
    if not m:
        return None
    pre, num, post = m["pre"], m["num"].strip(), m["post"].strip()
    if m["num"].startswith(".") and re.search(r"[^\W\d_]$", pre) and not re.fullmatch(r"\.\d{1,2}", num):
        pre, num = pre + ".", num[1:].strip()  # "Rs.500", "Rs. 1,250.00": the point ends the abbreviation
    if not (_marker_only(pre) and _marker_only(post)):
        return None
    number = _number(num, decimal)
    if number is None:
        return None
    negative = "-" in pre or "\u2212" in pre or post.endswith("-") or ("(" in pre and post.endswith(")"))
    return -number if negative else number


def _marker_only(part: str) -> bool:
    """Whether text beside a number holds nothing but currency markers, signs and spacing."""
    return set(CURRENCY_MARKER.sub("", part)) <= _SIGNS


def _number(num: str, decimal: str | None) -> Decimal | None:
    whole, frac = num, ""
    seps = [i for i, c in enumerate(num) if c in ".,"]
    if seps:
        i = seps[-1]
        sep, other = num[i], "," if num[i] == "." else "."
        if decimal is not None and other not in num[:i] and num.count(sep) == 1:
            lone_decimal = sep == decimal
        else:
            lone_decimal = num.count(sep) == 1 and (sep == "." or len(num) - i - 1 != 3)
        if other in num[:i] or lone_decimal:
            whole, frac = num[:i], num[i + 1 :]
    if frac and not frac.isdigit():
        return None
    if whole and not whole.isdigit():
        groups = re.split(r"[.,' ]", whole)
        western = 1 <= len(groups[0]) <= 3 and all(len(g) == 3 for g in groups[1:])
        indian = 1 <= len(groups[0]) <= 2 and all(len(g) == 2 for g in groups[1:-1]) and len(groups[-1]) == 3
        if len(set(re.findall(r"[.,' ]", whole))) != 1 or not (western or indian):
            return None
    digits = re.sub(r"\D", "", whole) or "0"
    try:
        return Decimal(f"{digits}.{frac}" if frac else digits)
    except InvalidOperation:
        return None
