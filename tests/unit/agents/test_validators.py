"""The record validators (agents/validators.py): each check passes a consistent record and fails a broken
one with the right code, field path and numbers; the IBAN, VAT and currency checks on tables of values
(how amounts, dates and absent values are read: tests/unit/values/test_values.py)."""

from __future__ import annotations

import copy
import dataclasses
from datetime import date

import pytest

from agents.schemas import DOC_TYPES
from agents.validators import CHECKS, Issue, currency_valid, iban_valid, validate, vat_id_valid
from backend.errors import InvalidRequest

TODAY = date(2024, 6, 1)

INVOICE = {
    "invoice_number": "INV-2024-017",
    "invoice_date": "15/03/2024",
    "due_date": "14/04/2024",
    "vendor": {
        "name": "Acme GmbH",
        "address": "Hauptstr. 1, Berlin",
        "vat_id": "DE123456789",
        "iban": "DE89 3704 0044 0532 0130 00",
    },
    "customer": {
        "name": "Widget Ltd",
        "address": "1 High St, London",
        "vat_id": "GB123456789",
        "iban": "GB82WEST12345698765432",
    },
    "currency": "EUR",
    "line_items": [
        {"description": "Consulting", "quantity": 10, "unit_price": 100.0, "amount": 1000.0},
        {"description": "Travel", "quantity": 1, "unit_price": 250.0, "amount": 250.0},
    ],
    "subtotal": 1250.0,
    "tax": 237.5,
    "total": 1487.5,
}
RECEIPT = {
    "company": "BOOK TA .K (TAIPING) SDN BHD",
    "date": "25/12/2018",
    "address": "NO.8, JALAN LAXAMANA",
    "total": "RM 9.00",
}
STATEMENT = {
    "bank_name": "Deutsche Bank",
    "account_holder": "Acme GmbH",
    "iban": "DE89370400440532013000",
    "currency": "EUR",
    "period_start": "01.05.2024",
    "period_end": "31.05.2024",
    "opening_balance": 1000.0,
    "closing_balance": 1350.0,
    "transactions": [
        {"date": "02.05.2024", "description": "Salary", "amount": 500.0, "balance": 1500.0},
        {"date": "10.05.2024", "description": "Rent", "amount": -200.0, "balance": 1300.0},
        {"date": "20.05.2024", "description": "Refund", "amount": 50.0, "balance": 1350.0},
    ],
}
KYC = {
    "full_name": "Jane Doe",
    "date_of_birth": "14/07/1985",
    "nationality": "German",
    "id_number": "C01X00T47",
    "address": "Hauptstr. 1, Berlin",
    "email": "jane.doe@example.com",
    "employer": "Acme GmbH",
    "annual_income": 52000.0,
    "loan_amount": 15000.0,
    "loan_purpose": "car",
    "iban": "FR1420041010050500013M02606",
}
BASE = {"invoice": INVOICE, "receipt": RECEIPT, "bank_statement": STATEMENT, "kyc": KYC}


def changed(doc_type: str, **changes) -> dict:
    """A copy of the consistent record of `doc_type` with changes; keys are paths: vendor__iban,
    line_items__1__amount (a double underscore steps into an object or a list)."""
    record = copy.deepcopy(BASE[doc_type])
    for path, value in changes.items():
        *parents, last = [int(p) if p.isdigit() else p for p in path.split("__")]
        target = record
        for part in parents:
            target = target[part]
        target[last] = value
    return record


def only_issue(doc_type: str, **changes) -> Issue:
    issues = validate(doc_type, changed(doc_type, **changes), today=TODAY)
    assert len(issues) == 1, issues
    return issues[0]


def assert_issue(issue: Issue, code: str, field: str, *numbers: str, severity: str = "error") -> None:
    assert (issue.code, issue.field, issue.severity) == (code, field, severity), issue
    for number in numbers:
        assert number in issue.message, (number, issue.message)


@pytest.mark.parametrize("doc_type", sorted(BASE))
def test_consistent_records_have_no_issues(doc_type):
    assert validate(doc_type, BASE[doc_type], today=TODAY) == []


def test_every_document_type_has_a_check():
    assert set(CHECKS) == set(DOC_TYPES)


def test_unknown_doc_type_names_the_known_ones():
    with pytest.raises(InvalidRequest, match="bank_statement.*invoice.*kyc.*receipt"):
        validate("passport", {})


def test_a_record_that_is_not_an_object_is_one_issue():
    [issue] = validate("invoice", ["not", "a", "dict"], today=TODAY)
    assert_issue(issue, "invalid_type", "", "list")


def test_issue_is_frozen_and_serialises():
    issue = Issue("missing", "total", "total is missing")
    assert issue.as_dict() == {"code": "missing", "field": "total", "message": "total is missing", "severity": "error"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        issue.code = "other"


# --- invoice ------------------------------------------------------------------------------------------


def test_line_items_must_sum_to_subtotal():
    issue = only_issue("invoice", line_items__1__unit_price=200.0, line_items__1__amount=200.0)
    assert_issue(issue, "subtotal_mismatch", "line_items", "1200.00", "1250.00", "50.00")
    assert issue.message == "line items sum to 1200.00 but subtotal is 1250.00 (difference 50.00)"


@pytest.mark.parametrize("offset,issues", [(0.02, 0), (-0.02, 0), (0.03, 1)])
def test_subtotal_tolerance_grows_with_the_number_of_lines(offset, issues):
    # two lines: max(0.01 * 2, 0.02) = 0.02; the total follows the subtotal so only the sum is off
    record = changed("invoice", subtotal=1250.0 + offset, total=1487.5 + offset)
    assert [i.code for i in validate("invoice", record, today=TODAY)] == ["subtotal_mismatch"] * issues


def test_line_quantity_times_price_must_be_the_amount():
    issue = only_issue("invoice", line_items__0__unit_price=110.0)
    assert_issue(issue, "line_amount_mismatch", "line_items[0].amount", "1100.00", "1000.00", "100.00")
    assert validate("invoice", changed("invoice", line_items__0__unit_price=None), today=TODAY) == []


def test_subtotal_plus_tax_must_be_the_total():
    issue = only_issue("invoice", total=1500.0)
    assert_issue(issue, "total_mismatch", "total", "1250.00", "237.50", "1487.50", "1500.00", "12.50")
    assert validate("invoice", changed("invoice", total=1487.52), today=TODAY) == []


def test_without_subtotal_line_items_plus_tax_must_be_the_total():
    assert validate("invoice", changed("invoice", subtotal=None), today=TODAY) == []
    issue = only_issue("invoice", subtotal=None, total=1500.0)
    assert_issue(issue, "total_mismatch", "total", "line items 1250.00", "237.50", "1500.00", "12.50")


def test_missing_tax_counts_as_zero():
    assert validate("invoice", changed("invoice", tax=None, total=1250.0), today=TODAY) == []
    assert_issue(only_issue("invoice", tax=None), "total_mismatch", "total", "no tax", "1487.50", "237.50")


def test_due_date_not_before_invoice_date():
    issue = only_issue("invoice", due_date="01/03/2024")
    assert_issue(issue, "due_before_issue", "due_date", "2024-03-01", "2024-03-15")


@pytest.mark.parametrize(
    "written,code",
    [
        ("15/03/1985", "implausible_date"),
        ("03/06/2025", "implausible_date"),
        ("31/02/2024", "invalid_date"),
        ("soon", "invalid_date"),
    ],
)
def test_invoice_date_must_be_plausible(written, code):
    issue = only_issue("invoice", invoice_date=written, due_date=None)
    assert_issue(issue, code, "invoice_date", written)


def test_invoice_date_up_to_a_year_ahead_is_plausible():
    assert validate("invoice", changed("invoice", invoice_date="02/06/2025", due_date=None), today=TODAY) == []


def test_currency_must_be_iso_4217():
    assert_issue(only_issue("invoice", currency="EUX"), "invalid_currency", "currency", "EUX")
    assert validate("invoice", changed("invoice", currency="MYR"), today=TODAY) == []


def test_party_ibans_must_be_valid():
    issue = only_issue("invoice", vendor__iban="DE89 3704 0044 0532 0130 01")
    assert_issue(issue, "invalid_iban", "vendor.iban", "DE89 3704 0044 0532 0130 01")
    assert_issue(only_issue("invoice", customer__iban="GB82WEST1234569876543"), "invalid_iban", "customer.iban")


def test_vat_ids_in_a_known_format_or_warned():
    assert_issue(only_issue("invoice", vendor__vat_id="DE12345678"), "invalid_vat_id", "vendor.vat_id", "DE12345678")
    issue = only_issue("invoice", customer__vat_id="US12-3456789")
    assert_issue(issue, "unrecognised_vat_id", "customer.vat_id", "US12-3456789", severity="warning")
    assert validate("invoice", changed("invoice", vendor__vat_id="000123456789"), today=TODAY) == []  # MY SST/GST


@pytest.mark.parametrize("field", ["invoice_number", "total"])
def test_core_invoice_fields_are_required(field):
    record = changed("invoice", **{field: None}, subtotal=None if field == "total" else 1250.0)
    [issue] = validate("invoice", record, today=TODAY)
    assert_issue(issue, "missing", field)


def test_negative_total_is_an_error():
    issues = validate("invoice", changed("invoice", total=-1487.5), today=TODAY)
    assert_issue(next(i for i in issues if i.code == "negative_amount"), "negative_amount", "total", "-1487.50")


def test_invoice_amounts_may_be_printed_strings():
    record = changed("invoice", subtotal="1,250.00", tax="237,50", total="EUR 1.487,50")
    assert validate("invoice", record, today=TODAY) == []
    assert_issue(only_issue("invoice", tax="twelve"), "invalid_amount", "tax", "twelve")


def test_wrongly_typed_parts_are_reported_not_raised():
    issues = validate("invoice", changed("invoice", vendor="Acme GmbH", line_items="two lines"), today=TODAY)
    assert [(i.code, i.field) for i in issues] == [("invalid_type", "vendor"), ("invalid_type", "line_items")]


# --- receipt ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("total", ["RM 9.00", "9,00", "$1,234.50", "1 234,50", 9, "9.00 MYR"])
def test_receipt_totals_as_printed(total):
    assert validate("receipt", changed("receipt", total=total), today=TODAY) == []


@pytest.mark.parametrize(
    "changes,code,field",
    [
        ({"total": "nine ringgit"}, "invalid_amount", "total"),
        ({"total": None}, "missing", "total"),
        ({"date": "32/13/2018"}, "invalid_date", "date"),
        ({"date": "25/12/1980"}, "implausible_date", "date"),
        ({"date": ""}, "missing", "date"),
        ({"company": " "}, "missing", "company"),
    ],
)
def test_receipt_checks(changes, code, field):
    issue = only_issue("receipt", **changes)
    assert_issue(issue, code, field, *(str(v) for v in changes.values() if v and v.strip()))


# --- bank statement -----------------------------------------------------------------------------------


def test_transactions_must_move_opening_to_closing_balance():
    issue = only_issue("bank_statement", closing_balance=1400.0, transactions__2__balance=None)
    assert_issue(issue, "balance_mismatch", "transactions", "1000.00", "+350.00", "1350.00", "1400.00", "50.00")


def test_no_transactions_means_unchanged_balance():
    issue = only_issue("bank_statement", transactions=[])
    assert_issue(issue, "balance_mismatch", "transactions", "1000.00", "1350.00", "350.00")


def test_running_balances_break_reported_once_at_the_first_row():
    issue = only_issue("bank_statement", transactions__1__balance=1250.0)
    assert_issue(
        issue,
        "running_balance_mismatch",
        "transactions[1].balance",
        "1500.00",
        "-200.00",
        "1300.00",
        "1250.00",
        "50.00",
    )


def test_running_balances_carry_over_rows_without_a_printed_balance():
    record = changed("bank_statement", transactions__0__balance=None, transactions__1__balance=None)
    assert validate("bank_statement", record, today=TODAY) == []
    issue = only_issue("bank_statement", transactions__0__balance=None, transactions__1__balance=1250.0)
    assert_issue(issue, "running_balance_mismatch", "transactions[1].balance", "1500.00", "1300.00", "1250.00")


def test_running_balances_without_opening_start_at_the_first_printed_one():
    missing = validate("bank_statement", changed("bank_statement", opening_balance=None), today=TODAY)
    assert [(i.code, i.field) for i in missing] == [("missing", "opening_balance")]  # required, but checks go on
    issues = validate(
        "bank_statement", changed("bank_statement", opening_balance=None, transactions__2__balance=1360.0), today=TODAY
    )
    assert [i.code for i in issues] == ["missing", "running_balance_mismatch"]
    assert_issue(issues[1], "running_balance_mismatch", "transactions[2].balance", "1300.00", "+50.00", "1360.00")


def test_statement_iban_currency_and_period():
    assert_issue(only_issue("bank_statement", iban="DE89370400440532013001"), "invalid_iban", "iban")
    assert_issue(only_issue("bank_statement", currency="EURO"), "invalid_currency", "currency", "EURO")
    issues = validate(
        "bank_statement", changed("bank_statement", period_start="31.05.2024", period_end="01.05.2024"), today=TODAY
    )
    assert_issue(issues[0], "period_reversed", "period_end", "2024-05-01", "2024-05-31")


def test_transaction_outside_the_period_is_a_warning():
    issue = only_issue("bank_statement", transactions__2__date="02.06.2024")
    assert_issue(
        issue,
        "date_outside_period",
        "transactions[2].date",
        "2024-06-02",
        "2024-05-01",
        "2024-05-31",
        severity="warning",
    )


def test_transaction_without_amount_is_missing():
    issue = only_issue("bank_statement", transactions__1__amount=None, transactions__2__balance=None)
    assert_issue(issue, "missing", "transactions[1].amount")


# --- KYC ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("born,age", [("02/06/2006", 17), ("01/01/2010", 14), ("01/01/1900", 124), ("01/01/2030", -6)])
def test_applicant_must_be_18_to_120(born, age):
    issue = only_issue("kyc", date_of_birth=born)
    assert_issue(issue, "age_out_of_range", "date_of_birth", str(age), "2024-06-01")


def test_applicant_turning_18_today_is_adult():
    assert validate("kyc", changed("kyc", date_of_birth="2006-06-01"), today=TODAY) == []


@pytest.mark.parametrize("email", ["jane.doe@example", "jane..doe@example.com", "jane doe@example.com", "@x.com"])
def test_email_format(email):
    assert_issue(only_issue("kyc", email=email), "invalid_email", "email", email)


@pytest.mark.parametrize("field", ["loan_amount", "annual_income"])
def test_amounts_not_negative(field):
    assert_issue(only_issue("kyc", **{field: -100.0}), "negative_amount", field, "-100.00")


@pytest.mark.parametrize("field", ["full_name", "id_number"])
def test_kyc_required_fields(field):
    assert_issue(only_issue("kyc", **{field: None}), "missing", field)


def test_kyc_iban_checked_only_when_present():
    assert validate("kyc", changed("kyc", iban=None), today=TODAY) == []
    assert_issue(only_issue("kyc", iban="FR1420041010050500013M02607"), "invalid_iban", "iban")


# --- helpers ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "iban",
    [
        "DE89370400440532013000",
        "GB82WEST12345698765432",
        "FR1420041010050500013M02606",
        "DE89 3704 0044 0532 0130 00",
        "gb82 west 1234 5698 7654 32",
        "NO9386011117947",
        "CH9300762011623852957",
        "NL91ABNA0417164300",
        "BE68539007547034",
    ],
)
def test_valid_ibans(iban):
    assert iban_valid(iban)


@pytest.mark.parametrize(
    "iban",
    [
        "DE89370400440532013001",
        "GB82WEST12345698765433",
        "FR1420041010050500013M02607",
        "DE8937040044053201300",
        "DE00370400440532013000",
        "XX",
        "",
        None,
        12345,
    ],
)
def test_invalid_ibans(iban):
    assert not iban_valid(iban)


def test_an_iban_follows_its_countrys_layout_where_the_registry_has_one():
    assert not iban_valid("GB25123412345698765432")  # right length and checksum, but GB banks are 4 letters
    assert iban_valid("DZ580002100001113000000570")  # outside the registry: length 15-34 and the checksum
    assert iban_valid("DE89-3704-0044-0532-0130-00") and not iban_valid("DE89!370400440532013000")


@pytest.mark.parametrize(
    "vat",
    [
        "DE123456789",
        "FR40303265045",
        "FRK7399859412",
        "NL123456789B01",
        "GB123456789",
        "GB123456789012",
        "GBGD001",
        "ATU12345678",
        "BE0123456789",
        "ESA12345674",
        "ESX1234567L",
        "IT12345678901",
        "EL123456789",
        "PL1234567890",
        "SE123456789001",
        "IE6388047V",
        "DE 123 456 789",
        "CHE-123.456.789 MWST",
        "NO123456789MVA",
        "000123456789",
    ],
)
def test_valid_vat_ids(vat):
    assert vat_id_valid(vat)


@pytest.mark.parametrize(
    "vat",
    [
        "DE12345678",
        "DE1234567890",
        "FR1234567890",
        "NL123456789",
        "ATU1234567",
        "BE2123456789",
        "IT1234567890",
        "SE123456789012",
        "US12-3456789",
        "12345678901",
        "",
        None,
    ],
)
def test_invalid_vat_ids(vat):
    assert not vat_id_valid(vat)


@pytest.mark.parametrize(
    "code,valid",
    [
        ("EUR", True),
        ("MYR", True),
        ("usd", True),
        (" GBP ", True),
        ("CHF", True),
        ("EUX", False),
        ("DEM", False),
        ("XXX", False),
        ("EURO", False),
        (None, False),
    ],
)
def test_currency_valid(code, valid):
    assert currency_valid(code) is valid
