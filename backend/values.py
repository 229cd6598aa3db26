"""Amounts as documents print them: one reader for the validators, the policy rules and grounding.

A document's number style decides what "1.250" means: in a document that writes decimals with a comma
("1.250,00") it is one thousand two hundred and fifty; elsewhere it is one and a quarter.
"""

from __future__ import annotations

import math
import re
import unicodedata
from typing import Any

_AMOUNT = re.compile(r"(?P<pre>\D*?)(?P<num>[\d.,' ]*\d)(?P<post>\D*)")
# Numbers as printed: digits with "." and "," inside; and runs grouped in threes by spaces or
# apostrophes ("1 250,00", "1'250.00"), which may also be separate numbers side by side ("8 245.00").
PRINTED_NUMBER = re.compile(r"\d(?:[\d.,]*\d)?")
GROUPED_NUMBER = re.compile(r"(?<![\d.,])\d{1,3}(?:[ \u00a0'’]\d{3})+(?:[.,]\d+)?(?!\d)")
_DECIMAL_POINT = re.compile(r"\d\.\d{2}(?!\d)")
_DECIMAL_COMMA = re.compile(r"\d,\d{2}(?!\d)")


def number_style(text: str) -> str | None:
    """The decimal mark a document uses ("." or ","), from the amounts with two decimals it prints;
    None when it prints none or as many of each."""
    points, commas = len(_DECIMAL_POINT.findall(text)), len(_DECIMAL_COMMA.findall(text))
    return "." if points > commas else "," if commas > points else None


def parse_amount(value: Any, *, decimal: str | None = None) -> float | None:
    """A number from an amount as written, or None when it does not read as one.

    Numbers pass through. Strings may carry a currency symbol or a code of up to 3 letters ("RM 9.00",
    "$1,234.50", "9.00 EUR"), thousands separators (",", ".", space, apostrophe; Indian 1,23,456 too)
    and a decimal comma ("9,00", "1 234,50"). With both separators the later one is the decimal point.
    A lone separator is read with the document's `decimal` mark when given ("," makes "1.250" 1250);
    without it, a lone comma before exactly three digits groups thousands ("1,250"), a lone dot is decimal.
    A leading or trailing minus, or parentheses, make it negative.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    if not isinstance(value, str):
        return None
    text = value.replace("\u00a0", " ").replace("\u202f", " ").replace("\u2019", "'").strip()
    m = _AMOUNT.fullmatch(text)
    if not m or not (_currency_text(m["pre"]) and _currency_text(m["post"])):
        return None
    number = _parse_number(m["num"].strip(), decimal)
    if number is None:
        return None
    pre, post = m["pre"], m["post"].strip()
    negative = "-" in pre or "\u2212" in pre or post.endswith("-") or ("(" in pre and post.endswith(")"))
    return -number if negative else number


def _currency_text(part: str) -> bool:
    letters = sum(c.isalpha() for c in part)
    return letters <= 3 and all(c.isalpha() or c in " .:+-\u2212()" or unicodedata.category(c) == "Sc"
                                for c in part)


def _parse_number(num: str, decimal: str | None = None) -> float | None:
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
            whole, frac = num[:i], num[i + 1:]
    if frac and not frac.isdigit():
        return None
    if whole and not whole.isdigit():
        groups = re.split(r"[.,' ]", whole)
        western = 1 <= len(groups[0]) <= 3 and all(len(g) == 3 for g in groups[1:])
        indian = 1 <= len(groups[0]) <= 2 and all(len(g) == 2 for g in groups[1:-1]) and len(groups[-1]) == 3
        if len(set(re.findall(r"[.,' ]", whole))) != 1 or not (western or indian):
            return None
    return float(f"{re.sub(r'[^0-9]', '', whole) or '0'}.{frac or '0'}")
