"""Document-type classification by weighted cue phrases: transparent (the cues that matched are the
evidence), instant, and not steerable by a model. A document whose best score is under MIN_SCORE,
or ties between two types, is `other` and goes to review.
"""

from __future__ import annotations

import re

from agents.schemas import OTHER

CUES: dict[str, dict[str, float]] = {
    "invoice": {
        "invoice": 3,
        "bill to": 2,
        "invoice no": 3,
        "invoice number": 3,
        "due date": 2,
        "payment terms": 2,
        "vat": 1,
        "subtotal": 1,
        "amount due": 2,
        "iban": 0.5,
        "bill #": 2,
        "tax invoice": 1,
    },
    "receipt": {
        "receipt": 3,
        "cash": 1,
        "change": 1.5,
        "thank you": 1.5,
        "cashier": 2,
        "gst": 1,
        "rounding": 1.5,
        "total": 0.5,
        "qty": 0.5,
        "sdn bhd": 1,
        "tax invoice": 1,
        "member": 0.5,
        "come again": 2,
        "time:": 1,
        "card": 0.5,
        "incl. vat": 1,
        "tendered": 1.5,
    },
    "bank_statement": {
        "statement": 2,
        "opening balance": 3,
        "closing balance": 3,
        "account statement": 3,
        "balance brought forward": 3,
        "transactions": 1,
        "iban": 1,
        "debit": 1,
        "credit": 1,
    },
    "kyc": {
        "date of birth": 3,
        "nationality": 2,
        "passport": 2,
        "applicant": 2,
        "loan amount": 3,
        "know your customer": 3,
        "kyc": 3,
        "annual income": 2,
        "employer": 1,
        "application": 1,
    },
}
MIN_SCORE = 3.0


def classify(text: str) -> dict[str, object]:
    """{"doc_type", "scores", "cues"}: the type with the highest cue score, or `other`."""
    lower = re.sub(r"\s+", " ", text.lower())
    scores, cues = {}, {}
    for doc_type, table in CUES.items():
        found = [cue for cue in table if cue in lower]
        cues[doc_type] = found
        scores[doc_type] = round(sum(table[c] for c in found), 2)
    ranked = sorted(scores.items(), key=lambda kv: kv[1], reverse=True)
    best, score = ranked[0]
    if score < MIN_SCORE or (len(ranked) > 1 and ranked[1][1] == score):
        best = OTHER
    return {"doc_type": best, "scores": scores, "cues": cues.get(best, [])}
