"""Consistency checks on an extracted record: does what the model read add up?

`validate(doc_type, record)` takes the plain dict the model answered (json.loads, not the pydantic
model): any value may be missing, numbers may arrive as printed strings ("1,250.00", "RM 9.00"), and a
check must say what is wrong, where, and with which values, not refuse the record. Field paths are
dotted with 0-based list indices: "vendor.iban", "line_items[2].amount", "transactions".

Tolerances (amounts are parsed to float, then compared):
- invoice line: quantity x unit price vs amount within 0.01 (one cent of rounding);
- line items vs subtotal within max(0.01 x number of lines, 0.02): each line may carry its own cent of
  rounding; the same tolerance for line items + tax vs total when no subtotal is given;
- subtotal + tax vs total within 0.02 (tax and total are each rounded once); a missing tax counts 0;
- bank statement: opening balance + transactions vs closing balance, and each printed running balance
  against the one before it, within 0.01;
- dates are plausible from 1990-01-01 to today + 366 days (an invoice may be dated ahead, not years);
  a KYC applicant is 18 to 120 years old on `today`.
Amounts, dates and absent values ("null", "n/a", "-", ...) are read by `backend.values`, under the same
rules as extraction and scoring (numeric dates day-first, two-digit years 69-99 -> 19xx, else 20xx).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import asdict, dataclass
from typing import Any

from stdnum import iban as stdnum_iban
from stdnum.exceptions import InvalidComponent, ValidationError

from backend.errors import InvalidRequest
from backend.values import ISO_4217, is_absent, parse_amount, parse_date

EARLIEST = dt.date(1990, 1, 1)
FUTURE_DAYS = 366
ADULT_AGE, MAX_AGE = 18, 120

# VAT number after its country prefix (the EU VIES formats, GR accepted beside EL; then GB/XI, CH, NO).
# Formats only: check digits are not verified (python-stdnum's VAT modules would refuse numbers that are
# well formed but whose check digit is wrong, which a document may still print).
_UK_VAT = r"\d{9}(?:\d{3})?|GD\d{3}|HA\d{3}"
VAT_FORMATS = {
    "AT": r"U\d{8}",
    "BE": r"[01]\d{9}",
    "BG": r"\d{9,10}",
    "CY": r"\d{8}[A-Z]",
    "CZ": r"\d{8,10}",
    "DE": r"\d{9}",
    "DK": r"\d{8}",
    "EE": r"\d{9}",
    "EL": r"\d{9}",
    "GR": r"\d{9}",
    "ES": r"[0-9A-Z]\d{7}[0-9A-Z]",
    "FI": r"\d{8}",
    "FR": r"[0-9A-Z]{2}\d{9}",
    "HR": r"\d{11}",
    "HU": r"\d{8}",
    "IE": r"\d{7}[A-W][A-IW]?|\d[A-Z+*]\d{5}[A-W]",
    "IT": r"\d{11}",
    "LT": r"\d{9}|\d{12}",
    "LU": r"\d{8}",
    "LV": r"\d{11}",
    "MT": r"\d{8}",
    "NL": r"\d{9}B\d{2}",
    "PL": r"\d{10}",
    "PT": r"\d{9}",
    "RO": r"\d{2,10}",
    "SE": r"\d{10}01",
    "SI": r"\d{8}",
    "SK": r"\d{10}",
    "GB": _UK_VAT,
    "XI": _UK_VAT,
    "CH": r"E\d{9}(?:MWST|TVA|IVA|VAT)?",
    "NO": r"\d{9}(?:MVA)?",
}

_EMAIL_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_EMAIL = re.compile(rf"{_EMAIL_ATOM}(?:\.{_EMAIL_ATOM})*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{{2,}}")


@dataclass(frozen=True)
class Issue:
    """One problem found in a record; `severity` is "error" or "warning"."""

    code: str
    field: str
    message: str
    severity: str = "error"

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


# --- public helpers ---------------------------------------------------------------------------------


def iban_valid(s: Any) -> bool:
    """True for a well-formed IBAN (spaces allowed): the ISO 7064 mod-97 check and, for a country in the
    IBAN registry, its length and account-number layout (python-stdnum's registry); a country outside it
    only needs 15-34 characters."""
    if not isinstance(s, str):
        return False
    try:
        stdnum_iban.validate(s, check_country=False)  # no bank-code tables: banks open and merge
    except InvalidComponent:  # checksum right, country not in the registry
        return re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}", stdnum_iban.compact(s)) is not None
    except ValidationError:
        return False
    return True


def vat_id_valid(s: Any) -> bool:
    """True for a VAT number in its country's format (EU, GB/XI, CH, NO; spaces, dots and hyphens
    ignored) or a Malaysian SST/GST number written as 12 plain digits."""
    if not isinstance(s, str):
        return False
    vat = re.sub(r"[\s.\-]", "", s).upper()
    if re.fullmatch(r"\d{12}", vat):
        return True
    pattern = VAT_FORMATS.get(vat[:2])
    return pattern is not None and re.fullmatch(pattern, vat[2:]) is not None


def currency_valid(code: Any) -> bool:
    """True for an active ISO 4217 currency code ("EUR", "MYR"); surrounding spaces and case ignored."""
    return isinstance(code, str) and code.strip().upper() in ISO_4217


def _off(a: float, b: float, tolerance: float) -> bool:
    return abs(a - b) > tolerance + 1e-9


# --- the checks -------------------------------------------------------------------------------------


class _Report:
    """Collects issues while reading fields out of a record."""

    def __init__(self, today: dt.date) -> None:
        self.today = today
        self.issues: list[Issue] = []

    def add(self, code: str, field: str, message: str, severity: str = "error") -> None:
        self.issues.append(Issue(code, field, message, severity))

    def present(self, rec: dict, key: str, path: str) -> bool:
        if is_absent(rec.get(key)):
            self.add("missing", path, f"{path} is missing")
            return False
        return True

    def mapping(self, value: Any, path: str) -> dict:
        if value is not None and not isinstance(value, dict):
            self.add("invalid_type", path, f"{path} should be an object, got {type(value).__name__} {value!r}")
        return value if isinstance(value, dict) else {}

    def items(self, rec: dict, key: str) -> list[dict]:
        value = rec.get(key)
        if value is not None and not isinstance(value, list):
            self.add("invalid_type", key, f"{key} should be a list, got {type(value).__name__}")
        return [self.mapping(v, f"{key}[{i}]") for i, v in enumerate(value)] if isinstance(value, list) else []

    def amount(self, rec: dict, key: str, path: str, *, required: bool = False) -> float | None:
        if required and not self.present(rec, key, path) or is_absent(rec.get(key)):
            return None
        value = parse_amount(rec[key])
        if value is None:
            self.add("invalid_amount", path, f"{path} {rec[key]!r} is not an amount")
        return value

    def date(
        self, rec: dict, key: str, path: str, *, required: bool = False, severity: str = "error", plausible: bool = True
    ) -> dt.date | None:
        if required and not self.present(rec, key, path) or is_absent(rec.get(key)):
            return None
        day = parse_date(rec[key])
        latest = self.today + dt.timedelta(days=FUTURE_DAYS)
        if day is None:
            self.add("invalid_date", path, f"{path} {rec[key]!r} is not a date", severity)
        elif plausible and not EARLIEST <= day <= latest:
            self.add(
                "implausible_date",
                path,
                f"{path} {rec[key]!r} reads as {day}, outside {EARLIEST} to {latest}",
                severity,
            )
        return day

    def iban(self, rec: dict, key: str, path: str) -> None:
        if not is_absent(rec.get(key)) and not iban_valid(rec[key]):
            self.add("invalid_iban", path, f"{path} {rec[key]!r} is not a valid IBAN (length, layout or mod-97 check)")

    def vat_id(self, rec: dict, key: str, path: str) -> None:
        value = rec.get(key)
        if is_absent(value) or vat_id_valid(value):
            return
        if re.sub(r"[\s.\-]", "", str(value)).upper()[:2] in VAT_FORMATS:
            self.add("invalid_vat_id", path, f"{path} {value!r} does not match its country's VAT format")
        else:
            self.add("unrecognised_vat_id", path, f"{path} {value!r} has no known VAT format", "warning")

    def currency(self, rec: dict, key: str, path: str) -> None:
        if not is_absent(rec.get(key)) and not currency_valid(rec[key]):
            self.add("invalid_currency", path, f"{path} {rec[key]!r} is not an ISO 4217 currency code")

    def non_negative(self, rec: dict, key: str, path: str, *, required: bool = False) -> float | None:
        value = self.amount(rec, key, path, required=required)
        if value is not None and value < 0:
            self.add("negative_amount", path, f"{path} is negative: {value:.2f}")
        return value


def _check_invoice(r: _Report, rec: dict) -> None:
    r.present(rec, "invoice_number", "invoice_number")
    issued, due = r.date(rec, "invoice_date", "invoice_date"), r.date(rec, "due_date", "due_date")
    if issued and due and due < issued:
        r.add("due_before_issue", "due_date", f"due_date {due} is before invoice_date {issued}")
    r.currency(rec, "currency", "currency")
    for role in ("vendor", "customer"):
        party = r.mapping(rec.get(role), role)
        r.iban(party, "iban", f"{role}.iban")
        r.vat_id(party, "vat_id", f"{role}.vat_id")
    lines = [_check_line(r, item, f"line_items[{i}]") for i, item in enumerate(r.items(rec, "line_items"))]
    subtotal, tax = r.amount(rec, "subtotal", "subtotal"), r.amount(rec, "tax", "tax")
    total = r.non_negative(rec, "total", "total", required=True)
    items_sum = sum(line for line in lines if line is not None) if lines and None not in lines else None
    tolerance = max(0.01 * len(lines), 0.02)
    if items_sum is not None and subtotal is not None and _off(items_sum, subtotal, tolerance):
        r.add(
            "subtotal_mismatch",
            "line_items",
            f"line items sum to {items_sum:.2f} but subtotal is "
            f"{subtotal:.2f} (difference {abs(items_sum - subtotal):.2f})",
        )
    if subtotal is not None:
        base: float | None
        base, label, tolerance = subtotal, "subtotal", 0.02
    else:
        base, label = items_sum, "line items"
    tax_unreadable = tax is None and not is_absent(rec.get("tax"))  # already reported; cannot judge the total
    if total is not None and base is not None and not tax_unreadable and _off(base + (tax or 0.0), total, tolerance):
        tax_text, expected = (f"tax {tax:.2f}" if tax is not None else "no tax"), base + (tax or 0.0)
        r.add(
            "total_mismatch",
            "total",
            f"{label} {base:.2f} + {tax_text} = {expected:.2f} but total is "
            f"{total:.2f} (difference {abs(expected - total):.2f})",
        )


def _check_line(r: _Report, item: dict, path: str) -> float | None:
    """Checks one invoice line; returns its amount (or quantity x unit price), None when unknown."""
    qty, price = r.amount(item, "quantity", f"{path}.quantity"), r.amount(item, "unit_price", f"{path}.unit_price")
    amount = r.amount(item, "amount", f"{path}.amount")
    product = qty * price if qty is not None and price is not None else None
    if product is not None and amount is not None and _off(product, amount, 0.01):
        r.add(
            "line_amount_mismatch",
            f"{path}.amount",
            f"{path}: quantity {qty:g} x unit price {price:.2f} = "
            f"{product:.2f} but amount is {amount:.2f} (difference {abs(product - amount):.2f})",
        )
    return amount if amount is not None else product


def _check_receipt(r: _Report, rec: dict) -> None:
    r.present(rec, "company", "company")
    r.date(rec, "date", "date", required=True)
    r.amount(rec, "total", "total", required=True)


def _check_bank_statement(r: _Report, rec: dict) -> None:
    r.iban(rec, "iban", "iban")
    r.currency(rec, "currency", "currency")
    start, end = r.date(rec, "period_start", "period_start"), r.date(rec, "period_end", "period_end")
    if start and end and start > end:
        r.add("period_reversed", "period_end", f"period_end {end} is before period_start {start}")
    opening = r.amount(rec, "opening_balance", "opening_balance", required=True)
    closing = r.amount(rec, "closing_balance", "closing_balance", required=True)
    rows = []
    for i, tx in enumerate(r.items(rec, "transactions")):
        path = f"transactions[{i}]"
        day = r.date(tx, "date", f"{path}.date", severity="warning")
        if day and (start and day < start or end and day > end):
            r.add(
                "date_outside_period",
                f"{path}.date",
                f"{path}.date {day} is outside the period {start or '?'} to {end or '?'}",
                "warning",
            )
        amount = r.amount(tx, "amount", f"{path}.amount", required=True)
        rows.append((amount, r.amount(tx, "balance", f"{path}.balance")))
    amounts = [amount for amount, _ in rows]
    if opening is not None and closing is not None and None not in amounts:
        moved = sum(amount for amount in amounts if amount is not None)
        if _off(opening + moved, closing, 0.01):
            r.add(
                "balance_mismatch",
                "transactions",
                f"opening balance {opening:.2f} + transactions {moved:+.2f} "
                f"= {opening + moved:.2f} but closing balance is {closing:.2f} "
                f"(difference {abs(opening + moved - closing):.2f})",
            )
    _check_running_balances(r, opening, rows)


def _check_running_balances(r: _Report, opening: float | None, rows: list[tuple[float | None, float | None]]) -> None:
    """Each printed balance must be the previous one plus the amount; reports the first break only."""
    previous = opening
    for i, (amount, balance) in enumerate(rows):
        expected = previous + amount if previous is not None and amount is not None else None
        if expected is not None and balance is not None and _off(expected, balance, 0.01):
            r.add(
                "running_balance_mismatch",
                f"transactions[{i}].balance",
                f"transactions[{i}]: balance "
                f"{previous:.2f} + amount {amount:+.2f} = {expected:.2f} but printed balance is {balance:.2f} "
                f"(difference {abs(expected - balance):.2f})",
            )
            return
        previous = balance if balance is not None else expected


def _check_kyc(r: _Report, rec: dict) -> None:
    r.present(rec, "full_name", "full_name")
    r.present(rec, "id_number", "id_number")
    r.present(rec, "date_of_birth", "date_of_birth")
    born = r.date(rec, "date_of_birth", "date_of_birth", plausible=False)
    if born:
        today = r.today
        age = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
        if not ADULT_AGE <= age <= MAX_AGE:
            r.add(
                "age_out_of_range",
                "date_of_birth",
                f"date_of_birth {born} makes the applicant {age} on {today}, outside {ADULT_AGE} to {MAX_AGE}",
            )
    email = rec.get("email")
    if not is_absent(email) and not (isinstance(email, str) and _EMAIL.fullmatch(email.strip())):
        r.add("invalid_email", "email", f"email {email!r} is not an email address")
    r.iban(rec, "iban", "iban")
    r.non_negative(rec, "annual_income", "annual_income")
    r.non_negative(rec, "loan_amount", "loan_amount")


CHECKS = {
    "invoice": _check_invoice,
    "receipt": _check_receipt,
    "bank_statement": _check_bank_statement,
    "kyc": _check_kyc,
}


def validate(doc_type: str, record: dict, *, today: dt.date | None = None) -> list[Issue]:
    """The issues found in `record` (a dict of `doc_type`'s fields), in check order; [] when it adds up.
    `today` (default: the current date) bounds plausible dates and applicants' ages."""
    check = CHECKS.get(doc_type)
    if check is None:
        raise InvalidRequest(f"unknown doc_type {doc_type!r}; known: {', '.join(sorted(CHECKS))}")
    report = _Report(today or dt.date.today())
    if not isinstance(record, dict):
        report.add("invalid_type", "", f"the record should be an object, got {type(record).__name__}")
    else:
        check(report, record)
    return report.issues
