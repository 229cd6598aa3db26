"""Which documents to label first (`backend/labels/suggest.py`, `novelty.py`): hand-made records whose
order a reviewer would agree with, and the score's promises (bounded, monotone, stable on ties)."""

from __future__ import annotations

import random

import pytest

from backend.labels.novelty import HeadIndex, head
from backend.labels.suggest import SIGNALS, Weights, combine, rank, score

KETTLE = "THE COPPER KETTLE CAFE\n3 Market Square, Cambridge\nTel 01223 555 0101\nReceipt 00412\n"
HARDWARE = "HARBOUR HARDWARE LTD\n12 Quay Street, Bristol\nVAT GB123456789\nInvoice INV-2026-118\n"
NOVEL = "Zephyr Aerospace GmbH\nFlughafenstrasse 9, 70629 Stuttgart\nRechnung Nr. 77\n"


def record(text: str = KETTLE, confidence: float = 0.99, **extra) -> dict:
    fields = {"company": "THE COPPER KETTLE CAFE", "total": "18.40"}
    base = {
        "text": text,
        "fields": fields,
        "confidence": {name: confidence for name in fields},
        "calibrated": True,
        "grounding": {name: {"start": 0, "end": 3, "match": "exact", "score": 100.0} for name in fields},
        "validation": [],
    }
    return {**base, **extra}


def test_a_confident_document_ranks_below_an_uncertain_one():
    order = rank([record(confidence=0.98), record(confidence=0.35)])
    assert [i for i, _ in order] == [1, 0]
    top = order[0][1]
    assert top.reasons[0] == "low confidence: company 0.35 (calibrated)"
    assert top.signals["uncertainty"] == pytest.approx(0.65)


def test_a_novel_sender_ranks_above_a_known_one():
    index = HeadIndex.build([KETTLE.replace("00412", "00398"), HARDWARE])
    order = rank([record(KETTLE), record(NOVEL)], index=index)
    assert [i for i, _ in order] == [1, 0]
    known, novel = order[1][1], order[0][1]
    assert known.signals["novelty"] < 0.1  # the same letterhead, another receipt number: digits do not count
    assert novel.signals["novelty"] > 0.8
    assert novel.reasons[0].startswith("new sender: nearest training head")


def test_against_a_dataset_with_no_examples_every_sender_is_new():
    values = rank([record(KETTLE)], index=HeadIndex.build([]))
    assert values[0][1].signals["novelty"] == 1.0
    assert "new sender: the dataset has no examples yet" in values[0][1].reasons


def test_a_validator_failure_raises_the_score_and_names_itself():
    issue = {"code": "total_mismatch", "field": "total", "message": "10 + 2 != 13", "severity": "error"}
    clean, failing = score(record()), score(record(validation=[issue]))
    twice = score(record(validation=[issue, {**issue, "field": "subtotal"}]))
    warned = score(record(validation=[{**issue, "severity": "warning"}]))
    assert clean.score < warned.score < failing.score < twice.score
    assert failing.signals["validation"] == 0.5
    assert failing.reasons[0] == "fails validation: total_mismatch on total (1 errors, 0 warnings)"
    # the extraction's own check (a date that reads as no date) counts as an error too
    unread = score(record(checks={"date": "'2312475009906' does not read as a date"}))
    assert unread.signals["validation"] == 0.5
    assert "fails validation: failed_check on date" in unread.reasons[0]


def test_ungrounded_values_and_ranked_candidates_that_disagree():
    grounded = record()
    missing = record(grounding={"company": None, "total": {"start": 4, "end": 6, "match": "partial"}})
    value = score(missing)
    assert value.signals["ungrounded"] == 1.0 and score(grounded).signals["ungrounded"] == 0.0
    assert "not in the text: company, total (2 of 2)" in value.reasons

    agree = record(ranking={"total": {"free": "18.40", "best": "18.40", "choice": "18.40", "share": 0.9}})
    differ = record(ranking={"total": {"free": "18.40", "best": "81.40", "choice": "81.40", "share": 0.6}})
    assert score(agree).signals["disagreement"] == pytest.approx(0.1)
    assert score(differ).signals["disagreement"] == 1.0
    assert score(differ).reasons[0] == "ranked candidate disagrees: total '81.40', decoded '18.40'"

    repaired = record(
        attempts=[{"fields": {"total": "13.00", "company": "X"}}, {"fields": {"total": "18.40", "company": "X"}}]
    )
    assert score(repaired).signals["disagreement"] == 0.5 and "repairs changed: total" in score(repaired).reasons


def test_nothing_doubtful_gives_zero_and_no_reasons():
    value = score(record(confidence=1.0))
    assert value.score == 0.0 and value.reasons == []
    assert score({}).score == 0.0  # a record with nothing in it (no fields yet) is not an error


def test_ties_keep_the_order_they_were_given_in():
    same = [record(confidence=0.5) for _ in range(5)]
    assert [i for i, _ in rank(same)] == [0, 1, 2, 3, 4]


def test_the_score_is_bounded_and_monotone_in_each_signal():
    rng = random.Random(7)
    weights = Weights(uncertainty=2.0, novelty=0.5)
    for _ in range(300):
        signals = {name: rng.random() for name in SIGNALS}
        base = combine(signals, {}, weights).score
        assert 0.0 <= base <= 1.0
        for name in SIGNALS:
            higher = combine({**signals, name: min(1.0, signals[name] + 0.1)}, {}, weights).score
            assert higher >= base
    with pytest.raises(ValueError, match="at least one must be above 0"):
        Weights(0, 0, 0, 0, 0)
    with pytest.raises(ValueError, match="'novelty': -1"):
        Weights(novelty=-1)


def test_a_head_is_the_sender_block_without_its_numbers():
    assert head("\n\n  ACME  Ltd \n\tInvoice 123\n" + "line\n" * 10) == "acme ltd\ninvoice 000\nline\nline\nline"
    assert HeadIndex.build(["", "   "]).signatures.shape[0] == 0
    assert HeadIndex.build([KETTLE]).novelty(["", KETTLE]) == [None, 0.0]
