"""Per-field automation thresholds (backend/labels/thresholds.py): fitted on held-out (confidence,
correct) pairs to a target precision by a lower bound, refused where the data cannot support them,
stored with the adapter and stale when its calibration changes."""

from __future__ import annotations

import json
import random

import pytest

from backend.errors import InvalidRequest
from backend.labels.calibration import Platt
from backend.labels.thresholds import (
    FILE,
    Thresholds,
    ThresholdsError,
    apply,
    curve,
    fit_field,
    fit_thresholds,
    needed,
    recalibrated,
    wilson_lower,
)


def _answers(n: int, *, seed: int = 0, wrong_below: float = 0.6) -> list[tuple[float | None, bool]]:
    """Answers whose confidence says something: right above `wrong_below` except 1 in 200, a coin flip
    under it; one in ten cannot be approved (no value, or not in the document)."""
    rng = random.Random(seed)
    out: list[tuple[float | None, bool]] = []
    for _ in range(n):
        c = rng.random()
        ok = rng.random() > 0.005 if c >= wrong_below else rng.random() < 0.5
        out.append((None if rng.random() < 0.1 else c, ok))
    return out


def test_the_wilson_bound_is_below_the_observed_precision_and_tightens_with_more_answers():
    assert wilson_lower(20, 20) < 0.9 < wilson_lower(400, 400) < 1.0
    assert wilson_lower(0, 0) == 0.0 and wilson_lower(0, 5) == 0.0
    assert wilson_lower(90, 100) < wilson_lower(900, 1000) < 0.9
    n = needed(0.99)
    assert 260 < n < 280 and wilson_lower(n, n) >= 0.99 > wilson_lower(n - 1, n - 1)


def test_a_fitted_threshold_reaches_its_target_on_the_answers_it_was_fitted_on():
    pairs = {"total": _answers(2000, seed=1), "date": _answers(2000, seed=2, wrong_below=0.3)}
    fitted = fit_thresholds(pairs, target=0.97)
    for field, answers in pairs.items():
        t = fitted.fields[field]
        accepted = [ok for c, ok in answers if c is not None and c >= t.threshold]
        assert len(accepted) == t.accepted and sum(accepted) / len(accepted) == t.precision
        assert t.precision >= t.lower_bound >= 0.97
        assert t.coverage == pytest.approx(len(accepted) / len(answers))
    # the field that is right at lower confidence gets the lower threshold and covers more
    assert fitted.fields["date"].threshold < fitted.fields["total"].threshold
    assert fitted.fields["date"].coverage > fitted.fields["total"].coverage
    # a lower target never gives a higher threshold
    assert fit_field(pairs["total"], target=0.9).threshold <= fitted.fields["total"].threshold


def test_the_lowest_qualifying_threshold_is_chosen():
    # 300 right answers at 0.95 and above, one wrong at 0.5, 100 right at 0.4: taking them all in is
    # 400 right of 401, whose bound (0.989) reaches 0.98 but not 0.99; the 300 alone reach 0.99 (0.991)
    pairs = [(0.95 + i / 10000, True) for i in range(300)] + [(0.5, False)] + [(0.4, True)] * 100
    t = fit_field(pairs, target=0.98)
    assert t.threshold == pytest.approx(0.4) and t.accepted == 401
    t = fit_field(pairs, target=0.99)
    assert t.threshold == pytest.approx(0.95) and t.accepted == 300 and t.precision == 1.0


def test_twenty_perfect_answers_support_no_threshold_and_a_fit_without_any_is_refused():
    few = {"company": [(0.99, True)] * 20, "total": [(0.98, True)] * 15 + [(None, True)] * 3}
    with pytest.raises(ThresholdsError) as info:
        fit_thresholds(few)
    message = str(info.value)
    assert "company 20 pairs (20 approvable, 20 right)" in message
    assert "total 18 pairs (15 approvable, 15 right)" in message
    assert f"at least {needed(0.99)} accepted answers" in message and "0.99" in message
    # one field with enough answers: a threshold for it, none (always review) for the other
    enough = {**few, "date": [(0.97, True)] * 400}
    fitted = fit_thresholds(enough)
    assert fitted.fields["date"].threshold == 0.97
    assert fitted.fields["company"].threshold is None and fitted.fields["company"].support == 20
    assert fitted.mark("company", 1.0) == "review" and fitted.mark("date", 0.99) == "auto"
    with pytest.raises(InvalidRequest, match="target precision: got 1.5"):
        fit_thresholds(enough, target=1.5)


def test_mark_needs_a_threshold_a_confidence_at_or_above_it_and_the_value_in_the_document():
    fitted = fit_thresholds({"total": [(0.9, True)] * 400, "company": [(0.5, True)] * 10})
    assert fitted.mark("total", 0.9) == "auto" and fitted.mark("total", 0.95) == "auto"
    assert fitted.mark("total", 0.89) == "review"
    assert fitted.mark("total", 0.95, grounded=False) == "review"
    assert fitted.mark("total", None) == "review"
    assert fitted.mark("company", 0.99) == "review" and fitted.mark("unknown", 0.99) == "review"


def test_curves_trade_precision_for_coverage_monotonically_in_coverage():
    pts = curve(_answers(500, seed=3))
    coverages = [p["coverage"] for p in pts]
    assert coverages == sorted(coverages) and coverages[-1] <= 1.0
    assert [p["threshold"] for p in pts] == sorted((p["threshold"] for p in pts), reverse=True)
    assert pts[0]["precision"] >= pts[-1]["precision"]
    tied = curve([(0.8, True), (0.8, False), (0.5, True), (None, True)])
    assert tied == [
        {"threshold": 0.8, "coverage": 0.5, "precision": 0.5, "accepted": 2},
        {"threshold": 0.5, "coverage": 0.75, "precision": 2 / 3, "accepted": 3},
    ]


def test_applied_to_other_answers_precision_and_coverage_are_counted_over_every_answer():
    fitted = fit_thresholds({"total": [(0.9, True)] * 400, "company": [(0.5, True)] * 10})
    held = {"total": [(0.95, True), (0.91, False), (0.5, True), (None, True)], "company": [(0.99, True)] * 4}
    out = apply(fitted, held)
    assert out["fields"]["total"] == {"answers": 4, "auto": 2, "coverage": 0.5, "precision": 0.5, "wrong_auto": 1}
    assert out["fields"]["company"]["auto"] == 0 and out["fields"]["company"]["precision"] is None
    assert out["overall"]["answers"] == 8 and out["overall"]["auto"] == 2 and out["overall"]["coverage"] == 0.25


def test_save_and_load_round_trip_and_a_changed_calibration_makes_them_stale(tmp_path):
    platt = Platt(a=1.5, b=-0.5, pairs=400)
    fitted = fit_thresholds({"total": [(0.9, True)] * 400, "company": [(0.5, True)] * 10}, calibration=platt)
    path = fitted.save(tmp_path)
    assert path.name == FILE and json.loads(path.read_text())["calibration"] == {"a": 1.5, "b": -0.5}
    loaded = Thresholds.load(tmp_path)
    assert loaded == fitted and Thresholds.load(tmp_path / "nowhere") is None and Thresholds.load(None) is None
    assert loaded.for_calibration(platt).mark("total", 0.95) == "auto"
    stale = loaded.for_calibration(Platt(a=2.0, b=0.0))
    assert stale.stale and stale.mark("total", 0.99) == "review"
    assert loaded.for_calibration(None).stale
    (tmp_path / FILE).write_text('{"target": 0.99}')
    with pytest.raises(InvalidRequest, match="not a thresholds file"):
        Thresholds.load(tmp_path)


def test_recalibrated_pairs_are_what_the_new_calibration_would_have_given():
    before, after = Platt(a=2.0, b=-1.0), Platt(a=0.5, b=0.3)
    raw = 0.7
    pairs = {"total": [(before(raw), True), (None, False)]}
    moved = recalibrated(pairs, before, after)
    assert moved["total"][0][0] == pytest.approx(after(raw)) and moved["total"][1] == (None, False)
    assert recalibrated(pairs, None, after)["total"][0][0] == pytest.approx(after(before(raw)))
    assert recalibrated(pairs, before, Platt(a=2.0, b=-1.0)) is pairs
