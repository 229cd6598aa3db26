"""The one value reader (backend/values): amounts in every number style and currency, dates day-first
with the %y year pivot, absent markers; and scoring, the validators and the policy rules reading a table of
values alike."""

from __future__ import annotations

import json
import re
import unicodedata
from datetime import date, datetime
from decimal import Decimal

import pytest

from agents.policy import Context, Policy, Rule, evaluate
from agents.validators import validate
from backend.scoring.metrics import score_document
from backend.scoring.normalize import same_value
from backend.values import (
    AMOUNT,
    CURRENCY_MARKER,
    CURRENCY_SYMBOLS,
    ISO_4217,
    is_absent,
    number_style,
    parse_amount,
    parse_date,
    parse_decimal,
)

TODAY = date(2024, 6, 1)


# --- amounts ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,expected",
    [
        ("1,250.00", "1250.00"),
        ("RM 1250", "1250"),
        ("RM1,250.50", "1250.50"),
        ("$9.00", "9.00"),
        ("€ 12,50", "12.50"),
        ("1.250,00", "1250.00"),
        ("1,250", "1250"),
        ("1.250.000", "1250000"),
        ("12.5", "12.5"),
        ("-3.50", "-3.50"),
        ("USD 7", "7"),
        (12.5, "12.5"),
        (3, "3"),
    ],
)
def test_amounts_read_exactly_as_written(text, expected):
    number = parse_decimal(text)
    assert number == Decimal(expected) and number.as_tuple().exponent == Decimal(expected).as_tuple().exponent


@pytest.mark.parametrize(
    "text,expected",
    [
        ("RM 9.00", 9.0),
        ("9,00", 9.0),
        ("$1,234.50", 1234.5),
        ("1 234,50", 1234.5),
        ("1\u00a0234,50", 1234.5),
        ("1,250.00", 1250.0),
        ("1,250", 1250.0),
        ("1.250,00", 1250.0),
        ("1.250", 1.25),
        ("1.250.000", 1250000.0),
        ("1'234.50", 1234.5),
        ("1,23,456.00", 123456.0),
        ("€ 12,50", 12.5),
        ("9.00 MYR", 9.0),
        ("-3.50", -3.5),
        ("(12.50)", -12.5),
        ("12.50-", -12.5),
        ("USD 7", 7.0),
        (".50", 0.5),
        (12.5, 12.5),
        (3, 3.0),
    ],
)
def test_parse_amount(text, expected):
    assert parse_amount(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    "text",
    [
        "abc",
        "12/03/2018",
        "",
        "1.2.3a",
        "1,2,3",
        "Total 9.00",
        True,
        None,
        float("nan"),
        [9],
        "12 34",
        "No 5",
        "ab 12.50",
        "1 PC",
        "0.00 13.50",
        "11.02.18",
        "24.12.2026",
        "R000116475",
        "FR40303265045",
        "SR 12.00",
    ],
)  # receipt no., VAT id, tax code
def test_non_amounts_are_not_numbers(text):
    assert parse_amount(text) is None and parse_decimal(text) is None


@pytest.mark.parametrize(
    "text,expected",
    [
        ("RM 12.50", 12.5),
        ("€1.250,00", 1250.0),
        ("USD 3,000", 3000.0),
        ("CHF 1'250.50", 1250.5),
        ("1'250.00", 1250.0),
        ("£1,250.00", 1250.0),
        ("¥1,250", 1250.0),
        ("₹1,23,456.00", 123456.0),
        ("Rp 15.000", 15.0),
        ("Rs.500", 500.0),
        ("kr 1 250,00", 1250.0),
        ("1 250,00 zł", 1250.0),
        ("S$ 12.50", 12.5),
        ("R$ 1.250,00", 1250.0),
        ("12.50 eur", 12.5),
        ("rm 12.50", 12.5),
        ("EUR -5.00", -5.0),
        ("-RM 5.00", -5.0),
        ("Rs. 1,250.00", 1250.0),
        ("RM.50", 0.5),  # a point after an abbreviation ends it, unless only cents follow
        (": 13.50", 13.5),
        ("53200,", 53200.0),
        ("(RM): 13.50", 13.5),
    ],
)
def test_currency_markers_of_many_countries(text, expected):
    assert parse_amount(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    "text,decimal,expected",
    [
        ("1.250,00", ",", 1250.0),
        ("1.250", ",", 1250.0),
        ("1,250", ",", 1.25),
        ("1.250", ".", 1.25),
        ("1,250", ".", 1250.0),
        ("1,250.00", ",", 1250.0),  # both separators: the later one is the decimal mark, whatever the document's style
        ("1.250", None, 1.25),
        ("1,250", None, 1250.0),
        ("12,50", None, 12.5),
    ],
)
def test_a_lone_separator_follows_the_documents_number_style(text, decimal, expected):
    assert parse_amount(text, decimal=decimal) == pytest.approx(expected)


def test_the_number_style_is_the_decimal_mark_most_printed():
    assert number_style("Netto 1.050,42\nGesamt 1.250,00 EUR") == ","
    assert number_style("Subtotal 1,050.42\nTotal 1,250.00") == "."
    assert number_style("no amounts here") is None


def test_currency_markers_are_whole_words_or_symbols():
    assert {"USD", "EUR", "MYR", "CHF", "JPY", "INR"} <= ISO_4217 and all(
        re.fullmatch(r"[A-Z]{3}", c) for c in ISO_4217
    )
    assert len(ISO_4217) > 170
    assert CURRENCY_SYMBOLS == "".join(c for c in map(chr, range(0x10000)) if unicodedata.category(c) == "Sc")
    assert CURRENCY_MARKER.fullmatch("RM") and CURRENCY_MARKER.fullmatch("€") and CURRENCY_MARKER.fullmatch("usd")
    assert not CURRENCY_MARKER.search("FARM") and not CURRENCY_MARKER.search("TOTAL")  # not inside a word


def test_amounts_in_running_text_keep_their_currency_marker_out():
    text = "TOTAL RM12.50 CASH USD 3,000.00 TAX 6.00% DATE 25.12.2018 REF A12.50 CHF 1,250.50"
    assert [m.group(1) for m in AMOUNT.finditer(text)] == ["12.50", "3,000.00", "1,250.50"]


# --- dates --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,expected",
    [
        ("25/12/2018", date(2018, 12, 25)),
        ("2018-12-25", date(2018, 12, 25)),
        ("25-12-18", date(2018, 12, 25)),
        ("2018/12/25", date(2018, 12, 25)),
        ("25-12-2018", date(2018, 12, 25)),
        ("25/12/18", date(2018, 12, 25)),
        ("25.12.2018", date(2018, 12, 25)),
        ("25 Dec 2018", date(2018, 12, 25)),
        ("25 DECEMBER 2018", date(2018, 12, 25)),
        ("25-DEC-18", date(2018, 12, 25)),
        ("Dec 25, 2018", date(2018, 12, 25)),
        ("December 25, 2018", date(2018, 12, 25)),
        ("Dec 25 2018", date(2018, 12, 25)),
        ("Sept 3, 2020", date(2020, 9, 3)),
        ("25th December 2018", date(2018, 12, 25)),
        ("25 / 12 / 2018", date(2018, 12, 25)),
        ("２５/１２/２０１８", date(2018, 12, 25)),
        ("25/12/2018 8:13:39 PM", date(2018, 12, 25)),
        ("2018-12-25T10:00:00Z", date(2018, 12, 25)),
        ("2018-12-25T10:00:00.5+08:00", date(2018, 12, 25)),
        ("11.02.18 14:08", date(2018, 2, 11)),
        (date(2018, 12, 25), date(2018, 12, 25)),
        (datetime(2018, 12, 25, 10, 0), date(2018, 12, 25)),
    ],
)
def test_dates_read_across_formats(text, expected):
    assert parse_date(text) == expected


@pytest.mark.parametrize(
    "text,expected",
    [
        ("02/03/2018", date(2018, 3, 2)),  # day-first by default
        ("12/11/2018", date(2018, 11, 12)),
        ("12/25/2018", date(2018, 12, 25)),  # month-first only when day-first is impossible
        ("13/12/2018", date(2018, 12, 13)),
    ],
)
def test_numeric_dates_are_day_first_unless_impossible(text, expected):
    assert parse_date(text) == expected


@pytest.mark.parametrize(
    "text,expected",
    [
        ("01/01/68", date(2068, 1, 1)),
        ("31/12/68", date(2068, 12, 31)),
        ("01/01/69", date(1969, 1, 1)),
        ("01/01/75", date(1975, 1, 1)),
        ("01/01/99", date(1999, 1, 1)),
        ("01/01/00", date(2000, 1, 1)),
        ("25-DEC-18", date(2018, 12, 25)),
        ("25 Dec 99", date(1999, 12, 25)),
    ],
)
def test_two_digit_years_pivot_as_strptime_does(text, expected):
    assert parse_date(text) == expected
    if "/" in text:  # the same rule as Python's %y
        assert datetime.strptime(text, "%d/%m/%y").date() == expected


@pytest.mark.parametrize(
    "text",
    [
        "31/02/2018",
        "13/13/2018",
        "hello",
        "2018",
        "25/12-2018",
        "Mon 25 2018",
        None,
        20181225,
        "25 Juni 2018",
        "11-04-18 17:42 SH01 ZJ86",
        "30/05/18 10:45 - 30/05/18 11:01",
    ],
)
def test_impossible_or_unknown_dates_are_not_dates(text):
    assert parse_date(text) is None


# --- absent -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, "", "  ", "null", "NULL", "None", "n/a", "N/A", "na", "-", " - ", []])
def test_absent_values(value):
    assert is_absent(value)


@pytest.mark.parametrize("value", ["0", 0, 0.0, "0.00", "--", "nil", "NAME", {}, [None], False])
def test_present_values(value):
    assert not is_absent(value)


# --- scoring and the validators read alike ------------------------------------------------------------

AMOUNTS = [  # (as written, the amount, or None when it is no amount)
    ("RM 12.50", 12.5),
    ("€1.250,00", 1250.0),
    ("USD 3,000", 3000.0),
    ("CHF 1'250.50", 1250.5),
    ("1,250", 1250.0),
    ("1.250", 1.25),
    ("12,50", 12.5),
    ("(12.50)", -12.5),
    ("9.00 MYR", 9.0),
    ("1,23,456.00", 123456.0),
    ("1,2,3", None),
    ("Total 9.00", None),
    ("12 34", None),
]
DATES = [  # (as written, the date, or None when it is no date)
    ("25/12/2018", date(2018, 12, 25)),
    ("12/25/2018", date(2018, 12, 25)),
    ("02/03/2018", date(2018, 3, 2)),
    ("25-12-18", date(2018, 12, 25)),
    ("01/01/99", date(1999, 1, 1)),
    ("01/01/68", date(2068, 1, 1)),
    ("25 Dec 2018", date(2018, 12, 25)),
    ("2018-12-25 10:00", date(2018, 12, 25)),
    ("31/02/2018", None),
    ("25/12-2018", None),
]
MARKERS = ["null", "none", "n/a", "na", "-", "", "  ", "0", "nil"]


def _policy_reads(total, limit: float) -> list[str]:
    """What a rule `total above limit` says of a record with this total: "fired", or why it could not run."""
    policy = Policy((Rule("high", "amount_above", "review", params={"field": "total", "limit": limit}),))
    return [
        f["reason"] if f.get("unevaluable") else "fired"
        for f in evaluate(policy, {"total": total}, Context("d", "invoice", {}))
    ]


def _statement(opening, closing):
    return {"iban": None, "currency": None, "opening_balance": opening, "closing_balance": closing, "transactions": []}


@pytest.mark.parametrize("text,amount", AMOUNTS)
def test_scoring_and_validators_read_amounts_alike(text, amount):
    issues = {
        i.code for i in validate("bank_statement", _statement(text, amount if amount is not None else 0.0), today=TODAY)
    }
    if amount is None:
        assert not same_value(text, "0") and parse_decimal(text) is None
        assert "invalid_amount" in issues
        assert _policy_reads(text, 0.0) == [f"rule high could not be evaluated: total {text!r} is not an amount"]
    else:
        assert same_value(text, repr(amount)) and same_value(text, f"{amount:,.2f}")
        assert issues == set()  # read as `amount`: opening + no transactions = closing
        assert _policy_reads(text, amount - 0.001) == ["fired"] and _policy_reads(text, amount + 0.001) == []


@pytest.mark.parametrize("text,day", DATES)
def test_scoring_and_validators_read_dates_alike(text, day):
    def codes(start, end):
        record = {**_statement(1.0, 1.0), "period_start": start, "period_end": end}
        return {i.code for i in validate("bank_statement", record, today=TODAY)} - {"implausible_date"}

    if day is None:
        assert parse_date(text) is None and not same_value(text, "2018-12-25")
        assert "invalid_date" in codes(text, None)
    else:
        assert same_value(text, day.isoformat()) and same_value(text, day.strftime("%d %b %Y"))
        # neither before nor after the day it names
        assert codes(text, day.isoformat()) == set() and codes(day.isoformat(), text) == set()


@pytest.mark.parametrize("value", MARKERS)
def test_scoring_and_validators_agree_on_absent(value):
    scored = score_document(0, json.dumps({"company": value}), {"company": None}, ["company"]).fields[0].outcome
    record = {"company": value, "date": "25/12/2018", "total": "9.00"}
    missing = [i.code for i in validate("receipt", record, today=TODAY)] == ["missing"]
    unevaluable = _policy_reads(value, 1e12) == ["rule high could not be evaluated: total is missing"]
    assert (scored == "absent") == missing == unevaluable == is_absent(value)
