"""The SROIE recipe end to end: train on the train part, predict the held-back dev receipts with
the constrained engine, post-process, score; prints `micro-F1: <number>`.

    .venv/bin/python benchmarks/sroie_recipe.py --model gemma3-270m --epochs 2 --rank-mode typed   # the reported run
    .venv/bin/python benchmarks/sroie_recipe.py                          # SmolLM2, 3 epochs (≈31 min) + dev
    .venv/bin/python benchmarks/sroie_recipe.py --adapter runs/sroie-recipe/<run>   # score an existing run
    .venv/bin/python benchmarks/sroie_recipe.py --adapter runs/sroie/sroie-1128-2005 --eval-on tune   # development
    .venv/bin/python benchmarks/sroie_recipe.py --eval-on fold0 --model gemma3-270m --epochs 2 --rank-mode typed \
        --train-receipts 100 --out benchmarks/results/sroie_recipe_fold0_n100.json   # a learning-curve point

Data: sroie_train.jsonl, kept outside the repository (benchmarks/README.md) (ICDAR 2019 SROIE receipts, Z. Huang et al., CC BY 4.0), split by
benchmarks/sroie_split.json (benchmarks/sroie_split.py): 500 train, 126 dev receipts that nothing but
this report reads. `--eval-on tune` scores the 60-receipt tune slice instead and then trains, and learns
conventions, on the other 440 only; `--eval-on foldK` (K = 0..4) scores the K-th of five 100-receipt
folds of the train part, trained on the other 400: development never touches dev.

Steps:
1. train (unless `--adapter`): tunebridge's trainer on the train part (LoRA; defaults below);
2. predict: `extraction.extract_many`, decoding under the schema (`--span-copy [FIELDS]`: values copied
   from the document, where the engine supports it);
3. candidates (`--rank`, default on): for each field whose labels are amounts or dates (as learned in
   step 4), the document's amount (date) spans are ranked by the model's log-likelihood as that field's
   answer (`backend/inference/ranking.py`, the product's `rank` option; each printed place of a value
   counting) and the best replaces the free value (`--rank-mode always`; `typed`: only where the free value is not one of them);
   with `--rank-text` (default on), each text field whose labels sit on whole lines gets the runs of
   lines in the window learned from the labels as candidates, the free value competing with them;
4. conventions (`--conventions`, default on): label conventions learned from the training labels
   (`backend/labels/conventions.py`, saved as conventions.json) applied to every value;
   recall (`--recall`, default on): a text field is taken from the training receipt whose head is most
   like this one's, where this receipt holds that label (`backend/labels/exemplars.py`);
   settlement (`--settle`, default on): an amount field whose labels equal tendered minus change takes
   that amount where the prediction disagrees by more than cash rounding (`backend/labels/settlement.py`);
5. score: `backend/scoring/metrics` (per-field P/R/F1, exact match, JSON/schema validity, error
   categories) and `benchmarks/sroie_analysis.py`'s error kinds; the precision of the documents that a
   confidence threshold auto-approves when it lets at least 80% of them through.
Results: benchmarks/results/sroie_recipe.json (`--eval-on tune|foldK`: sroie_recipe_<slice>.json; or `--out`).
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

NAMES = ["company", "date", "address", "total"]
AUTO_APPROVE = 0.8  # share of documents a confidence threshold must let through


def split_rows(eval_on: str) -> tuple[list[dict], list[dict]]:
    """(rows to train and learn conventions on, rows to score)."""
    from sroie_split import fold_rows, load_split, tune_rows

    train, dev = load_split()
    if eval_on == "dev":
        return train, dev
    if eval_on.startswith("fold"):
        return fold_rows(int(eval_on[4:]))
    tune = tune_rows()
    held = {r["id"] for r in tune}
    return [r for r in train if r["id"] not in held], tune


def train_run(rows: list[dict], args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    from backend.training.config import TrainConfig
    from backend.training.trainer import train
    from sroie_split import write_jsonl

    name = args.run_name or f"sroie-{args.eval_on}-{time.strftime('%m%d-%H%M')}"
    out = Path(args.runs)
    data = write_jsonl(rows, out / name / "data" / "train.jsonl")
    (data.parent / "CREDITS.md").write_text("Receipts from the ICDAR 2019 SROIE dataset (Z. Huang et al.), CC BY 4.0.\n")
    config = TrainConfig(data=[str(data)], model=args.model, output_dir=str(out), run_name=name, epochs=args.epochs,
                         max_steps=args.max_steps, max_minutes=args.max_minutes, learning_rate=args.lr,
                         batch_size=args.batch_size, grad_accum=args.grad_accum, lora_r=args.lora_r,
                         lora_alpha=2 * args.lora_r, val_fraction=0.0, save_every=25, report_to=args.report_to,
                         seed=args.seed)
    result = train(config)
    return str(result.run_dir), result.summary


def load_target(run_dir: str) -> tuple[Any, Any]:
    """(a model pool, the run's adapter as a serving target)."""
    from backend.inference.bundle import AdapterBundle
    from backend.inference.pool import ModelPool

    return ModelPool(), AdapterBundle.of_folder(run_dir)


def predict(run_dir: str, rows: list[dict], *, span_copy: str | None, names: list[str] = NAMES, batch_size: int = 8
            ) -> tuple[list[dict[str, Any]], Any, Any]:
    """The engine's result per receipt (fields, confidence, raw answer), in order."""
    from tqdm import tqdm

    from backend.inference.extraction import Document, extract_many
    from backend.inference.spec import ExtractionSpec

    options: dict[str, Any] = {"conventions": False}  # the recipe applies (and scores) them as a stage of its own
    if span_copy:
        if "span_copy" not in inspect.signature(extract_many).parameters:
            raise SystemExit("--span-copy: this engine's extract_many has no span_copy option yet")
        options["span_copy"] = True if span_copy == "all" else [f.strip() for f in span_copy.split(",") if f.strip()]
    pool, target = load_target(run_dir)
    spec = ExtractionSpec.from_names(names)
    docs = [Document(r["text"], spec) for r in rows]
    out = []
    with tqdm(total=len(docs), unit="receipt", desc="predicting") as bar:
        for start in range(0, len(docs), batch_size):
            out += extract_many(pool, target, docs[start:start + batch_size], batch_size=batch_size, **options)
            bar.update(len(docs[start:start + batch_size]))
    return out, pool, target


def rank_candidates(pool, target, rows: list[dict], results: list[dict], conventions, mode: str, text: bool = True,
                    names: list[str] = NAMES) -> list[dict[str, Any]]:
    """Per receipt: {field: {"free", "best", "choice", "share", "candidates"}} for each field the product's
    ranking (`backend/inference/ranking.py`) ranks in this mode, and the fields with the choices applied.
    `mode` "typed" + `text`: the product's "text" mode; "typed" alone: its "typed"; "always": its "always"."""
    from tqdm import tqdm

    from backend.inference.extraction import encode_chat
    from backend.inference.ranking import rank_document
    from backend.inference.spec import ExtractionSpec

    spec = ExtractionSpec.from_names(names)
    product_mode = "always" if mode == "always" else ("text" if text else "typed")
    decisions = []
    with pool.using(target) as (model, tokenizer, _), tqdm(total=len(rows), unit="receipt", desc="ranking") as bar:
        for row, result in zip(rows, results):
            prompt = encode_chat(tokenizer, spec.messages(row["text"]))
            decision = rank_document(model, tokenizer, prompt, names, dict(result["fields"]), row["text"],
                                     conventions, product_mode)
            decisions.append({"fields": {**result["fields"], **{f: d["choice"] for f, d in decision.items()}},
                              "decision": decision})
            bar.update(1)
    return decisions


def reuse_engine(path: Path, rows: list[dict], run_dir: str) -> list[dict[str, Any]]:
    """The engine's results for `rows` from an earlier results file of the same run (development: try
    ranking and conventions without decoding again)."""
    old = json.loads(path.read_text())
    if Path(old["run_dir"]).resolve() != Path(run_dir).resolve():
        raise SystemExit(f"--engine-from {path}: its run is {old['run_dir']}, not {run_dir}")
    by_id = {p["id"]: p for p in old["predictions"]}
    missing = [r["id"] for r in rows if r["id"] not in by_id]
    if missing:
        raise SystemExit(f"--engine-from {path}: no prediction for {len(missing)} receipts (first {missing[0]})")
    return [{"fields": by_id[r["id"]]["engine"], "confidence": by_id[r["id"]]["confidence"],
             "raw": by_id[r["id"]].get("raw") or json.dumps(by_id[r["id"]]["engine"], ensure_ascii=False)}
            for r in rows]


def auto_approval(confidences: list[float], exact: list[bool], field_counts: list[tuple[int, int]],
                  share: float = AUTO_APPROVE) -> dict[str, Any]:
    """The highest document-confidence threshold that auto-approves at least `share` of the documents, and
    the precision there: documents entirely right among those approved, and fields right among their
    predicted fields (`field_counts`: (right, predicted) per document)."""
    if not confidences:
        return {}
    n = len(confidences)
    need = math.ceil(share * n)
    threshold = sorted(confidences, reverse=True)[need - 1]
    approved = [i for i in range(n) if confidences[i] >= threshold]
    right = sum(field_counts[i][0] for i in approved)
    predicted = sum(field_counts[i][1] for i in approved)
    return {"threshold": threshold, "approved": len(approved), "coverage": len(approved) / n,
            "document_precision": sum(exact[i] for i in approved) / len(approved),
            "field_precision": right / predicted if predicted else 0.0,
            "documents_right_overall": sum(exact) / n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--eval-on", choices=["dev", "tune"] + [f"fold{k}" for k in range(5)], default="dev",
                        help="dev: the held-back receipts (the reported figure); tune: the 60-receipt development "
                             "slice; foldK: the K-th fifth of the train part (100 receipts), trained on the rest")
    parser.add_argument("--adapter", help="skip training: score this run folder")
    parser.add_argument("--engine-from", type=Path, metavar="RESULTS",
                        help="with --adapter: take the engine's answers from this earlier results file of the run "
                             "(skips decoding; validity then reads its saved answers)")
    parser.add_argument("--limit", type=int, help="score only the first N receipts (in id order)")
    parser.add_argument("--train-receipts", type=int, metavar="N",
                        help="train, and learn conventions, on a seeded sample of N receipts of the training part "
                             "(a learning curve point; `sroie_curve.py` draws the curve) (default: all)")
    parser.add_argument("--runs", default=str(ROOT / "runs" / "sroie-recipe"), help="folder for new runs")
    parser.add_argument("--run-name")
    parser.add_argument("--model", default="smollm2-135m",
                        help="base model: a bundled name (smollm2-135m, gemma3-270m), a local folder or a hub id")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--max-steps", type=int, default=0, help="stop after N optimizer steps (0: from epochs)")
    parser.add_argument("--max-minutes", type=float, default=55.0, help="training time budget")
    parser.add_argument("--lr", type=float, default=4e-4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--grad-accum", type=int, default=1,
                        help="micro-batches per step (a step's batch in smaller pieces: less memory, the same step size)")
    parser.add_argument("--lora-r", type=int, default=16, help="LoRA rank (alpha = 2 x rank)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--report-to", default="none", choices=["none", "wandb"])
    parser.add_argument("--span-copy", nargs="?", const="all", default=None, metavar="FIELDS",
                        help="decode values as spans of the document (engine option): every string field, or "
                             "these comma-separated fields")
    parser.add_argument("--rank", action=argparse.BooleanOptionalAction, default=True,
                        help="rank the document's amount/date spans for amount/date fields")
    parser.add_argument("--rank-text", action=argparse.BooleanOptionalAction, default=True,
                        help="also rank line candidates for text fields whose labels are printed as whole lines")
    parser.add_argument("--rank-mode", choices=["typed", "always"], default="always",
                        help="always: the best-ranked span; typed: only where the free value is not a span")
    parser.add_argument("--conventions", action=argparse.BooleanOptionalAction, default=True,
                        help="apply the label conventions learned from the training labels")
    parser.add_argument("--memory", action=argparse.BooleanOptionalAction, default=True,
                        help="conventions: snap text values to known training labels the document contains")
    parser.add_argument("--recall", action=argparse.BooleanOptionalAction, default=True,
                        help="with --memory: company/address taken from the training receipt whose head is most "
                             "like this one's, where this receipt holds that label (backend/labels/exemplars.py)")
    parser.add_argument("--settle", action=argparse.BooleanOptionalAction, default=True,
                        help="with --conventions: an amount field whose training labels equal tendered minus change "
                             "takes that amount where the prediction disagrees (backend/labels/settlement.py)")
    parser.add_argument("--field-order", default=",".join(NAMES), metavar="F1,F2,...",
                        help="the order of the fields in the answer the model is trained on and writes (with "
                             "--adapter: the order that run was trained with)")
    parser.add_argument("--out", type=Path, help="results JSON (default: benchmarks/results/sroie_recipe.json, "
                        "or sroie_recipe_tune.json with --eval-on tune)")
    args = parser.parse_args()
    if args.rank_mode == "always" and not args.rank_text:
        parser.error("--rank-mode always ranks text fields too; drop --no-rank-text")
    if args.engine_from and not args.adapter:
        parser.error("--engine-from needs --adapter (the run whose answers it holds)")
    names = [n.strip() for n in args.field_order.split(",")]
    if sorted(names) != sorted(NAMES):
        parser.error(f"--field-order: got {args.field_order!r}, expected the fields {', '.join(NAMES)} in any order")
    args.out = args.out or ROOT / "benchmarks" / "results" / (
        "sroie_recipe.json" if args.eval_on == "dev" else f"sroie_recipe_{args.eval_on}.json")

    from backend.labels.conventions import learn
    from backend.scoring.metrics import parse_output, score_document, summarize
    from sroie_analysis import errors

    started = time.perf_counter()
    train_rows, eval_rows = split_rows(args.eval_on)
    eval_rows = eval_rows[:args.limit] if args.limit else eval_rows
    if args.train_receipts:
        from sroie_split import sample_rows

        try:
            train_rows = sample_rows(train_rows, args.train_receipts, args.seed)
        except ValueError as exc:
            parser.error(f"--train-receipts with --eval-on {args.eval_on}: {exc}")
    train_rows = [{**r, "fields": {n: r["fields"][n] for n in names}} for r in train_rows]  # the answer's order
    run_dir, summary = args.adapter, {}
    if run_dir is None:
        # in a child process: the trainer's heap (the CPU allocator keeps what it freed) would otherwise stay
        # with prediction and ranking — 20 GB resident of this machine's 24 with Gemma in one process
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as child:
            run_dir, summary = child.submit(train_run, train_rows, args).result()
    elif (Path(run_dir) / "summary.json").is_file():  # an existing run: report how it was trained
        summary = json.loads((Path(run_dir) / "summary.json").read_text())
    conventions = learn([(r["text"], r["fields"]) for r in train_rows])
    conventions.note = ("Learned from SROIE training labels (ICDAR 2019 SROIE, Z. Huang et al., CC BY 4.0); "
                        f"--eval-on {args.eval_on}.")
    conventions_file = conventions.save(run_dir) if args.eval_on == "dev" else None
    if conventions_file is None:
        sample = f"-n{args.train_receipts}" if args.train_receipts else ""
        conventions_file = Path(args.runs) / f"conventions-{args.eval_on}{sample}.json"
        conventions_file.parent.mkdir(parents=True, exist_ok=True)
        conventions_file.write_text(json.dumps(conventions.to_json(), indent=1, ensure_ascii=False) + "\n")

    t0 = time.perf_counter()
    if args.engine_from:
        results = reuse_engine(args.engine_from, eval_rows, run_dir)
        pool, target = load_target(run_dir)
    else:
        results, pool, target = predict(run_dir, eval_rows, span_copy=args.span_copy, names=names)
    predict_s = time.perf_counter() - t0
    stages = {"engine": [dict(r["fields"]) for r in results]}
    decisions = None
    if args.rank:
        t1 = time.perf_counter()
        decisions = rank_candidates(pool, target, eval_rows, results, conventions, args.rank_mode, args.rank_text,
                                    names)
        typed = {n for n, c in conventions.fields.items() if c.kind in ("amount", "date")}
        stages["ranked"] = [{**e, **{f: d["decision"][f]["choice"] for f in typed if f in d["decision"]}}
                            for e, d in zip(stages["engine"], decisions)]
        if args.rank_text:
            stages["ranked_text"] = [d["fields"] for d in decisions]
        predict_s += time.perf_counter() - t1
    last = list(stages.values())[-1]
    if args.conventions:
        stages["conventions"] = [conventions.apply(f, r["text"], memory=args.memory, recall=False, settle=False)
                                 for f, r in zip(last, eval_rows)]
        recall = args.memory and args.recall
        if recall:
            stages["recall"] = [conventions.apply(f, r["text"], settle=False) for f, r in zip(last, eval_rows)]
        if args.settle:
            stages["settled"] = [conventions.apply(f, r["text"], memory=args.memory, recall=recall)
                                 for f, r in zip(last, eval_rows)]
    final = list(stages.values())[-1]

    def scored(fields_list):
        docs = [score_document(i, json.dumps(f, ensure_ascii=False), r["fields"], NAMES, r["text"])
                for i, (f, r) in enumerate(zip(fields_list, eval_rows))]
        return docs, summarize(docs, NAMES)

    by_stage = {name: scored(fields)[1] for name, fields in stages.items()}
    docs, report = scored(final)
    raw_validity = [parse_output(r["raw"], NAMES) for r in results]
    report["json_valid"] = sum(v[1] for v in raw_validity) / len(results)  # the engine's own answers
    report["schema_valid"] = sum(v[2] for v in raw_validity) / len(results)

    # confidence: a document is as sure as its least sure field (a re-ranked field: its candidate's share)
    confidences = []
    for n, result in enumerate(results):
        conf = dict(result["confidence"])
        if decisions:
            for field, d in decisions[n]["decision"].items():
                if d["choice"] != d["free"] and d["share"] is not None:
                    conf[field] = d["share"]
        present = [c for f, c in conf.items() if c is not None and final[n].get(f) is not None]
        confidences.append(min(present) if present else 0.0)
    counts = [(sum(f.outcome == "correct" for f in d.fields),
               sum(f.outcome in ("correct", "wrong", "extra") for f in d.fields)) for d in docs]
    approval = auto_approval(confidences, [d.exact for d in docs], counts)
    kinds_of_errors = errors(eval_rows, {r["id"]: f for r, f in zip(eval_rows, final)}, NAMES)

    print(f"SROIE recipe on {len(eval_rows)} {args.eval_on} receipts, run {run_dir}")
    print(f"{'field':10s} {'P':>6s} {'R':>6s} {'F1':>6s}  " + "  ".join(f"{s:>11s}" for s in by_stage))
    for name in NAMES:
        f = report["fields"][name]
        print(f"{name:10s} {f['precision']:6.3f} {f['recall']:6.3f} {f['f1']:6.3f}  " +
              "  ".join(f"{by_stage[s]['fields'][name]['f1']:11.3f}" for s in by_stage))
    print(f"{'micro':10s} {report['micro']['precision']:6.3f} {report['micro']['recall']:6.3f} "
          f"{report['micro']['f1']:6.3f}  " + "  ".join(f"{by_stage[s]['micro']['f1']:11.3f}" for s in by_stage))
    print(f"exact match {report['exact_match']:.3f}; JSON-valid {report['json_valid']:.3f}; "
          f"schema-valid {report['schema_valid']:.3f}")
    if approval:
        print(f"auto-approve at confidence >= {approval['threshold']:.3f}: {approval['approved']}/{len(docs)} "
              f"documents ({approval['coverage']:.0%}), document precision {approval['document_precision']:.3f}, "
              f"field precision {approval['field_precision']:.3f}")
    print("error kinds: " + "; ".join(f"{n} {c}" for n, c in kinds_of_errors["counts"].items() if c))
    if summary:
        print(f"training: {summary.get('steps')} steps, {summary.get('train_time_s', 0):.0f} s "
              f"({summary.get('train_time_s', 0) / 60:.1f} min), {summary.get('tokens_per_s', 0):.0f} tokens/s, "
              f"{summary.get('runtime')}")
    print(f"prediction: {predict_s:.0f} s ({len(eval_rows) / max(predict_s, 1e-9):.2f} receipts/s); "
          f"total {time.perf_counter() - started:.0f} s")
    print(f"micro-F1: {report['micro']['f1']:.4f}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "command": "benchmarks/sroie_recipe.py " + " ".join(sys.argv[1:]),
        "args": {k: str(v) for k, v in vars(args).items()}, "eval_on": args.eval_on, "receipts": len(eval_rows),
        "train_receipts": len(train_rows),
        "run_dir": run_dir, "conventions": str(conventions_file),
        "train": {k: summary.get(k) for k in ("steps", "train_time_s", "tokens_per_s", "final_loss", "runtime")}
        if summary else None,
        "micro_f1": report["micro"]["f1"], "report": {k: v for k, v in report.items() if k != "worst"},
        "stages": {s: {"micro_f1": r["micro"]["f1"], "fields": {n: r["fields"][n]["f1"] for n in NAMES},
                       "exact_match": r["exact_match"]} for s, r in by_stage.items()},
        "auto_approval": approval, "error_kinds": kinds_of_errors["counts"], "predict_s": round(predict_s, 1),
        "credit": "Receipts: ICDAR 2019 SROIE (Z. Huang et al.), CC BY 4.0.",
        "predictions": [{"id": r["id"], "fields": f, "engine": e, "raw": res["raw"], "confidence": res["confidence"],
                         "document_confidence": c, **({"ranking": decisions[i]["decision"]} if decisions else {})}
                        for i, (r, f, e, res, c) in enumerate(zip(eval_rows, final, stages["engine"], results,
                                                                  confidences))],
    }, indent=1, ensure_ascii=False, default=str))
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
