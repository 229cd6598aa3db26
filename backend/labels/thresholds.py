"""Per-field confidence thresholds for selective automation: which answers need no human look.

From (calibrated confidence, correct?) pairs of held-out answers, each field gets the lowest threshold
whose accepted answers reach the target precision (default 0.99) — judged not by the precision seen on
those answers, which a lucky handful can make perfect, but by its one-sided Wilson lower bound at
`confidence` (95%): with every accepted answer right, a 0.99 target needs at least
z² · 0.99 / 0.01 ≈ 268 of them. A field whose answers cannot support the target gets no threshold, and
its answers always go to review; a fit where no field gets one is refused (`ThresholdsError`), naming
how many pairs each field had and how many it would need.

An answer counts only where it could be approved at all: a value that is present and found in the
document. Every other answer (no value, or not in the text) is kept as a pair without confidence: it
is never accepted, but it counts toward coverage — the share of all answers auto-approved.

The fitted thresholds are stored with the adapter (`thresholds.json` beside `calibration.json`) and
applied at serving: `mark` says `auto` or `review` per field. They hold for the confidences they were
fitted on, so they record the calibration those came through: an adapter whose calibration.json has
changed since marks every field `review` until its thresholds are fitted again.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from statistics import NormalDist
from typing import Any, Literal

from backend.errors import InvalidRequest
from backend.labels.calibration import Platt

FILE = "thresholds.json"
DEFAULT_TARGET = 0.99
DEFAULT_CONFIDENCE = 0.95  # of the one-sided lower bound on precision

Pair = tuple[float | None, bool]  # (calibrated confidence, or None: cannot be approved; correct?)
Mark = Literal["auto", "review"]


class ThresholdsError(InvalidRequest):
    """No field's held-out answers support a threshold at the target precision."""


@dataclass(frozen=True)
class FieldThreshold:
    threshold: float | None  # lowest confidence auto-approved; None: always review
    support: int  # answers it was fitted on (approvable or not)
    accepted: int  # of them at or above the threshold
    precision: float | None  # share of the accepted that were right
    lower_bound: float | None  # its one-sided Wilson lower bound
    coverage: float  # accepted / support


@dataclass(frozen=True)
class Thresholds:
    target: float
    confidence: float
    fields: dict[str, FieldThreshold]
    calibration: dict[str, float] | None = None  # the Platt scaling (a, b) the confidences came through
    stale: bool = False  # the adapter's calibration changed since: every field is `review` (not saved)

    def mark(self, field: str, confidence: float | None, *, grounded: bool = True) -> Mark:
        """`auto` when the field has a threshold and the answer is found in the document at or above it."""
        fitted = self.fields.get(field)
        if self.stale or fitted is None or fitted.threshold is None or confidence is None or not grounded:
            return "review"
        return "auto" if confidence >= fitted.threshold else "review"

    def for_calibration(self, platt: Platt | None) -> Thresholds:
        """These thresholds as they hold under the adapter's current calibration: stale when it differs."""
        return replace(self, stale=calibration_record(platt) != self.calibration)

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "confidence": self.confidence,
            "calibration": self.calibration,
            "fields": {k: asdict(v) for k, v in self.fields.items()},
        }

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / FILE
        path.write_text(json.dumps(self.as_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, folder: str | Path | None) -> Thresholds | None:
        path = Path(folder) / FILE if folder else None
        if path is None or not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
            fields = {str(k): FieldThreshold(**v) for k, v in data["fields"].items()}
            calibration = data.get("calibration")
            return cls(float(data["target"]), float(data["confidence"]), fields, calibration)
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidRequest(f"{path}: not a thresholds file ({type(exc).__name__}: {exc})") from exc


def wilson_lower(correct: int, n: int, *, confidence: float = DEFAULT_CONFIDENCE) -> float:
    """One-sided Wilson score lower bound of a proportion (0 for no observations)."""
    if n == 0:
        return 0.0
    z = NormalDist().inv_cdf(confidence)
    p = correct / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - spread) / (1 + z * z / n))


def needed(target: float, *, confidence: float = DEFAULT_CONFIDENCE) -> int:
    """The fewest accepted answers, all right, whose lower bound reaches `target`."""
    z = NormalDist().inv_cdf(confidence)
    return math.ceil(z * z * target / (1 - target) - 1e-9)


def fit_field(pairs: list[Pair], *, target: float, confidence: float = DEFAULT_CONFIDENCE) -> FieldThreshold:
    """The lowest threshold whose accepted answers' precision lower bound reaches `target`."""
    best: FieldThreshold | None = None
    for threshold, accepted, right in _sweep(pairs):
        bound = wilson_lower(right, accepted, confidence=confidence)
        if bound >= target:  # lower thresholds come later in the sweep: the last to qualify is kept
            best = FieldThreshold(threshold, len(pairs), accepted, right / accepted, bound, accepted / len(pairs))
    return best or FieldThreshold(None, len(pairs), 0, None, None, 0.0)


def fit_thresholds(
    pairs: dict[str, list[Pair]],
    *,
    target: float = DEFAULT_TARGET,
    confidence: float = DEFAULT_CONFIDENCE,
    calibration: Platt | None = None,
) -> Thresholds:
    """A threshold per field (None where its pairs cannot support one); ThresholdsError when no field
    gets one. `calibration`: the adapter's calibration the confidences came through."""
    for name, value in (("target precision", target), ("confidence", confidence)):
        if not 0 < value < 1:
            raise InvalidRequest(f"{name}: got {value!r}, expected a number strictly between 0 and 1")
    fitted = {f: fit_field(p, target=target, confidence=confidence) for f, p in pairs.items()}
    if not any(t.threshold is not None for t in fitted.values()):
        had = ", ".join(
            f"{f} {len(p)} pairs ({sum(c is not None for c, _ in p)} approvable, {sum(ok for c, ok in p if c is not None)} right)"
            for f, p in pairs.items()
        )
        raise ThresholdsError(
            f"no field reaches precision {target:g} at {confidence:.0%} confidence: had {had or 'no pairs'}; "
            f"a threshold needs at least {needed(target, confidence=confidence)} accepted answers of one field, "
            "all right (more with any wrong): score more held-out documents, or lower the target precision"
        )
    return Thresholds(target, confidence, fitted, calibration_record(calibration))


def recalibrated(pairs: dict[str, list[Pair]], before: Platt | None, after: Platt | None) -> dict[str, list[Pair]]:
    """The pairs' confidences as `after` would have given them instead of `before` (each None: no
    calibration), for thresholds fitted in the same run as a new calibration."""
    if calibration_record(before) == calibration_record(after):
        return pairs
    if before is not None and before.a <= 0:
        raise InvalidRequest(f"the calibration a={before.a} cannot be undone (a must be positive)")

    def move(c: float) -> float:
        raw = before.inverse(c) if before is not None else c
        return after(raw) if after is not None else raw

    return {f: [(None if c is None else move(c), ok) for c, ok in p] for f, p in pairs.items()}


def curve(pairs: list[Pair]) -> list[dict[str, float]]:
    """Precision against coverage as the threshold falls: one point per distinct confidence."""
    return [
        {"threshold": t, "coverage": accepted / len(pairs), "precision": right / accepted, "accepted": accepted}
        for t, accepted, right in _sweep(pairs)
    ]


def apply(thresholds: Thresholds, pairs: dict[str, list[Pair]]) -> dict[str, Any]:
    """Precision and coverage of the stored thresholds on (other) answers: per field and overall."""
    out: dict[str, Any] = {}
    totals = [0, 0, 0]  # answers, accepted, right among the accepted
    for field, field_pairs in pairs.items():
        accepted = [ok for c, ok in field_pairs if thresholds.mark(field, c) == "auto"]
        out[field] = _operating_point(len(field_pairs), len(accepted), sum(accepted))
        totals = [totals[0] + len(field_pairs), totals[1] + len(accepted), totals[2] + sum(accepted)]
    return {"fields": out, "overall": _operating_point(*totals)}


def _operating_point(answers: int, accepted: int, right: int) -> dict[str, Any]:
    return {
        "answers": answers,
        "auto": accepted,
        "coverage": accepted / answers if answers else 0.0,
        "precision": right / accepted if accepted else None,
        "wrong_auto": accepted - right,
    }


def calibration_record(platt: Platt | None) -> dict[str, float] | None:
    """The Platt scaling as thresholds record it: None for none (or the identity)."""
    return {"a": platt.a, "b": platt.b} if platt is not None and (platt.a, platt.b) != (1.0, 0.0) else None


def _sweep(pairs: list[Pair]) -> list[tuple[float, int, int]]:
    """(threshold, answers accepted, right among them) for each distinct confidence, highest first."""
    ranked = sorted(((c, ok) for c, ok in pairs if c is not None), key=lambda p: -p[0])
    out: list[tuple[float, int, int]] = []
    right = 0
    for i, (c, ok) in enumerate(ranked):
        right += ok
        if i + 1 == len(ranked) or ranked[i + 1][0] < c:  # ties are accepted together
            out.append((c, i + 1, right))
    return out
