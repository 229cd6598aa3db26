"""What the agents extract, per document type: pydantic models whose JSON Schema drives constrained
decoding (`backend/inference/extraction.py`) and whose field names the validators and policy rules
read. Values are copied as the document writes them where a small model copies better than it
converts (dates, names); amounts are numbers, so the grammar makes the model write one.

Every field may be null: a document that lacks a value must be able to say so, and the validators,
not the schema, decide whether a missing value matters.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Party(_Record):
    name: str | None = Field(None, max_length=120, description="legal name as written")
    address: str | None = Field(None, max_length=200, description="postal address, one line")
    vat_id: str | None = Field(None, max_length=20, description="VAT / tax registration number")
    iban: str | None = Field(None, max_length=42, description="bank account IBAN")


class LineItem(_Record):
    description: str | None = Field(None, max_length=120)
    quantity: float | None = None
    unit_price: float | None = None
    amount: float | None = Field(None, description="line total")


class Invoice(_Record):
    invoice_number: str | None = Field(None, max_length=40)
    invoice_date: str | None = Field(None, max_length=30, description="date of issue, as written")
    due_date: str | None = Field(None, max_length=30, description="payment due date, as written")
    vendor: Party | None = Field(None, description="who issued the invoice")
    customer: Party | None = Field(None, description="who is billed")
    currency: str | None = Field(None, pattern=r"^[A-Z]{3}$", description="ISO 4217 code, e.g. EUR")
    line_items: list[LineItem] = Field(default_factory=list, max_length=30)
    subtotal: float | None = Field(None, description="total before tax")
    tax: float | None = Field(None, description="tax amount")
    total: float | None = Field(None, description="amount due, tax included")


class Receipt(_Record):
    """The SROIE fields, strings as printed (an adapter trained on SROIE answers exactly these)."""

    company: str | None = Field(None, max_length=120)
    date: str | None = Field(None, max_length=30)
    address: str | None = Field(None, max_length=200)
    total: str | None = Field(None, max_length=20, description="amount paid, as printed")


class Transaction(_Record):
    date: str | None = Field(None, max_length=30)
    description: str | None = Field(None, max_length=120)
    amount: float | None = Field(None, description="signed: credits positive, debits negative")
    balance: float | None = Field(None, description="running balance after it, if printed")


class BankStatement(_Record):
    bank_name: str | None = Field(None, max_length=80)
    account_holder: str | None = Field(None, max_length=120)
    iban: str | None = Field(None, max_length=42)
    currency: str | None = Field(None, pattern=r"^[A-Z]{3}$", description="ISO 4217 code")
    period_start: str | None = Field(None, max_length=30)
    period_end: str | None = Field(None, max_length=30)
    opening_balance: float | None = None
    closing_balance: float | None = None
    transactions: list[Transaction] = Field(default_factory=list, max_length=60)


class KycApplication(_Record):
    """A know-your-customer / loan application form."""

    full_name: str | None = Field(None, max_length=120)
    date_of_birth: str | None = Field(None, max_length=30)
    nationality: str | None = Field(None, max_length=60)
    id_number: str | None = Field(None, max_length=40, description="passport or national ID number")
    address: str | None = Field(None, max_length=200)
    email: str | None = Field(None, max_length=120)
    employer: str | None = Field(None, max_length=120)
    annual_income: float | None = None
    loan_amount: float | None = None
    loan_purpose: str | None = Field(None, max_length=120)
    iban: str | None = Field(None, max_length=42)


DOC_TYPES: dict[str, type[BaseModel]] = {
    "invoice": Invoice,
    "receipt": Receipt,
    "bank_statement": BankStatement,
    "kyc": KycApplication,
}
OTHER = "other"  # classified as none of the above: nothing to extract, always reviewed
