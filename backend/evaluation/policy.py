"""Eval-gated promotion: does a new adapter version replace the one an alias points at?

Both are evaluated on the same data in the same eval job. The candidate is promoted when
- no version holds the alias yet, or
- its micro-F1 is at least `min_gain` above the incumbent's, and
- no field's F1 drops by more than `max_field_drop` against the incumbent.
The decision, with every number it used, is stored with the candidate version.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from backend.errors import InvalidRequest
from backend.training.config import from_known


@dataclass(frozen=True)
class PromotionPolicy:
    alias: str = "prod"
    min_gain: float = 0.0  # micro-F1 the candidate must gain over the incumbent (may be 0: "not worse")
    max_field_drop: float = 0.05  # largest F1 drop allowed on any single field

    def __post_init__(self) -> None:
        if not -1 <= self.min_gain <= 1:
            raise InvalidRequest(f"min_gain: got {self.min_gain}, expected a number in [-1, 1]")
        if not 0 <= self.max_field_drop <= 1:
            raise InvalidRequest(f"max_field_drop: got {self.max_field_drop}, expected a number in [0, 1]")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PromotionPolicy:
        return from_known(cls, values, what="promote")


def decide(candidate: dict[str, Any], incumbent: dict[str, Any] | None, policy: PromotionPolicy) -> dict[str, Any]:
    """`candidate`/`incumbent`: extraction summaries (`metrics.summarize`) on the same data."""
    decision: dict[str, Any] = {
        "policy": asdict(policy),
        "candidate_f1": candidate["micro"]["f1"],
        "incumbent_f1": incumbent["micro"]["f1"] if incumbent else None,
    }
    if incumbent is None:
        return {**decision, "promote": True, "reasons": [f"no version holds @{policy.alias} yet"]}
    gain = candidate["micro"]["f1"] - incumbent["micro"]["f1"]
    drops = {
        f: incumbent["fields"][f]["f1"] - c["f1"] for f, c in candidate["fields"].items() if f in incumbent["fields"]
    }
    reasons = []
    if gain < policy.min_gain:
        reasons.append(f"micro-F1 gain {gain:+.4f} is below the required {policy.min_gain:+.4f}")
    for field, drop in sorted(drops.items()):
        if drop > policy.max_field_drop:
            reasons.append(f"field {field!r} F1 drops by {drop:.4f} (> {policy.max_field_drop:.4f})")
    promote = not reasons
    if promote:
        reasons.append(
            f"micro-F1 gain {gain:+.4f} >= {policy.min_gain:+.4f} and no field drops more than "
            f"{policy.max_field_drop:.4f}"
        )
    return {**decision, "promote": promote, "gain": gain, "field_drops": drops, "reasons": reasons}
