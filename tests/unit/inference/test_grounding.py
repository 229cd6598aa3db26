"""Grounding of amounts and codes: whole values and whole tokens only; a cut-short value is partial."""

from __future__ import annotations

import pytest

from backend.inference.grounding import ground, locate
from backend.values import number_style, parse_amount

LOAN = "Loan amount (EUR) 25,000.00\nAnnual income 58,400.00\nIBAN AT27 2011 1830 6400 3761\n"
GERMAN = "Rechnung Nr. RE-2026-0042\nNetto 1.050,42\nGesamt 1.250,00 EUR\nZahlbar bis 02.12.2026\n"


@pytest.mark.parametrize(
    "value,match",
    [
        (25, "partial"),
        (25.0, "partial"),
        ("25", "partial"),  # the demo's cut-short loan amount
        (25000, "number"),
        (25000.0, "number"),
        ("25,000.00", "number"),
        ("25000", "number"),
        ("EUR 25,000.00", "number"),
        (58400.0, "number"),
        (58.4, "partial"),
    ],
)
def test_an_amount_is_grounded_only_by_a_printed_amount_of_the_same_value(value, match):
    found = locate(value, LOAN)
    assert found is not None and found["match"] == match
    if match == "number":
        assert parse_amount(LOAN[found["start"] : found["end"]]) in (25000.0, 58400.0)


def test_an_amount_nowhere_in_the_document_is_not_grounded():
    assert locate(12.5, LOAN) is None and locate("999.99", LOAN) is None


def test_the_documents_number_style_reads_its_amounts():
    assert number_style(GERMAN) == "," and number_style(LOAN) == "."
    assert locate(1250.0, GERMAN)["match"] == "number"  # "1.250,00"
    assert locate(1.25, GERMAN)["match"] == "partial"  # "1.250,00" read the other way is no evidence
    assert locate("1.250,00", GERMAN)["match"] == "number"
    assert locate(1050.42, GERMAN)["match"] == "number"
    assert locate(1250.0, "Total 1,250.00 USD")["match"] == "number"


@pytest.mark.parametrize("value", ["AT27 2011 1830 6400 3761", "AT272011183064003761", "at27 2011 1830 6400 3761"])
def test_an_iban_is_grounded_with_or_without_its_spaces(value):
    found = locate(value, LOAN)
    assert found is not None and found["match"] == "token"
    assert LOAN[found["start"] : found["end"]] == "AT27 2011 1830 6400 3761"


def test_a_shortened_iban_is_only_partial():
    assert locate("AT27 2011 1830", LOAN)["match"] == "partial"


@pytest.mark.parametrize(
    "value,match",
    [
        ("RE-2026-0042", "token"),
        ("2026-0042", "partial"),  # inside the longer "RE-2026-0042"
        ("RE-2026-004", "partial"),
        ("02.12.2026", "token"),
        ("02.12.20", "partial"),
        ("RE-2026-0043", None),
    ],
)
def test_invoice_numbers_and_dates_match_whole_tokens(value, match):
    found = locate(value, GERMAN)
    assert (found and found["match"]) == match


def test_a_code_at_the_end_of_a_sentence_is_whole():
    assert locate("INV-7", "Please quote INV-7.")["match"] == "token"


def test_text_still_matches_exactly_or_fuzzily():
    assert locate("annual income", LOAN)["match"] == "exact"
    assert (
        ground({"who": {"iban": "AT27 2011 1830 6400 3761", "income": 58400.0}}, LOAN)["who.income"]["match"]
        == "number"
    )
