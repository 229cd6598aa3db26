"""Calibrating per-field confidence on a validation set (Platt scaling).

Raw confidence is the geometric mean of the value tokens' probabilities (`inference.constrained.
field_confidence`); a fine-tuned model is often over- or under-confident. Platt scaling fits
    calibrated = sigmoid(a · logit(raw) + b)
to (raw confidence, field correct?) pairs by logistic regression: two numbers, monotone (the order
of fields by confidence never changes), and stable on a few hundred pairs where binning methods are
not. `evaluate_calibration` reports the ECE before and after, the "after" measured out of fold (fit
on one half, scored on the other, and the other way round), so the improvement is not the fit
grading itself. The calibrator fitted on all pairs is what gets stored with an adapter
(`calibration.json` in its folder) and applied at serving.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from backend.scoring.metrics import calibration

EPS = 1e-6
FILE = "calibration.json"
MIN_PAIRS = 10  # fewer (confidence, correct) pairs fit nothing: the identity is kept


@dataclass(frozen=True)
class Platt:
    a: float = 1.0
    b: float = 0.0
    pairs: int = 0  # how many (confidence, correct) pairs it was fitted on

    def __call__(self, confidence: float) -> float:
        return _sigmoid(self.a * _logit(confidence) + self.b)

    def inverse(self, calibrated: float) -> float:
        """The raw confidence this calibrator turns into `calibrated` (a > 0)."""
        return _sigmoid((_logit(calibrated) - self.b) / self.a)

    @property
    def fitted(self) -> bool:
        """Fitted on enough right and wrong answers to correct anything (else it is the identity)."""
        return self.pairs >= MIN_PAIRS and (self.a, self.b) != (1.0, 0.0)

    def save(self, folder: Path) -> Path:
        path = Path(folder) / FILE
        path.write_text(json.dumps({"method": "platt", **asdict(self)}, indent=2) + "\n")
        return path

    @classmethod
    def load(cls, folder: str | Path | None) -> Platt | None:
        path = Path(folder) / FILE if folder else None
        if path is None or not path.is_file():
            return None
        data = json.loads(path.read_text())
        return cls(float(data["a"]), float(data["b"]), int(data.get("pairs", 0)))


def fit_platt(pairs: list[tuple[float, bool]], *, iterations: int = 50, l2: float = 1e-3) -> Platt:
    """Newton's method on the logistic loss (a tiny L2 keeps a separable set finite). Too few pairs,
    or pairs all right or all wrong, give the identity."""
    if len(pairs) < MIN_PAIRS or len({ok for _, ok in pairs}) < 2:
        return Platt(pairs=len(pairs))
    xs = [_logit(c) for c, _ in pairs]
    ys = [1.0 if ok else 0.0 for _, ok in pairs]
    a, b = 1.0, 0.0
    for _ in range(iterations):
        ga, gb, haa, hab, hbb = l2 * a, 0.0, l2, 0.0, 0.0  # gradient and Hessian of the loss
        for x, y in zip(xs, ys):
            p = _sigmoid(a * x + b)
            w = p * (1 - p)
            ga, gb = ga + (p - y) * x, gb + (p - y)
            haa, hab, hbb = haa + w * x * x, hab + w * x, hbb + w
        det = haa * hbb - hab * hab
        if abs(det) < 1e-12:
            break
        da, db = (hbb * ga - hab * gb) / det, (haa * gb - hab * ga) / det
        step, before = 1.0, _loss(a, b, xs, ys, l2)
        while step > 1e-4 and _loss(a - step * da, b - step * db, xs, ys, l2) > before:
            step /= 2  # backtracking: a full Newton step can overshoot far from the optimum
        a, b = a - step * da, b - step * db
        if step * (abs(da) + abs(db)) < 1e-9:
            break
    return Platt(a, b, len(pairs))


def _loss(a: float, b: float, xs: list[float], ys: list[float], l2: float) -> float:
    total = l2 * a * a / 2
    for x, y in zip(xs, ys):
        z = a * x + b
        total += max(z, 0) - z * y + math.log1p(math.exp(-abs(z)))  # stable log(1 + e^z) - z·y
    return total


def evaluate_calibration(pairs: list[tuple[float, bool]]) -> dict[str, Any]:
    """ECE of the raw confidences, ECE after Platt scaling measured out of fold, and the calibrator
    fitted on every pair."""
    raw = calibration(pairs)
    folds = [pairs[0::2], pairs[1::2]]
    out_of_fold = [(fit_platt(folds[1 - k])(c), ok) for k in (0, 1) for c, ok in folds[k]]
    fitted = fit_platt(pairs)
    return {
        "predictions": raw["predictions"],
        "ece": raw["ece"],
        "bins": raw["bins"],
        "ece_calibrated": calibration(out_of_fold)["ece"] if len(pairs) >= 20 else None,
        "platt": {"a": fitted.a, "b": fitted.b, "pairs": fitted.pairs},
    }


def _logit(p: float) -> float:
    p = min(max(p, EPS), 1 - EPS)
    return math.log(p / (1 - p))


def _sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z)) if z >= 0 else math.exp(z) / (1 + math.exp(z))
