"""What happens to a decoded extraction answer, stage by stage. `extraction.extract_many` decodes (and
ranks candidates, which needs the model); these stages then run in order, each a small function:

    read the answer → calibrate → take the ranked choices → apply the label rules → ground → check
    → mark → review

and each can be switched off by its caller (`conventions=False`, no `rank`, no calibration or
thresholds file). What an adapter learned for them — its label rules, its confidence calibration and
its per-field automation thresholds — comes with its bundle (`bundle.py`: `AdapterBundle.learned`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from backend.inference.grounding import leaves
from backend.labels.anchors import anchors_of, describe, placed
from backend.labels.calibration import Platt
from backend.labels.conventions import Conventions
from backend.labels.thresholds import Mark, Thresholds
from backend.values import is_absent, parse_date, parse_decimal

READS_AS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "date": ("a date", parse_date),
    "amount": ("an amount", parse_decimal),
}


def calibrate(confidence: dict[str, float | None], platt: Platt | None) -> dict[str, float | None]:
    return {k: (platt(v) if platt and v is not None else v) for k, v in confidence.items()}


def take_ranked(
    fields: dict[str, Any], confidence: dict[str, float | None], ranking: dict[str, dict[str, Any]] | None
) -> tuple[dict[str, Any], dict[str, float | None]]:
    """A ranked field whose best candidate differs from the decoded value takes it, with its share of the
    candidates' probability as confidence."""
    fields, confidence = dict(fields), dict(confidence)
    for field, d in (ranking or {}).items():
        if d["choice"] != d["free"]:
            fields[field], confidence[field] = d["choice"], d["share"]
    return fields, confidence


def apply_label_rules(fields: dict[str, Any], text: str, rules: Conventions | None) -> dict[str, Any]:
    return rules.apply(fields, text) if rules is not None else fields


def grounded(name: str, fields: dict[str, Any], grounding: dict[str, Any]) -> bool:
    """Every present value of the field is found in the document."""
    return all(grounding.get(path) is not None for path, value in leaves({name: fields.get(name)}) if value is not None)


def check(fields: dict[str, Any], rules: Conventions | None, document: str | None = None) -> dict[str, str]:
    """Per field whose value does not read as what the adapter's training labels of it were (a date, an
    amount: their label rules' `kind`), or, given the `document`, is printed only after words none of
    those labels stood after (their `anchors`: a subtotal where the labels were totals), what is wrong;
    {} without label rules. Such an answer is never approved automatically, however confident the model
    was ("2312475009906" is no date)."""
    out = {}
    for name, conv in (rules.fields if rules is not None else {}).items():
        value = fields.get(name)
        if not isinstance(value, str) or is_absent(value):
            continue
        if conv.kind in READS_AS:
            what, parse = READS_AS[conv.kind]
            if parse(value) is None:
                out[name] = f"{value!r} does not read as {what}, as the training labels of {name} did"
                continue
        if conv.anchors and document and placed(value, document, conv.anchors) is False:
            out[name] = (
                f"{value!r} is printed after {describe(anchors_of(value, document), most=3)}, where no training "
                f"label of {name} stood (they stood after {describe(conv.anchors)})"
            )
    return out


def reranked(ranking: dict[str, dict[str, Any]] | None) -> set[str]:
    """The fields whose value candidate ranking changed: their confidence is the chosen candidate's share
    (1.0 where the document prints one date), not the decoding confidence thresholds were fitted on."""
    return {field for field, d in (ranking or {}).items() if d["choice"] != d["free"]}


def approvable(
    name: str,
    fields: dict[str, Any],
    grounding: dict[str, Any],
    checks: dict[str, str],
    ranked: set[str] | frozenset[str] = frozenset(),
) -> bool:
    """A value is given, found in the document, passes its check and is the model's own answer (not
    in `ranked`, the fields ranking changed): an answer thresholds may approve."""
    return (
        fields.get(name) not in (None, [], {})
        and name not in checks
        and name not in ranked
        and grounded(name, fields, grounding)
    )


def mark(
    names: list[str],
    fields: dict[str, Any],
    confidence: dict[str, float | None],
    grounding: dict[str, Any],
    thresholds: Thresholds | None,
    checks: dict[str, str] | None = None,
    ranked: set[str] | frozenset[str] = frozenset(),
) -> dict[str, Mark] | None:
    """`auto` or `review` per field by the adapter's thresholds (None without them): `auto` needs an
    approvable value (`approvable`) at or above its field's threshold; a field without one is always
    `review`."""
    if thresholds is None:
        return None
    return {
        n: thresholds.mark(n, confidence.get(n), grounded=approvable(n, fields, grounding, checks or {}, ranked))
        for n in names
    }


def to_review(
    names: list[str],
    fields: dict[str, Any],
    confidence: dict[str, float | None],
    grounding: dict[str, Any],
    threshold: float,
    marks: dict[str, Mark] | None = None,
    checks: dict[str, str] | None = None,
    ranked: set[str] | frozenset[str] = frozenset(),
) -> list[str]:
    """Fields a person should look at: given, but below `threshold`, not found in the document, failing
    their check or changed by candidate ranking (`ranked`) — or, with the adapter's automation `marks`,
    given and not marked `auto`."""
    given = [n for n in names if fields.get(n) not in (None, [], {})]
    if marks is not None:
        return [n for n in given if marks.get(n) != "auto"]
    return [
        n
        for n in given
        if (confidence.get(n) or 0) < threshold or not approvable(n, fields, grounding, checks or {}, ranked)
    ]
