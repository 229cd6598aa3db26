"""What a receipt settled (tendered minus change), read from hand-made receipts, and the `settles` rule
that checks a predicted total against it (backend/labels/settlement.py, backend/labels/conventions.py)."""

from __future__ import annotations

from decimal import Decimal

from backend.labels.conventions import learn
from backend.labels.settlement import check_settled, printed, settled

RECEIPT = """KEDAI RUNCIT ABC
SUB-TOTAL 28.11
GST 6% 1.69
TOTAL 29.80
CASH 50.00
CHANGE 20.20
THANK YOU"""


def test_tendered_minus_change():
    assert settled(RECEIPT) == Decimal("29.80")


def test_labels_and_amounts_on_two_lines_with_currency_and_punctuation():
    text = "TOTAL RM 12.30\nCASH TENDERED :\nRM 20.00\nCHANGE DUE:\n7.70\n"
    assert settled(text) == Decimal("12.30")
    assert settled("TOTAL 9.00\nCash ....... 10.00\nYour Change ..... -1.00") == Decimal("9.00")  # negative change


def test_no_pair_no_settled_amount():
    assert settled("TOTAL 12.00\nCASH 12.00\nTHANK YOU") is None  # no change line
    assert settled("TOTAL 12.00\nCHANGE 3.00\nCASH 15.00") is None  # the change comes first
    assert settled("CASH SALES\nTOTAL 5.00\nCHANGE 0.00") is None  # "CASH SALES" is not a tendered line
    assert settled("CASH 10.00\nA\nB\nC\nD\nCHANGE 1.00") is None  # too far apart
    assert settled("CASH 5.00\nCHANGE 5.00") is None  # nothing paid


def test_printed_compares_numbers():
    assert printed(Decimal("29.80"), RECEIPT)
    assert printed(Decimal("29.8"), RECEIPT)
    assert not printed(Decimal("30.00"), RECEIPT)


def test_check_replaces_only_a_clear_disagreement_that_the_document_prints():
    assert check_settled("28.11", RECEIPT) == "29.80"  # the amount before tax
    assert check_settled("RM29.80", RECEIPT) == "RM29.80"  # agrees
    assert check_settled("29.75", RECEIPT) == "29.75"  # within cash rounding: the label may be either
    assert check_settled("28.11", RECEIPT.replace("TOTAL 29.80\n", "")) == "28.11"  # 29.80 not printed
    assert check_settled("n/a", RECEIPT) == "n/a"


def _receipt(total: str, cash: str, change: str) -> str:
    return f"SHOP\nSUBTOTAL 1.00\nTOTAL {total}\nCASH {cash}\nCHANGE {change}\n"


def test_settles_is_learned_from_the_labels_and_applied():
    agree = [(_receipt(f"{i}.50", "100.00", f"{100 - i - 0.5:.2f}"), {"total": f"{i}.50"}) for i in range(1, 25)]
    conv = learn(agree, min_support=1)
    assert conv.fields["total"].settles
    text = _receipt("40.00", "50.00", "10.00")
    assert conv.apply({"total": "1.00"}, text) == {"total": "40.00"}
    assert conv.apply({"total": "1.00"}, text, settle=False) == {"total": "1.00"}
    assert conv.apply({"total": "1.00"}) == {"total": "1.00"}  # no document: nothing to check


def test_settles_is_not_learned_when_labels_disagree_or_are_too_few():
    subtotal = [(_receipt(f"{i}.50", "100.00", f"{100 - i - 0.5:.2f}"), {"total": "1.00"}) for i in range(1, 25)]
    assert not learn(subtotal, min_support=1).fields["total"].settles  # the labels are another amount
    few = [(_receipt(f"{i}.50", "100.00", f"{100 - i - 0.5:.2f}"), {"total": f"{i}.50"}) for i in range(1, 10)]
    assert not learn(few, min_support=1).fields["total"].settles  # under SETTLE_SUPPORT documents
