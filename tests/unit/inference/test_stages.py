"""The stages after decoding (backend/inference/stages.py), one by one, and what an adapter learned for
them read once per folder and again when a file changes."""

from __future__ import annotations

from backend.inference.stages import apply_label_rules, calibrate, check, mark, reranked, take_ranked, to_review
from backend.labels.calibration import Platt
from backend.labels.conventions import learn
from backend.labels.thresholds import fit_thresholds


def test_calibrate_maps_each_confidence_and_leaves_unknown_ones():
    platt = Platt(a=2.0, b=-1.0)
    out = calibrate({"total": 0.9, "company": None}, platt)
    assert out["company"] is None and out["total"] == platt(0.9) and out["total"] != 0.9
    assert calibrate({"total": 0.9}, None) == {"total": 0.9}


def test_take_ranked_replaces_only_fields_whose_choice_differs():
    ranking = {
        "total": {"free": "9.00", "choice": "19.50", "share": 0.6},
        "date": {"free": "01/02/2019", "choice": "01/02/2019", "share": 0.99},
    }
    fields, confidence = take_ranked({"total": "9.00", "date": "01/02/2019"}, {"total": 0.97, "date": 0.8}, ranking)
    assert fields == {"total": "19.50", "date": "01/02/2019"} and confidence == {"total": 0.6, "date": 0.8}
    assert take_ranked({"a": 1}, {"a": 0.5}, None) == ({"a": 1}, {"a": 0.5})


def test_to_review_lists_given_fields_below_the_threshold_or_not_in_the_document():
    fields = {"company": "ACME", "total": "9.00", "date": None}
    grounding = {"company": {"start": 0, "end": 4}, "total": None, "date": None}
    assert to_review(
        ["company", "total", "date"], fields, {"company": 0.9, "total": 0.99, "date": 0.1}, grounding, 0.7
    ) == ["total"]  # not in the document; an absent date is not asked about
    assert to_review(["company"], fields, {"company": 0.5}, grounding, 0.7) == ["company"]


def test_label_rules_apply_only_when_given(tmp_path):
    texts = [f"SHOP {n}\nTOTAL RM {n}.50" for n in range(12)]
    rules = learn([(t, {"company": f"SHOP {n}", "total": f"{n}.50"}) for n, t in enumerate(texts)])
    assert apply_label_rules({"total": "3.5"}, texts[3], None) == {"total": "3.5"}
    assert apply_label_rules({"total": "RM 3.50"}, texts[3], rules)["total"] == "3.50"  # written the labels' way


def test_marks_need_a_threshold_a_value_found_in_the_document_and_enough_confidence():
    thresholds = fit_thresholds(
        {"company": [(0.9, True)] * 300, "total": [(0.8, True)] * 300, "date": [(0.99, True)] * 5}
    )
    names = ["company", "total", "date", "address"]
    fields = {"company": "ACME", "total": "9.00", "date": "01/02/2019", "address": None}
    grounding = {"company": {"start": 0, "end": 4}, "total": None, "date": {"start": 9, "end": 19}, "address": None}
    confidence = {"company": 0.95, "total": 0.99, "date": 0.999, "address": None}
    marks = mark(names, fields, confidence, grounding, thresholds)
    # company: found, above its threshold; total: sure but not in the document; date: too few answers
    # for a threshold; address: no value
    assert marks == {"company": "auto", "total": "review", "date": "review", "address": "review"}
    assert mark(names, fields, {**confidence, "company": 0.89}, grounding, thresholds)["company"] == "review"
    assert mark(names, fields, confidence, grounding, None) is None  # no thresholds: no marks, as before
    # with marks, review is every given field not marked auto (the absent address is not asked about)
    assert to_review(names, fields, confidence, grounding, 0.7, marks) == ["total", "date"]
    assert to_review(names, fields, confidence, grounding, 0.7) == ["total"]  # without: the global threshold


def test_a_value_candidate_ranking_chose_is_never_approved_automatically():
    ranking = {
        "company": {"free": "ACME", "choice": "ACME", "share": 0.9},  # ranking kept the model's answer
        "total": {"free": "9.0O", "choice": "9.00", "share": 1.0},  # the only amount printed: share 1.0
    }
    assert reranked(ranking) == {"total"} and reranked(None) == set()
    thresholds = fit_thresholds({"company": [(0.9, True)] * 300, "total": [(0.8, True)] * 300})
    fields, confidence = take_ranked({"company": "ACME", "total": "9.0O"}, {"company": 0.95, "total": 0.3}, ranking)
    grounding = {"company": {"start": 0, "end": 4}, "total": {"start": 11, "end": 15}}
    names = ["company", "total"]
    marks = mark(names, fields, confidence, grounding, thresholds, ranked=reranked(ranking))
    assert confidence["total"] == 1.0 and marks == {"company": "auto", "total": "review"}
    assert mark(names, fields, confidence, grounding, thresholds)["total"] == "auto"  # the model's own answer
    assert to_review(names, fields, confidence, grounding, 0.7, ranked={"total"}) == ["total"]


def _receipt_rules():
    texts = [f"SHOP {n}\n0{n % 9 + 1}/02/2019\nTOTAL RM {n}.50" for n in range(12)]
    labels = [{"company": f"SHOP {n}", "date": f"0{n % 9 + 1}/02/2019", "total": f"{n}.50"} for n in range(12)]
    return learn(list(zip(texts, labels)))


def test_a_value_that_does_not_read_as_its_fields_kind_fails_its_check():
    rules = _receipt_rules()
    assert (rules.fields["date"].kind, rules.fields["total"].kind) == ("date", "amount")
    fields = {"company": "12345", "date": "2312475009906", "total": "0% SUPPLIES"}
    checks = check(fields, rules)
    assert sorted(checks) == ["date", "total"]  # a text field takes any text
    assert checks["date"] == "'2312475009906' does not read as a date, as the training labels of date did"
    assert "does not read as an amount" in checks["total"]
    assert check({"company": "SHOP 1", "date": "03/02/2019", "total": "RM 3.50"}, rules) == {}
    assert check({"date": None, "total": ""}, rules) == {}  # an absent value is not checked
    assert check(fields, None) == {}  # no label rules: nothing known to check against


def test_a_value_failing_its_check_is_never_approved_however_confident():
    thresholds = fit_thresholds({"date": [(0.5, True)] * 300, "total": [(0.5, True)] * 300})
    fields = {"date": "2312475009906", "total": "9.00"}
    grounding = {"date": {"start": 0, "end": 13}, "total": {"start": 20, "end": 24}}
    confidence = {"date": 0.999, "total": 0.999}
    checks = check(fields, _receipt_rules())
    marks = mark(["date", "total"], fields, confidence, grounding, thresholds, checks)
    assert marks == {"date": "review", "total": "auto"}
    assert mark(["date", "total"], fields, confidence, grounding, thresholds) == {"date": "auto", "total": "auto"}
    # without thresholds, review by the global confidence threshold lists it too
    assert to_review(["date", "total"], fields, confidence, grounding, 0.7, None, checks) == ["date"]
