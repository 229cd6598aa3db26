"""What happens to a decoded extraction answer, stage by stage. `extraction.extract_many` decodes (and
ranks candidates, which needs the model); these stages then run in order, each a small function:

    read the answer → calibrate → take the ranked choices → apply the label rules → ground → review

and each can be switched off by its caller (`conventions=False`, no `rank`, no calibration file). What
an adapter learned for them — its label rules and its confidence calibration — comes with its bundle
(`bundle.py`: `AdapterBundle.learned`).
"""

from __future__ import annotations

from typing import Any

from backend.inference.grounding import leaves
from backend.labels.calibration import Platt
from backend.labels.conventions import Conventions


def calibrate(confidence: dict[str, float | None], platt: Platt | None) -> dict[str, float | None]:
    return {k: (platt(v) if platt and v is not None else v) for k, v in confidence.items()}


def take_ranked(fields: dict[str, Any], confidence: dict[str, float | None],
                ranking: dict[str, dict[str, Any]] | None) -> tuple[dict[str, Any], dict[str, float | None]]:
    """A ranked field whose best candidate differs from the decoded value takes it, with its share of the
    candidates' probability as confidence."""
    fields, confidence = dict(fields), dict(confidence)
    for field, d in (ranking or {}).items():
        if d["choice"] != d["free"]:
            fields[field], confidence[field] = d["choice"], d["share"]
    return fields, confidence


def apply_label_rules(fields: dict[str, Any], text: str, rules: Conventions | None) -> dict[str, Any]:
    return rules.apply(fields, text) if rules is not None else fields


def to_review(names: list[str], fields: dict[str, Any], confidence: dict[str, float | None],
              grounding: dict[str, Any], threshold: float) -> list[str]:
    """Fields a person should look at: given, but below `threshold` or not found in the document."""
    return [n for n in names if fields.get(n) not in (None, [], {}) and (
        (confidence.get(n) or 0) < threshold or any(
            grounding.get(path) is None for path, value in leaves({n: fields[n]}) if value is not None))]
