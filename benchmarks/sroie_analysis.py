"""Error analysis for SROIE extraction: the span-copy ceiling of the labels, and why each wrong
field value is wrong.

    .venv/bin/python benchmarks/sroie_analysis.py ceiling                    # on the train part
    .venv/bin/python benchmarks/sroie_analysis.py errors PREDICTIONS.json   # on the tune slice
    .venv/bin/python benchmarks/sroie_analysis.py recall tune=benchmarks/results/sroie_compare_gemma.json \
        fold0=benchmarks/results/sroie_recipe_fold0.json                    # recall's effect, by threshold

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

from backend.scoring.normalize import loose, norm_text, same_value  # noqa: E402
from backend.values import is_absent, parse_amount  # noqa: E402

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
    return {
        n: {
            **dict(c),
            **{
                f"{k}_share": c[k] / max(1, c["labels"])
                for k in ("exact", "lines_as_spaces", "case_space", "normalised")
            },
        }
        for n, c in table.items()
    }


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


def errors(rows: list[dict[str, Any]], predictions: dict[str, dict[str, Any]], names: list[str]) -> dict[str, Any]:
    """Counts of error kinds per field, and every wrong value with its kind."""
    counts = {n: Counter() for n in names}
    cases = []
    for row in rows:
        fields = predictions[row["id"]]
        for name in names:
            kind = error_kind(fields.get(name), row["fields"].get(name), row["text"])
            if kind:
                counts[name][kind] += 1
                cases.append(
                    {
                        "id": row["id"],
                        "field": name,
                        "kind": kind,
                        "predicted": fields.get(name),
                        "gold": row["fields"].get(name),
                    }
                )
    return {"counts": {n: dict(c) for n, c in counts.items()}, "cases": cases}


def slice_rows(name: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the rows a development slice's model and conventions learned from, the slice's rows)."""
    from sroie_split import fold_rows, load_split, tune_rows

    if name == "tune":
        held = tune_rows()
        ids = {r["id"] for r in held}
        return [r for r in load_split()[0] if r["id"] not in ids], held
    if re.fullmatch(r"fold\d", name):
        return fold_rows(int(name[4:]))
    raise SystemExit(f"{name}: a development slice is tune or fold0..fold4 (dev is never analysed)")


def recall_effect(results: list[tuple[str, Path]], names: list[str], similar: list[float]) -> dict[str, Any]:
    """For recipe results on development slices: fields right before and after recall (exemplars learned
    from each slice's training rows, applied to the saved final answers), per head-similarity threshold,
    and each slice's micro-F1 with recall at the module's default."""
    from backend.labels import exemplars
    from backend.scoring.metrics import score_document, summarize

    out: dict[str, Any] = {"thresholds": {}, "micro_f1": {}}
    for threshold in similar:
        counts = {n: [0, 0] for n in ("company", "address")}
        for name, path in results:
            train, rows = slice_rows(name)
            saved = {p["id"]: p["fields"] for p in json.loads(path.read_text())["predictions"]}
            memory = exemplars.Exemplars.learn(
                [(r["text"], r["fields"]) for r in train], list(counts), similar=threshold
            )
            finals = []
            for row in rows:
                before = dict(saved[row["id"]])
                after = {
                    **before,
                    **{f: memory.recall(row["text"], f) or before[f] for f in counts if not is_absent(before.get(f))},
                }
                for f in counts:
                    for n, value in enumerate((before[f], after[f])):
                        counts[f][n] += same_value(value, row["fields"][f])
                finals.append(after)
            if threshold == exemplars.SIMILAR:
                docs = [
                    score_document(i, json.dumps(f, ensure_ascii=False), r["fields"], names, r["text"])
                    for i, (f, r) in enumerate(zip(finals, rows))
                ]
                out["micro_f1"][name] = round(summarize(docs, names)["micro"]["f1"], 4)
        out["thresholds"][threshold] = {f: f"{a} -> {b}" for f, (a, b) in counts.items()}
    return out


def main() -> None:
    from sroie_split import load_split, tune_rows

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("ceiling")
    err = sub.add_parser("errors")
    err.add_argument("predictions", type=Path)
    rec = sub.add_parser("recall", help="recall's effect on saved recipe results of development slices")
    rec.add_argument(
        "results",
        nargs="+",
        metavar="SLICE=RESULTS.json",
        help="e.g. fold0=benchmarks/results/sroie_recipe_fold0.json (tune or fold0..fold4)",
    )
    rec.add_argument("--similar", type=float, nargs="+", default=[60.0, 70.0, 80.0, 90.0])
    args = parser.parse_args()
    names = ["company", "date", "address", "total"]
    if args.command == "recall":
        pairs = [(r.split("=", 1)[0], Path(r.split("=", 1)[1])) for r in args.results if "=" in r]
        if len(pairs) != len(args.results):
            parser.error("results: give each as SLICE=RESULTS.json")
        print(json.dumps(recall_effect(pairs, names, args.similar), indent=1))
        return
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
