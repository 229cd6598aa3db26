"""Label-preserving augmentation: more training documents from each labelled extraction record.

Each new record is its source record with some of these substitutions, every one made in the text and
the labels together, so that every label stays a faithful reading of the new text:
- sender block: the lines at the head of the document that hold the text labels (company name and
  address on a receipt) are replaced by another training record's; those labels become the donor's;
- amounts: an amount label gets a new value, written in the label and wherever the text prints the
  same amount, each in its own format (decimals, thousands separators, a decimal point or a decimal
  comma as the document uses; a currency marker is kept). Where the document's cash tendered and
  change settled the old amount, they are rewritten to settle the new one: the change is what the
  same cash leaves, or the cash is raised to the next multiple of 10 when the new amount exceeds it;
- dates: a date label gets a new date, written in the label's own format in the label and the text;
- spacing: an extra space between two words of a line that holds no label value;
- line order: two neighbouring lines below the sender block trade places, where neither holds a label
  value nor borders a line that does (a key such as "TOTAL" printed above its amount stays put).
A substitution that would lose a label the source's text holds (`is_copied`) is not made, and a new
record equal to its source is not kept. Everything is drawn from a seeded generator per source record
and copy, so the same records and seed give the same output. Only the training split is augmented, and
only its records serve as donors: the validation split stays as labelled.
"""

from __future__ import annotations

import datetime as dt
import random
import re
from collections.abc import Callable
from decimal import ROUND_CEILING, Decimal
from typing import Any

from backend.inference.spans import is_copied
from backend.labels.settlement import ROUNDING, settlement
from backend.values import number_style, parse_date, parse_decimal

HEAD_LINES = 8  # a sender block lies within the document's first lines
# An amount as printed: thousands grouped by "," or none, one or two decimals after a point; not part
# of a longer number, a date ("11.02.18") or a code. COMMA_AMOUNT: the same with the marks traded
# ("1.234,50"), as documents that write a decimal comma print amounts.
PRINTED_AMOUNT = re.compile(r"(?<![\d.,])(?:\d{1,3}(?:,\d{3})+|\d+)\.\d{1,2}(?!\d|[.,]\d)")
COMMA_AMOUNT = re.compile(r"(?<![\d.,])(?:\d{1,3}(?:\.\d{3})+|\d+),\d{1,2}(?!\d|[.,]\d)")
PATTERNS = {".": PRINTED_AMOUNT, ",": COMMA_AMOUNT}
# Date formats a label may be written in (strftime patterns); day-first, as `parse_date` reads dates.
DATE_FORMATS = [
    *(f"%d{s}%m{s}{y}" for s in "/-." for y in ("%Y", "%y")),
    *(f"%Y{s}%m{s}%d" for s in "/-"),
    *(f"%d{s}{m}{s}{y}" for s in (" ", "-", "/") for m in ("%b", "%B") for y in ("%Y", "%y")),
    "%b %d, %Y",
    "%B %d, %Y",
]

Record = dict[str, Any]


def augment_records(records: list[Record], copies: int, *, seed: int) -> list[list[Record]]:
    """Up to `copies` new records from each of `records` (the training split's extraction records), a
    list per record; the same records and seed give the same output. Donor sender blocks come from
    `records` only."""
    blocks = [block for r in records if (block := sender_block(r)) is not None]
    new: list[list[Record]] = []
    for i, record in enumerate(records):
        made: list[Record] = []
        for k in range(copies):
            candidate = augment_record(record, blocks, random.Random(f"{seed}:{i}:{k}"))
            if candidate["text"] != record["text"] and candidate not in made:
                made.append(candidate)
        new.append(made)
    return new


def augment_record(record: Record, blocks: list[tuple[list[str], dict[str, str]]], rng: random.Random) -> Record:
    """One new record from `record`: each substitution that keeps its labels faithful, in turn."""
    steps: list[Callable[[Record], Record | None]] = [
        lambda r: swap_sender(r, blocks, rng),
        lambda r: rewrite_amounts(r, rng),
        lambda r: rewrite_dates(r, rng),
        lambda r: add_spacing(r, rng),
        lambda r: swap_lines(r, rng),
    ]
    for step in steps:
        candidate = step(record)
        if candidate is not None and keeps_labels(record, candidate):
            record = candidate
    return record


def keeps_labels(before: Record, after: Record) -> bool:
    """Whether every label found in `before`'s text is found in `after`'s."""
    return all(
        is_copied(after["fields"][name], after["text"])
        for name, value in string_fields(before).items()
        if is_copied(value, before["text"])
    )


def string_fields(record: Record) -> dict[str, str]:
    return {k: v for k, v in record["fields"].items() if isinstance(v, str) and v.strip()}


def kind(value: str) -> str:
    """ "amount", "date" or "text": how a label is substituted."""
    if any(p.search(value) for p in PATTERNS.values()) and parse_decimal(value) is not None:
        return "amount"
    return "date" if parse_date(value) is not None else "text"


def spans(value: str, text: str) -> list[tuple[int, int]]:
    """Where `value` occurs in `text`, any whitespace (line breaks too) standing for a space."""
    words = value.split()
    if not words:
        return []
    pattern = r"\s+".join(re.escape(w) for w in words)
    before, after = r"(?<!\w)" if value[0].isalnum() else "", r"(?!\w)" if value[-1].isalnum() else ""
    return [m.span() for m in re.finditer(before + pattern + after, text)]


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset)


# -- sender block ---------------------------------------------------------------------------------
def sender_block(record: Record) -> tuple[list[str], dict[str, str]] | None:
    """The record's sender block: the lines from the first to the last holding a text label, all within
    the first HEAD_LINES lines, and those labels; None when a text label is not found there."""
    text = record["text"]
    found = {name: spans(v, text) for name, v in string_fields(record).items() if kind(v) == "text"}
    if not found or not all(found.values()):
        return None
    first = min(_line_of(text, s[0][0]) for s in found.values())
    last = max(_line_of(text, s[0][1] - 1) for s in found.values())
    if last >= HEAD_LINES:
        return None
    labels = {name: record["fields"][name] for name in found}
    return text.split("\n")[first : last + 1], labels


def swap_sender(record: Record, blocks: list[tuple[list[str], dict[str, str]]], rng: random.Random) -> Record | None:
    """`record` with its sender block and text labels replaced by a donor's (one with the same text
    fields and another block), or None when it has no block or no donor fits."""
    own = sender_block(record)
    if own is None:
        return None
    lines, labels = own
    donors = [b for b in blocks if set(b[1]) == set(labels) and b[0] != lines]
    if not donors:
        return None
    donor_lines, donor_labels = rng.choice(donors)
    all_lines = record["text"].split("\n")
    start = next(i for i in range(len(all_lines)) if all_lines[i : i + len(lines)] == lines)
    text = "\n".join(all_lines[:start] + donor_lines + all_lines[start + len(lines) :])
    if any(spans(old, text) for name, old in labels.items() if old != donor_labels[name]):
        return None  # the old name or address is printed elsewhere too: the document would hold both
    return {**record, "text": text, "fields": {**record["fields"], **donor_labels}}


# -- amounts --------------------------------------------------------------------------------------
def rewrite_amounts(record: Record, rng: random.Random) -> Record | None:
    """`record` with each amount label found in the text set to a new value (50% to 200% of it), in the
    label and wherever the text prints the same amount, with the cash tendered and change that settled
    it settling the new value; None when it has no such label or its settlement cannot be kept."""
    text, fields, changed = record["text"], dict(record["fields"]), False
    mark = number_style(text) or "."
    pattern = PATTERNS[mark]
    for name, label in string_fields(record).items():
        old = parse_decimal(label, decimal=mark)
        if kind(label) != "amount" or old is None or old <= 0:
            continue
        found = [m for m in pattern.finditer(text) if _value(m[0], mark) == old]
        number = pattern.search(label)
        if not found or number is None:
            continue
        places = min(len(m[0].rsplit(mark, 1)[1]) for m in [*found, number])
        new = (old * Decimal(rng.uniform(0.5, 2.0))).quantize(Decimal(1).scaleb(-places))
        if new <= 0 or new == old:
            continue
        paid = settlement(_points(text, mark))
        for m in reversed(found):
            text = text[: m.start()] + _format_amount(new, m[0], mark) + text[m.end() :]
        if paid is not None and abs(paid.paid - old) <= ROUNDING:
            text = _settle(text, new + paid.paid - old, mark)
            if text is None:
                return None
        fields[name] = label[: number.start()] + _format_amount(new, number[0], mark) + label[number.end() :]
        changed = True
    return {**record, "text": text, "fields": fields} if changed else None


def _value(printed: str, mark: str) -> Decimal:
    group = "," if mark == "." else "."
    return Decimal(printed.replace(group, "").replace(mark, "."))


def _points(text: str, mark: str) -> str:
    """`text` with its amounts written with a decimal point (line by line as it was), for `settlement`."""
    if mark == ".":
        return text
    return COMMA_AMOUNT.sub(lambda m: str(_value(m[0], mark)), text)


def _settle(text: str, paid: Decimal, mark: str) -> str | None:
    """`text` with its last tendered and change lines rewritten to settle `paid`: the same cash and the
    change it leaves, or the next multiple of 10 when `paid` exceeds the cash; None when they cannot be
    rewritten in place."""
    pair = settlement(_points(text, mark))
    if pair is None:
        return None
    if pair.paid == paid:
        return text
    tendered = pair.tendered if pair.tendered >= paid else (paid / 10).to_integral_value(ROUND_CEILING) * 10
    lines = text.split("\n")
    for at, value in ((pair.tendered_line, tendered), (pair.change_line, tendered - paid)):
        numbers = list(PATTERNS[mark].finditer(lines[at]))
        if not numbers:
            return None
        m = numbers[-1]
        lines[at] = lines[at][: m.start()] + _format_amount(value, m[0], mark) + lines[at][m.end() :]
    text = "\n".join(lines)
    after = settlement(_points(text, mark))
    return text if after is not None and after.paid == paid else None


def _format_amount(value: Decimal, like: str, mark: str) -> str:
    """`value` printed as `like` is: its decimals, thousands grouped when `like` groups them, and its
    decimal mark."""
    places = len(like.rsplit(mark, 1)[1])
    group = "," if mark == "." else "."
    printed = f"{value:{',' if group in like else ''}.{places}f}"
    return printed if mark == "." else printed.translate(str.maketrans(",.", ".,"))


# -- dates ----------------------------------------------------------------------------------------
def rewrite_dates(record: Record, rng: random.Random) -> Record | None:
    """`record` with each date label found in the text moved by up to a year, written in the label's own
    format in the label and the text; None when it has no such label."""
    text, fields, changed = record["text"], dict(record["fields"]), False
    for name, label in string_fields(record).items():
        old = parse_date(label)
        pattern = date_format(label, old) if old is not None and kind(label) == "date" else None
        if old is None or pattern is None or not spans(label, text):
            continue
        new_date = old + dt.timedelta(days=rng.choice([-1, 1]) * rng.randint(1, 365))
        new = _case_like(new_date.strftime(pattern), label)
        if parse_date(new) != new_date:
            continue
        for start, end in reversed(spans(label, text)):
            text = text[:start] + new + text[end:]
        fields[name], changed = new, True
    return {**record, "text": text, "fields": fields} if changed else None


def date_format(label: str, date: dt.date) -> str | None:
    """The strftime pattern `label` is written in (case aside), or None when none of DATE_FORMATS."""
    return next((p for p in DATE_FORMATS if date.strftime(p).casefold() == label.casefold()), None)


def _case_like(text: str, like: str) -> str:
    return text.upper() if like.isupper() else text.lower() if like.islower() else text


# -- spacing --------------------------------------------------------------------------------------
def _held_lines(record: Record) -> set[int]:
    """The lines (from 0) that hold some label value."""
    text = record["text"]
    return {
        line
        for value in string_fields(record).values()
        for start, end in spans(value, text)
        for line in range(_line_of(text, start), _line_of(text, end) + 1)
    }


def add_spacing(record: Record, rng: random.Random) -> Record | None:
    """`record` with one more space between two words of a line that holds no label value; None when
    every line with two words holds one."""
    text = record["text"]
    held = _held_lines(record)
    lines = text.split("\n")
    gaps = {i: [m.start() for m in re.finditer(r"(?<=\S) (?=\S)", line)] for i, line in enumerate(lines)}
    free = [i for i in gaps if gaps[i] and i not in held]
    if not free:
        return None
    i = rng.choice(free)
    at = rng.choice(gaps[i])
    lines[i] = lines[i][:at] + " " + lines[i][at:]
    return {**record, "text": "\n".join(lines)}


# -- line order -----------------------------------------------------------------------------------
def swap_lines(record: Record, rng: random.Random) -> Record | None:
    """`record` with two neighbouring, different, non-blank lines below the sender block swapped, where
    neither holds a label value or borders a line that does; None when no such pair exists."""
    lines = record["text"].split("\n")
    near = {n for line in _held_lines(record) for n in (line - 1, line, line + 1)}
    pairs = [
        i
        for i in range(HEAD_LINES, len(lines) - 1)
        if not {i, i + 1} & near and lines[i].strip() and lines[i + 1].strip() and lines[i] != lines[i + 1]
    ]
    if not pairs:
        return None
    i = rng.choice(pairs)
    lines[i], lines[i + 1] = lines[i + 1], lines[i]
    return {**record, "text": "\n".join(lines)}
