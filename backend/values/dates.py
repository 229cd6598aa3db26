"""Dates as documents print them (rules: `backend.values`)."""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from typing import Any

MONTHS = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
YEAR_PIVOT = 69  # two-digit years: 69-99 -> 1969-1999, 00-68 -> 2000-2068 (POSIX and Python's %y)

# a time of day after a date: "8:13:39 pm", "t10:00:00z", "10:00:00.5+08:00"
_TIME = re.compile(
    r"(?:\s+|(?<=\d)t)\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:\s*[ap]\.?m\.?)?(?:\s*(?:z|[+-]\d{2}:?\d{2}))?$"
)
_YMD = re.compile(r"(\d{4})([-/.])(\d{1,2})\2(\d{1,2})")
_DMY = re.compile(r"(\d{1,2})([-/.])(\d{1,2})\2(\d{4}|\d{2})")
_D_MON_Y = re.compile(r"(\d{1,2})(?:st|nd|rd|th)?[\s./-]*([a-z]{3,9})\.?[\s.,/-]*(\d{4}|\d{2})")
_MON_D_Y = re.compile(r"([a-z]{3,9})\.?[\s./-]*(\d{1,2})(?:st|nd|rd|th)?[\s.,/-]*(\d{4}|\d{2})")


def parse_date(value: Any) -> dt.date | None:
    """The date `value` names, or None when it names none (see the rules in `backend.values`)."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if not isinstance(value, str):
        return None
    text = _TIME.sub("", unicodedata.normalize("NFKC", value).casefold().strip())
    text = re.sub(r"\s*([-/.,])\s*", r"\1", " ".join(text.split()))
    if m := _YMD.fullmatch(text):
        return _date(int(m[1]), int(m[3]), int(m[4]))
    if m := _DMY.fullmatch(text):
        first, second, year = int(m[1]), int(m[3]), _year(m[4])
        return _date(year, second, first) or _date(year, first, second)
    if (m := _D_MON_Y.fullmatch(text)) and (month := _month(m[2])):
        return _date(_year(m[3]), month, int(m[1]))
    if (m := _MON_D_Y.fullmatch(text)) and (month := _month(m[1])):
        return _date(_year(m[3]), month, int(m[2]))
    return None


def _year(text: str) -> int:
    year = int(text)
    return year if len(text) == 4 else year + (1900 if year >= YEAR_PIVOT else 2000)


def _month(word: str) -> int | None:
    return next((i for i, name in enumerate(MONTHS, 1) if name.startswith(word)), None)


def _date(year: int, month: int, day: int) -> dt.date | None:
    try:
        return dt.date(year, month, day)
    except ValueError:
        return None
