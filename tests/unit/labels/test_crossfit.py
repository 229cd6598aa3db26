"""Cross-fitting (backend/evaluation/crossfit.py): several evaluations' answers pooled for one adapter's
thresholds — each carried through the calibration it was scored under to the final adapter's, each
document counted once, and refused with the report named where the evaluations cannot be pooled."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from backend.errors import InvalidRequest
from backend.evaluation.crossfit import pooled_pairs
from backend.labels.calibration import Platt
from backend.labels.thresholds import ThresholdsError, calibration_record, fit_thresholds, needed


def _report(folder: Path, part: str, pairs: dict[str, list], *, calibration: Platt | None = None, **extra) -> Path:
    """An eval.json as `tunebridge eval --constrained` writes it: one adapter, its answers' pairs, the
    calibration they came through, and where each document came from."""
    n = len(next(iter(pairs.values())))
    selective = {"pairs": pairs, "calibration": calibration_record(calibration)}
    entry = {"extraction": {"selective": selective}, "predictions": [{"origin": f"{part}:{i + 1}"} for i in range(n)]}
    folder.mkdir(parents=True)
    (folder / "eval.json").write_text(json.dumps({"data": part, "candidates": {f"run-{part}": entry, **extra}}))
    return folder


def _right(n: int, seed: int) -> list:
    rng = random.Random(seed)
    return [[0.9 + 0.1 * rng.random(), True] for _ in range(n)]


def test_pooled_answers_support_a_threshold_no_single_evaluation_can(tmp_path):
    half = needed(0.99) // 2 + 10  # each part alone is too thin for a 0.99 bound; together they are not
    a = _report(tmp_path / "a", "part-0.jsonl", {"total": _right(half, 0)})
    b = _report(tmp_path / "b", "part-1.jsonl", {"total": _right(half, 1)})
    for one in (a, b):
        with pytest.raises(ThresholdsError, match="at least 268 accepted answers"):
            fit_thresholds(pooled_pairs([one], None)[0])
    pairs, sources = pooled_pairs([a, b / "eval.json"], None)
    assert [s.documents for s in sources] == [half, half] and sources[1].adapter == "run-part-1.jsonl"
    fitted = fit_thresholds(pairs).fields["total"]
    assert fitted.support == 2 * half and fitted.threshold is not None and fitted.lower_bound >= 0.99


def test_each_evaluations_confidences_are_carried_to_the_final_adapters_calibration(tmp_path):
    scored_under, final = Platt(2.0, 0.5), Platt(0.5, -0.2)
    a = _report(tmp_path / "a", "p0", {"date": [[scored_under(0.8), True], [None, False]]}, calibration=scored_under)
    b = _report(tmp_path / "b", "p1", {"date": [[0.6, False]]})  # scored uncalibrated
    pairs, _ = pooled_pairs([a, b], final)
    assert pairs["date"][0][0] == pytest.approx(final(0.8)) and pairs["date"][0][1] is True
    assert pairs["date"][1] == (None, False) and pairs["date"][2][0] == pytest.approx(final(0.6))
    raw, _ = pooled_pairs([a, b], None)
    assert [c for c, _ in raw["date"]] == [pytest.approx(0.8), None, 0.6]


def test_a_document_answered_by_two_evaluations_is_refused_naming_both(tmp_path):
    a = _report(tmp_path / "a", "part-0.jsonl", {"total": _right(3, 0)})
    b = _report(tmp_path / "b", "part-0.jsonl", {"total": _right(3, 1)})
    with pytest.raises(
        InvalidRequest, match=r"b/eval.json and .*a/eval.json both answer the document at part-0.jsonl:1"
    ):
        pooled_pairs([a, b], None)


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda d: d, "no evaluation there"),
        (lambda d: _garbled(d), "not an evaluation report"),
        (lambda d: _report(d, "p", {"total": _right(2, 0)}, other={"extraction": {"selective": {}}}), "2 adapters"),
        (lambda d: _drop(_report(d, "p", {"total": _right(2, 0)})), "older"),
    ],
    ids=["missing", "not-json", "two-adapters", "no-calibration-record"],
)
def test_reports_that_cannot_be_pooled_are_refused_with_the_file(tmp_path, make, expected):
    folder = make(tmp_path / "report")
    with pytest.raises(InvalidRequest, match=expected) as err:
        pooled_pairs([folder], None)
    assert "report" in str(err.value)


def _garbled(folder: Path) -> Path:
    folder.mkdir()
    (folder / "eval.json").write_text("{not json")
    return folder


def _drop(folder: Path) -> Path:
    """The report as an older tunebridge wrote it: no calibration record beside the pairs."""
    data = json.loads((folder / "eval.json").read_text())
    for entry in data["candidates"].values():
        entry["extraction"]["selective"].pop("calibration")
    (folder / "eval.json").write_text(json.dumps(data))
    return folder


def test_evaluations_of_different_fields_or_none_at_all_are_refused(tmp_path):
    a = _report(tmp_path / "a", "p0", {"total": _right(2, 0)})
    b = _report(tmp_path / "b", "p1", {"date": _right(2, 1)})
    with pytest.raises(InvalidRequest, match="differ from the other evaluations"):
        pooled_pairs([a, b], None)
    with pytest.raises(InvalidRequest, match="no evaluations given"):
        pooled_pairs([], None)
