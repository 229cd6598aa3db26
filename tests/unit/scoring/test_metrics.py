"""Extraction metrics on hand-made cases with known answers: every normalisation, every outcome and
every error category."""

from __future__ import annotations

import json

import pytest

from backend.scoring.metrics import (
    answer_metrics,
    categorize,
    edit_distance,
    repeated_ngram,
    score_document,
    summarize,
    token_f1,
)
from backend.scoring.normalize import same_value

NAMES = ["company", "date", "total"]


@pytest.mark.parametrize(
    "predicted,gold,same",
    [
        ("Book Ta .K (Taman Daya) SDN BHD", "BOOK TA .K (TAMAN DAYA) SDN BHD", True),  # case
        ("NO.53  55,57 &\n59", "NO.53 55,57 & 59", True),  # whitespace
        ("SDN. BHD", "SDN.BHD", True),  # space beside punctuation
        ("RM 9.00", "9.00", True),
        ("9", "9.00", True),
        ("9.10", "9.01", False),  # amounts as numbers
        ("2018-12-25", "25/12/2018", True),
        ("2018-12-26", "25/12/2018", False),  # dates as dates
        ("ACME", "ACNE", False),
    ],
)
def test_same_value(predicted, gold, same):
    assert same_value(predicted, gold) is same


def test_each_outcome_is_counted_distinctly():
    gold = {"company": "ACME", "date": "25/12/2018", "total": None}
    doc = score_document(0, json.dumps({"company": "ACME", "date": None, "total": "5.00"}), gold, NAMES, "ACME 5.00")
    assert [f.outcome for f in doc.fields] == ["correct", "missing", "extra"]
    wrong = score_document(1, json.dumps({"company": "ACNE", "date": "25/12/2018", "total": None}), gold, NAMES, "")
    assert [f.outcome for f in wrong.fields] == ["wrong", "correct", "absent"]
    s = summarize([doc, wrong], NAMES)
    assert s["fields"]["company"] == {
        "precision": 0.5,
        "recall": 0.5,
        "f1": 0.5,
        "correct": 1,
        "wrong": 1,
        "missing": 0,
        "extra": 0,
        "absent": 0,
    }
    assert s["fields"]["date"]["precision"] == 1.0 and s["fields"]["date"]["recall"] == 0.5
    assert s["fields"]["total"]["precision"] == 0.0 and s["fields"]["total"]["absent"] == 1
    micro = s["micro"]  # tp 2, fp wrong 1 + extra 1 = 2, fn wrong 1 + missing 1 = 2
    assert (micro["precision"], micro["recall"], micro["f1"]) == (0.5, 0.5, 0.5)
    assert s["exact_match"] == 0.0 and s["documents"] == 2


def test_exact_match_and_validity_rates():
    gold = {"company": "ACME", "date": "25/12/2018", "total": "9.00"}
    perfect = score_document(0, '{"company": "acme", "date": "2018-12-25", "total": "RM 9"}', gold, NAMES)
    prose = score_document(1, 'Sure! {"company": "ACME", "date": "25/12/2018", "total": "9.00"}', gold, NAMES)
    extra_key = score_document(2, '{"company": "ACME", "date": "25/12/2018", "total": "9.00", "x": 1}', gold, NAMES)
    broken = score_document(3, '{"company": "ACME", "date": "25/12/20', gold, NAMES)
    s = summarize([perfect, prose, extra_key, broken], NAMES)
    assert [d.exact for d in (perfect, prose, extra_key, broken)] == [True, True, True, False]
    assert [d.valid_json for d in (perfect, prose, extra_key, broken)] == [True, False, True, False]
    assert [d.schema_valid for d in (perfect, prose, extra_key, broken)] == [True, False, False, False]
    assert (s["exact_match"], s["json_valid"], s["schema_valid"]) == (0.75, 0.5, 0.25)


SOURCE = "ACME TOOLS SDN BHD\nNO 5 JALAN BESAR\nDATE 25/12/2018\nTOTAL RM 12.50"


@pytest.mark.parametrize(
    "predicted,gold,expected",
    [
        (None, "ACME", ["missing"]),
        ("ZENITH CORP", "ACME TOOLS SDN BHD", ["hallucinated"]),
        ("ACME TOOLS SDN-BHD", "ACME TOOLS SDN BHD", ["format"]),
        ("ACME TOOLS SDN BHD NO 5", "ACME TOOLS SDN BHD", ["too_long"]),
        ("ACME TOOLS SDN BH", "ACME TOOLS SDN BHD", ["near_miss"]),
        ("JALAN BESAR JALAN BESAR JALAN BESAR JALAN BESAR", "NO 5 JALAN BESAR", ["hallucinated", "repetitive"]),
        ("NO 5 JALAN BESAR", "ACME TOOLS SDN BHD", ["wrong_value"]),
    ],
)
def test_error_categories(predicted, gold, expected):
    assert categorize(predicted, gold, SOURCE) == expected


def test_a_hallucinated_near_miss_carries_both_tags():
    assert categorize("ACME TOOLZ SDN BHD", "ACME TOOLS SDN BHD", SOURCE) == ["hallucinated", "near_miss"]


def test_helpers():
    assert edit_distance("kitten", "sitting") == 3 and edit_distance("", "ab") == 2
    assert repeated_ngram("a b c a b c a b c") and not repeated_ngram("a b c d e f")
    assert token_f1("the cat sat", "the cat sat") == 1.0 and token_f1("cat", "dog") == 0.0
    assert token_f1("the cat", "the cat sat down") == pytest.approx(2 * 1.0 * 0.5 / 1.5)
    m = answer_metrics([("Paris.", "paris"), ("Lyon", "Paris")])
    assert m["exact_match"] == 0.5 and m["answers"] == 2


def test_summary_lists_the_worst_documents_with_categories():
    gold = {"company": "ACME TOOLS SDN BHD", "date": "25/12/2018", "total": "12.50"}
    good = score_document(0, json.dumps(gold), gold, NAMES, SOURCE)
    bad = score_document(1, json.dumps({"company": "ZENITH", "date": None, "total": "12.50"}), gold, NAMES, SOURCE)
    s = summarize([good, bad], NAMES)
    assert [w["index"] for w in s["worst"]] == [1]
    assert {f["field"]: f["categories"] for f in s["worst"][0]["fields"]} == {
        "company": ["hallucinated"],
        "date": ["missing"],
    }
    assert s["errors"] == {"company": {"hallucinated": 1}, "date": {"missing": 1}}


def test_expected_calibration_error():
    from backend.scoring.metrics import calibration

    perfect = calibration([(0.95, True)] * 19 + [(0.95, False)] + [(0.15, False)] * 17 + [(0.15, True)] * 3)
    assert perfect["ece"] == pytest.approx(0.0) and perfect["predictions"] == 40
    overconfident = calibration([(0.9, True), (0.9, False)])
    assert overconfident["ece"] == pytest.approx(0.4)
    assert [b["count"] for b in overconfident["bins"]] == [2]
    assert calibration([(1.0, True)])["bins"][0]["to"] == 1.0


def test_platt_scaling_fixes_overconfidence_out_of_fold():
    import math
    import random

    from backend.labels.calibration import evaluate_calibration, fit_platt

    rng = random.Random(0)
    pairs = []
    for _ in range(600):  # an overconfident model: right with probability sigmoid(0.5 logit(c) - 0.8)
        c = rng.uniform(0.3, 0.999)
        truth = 1 / (1 + math.exp(-(0.5 * math.log(c / (1 - c)) - 0.8)))
        pairs.append((c, rng.random() < truth))
    report = evaluate_calibration(pairs)
    assert report["ece"] > 0.15 and report["ece_calibrated"] < 0.06, report
    platt = fit_platt(pairs)
    assert platt(0.95) > platt(0.55)  # monotone: the ranking of fields is kept
    assert abs(platt.a - 0.5) < 0.15 and abs(platt.b + 0.8) < 0.25, platt


def test_platt_needs_both_outcomes_and_round_trips(tmp_path):
    from backend.labels.calibration import Platt, fit_platt

    assert fit_platt([(0.9, True)] * 50) == Platt(pairs=50)  # nothing to learn: identity
    assert fit_platt([(0.9, True), (0.2, False)]) == Platt(pairs=2)
    fitted = Platt(0.5, -0.25, 120)
    fitted.save(tmp_path)
    assert Platt.load(tmp_path) == fitted and Platt.load(tmp_path / "missing") is None and Platt.load(None) is None
    assert Platt()(0.73) == pytest.approx(0.73)
