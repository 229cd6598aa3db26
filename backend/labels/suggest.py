"""Which documents to label first: a document's value as a label, from its extraction record alone.

Five signals, each in [0, 1] and each higher where a label would teach more:
- `uncertainty`: over the fields the record gives a value and a confidence, the mean of the least
  confident field's 1 - confidence and the average 1 - confidence (the record's confidence is the
  adapter's calibrated one where the adapter has a calibration, `calibrated: true`; the model's own
  otherwise). A model that gives no confidence contributes 0.
- `disagreement`: the decoded value against the ranked candidates (`ranking`, where the record has
  it): 1 for a field whose best candidate differs from the decoded value, else 1 - the chosen
  candidate's share of the probability; and, across the repair loop's `attempts`, the share of the
  last attempt's fields whose value an earlier attempt gave differently. The largest of these.
- `ungrounded`: the share of the record's values not found in the document's text (`grounding`: no
  span, or only a partial match, which is no evidence).
- `validation`: 1 - 0.5 ** (errors + warnings / 2) from the validators' issues (`validation`) and
  the extraction's own checks (`checks`: a value that does not read as its field's kind or stands
  where its training labels never did, each an error): 0 for none, 0.5 for one error, 0.75 for two.
- `novelty`: 1 - the similarity of the document's head (sender block) to the nearest training head of
  the dataset (`backend/labels/novelty.py`); 1 against a dataset with no examples yet.

The score is their weighted mean, `sum(w * signal) / sum(w)` (`Weights`, all 1 by default), so it is
in [0, 1] and never falls when any one signal rises. `reasons` name the signals that made it, largest
contribution first, each a short string ("low confidence: total 0.31 (calibrated)"). `rank` orders
documents by score, highest first; equal scores keep the order they were given in.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from backend.labels.novelty import HeadIndex

SIGNALS = ("uncertainty", "disagreement", "ungrounded", "validation", "novelty")
EMPTY: tuple[Any, ...] = (None, "", [], {})


@dataclass(frozen=True)
class Weights:
    """How much each signal counts in the score (relative; only their ratios matter)."""

    uncertainty: float = 1.0
    disagreement: float = 1.0
    ungrounded: float = 1.0
    validation: float = 1.0
    novelty: float = 1.0

    def __post_init__(self) -> None:
        values = asdict(self)
        bad = {k: v for k, v in values.items() if not isinstance(v, (int, float)) or v < 0}
        if bad:
            raise ValueError(f"suggestion weights must be numbers >= 0, got {bad}")
        if sum(values.values()) <= 0:
            raise ValueError(f"suggestion weights: at least one must be above 0, got {values}")


@dataclass
class Value:
    """One document's value as a label: its score, the signals behind it, and the reasons in words."""

    score: float
    signals: dict[str, float]
    reasons: list[str] = field(default_factory=list)


def combine(signals: Mapping[str, float], reasons: Mapping[str, str], weights: Weights = Weights()) -> Value:
    """The weighted mean of the signals (each clipped to [0, 1]), with the reasons of those above 0,
    largest contribution first (ties in `SIGNALS` order)."""
    w = asdict(weights)
    clipped = {name: min(1.0, max(0.0, float(signals.get(name, 0.0)))) for name in SIGNALS}
    score = sum(w[name] * clipped[name] for name in SIGNALS) / sum(w.values())
    made = [name for name in SIGNALS if clipped[name] > 0 and w[name] > 0 and name in reasons]
    made.sort(key=lambda name: -w[name] * clipped[name])
    return Value(score, clipped, [reasons[name] for name in made])


def score(
    record: Mapping[str, Any], *, novelty: float | None = None, heads: int = 1, weights: Weights = Weights()
) -> Value:
    """A record's value; `novelty` from `HeadIndex.novelty` against `heads` training heads (None: not
    measured, counts 0)."""
    signals: dict[str, float] = {}
    reasons: dict[str, str] = {}
    for name, measure in (
        ("uncertainty", _uncertainty),
        ("disagreement", _disagreement),
        ("ungrounded", _ungrounded),
        ("validation", _validation),
    ):
        signals[name], reasons[name] = measure(record)
    if novelty is not None:
        signals["novelty"] = novelty
        reasons["novelty"] = (
            f"new sender: nearest training head {1 - novelty:.0%} alike"
            if heads
            else "new sender: the dataset has no examples yet"
        )
    return combine(signals, reasons, weights)


def rank(
    records: Sequence[Mapping[str, Any]],
    *,
    index: HeadIndex | Mapping[str | None, HeadIndex] | None = None,
    weights: Weights = Weights(),
) -> list[tuple[int, Value]]:
    """(position in `records`, value) for every record, highest score first, ties in input order.
    Novelty is measured on each record's `text` against `index`: one for all, or one per document type
    (the record's `doc_type`; a type it lacks is not measured); without an index, not at all."""
    novelty: list[float | None] = [None] * len(records)
    heads: list[int] = [0] * len(records)
    by_type: Mapping[str | None, HeadIndex | None]
    if isinstance(index, Mapping):
        by_type = index
    else:
        by_type = {r.get("doc_type"): index for r in records}
    for doc_type, one in by_type.items():
        mine = [i for i, r in enumerate(records) if r.get("doc_type") == doc_type]
        if one is None or not mine:
            continue
        for i, n in zip(mine, one.novelty([str(records[i].get("text") or "") for i in mine])):
            novelty[i], heads[i] = n, len(one)
    values = [score(r, novelty=n, heads=h, weights=weights) for r, n, h in zip(records, novelty, heads)]
    return [(i, values[i]) for i in order(values)]


def order(values: Sequence[Value]) -> list[int]:
    """Positions in `values`, highest score first; equal scores keep their order."""
    return sorted(range(len(values)), key=lambda i: -values[i].score)


# -- signals: (value in [0, 1], reason) ------------------------------------------------------------------
def _uncertainty(record: Mapping[str, Any]) -> tuple[float, str]:
    fields = record.get("fields") or {}
    known = {
        name: float(c)
        for name, c in (record.get("confidence") or {}).items()
        if isinstance(c, (int, float)) and fields.get(name) not in EMPTY
    }
    if not known:
        return 0.0, ""
    doubt = {name: 1.0 - min(1.0, max(0.0, c)) for name, c in known.items()}
    worst = max(doubt, key=lambda name: doubt[name])
    value = 0.5 * doubt[worst] + 0.5 * sum(doubt.values()) / len(doubt)
    how = "calibrated" if record.get("calibrated") else "uncalibrated"
    return value, f"low confidence: {worst} {known[worst]:.2f} ({how})"


def _disagreement(record: Mapping[str, Any]) -> tuple[float, str]:
    found: list[tuple[float, str]] = [(0.0, "")]
    for name, d in (record.get("ranking") or {}).items():
        if not isinstance(d, Mapping):
            continue
        best, free, share = d.get("best"), d.get("free"), d.get("share")
        if best is not None and not _same(best, free):
            found.append((1.0, f"ranked candidate disagrees: {name} {best!r}, decoded {free!r}"))
        elif isinstance(share, (int, float)):
            found.append((1.0 - float(share), f"candidates split: {name} {float(share):.2f} share"))
    attempts = [a.get("fields") or {} for a in record.get("attempts") or [] if isinstance(a, Mapping)]
    if len(attempts) > 1:
        last = {k: v for k, v in attempts[-1].items() if v not in EMPTY}
        changed = sorted(k for k in last if any(not _same(a.get(k), last[k]) for a in attempts[:-1]))
        if last and changed:
            found.append((len(changed) / len(last), f"repairs changed: {', '.join(changed[:3])}"))
    return max(found, key=lambda pair: pair[0])


def _ungrounded(record: Mapping[str, Any]) -> tuple[float, str]:
    grounding = record.get("grounding") or {}
    if not grounding:
        return 0.0, ""
    missing = [path for path, span in grounding.items() if not span or span.get("match") == "partial"]
    shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
    return len(missing) / len(grounding), f"not in the text: {shown} ({len(missing)} of {len(grounding)})"


def _validation(record: Mapping[str, Any]) -> tuple[float, str]:
    issues = [i for i in record.get("validation") or [] if isinstance(i, Mapping)]
    issues += [{"field": f, "code": "failed_check"} for f in record.get("checks") or {}]
    errors = [i for i in issues if i.get("severity", "error") == "error"]
    weight = len(errors) + 0.5 * (len(issues) - len(errors))
    if not issues:
        return 0.0, ""
    first = (errors or issues)[0]
    what = f"{first.get('code', 'issue')} on {first.get('field', '?')}"
    return 1.0 - 0.5**weight, f"fails validation: {what} ({len(errors)} errors, {len(issues) - len(errors)} warnings)"


def _same(a: Any, b: Any) -> bool:
    """Equal values, case and surrounding spaces aside ("12.50" is 12.50)."""

    def key(v: Any) -> str:
        return json.dumps(v, sort_keys=True, default=str) if isinstance(v, (dict, list)) else str(v).strip().lower()

    return key(a) == key(b)
