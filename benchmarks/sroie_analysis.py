"""Error analysis for SROIE extraction (issue 8): the span-copy ceiling of the labels, and why each wrong
field value is wrong.

    .venv/bin/python benchmarks/sroie_analysis.py ceiling                    # on the train part
    .venv/bin/python benchmarks/sroie_analysis.py errors PREDICTIONS.json   # on the tune slice

Only the train part of benchmarks/sroie_split.json (and its tune slice) is read; the dev receipts never.
PREDICTIONS.json: a list of {"id", "fields"}, or a benchmarks/sroie_recipe.py result (its "predictions").

Error kinds (one per wrong field value, first that applies):
- `label_not_in_text`: the gold value is not a span of the document even after normalisation (OCR and
  label differ, or the annotator changed it): no copying decoder can produce it;
- `format`: the same letters and digits as the gold value, different punctuation/spacing;
- `boundary`: prediction and gold overlap in the document (one contains the other, or their spans
  overlap): the right place, the wrong start or end;
- `wrong_span`: the prediction is a span of the document, somewhere else;
- `copy_error`: not a span, but close to one (a misspelt copy: fuzzy match >= 85);
- `invented`: nowhere in the document;
- `missing`: no value predicted.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from backend.scoring.normalize import is_absent, loose, norm_text, parse_amount, same_value  # noqa: E402

KINDS = ("label_not_in_text", "format", "boundary", "wrong_span", "copy_error", "invented", "missing")


def _case_space(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().casefold()


def ceiling(rows: list[dict[str, Any]], names: list[str]) -> dict[str, dict[str, Any]]:
    """Per field: how many gold labels are spans of the document text — as is, with line breaks as spaces,
    after case/whitespace folding, and after the scorer's text normalisation (`norm_text`). The last is
    the most a decoder that copies one span of the text can get right."""
    table: dict[str, Counter] = {n: Counter() for n in names}
    for row in rows:
        text = row["text"]
        flat = text.replace("\n", " ")
        for name in names:
            gold = row["fields"].get(name)
            if is_absent(gold):
                table[name]["absent"] += 1
                continue
            counts = table[name]
            counts["labels"] += 1
            counts["exact"] += gold in text
            counts["lines_as_spaces"] += gold in flat
            counts["case_space"] += _case_space(gold) in _case_space(flat)
            counts["normalised"] += norm_text(gold) in norm_text(flat)
    return {n: {**dict(c), **{f"{k}_share": c[k] / max(1, c["labels"]) for k in
                              ("exact", "lines_as_spaces", "case_space", "normalised")}} for n, c in table.items()}


def spans(value: Any, text: str) -> list[tuple[int, int]]:
    """Where `value` occurs in `text`, both normalised (`norm_text`, line breaks as spaces); a value that
    reads as an amount must not sit inside a longer number ("9.00" is not in "19.00")."""
    needle, hay = norm_text(value), norm_text(text.replace("\n", " "))
    if not needle:
        return []
    number = parse_amount(value) is not None
    found = []
    for m in re.finditer(re.escape(needle), hay):
        if number:
            before = hay[m.start() - 1] if m.start() else " "
            after = hay[m.end()] if m.end() < len(hay) else " "
            if before.isdigit() or after.isdigit() or (before == "." and needle[:1].isdigit()):
                continue
        found.append((m.start(), m.end()))
    return found


def error_kind(predicted: Any, gold: Any, text: str) -> str | None:
    """Why `predicted` is not `gold` (None when it is, or both are absent)."""
    if is_absent(gold):
        return None if is_absent(predicted) else "invented"
    if is_absent(predicted):
        return "missing"
    if same_value(predicted, gold):
        return None
    gold_at, pred_at = spans(gold, text), spans(predicted, text)
    if not gold_at:
        return "label_not_in_text"
    if loose(predicted) == loose(gold):
        return "format"
    p, g = norm_text(predicted), norm_text(gold)
    if pred_at:
        overlap = any(a < d and c < b for a, b in pred_at for c, d in gold_at)
        return "boundary" if overlap or g in p or p in g else "wrong_span"
    if g in p or p in g:
        return "boundary"
    from rapidfuzz import fuzz

    if fuzz.partial_ratio(p, norm_text(text.replace("\n", " "))) >= 85:
        return "copy_error"
    return "invented"


def errors(rows: list[dict[str, Any]], predictions: dict[str, dict[str, Any]], names: list[str]
           ) -> dict[str, Any]:
    """Counts of error kinds per field, and every wrong value with its kind."""
    counts = {n: Counter() for n in names}
    cases = []
    for row in rows:
        fields = predictions[row["id"]]
        for name in names:
            kind = error_kind(fields.get(name), row["fields"].get(name), row["text"])
            if kind:
                counts[name][kind] += 1
                cases.append({"id": row["id"], "field": name, "kind": kind, "predicted": fields.get(name),
                              "gold": row["fields"].get(name)})
    return {"counts": {n: dict(c) for n, c in counts.items()}, "cases": cases}


def main() -> None:
    from sroie_split import load_split, tune_rows

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("ceiling")
    err = sub.add_parser("errors")
    err.add_argument("predictions", type=Path)
    args = parser.parse_args()
    names = ["company", "date", "address", "total"]
    if args.command == "ceiling":
        train, _ = load_split()
        print(json.dumps(ceiling(train, names), indent=1))
        return
    tune = tune_rows()
    loaded = json.loads(args.predictions.read_text())
    if isinstance(loaded, dict):  # a sroie_recipe.py result
        loaded = loaded["predictions"]
    predictions = {p["id"]: p["fields"] for p in loaded}
    rows = [r for r in tune if r["id"] in predictions]
    print(json.dumps(errors(rows, predictions, names), indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
