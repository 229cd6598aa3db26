"""Selective automation in an evaluation (backend/evaluation/selective.py): which scored answers could be
approved, and the precision–coverage curves the report reads."""

from __future__ import annotations

import json

from backend.evaluation.selective import answer_pairs, chart, curves, table
from backend.scoring.metrics import score_document

NAMES = ["company", "total", "date"]


def test_only_a_given_value_found_in_the_document_with_a_confidence_can_be_approved(tmp_path):
    gold = {"company": "ACME", "total": "9.00", "date": "01/02/2019"}
    answers = [
        {  # all right; the date was not found in the document
            "fields": gold,
            "confidence": {"company": 0.9, "total": 0.8, "date": 0.99},
            "grounding": {"company": {"start": 0}, "total": {"start": 9}, "date": None},
        },
        {  # a wrong total, no date at all
            "fields": {"company": "ACME", "total": "19.00", "date": None},
            "confidence": {"company": 0.7, "total": 0.95, "date": None},
            "grounding": {"company": {"start": 0}, "total": {"start": 9}, "date": None},
        },
    ]
    docs = [score_document(i, json.dumps(a["fields"]), gold, NAMES) for i, a in enumerate(answers)]
    pairs = answer_pairs(docs, answers)
    assert pairs == {
        "company": [(0.9, True), (0.7, True)],
        "total": [(0.8, True), (0.95, False)],
        "date": [(None, True), (None, False)],
    }
    summary = curves(pairs)
    assert summary["overall"]["answers"] == 6
    # one threshold over all fields: 0.95 lets the wrong total through first
    assert summary["overall"]["curve"][0] == {"threshold": 0.95, "coverage": 1 / 6, "precision": 0.0, "accepted": 1}
    assert summary["company"]["coverage_at"]["1"] == 1.0 and summary["total"]["coverage_at"]["1"] == 0.0
    assert summary["date"]["curve"] == [] and summary["date"]["coverage_at"]["0.9"] == 0.0
    lines = table("receipts@1", summary)
    assert "| company | 2 | 1.00 | 1.00 | 1.00 | 1.00 | 1.00 |" in lines
    assert chart({"receipts@1": summary}, tmp_path / "pc.png").stat().st_size > 0


def test_an_answer_failing_its_check_cannot_be_approved():
    gold = {"company": "ACME", "total": "9.00", "date": "01/02/2019"}
    answer = {
        "fields": {"company": "ACME", "total": "9.00", "date": "2312475009906"},
        "confidence": {"company": 0.9, "total": 0.8, "date": 0.99},
        "grounding": {"company": {"start": 0}, "total": {"start": 9}, "date": {"start": 20}},
        "checks": {"date": "'2312475009906' does not read as a date, as the training labels of date did"},
    }
    pairs = answer_pairs([score_document(0, json.dumps(answer["fields"]), gold, NAMES)], [answer])
    assert pairs == {"company": [(0.9, True)], "total": [(0.8, True)], "date": [(None, False)]}
