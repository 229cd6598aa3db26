"""What the agents extract, per document type: pydantic models whose JSON Schema drives constrained
decoding (`backend/inference/extraction.py`) and whose field names the validators and policy rules
read. Values are copied as the document writes them where a small model copies better than it
converts (dates, names); amounts are numbers, so the grammar makes the model write one.

Every field may be null: a document that lacks a value must be able to say so, and the validators,
not the schema, decide whether a missing value matters.
"""

from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, ConfigDict, Field


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Party(_Record):
    name: Optional[str] = Field(None, max_length=120, description="legal name as written")
    address: Optional[str] = Field(None, max_length=200, description="postal address, one line")
    vat_id: Optional[str] = Field(None, max_length=20, description="VAT / tax registration number")
    iban: Optional[str] = Field(None, max_length=42, description="bank account IBAN")


class LineItem(_Record):
    description: Optional[str] = Field(None, max_length=120)
    quantity: Optional[float] = None
    unit_price: Optional[float] = None
    amount: Optional[float] = Field(None, description="line total")


class Invoice(_Record):
    invoice_number: Optional[str] = Field(None, max_length=40)
    invoice_date: Optional[str] = Field(None, max_length=30, description="date of issue, as written")
    due_date: Optional[str] = Field(None, max_length=30, description="payment due date, as written")
    vendor: Optional[Party] = Field(None, description="who issued the invoice")
    customer: Optional[Party] = Field(None, description="who is billed")
    currency: Optional[str] = Field(None, pattern=r"^[A-Z]{3}$", description="ISO 4217 code, e.g. EUR")
    line_items: list[LineItem] = Field(default_factory=list, max_length=30)
    subtotal: Optional[float] = Field(None, description="total before tax")
    tax: Optional[float] = Field(None, description="tax amount")
    total: Optional[float] = Field(None, description="amount due, tax included")


class Receipt(_Record):
    """The SROIE fields, strings as printed (an adapter trained on SROIE answers exactly these)."""

    company: Optional[str] = Field(None, max_length=120)
    date: Optional[str] = Field(None, max_length=30)
    address: Optional[str] = Field(None, max_length=200)
    total: Optional[str] = Field(None, max_length=20, description="amount paid, as printed")


class Transaction(_Record):
    date: Optional[str] = Field(None, max_length=30)
    description: Optional[str] = Field(None, max_length=120)
    amount: Optional[float] = Field(None, description="signed: credits positive, debits negative")
    balance: Optional[float] = Field(None, description="running balance after it, if printed")


class BankStatement(_Record):
    bank_name: Optional[str] = Field(None, max_length=80)
    account_holder: Optional[str] = Field(None, max_length=120)
    iban: Optional[str] = Field(None, max_length=42)
    currency: Optional[str] = Field(None, pattern=r"^[A-Z]{3}$", description="ISO 4217 code")
    period_start: Optional[str] = Field(None, max_length=30)
    period_end: Optional[str] = Field(None, max_length=30)
    opening_balance: Optional[float] = None
    closing_balance: Optional[float] = None
    transactions: list[Transaction] = Field(default_factory=list, max_length=60)


class KycApplication(_Record):
    """A know-your-customer / loan application form."""

    full_name: Optional[str] = Field(None, max_length=120)
    date_of_birth: Optional[str] = Field(None, max_length=30)
    nationality: Optional[str] = Field(None, max_length=60)
    id_number: Optional[str] = Field(None, max_length=40, description="passport or national ID number")
    address: Optional[str] = Field(None, max_length=200)
    email: Optional[str] = Field(None, max_length=120)
    employer: Optional[str] = Field(None, max_length=120)
    annual_income: Optional[float] = None
    loan_amount: Optional[float] = None
    loan_purpose: Optional[str] = Field(None, max_length=120)
    iban: Optional[str] = Field(None, max_length=42)


DOC_TYPES: dict[str, type[BaseModel]] = {
    "invoice": Invoice,
    "receipt": Receipt,
    "bank_statement": BankStatement,
    "kyc": KycApplication,
}
OTHER = "other"  # classified as none of the above: nothing to extract, always reviewed
