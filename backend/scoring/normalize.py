"""How two field values are compared: as a careful human would, and no looser.

- Text: Unicode NFKC, case-folded, runs of whitespace collapsed, trimmed; spaces next to
  punctuation ignored ("SDN. BHD" = "SDN.BHD", "18 , TAMAN" = "18, TAMAN").
- Amounts: when both values read as amounts they are compared as numbers: currency symbols and codes
  (RM, $, €, £, USD, MYR, ...) and thousands separators are stripped; "1,250.00" = "1250" = "RM 1250.0";
  with both separators the later one is the decimal point ("1.250,00" = 1250.00); a lone comma
  before one or two final digits is a decimal comma ("12,50").
- Dates: when both values read as dates they are compared as dates: "25/12/2018" = "2018-12-25" =
  "25 Dec 2018" = "25-12-18". Numeric dates are read day-first (dd/mm/yyyy, as on the receipts and
  invoices this product was built on); only when the second number is over 12 is the order taken as
  month-first ("12/25/2018"). Two-digit years are 20xx. A trailing time of day is ignored.
- Empty: None, "", whitespace and the strings "null"/"none"/"n/a" are all "absent".
Anything else must be equal as text.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

_CURRENCY = re.compile(r"(?i)(?<![a-z])(rm|myr|usd|eur|gbp|sgd|idr|inr|aud|cad|chf|jpy|cny)(?![a-z])|[$€£¥₹]")
# an amount as printed in a document: one or two decimals, optionally a currency marker before it (group 1:
# the number); not part of a date, time, code, longer number or rate ("6.00%")
_NUMBER = r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d{1,2})"
AMOUNT = re.compile(r"(?<![\w.,/-])(?:(?:RM|MYR|USD|SGD|\$)\s?)?(" + _NUMBER + r")(?![\d.,]?\d)(?![/:%A-Za-z])", re.IGNORECASE)
_MONTHS = {m: i + 1 for i, m in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct",
                                           "nov", "dec"])}
_ABSENT = {"", "null", "none", "n/a", "na", "-"}


def is_absent(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in _ABSENT) or value == []


def as_text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def norm_text(value: Any) -> str:
    text = unicodedata.normalize("NFKC", as_text(value)).casefold()
    text = re.sub(r"\s+", " ", text).strip()
    return re.sub(r"\s*([.,;:/&()\-])\s*", r"\1", text)


def parse_amount(value: Any) -> Decimal | None:
    """A number from an amount as written, or None when it does not read as one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return Decimal(str(value))
    text = _CURRENCY.sub("", as_text(value)).replace(" ", "").strip()
    if not re.fullmatch(r"[+-]?[\d.,]*\d[\d.,]*", text):
        return None
    sign, text = ("-" if text.startswith("-") else ""), text.lstrip("+-")
    if "." in text and "," in text:  # the later one is the decimal separator
        decimal_sep: str | None = "." if text.rindex(".") > text.rindex(",") else ","
    elif "," in text:  # "12,50" is decimal; "1,250" and "1,250,000" group thousands
        decimal_sep = "," if text.count(",") == 1 and re.search(r",\d{1,2}$", text) else None
    elif "." in text:  # "1.250.000" groups thousands; "12.50" and "1.250" are decimal
        decimal_sep = "." if text.count(".") == 1 else None
    else:
        decimal_sep = None
    thousands = {".", ","} - {decimal_sep}
    for sep in thousands:
        text = text.replace(sep, "")
    if decimal_sep:
        text = text.replace(decimal_sep, ".")
    try:
        return Decimal(sign + text)
    except InvalidOperation:
        return None


def parse_date(value: Any) -> date | None:
    text = norm_text(value)
    text = re.sub(r"\s+\d{1,2}:\d{2}(:\d{2})?(\s*[ap]m)?$", "", text)  # a trailing time of day
    m = re.fullmatch(r"(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})", text)
    if m:
        return _date(int(m[1]), int(m[2]), int(m[3]))
    m = re.fullmatch(r"(\d{1,2})[-/.](\d{1,2})[-/.](\d{2}|\d{4})", text)
    if m:
        first, second, year = int(m[1]), int(m[2]), int(m[3])
        year += 2000 if year < 100 else 0
        if second > 12:  # only then month-first
            return _date(year, first, second)
        return _date(year, second, first)
    m = re.fullmatch(r"(\d{1,2})[- ]?([a-z]{3})[a-z]*[-,. ]*(\d{2}|\d{4})", text)
    if m and m[2] in _MONTHS:
        year = int(m[3]) + (2000 if len(m[3]) == 2 else 0)
        return _date(year, _MONTHS[m[2]], int(m[1]))
    m = re.fullmatch(r"([a-z]{3})[a-z]*[- ]?(\d{1,2})[-,. ]*(\d{4})", text)
    if m and m[1] in _MONTHS:
        return _date(int(m[3]), _MONTHS[m[1]], int(m[2]))
    return None


def _date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def same_value(predicted: Any, gold: Any) -> bool:
    """Equal as amounts, else as dates, else as normalised text (both present)."""
    a, b = parse_amount(predicted), parse_amount(gold)
    if a is not None and b is not None:
        return a == b
    d1, d2 = parse_date(predicted), parse_date(gold)
    if d1 is not None and d2 is not None:
        return d1 == d2
    return norm_text(predicted) == norm_text(gold)


def loose(value: Any) -> str:
    """Letters and digits only: equal here but not in `same_value` means a format error."""
    return re.sub(r"[^0-9a-z]", "", norm_text(value))
