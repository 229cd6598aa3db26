"""Extraction and answer metrics: one module, used by `tunebridge eval`, eval jobs and training.

Per document and field, a prediction is one of:
- `correct`: both present and the same value (`normalize.same_value`: text, amounts, dates);
- `wrong`: both present, different values;
- `missing`: the gold value is present, the prediction absent (null, empty or no key);
- `extra`: the gold value is absent, the prediction present;
- `absent`: both absent (counts for exact match; not a positive).
Precision = correct / (correct + wrong + extra); recall = correct / (correct + wrong + missing);
F1 their harmonic mean; "micro" pools every field's counts. A document is an exact match when
every field is `correct` or `absent`. A raw output is JSON-valid when it parses as one JSON object,
and schema-valid when that object has exactly the schema's keys with string, number or null values.

Each error gets categories (`ERROR_CATEGORIES`), so a report can say *why* fields are wrong:
- `missing`, `hallucinated` (a present prediction whose text is nowhere in the document),
- `format` (the same letters and digits as the gold value, but not the same value as written),
- `too_long` (the prediction contains the gold value and more), `near_miss` (within a small edit
  distance: misspelling, a dropped character), `repetitive` (a repeated word n-gram, the loop that a
  small model falls into), and `wrong_value` when none of these applies.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from backend.scoring.normalize import loose, norm_text, same_value
from backend.values import is_absent

ERROR_CATEGORIES = ("missing", "hallucinated", "format", "too_long", "near_miss", "repetitive", "wrong_value")
NEAR_MISS = 0.2  # edit distance at most this share of the gold value's length (and at least 1 character)


@dataclass
class FieldResult:
    field: str
    outcome: str  # correct | wrong | missing | extra | absent
    predicted: Any
    gold: Any
    categories: list[str] = dataclasses.field(default_factory=list)


@dataclass
class DocumentResult:
    index: int
    fields: list[FieldResult]
    valid_json: bool
    schema_valid: bool
    raw: str

    @property
    def exact(self) -> bool:
        return all(f.outcome in ("correct", "absent") for f in self.fields)

    @property
    def errors(self) -> int:
        return sum(f.outcome not in ("correct", "absent") for f in self.fields)


def parse_output(raw: str, names: list[str]) -> tuple[dict[str, Any], bool, bool]:
    """(fields, JSON-valid, schema-valid) from a model's raw answer."""
    from backend.prompts import ExtractionSchema, parse_answer

    parsed = parse_answer(raw, ExtractionSchema.from_names(names))
    try:
        value = json.loads(raw.strip())
    except json.JSONDecodeError:
        value = None
    schema_valid = (
        isinstance(value, dict)
        and set(value) == set(names)
        and all(v is None or isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value.values())
    )
    return parsed.fields, parsed.valid_json, schema_valid


def score_document(index: int, raw: str, gold: dict[str, Any], names: list[str], source: str = "") -> DocumentResult:
    predicted, valid_json, schema_valid = parse_output(raw, names)
    results = []
    for name in names:
        p, g = predicted.get(name), gold.get(name)
        if is_absent(g):
            outcome = "absent" if is_absent(p) else "extra"
        elif is_absent(p):
            outcome = "missing"
        else:
            outcome = "correct" if same_value(p, g) else "wrong"
        result = FieldResult(name, outcome, p, g)
        if outcome not in ("correct", "absent"):
            result.categories = categorize(p, g, source)
        results.append(result)
    return DocumentResult(index, results, valid_json, schema_valid, raw)


def categorize(predicted: Any, gold: Any, source: str) -> list[str]:
    """Why a prediction is wrong (every category that applies, most telling first)."""
    if is_absent(predicted):
        return ["missing"]
    p, g = norm_text(predicted), norm_text(gold) if not is_absent(gold) else ""
    found = []
    if source and loose(predicted) and loose(predicted) not in loose(source):
        found.append("hallucinated")
    if g and loose(predicted) == loose(gold):
        found.append("format")
    elif g and g in p and len(p) > len(g):
        found.append("too_long")
    elif g and 0 < edit_distance(p, g) <= max(1, int(NEAR_MISS * len(g))):
        found.append("near_miss")
    if repeated_ngram(p):
        found.append("repetitive")
    return found or ["wrong_value"]


def edit_distance(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def repeated_ngram(text: str, n: int = 3, times: int = 3) -> bool:
    """A word n-gram that occurs `times` or more: the loop a small model falls into."""
    words = re.findall(r"\w+", text)
    grams = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    return bool(grams) and max(grams.values()) >= times


def _prf(counts: Counter) -> dict[str, float]:
    tp, fp, fn = counts["correct"], counts["wrong"] + counts["extra"], counts["wrong"] + counts["missing"]
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        **{k: counts[k] for k in ("correct", "wrong", "missing", "extra", "absent")},
    }


def summarize(documents: list[DocumentResult], names: list[str], *, worst: int = 5) -> dict[str, Any]:
    """Every figure a report needs from scored documents."""
    per_field: dict[str, Counter] = {n: Counter() for n in names}
    categories: dict[str, Counter] = defaultdict(Counter)
    for doc in documents:
        for f in doc.fields:
            per_field[f.field][f.outcome] += 1
            for c in f.categories:
                categories[f.field][c] += 1
    total = sum(per_field.values(), Counter())
    n = max(1, len(documents))
    worst_docs = sorted(documents, key=lambda d: (-d.errors, d.index))[:worst]
    return {
        "documents": len(documents),
        "micro": _prf(total),
        "fields": {name: _prf(c) for name, c in per_field.items()},
        "exact_match": sum(d.exact for d in documents) / n,
        "json_valid": sum(d.valid_json for d in documents) / n,
        "schema_valid": sum(d.schema_valid for d in documents) / n,
        "errors": {name: dict(categories[name]) for name in names if categories[name]},
        "worst": [
            {
                "index": d.index,
                "errors": d.errors,
                "raw": d.raw[:500],
                "fields": [
                    {
                        "field": f.field,
                        "outcome": f.outcome,
                        "predicted": f.predicted,
                        "gold": f.gold,
                        "categories": f.categories,
                    }
                    for f in d.fields
                    if f.outcome not in ("correct", "absent")
                ],
            }
            for d in worst_docs
            if d.errors
        ],
    }


def token_f1(predicted: str, reference: str) -> float:
    """SQuAD-style token F1 between two answers (normalised words)."""
    p, r = re.findall(r"\w+", norm_text(predicted)), re.findall(r"\w+", norm_text(reference))
    common = sum((Counter(p) & Counter(r)).values())
    if not p or not r or not common:
        return float(p == r)
    precision, recall = common / len(p), common / len(r)
    return 2 * precision * recall / (precision + recall)


def answer_metrics(pairs: list[tuple[str, str]]) -> dict[str, float]:
    """Exact match (the same words, ignoring case and punctuation) and mean token-F1 for
    (prediction, reference) answers."""
    n = max(1, len(pairs))

    def words(text: str) -> list[str]:
        return re.findall(r"\w+", norm_text(text))

    return {
        "answers": len(pairs),
        "exact_match": sum(words(p) == words(r) for p, r in pairs) / n,
        "token_f1": sum(token_f1(p, r) for p, r in pairs) / n,
    }


def calibration(pairs: list[tuple[float, bool]], *, bins: int = 10) -> dict[str, Any]:
    """Expected calibration error of (confidence, correct) pairs: the mean, weighted by how many
    predictions fall in each of `bins` equal-width confidence bins, of |accuracy - mean confidence|."""
    table = []
    for b in range(bins):
        low, high = b / bins, (b + 1) / bins
        inside = [(c, ok) for c, ok in pairs if low <= c < high or (b == bins - 1 and c == 1.0)]
        if inside:
            table.append(
                {
                    "from": low,
                    "to": high,
                    "count": len(inside),
                    "confidence": sum(c for c, _ in inside) / len(inside),
                    "accuracy": sum(ok for _, ok in inside) / len(inside),
                }
            )
    n = max(1, len(pairs))
    ece = sum(row["count"] / n * abs(row["accuracy"] - row["confidence"]) for row in table)
    return {"predictions": len(pairs), "ece": ece, "bins": table}
