"""How many labels does choosing them save? Learning curves of three arms on folds of the SROIE train part.

    .venv/bin/python benchmarks/label_efficiency.py --fold 0                 # every point of fold 0 not yet saved
    .venv/bin/python benchmarks/label_efficiency.py --fold 0 --arm random --labels 100   # one point
    .venv/bin/python benchmarks/label_efficiency.py --report                 # table, labels_to_match, plot
    .venv/bin/python benchmarks/label_efficiency.py --dev --arm random       # all 500 labels, scored on dev
    .venv/bin/python benchmarks/label_efficiency.py --dev --arm random --rank typed   # as served by default

Each point trains the bundled SmolLM2 with the same budget — `--steps` optimizer steps of `--batch`
documents, whatever the number of labels — and scores the product's extraction (constrained engine,
the adapter's label rules; no candidate ranking unless `--rank`, so that every point of the curves
is scored the one way they were begun with) on the fold's 100 receipts, which no arm ever labels. A
point scored with `--rank typed` (the product's default ranking) or `--rank text` is saved apart
(`…-typed.json`, `…-text.json`; not drawn in the curves) and scored unranked too, on the same adapter,
in its `unranked` entry; `--rescore --rank text` scores a saved unranked point's adapter that way
without training again. The pool is the other
400 receipts of the train part; dev is read only by `--dev`, the curve's end: an arm's training on
all 500 train-part receipts, scored on the 126 dev receipts.
- random: the first N of a seeded shuffle of the pool (the points nest).
- active: the random arm's first `--round` labels, then rounds until the largest point: a model trained
  on the labels so far (`--select-steps`) extracts `--candidates` receipts drawn from the unlabelled
  pool, the product's scorer (`backend/labels/suggest.py`: confidence, disagreement with the ranked
  candidates, values not in the text, novelty of the sender against the labelled receipts) orders them,
  and a simulated reviewer labels the top `--round` with their gold fields.
- active+augment: the active arm's labels, trained with `--augment` more documents made from each.

Every point and the active arm's choices are saved as they finish, in a folder per training budget
(`benchmarks/results/label_efficiency/steps<STEPS>/`), so a run stopped anywhere continues where it
stopped. A point keeps each scored receipt's answer too (fields, confidence, found in the text or
not, checks); `--rescore` scores saved points again with their runs' adapters, for points saved
before. The budget must be large enough for labels to matter: at 50 steps, 400 random labels scored no
better than 100 (0.834 vs 0.826, fold 0), while 100 steps lifted 400 labels to 0.899. The active arm's
choices do not depend on the budget (their models train `--select-steps`). `--report` prints each
arm's micro-F1 per point (mean over the folds run, and their spread), `labels_to_match:` (the labels
the better active arm needs to equal random at the largest point, read off its curve on a log scale)
and draws the curves.

Data: sroie_train.jsonl, kept outside the repository (benchmarks/README.md): ICDAR 2019 SROIE receipts,
Z. Huang et al., CC BY 4.0.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from sroie_split import CREDIT, fold_rows, load_split, write_jsonl  # noqa: E402

NAMES = ["company", "date", "address", "total"]
ARMS = ("random", "active", "active+augment")
OUT = ROOT / "benchmarks" / "results" / "label_efficiency"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fold", type=int, default=0, help="development fold 0..4: scored on it, labels from the rest")
    parser.add_argument("--arm", choices=ARMS, action="append", help="only this arm (repeatable; default all)")
    parser.add_argument("--labels", type=int, action="append", help="only this point (repeatable; default 100 200 400)")
    parser.add_argument("--steps", type=int, default=100, help="optimizer steps of every point's training")
    parser.add_argument("--batch", type=int, default=8, help="documents per step")
    parser.add_argument("--lr", type=float, default=4e-4)
    parser.add_argument("--augment", type=int, default=2, help="documents the augment arm makes from each label")
    parser.add_argument("--round", type=int, default=50, help="labels the reviewer adds per active round")
    parser.add_argument("--select-steps", type=int, default=20, help="training steps of each round's model")
    parser.add_argument("--candidates", type=int, default=80, help="unlabelled receipts each round's model reads")
    parser.add_argument("--scored", type=int, default=0, help="score only the fold's first N receipts (0: all 100)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--runs", type=Path, help="training runs (default: runs/label-efficiency/steps<STEPS>)")
    parser.add_argument(
        "--out", type=Path, help="where points and choices are saved (default: results/label_efficiency/steps<STEPS>)"
    )
    parser.add_argument(
        "--rescore",
        action="store_true",
        help="score the saved points of --fold/--arm/--labels again with their runs' adapters (no training)",
    )
    parser.add_argument(
        "--dev",
        action="store_true",
        help="train on every train-part receipt with the arm's settings and score on dev (the curve's end)",
    )
    parser.add_argument(
        "--rank",
        choices=["none", "typed", "text"],
        default="none",
        help="candidate ranking when scoring (typed: as served by default; ranked points are saved apart)",
    )
    parser.add_argument("--report", action="store_true", help="print the table and draw the plot from saved points")
    args = parser.parse_args()
    args.out = args.out or OUT / f"steps{args.steps}"  # points of different budgets are not compared
    args.runs = args.runs or ROOT / "runs" / "label-efficiency" / f"steps{args.steps}"
    if args.report:
        report(args.out)
        return
    if args.dev:
        dev_points(args)
        return
    points = sorted(args.labels or [100, 200, 400])
    pool, scored = fold_rows(args.fold)
    scored = scored[: args.scored or None]
    for arm in args.arm or ARMS:
        for n in points:
            path = args.out / f"fold{args.fold}-{arm}-{n}{suffix(args)}.json"
            if args.rescore:  # saved points only: nothing is trained
                score_saved(path, scored, args)
                continue
            if path.is_file():
                print(f"{path.name}: saved already")
                continue
            chosen = choose(arm, n, pool, max(points), args)
            result = {"fold": args.fold, "arm": arm, "labels": n, **train_and_score(chosen, scored, arm, n, args)}
            save(path, result)
            print(f"fold {args.fold} {arm} {n}: micro-F1 {result['micro_f1']:.3f} ({result['train_s']:.0f} s training)")


def dev_points(args: argparse.Namespace) -> None:
    """The end of the curve, on dev: each arm's training on every train-part receipt, scored on the dev
    receipts no choice has read. At every label the active arm holds random's labels, so the arms
    left are random (as labelled) and active+augment (the labels and their augmented documents)."""
    train, dev = load_split()
    arms = args.arm or ["random"]
    if "active" in arms:
        raise SystemExit("--dev: with every label the active arm's labels are random's; run --arm random")
    for arm in arms:
        path = args.out / f"dev-{arm}-{len(train)}{suffix(args)}.json"
        if args.rescore:
            score_saved(path, dev, args)
            continue
        if path.is_file():
            print(f"{path.name}: saved already")
            continue
        rows = random.Random(args.seed).sample(train, len(train))
        result = {"split": "dev", "arm": arm, "labels": len(rows), **train_and_score(rows, dev, arm, len(rows), args)}
        save(path, result)
        print(f"dev {arm} {len(rows)}: micro-F1 {result['micro_f1']:.3f} ({result['train_s']:.0f} s training)")


def suffix(args: argparse.Namespace) -> str:
    return "" if args.rank == "none" else f"-{args.rank}"


def choose(arm: str, n: int, pool: list[dict], largest: int, args: argparse.Namespace) -> list[dict]:
    """The first `n` labels of the arm: a seeded shuffle, or the active arm's rounds (run as needed)."""
    shuffled = random.Random(args.seed).sample(pool, len(pool))
    if arm == "random":
        return shuffled[:n]
    by_id = {r["id"]: r for r in pool}
    return [by_id[i] for i in active_ids(shuffled, largest, args)[:n]]


def active_ids(shuffled: list[dict], largest: int, args: argparse.Namespace) -> list[str]:
    """The active arm's labels in the order chosen, up to `largest`; rounds saved as they finish."""
    path = args.out / f"fold{args.fold}-active-choices.json"
    saved = json.loads(path.read_text()) if path.is_file() else {"ids": [r["id"] for r in shuffled[: args.round]]}
    saved.setdefault("rounds", [])
    by_id = {r["id"]: r for r in shuffled}
    while len(saved["ids"]) < largest:
        labelled = [by_id[i] for i in saved["ids"]]
        unlabelled = [r for r in shuffled if r["id"] not in set(saved["ids"])]
        draw = random.Random(f"{args.seed}:{len(labelled)}").sample(unlabelled, min(args.candidates, len(unlabelled)))
        started = time.perf_counter()
        run_dir, _ = train_run(labelled, f"fold{args.fold}-select-{len(labelled)}", args.select_steps, 0, args)
        ranked = rank_by_value(run_dir, labelled, draw)
        take = [r["id"] for r in ranked[: min(args.round, largest - len(labelled))]]
        saved["ids"] += take
        saved["rounds"].append({"labelled": len(labelled), "read": len(draw), "seconds": time.perf_counter() - started})
        save(path, {**saved, "credit": CREDIT})
        print(f"active round at {len(labelled)} labels: took {len(take)} of {len(draw)} read")
    return saved["ids"]


def rank_by_value(run_dir: str, labelled: list[dict], candidates: list[dict]) -> list[dict]:
    """`candidates`, the receipts whose labels would teach the round's model most first."""
    from backend.inference.bundle import AdapterBundle
    from backend.inference.extraction import Document, extract_many
    from backend.inference.pool import ModelPool
    from backend.inference.spec import ExtractionSpec
    from backend.labels import suggest
    from backend.labels.novelty import HeadIndex

    pool, target, spec = ModelPool(), AdapterBundle.of_folder(run_dir), ExtractionSpec.from_names(NAMES)
    from tqdm import tqdm

    records = []
    with tqdm(total=len(candidates), unit="receipt", desc="reading candidates") as bar:
        for start in range(0, len(candidates), 8):
            part = candidates[start : start + 8]
            out = extract_many(pool, target, [Document(r["text"], spec) for r in part], rank="typed")
            records += [{**o, "text": r["text"], "doc_type": "receipt"} for o, r in zip(out, part)]
            bar.update(len(part))
    index = HeadIndex.build([r["text"] for r in labelled])
    return [candidates[i] for i, _ in suggest.rank(records, index=index)]


def train_run(rows: list[dict], name: str, steps: int, augment: int, args: argparse.Namespace) -> tuple[str, float]:
    """(run folder, seconds) of a LoRA training of the bundled model on `rows` for `steps` steps."""
    from backend.training.config import TrainConfig
    from backend.training.trainer import train

    data = write_jsonl(rows, args.runs / name / "data" / "train.jsonl")
    (data.parent / "CREDITS.md").write_text(
        "Receipts from the ICDAR 2019 SROIE dataset (Z. Huang et al.), CC BY 4.0.\n"
    )
    config = TrainConfig(
        data=[str(data)],
        output_dir=str(args.runs),
        run_name=name,
        max_steps=steps,
        epochs=1000,  # the steps decide
        batch_size=args.batch,
        learning_rate=args.lr,
        val_fraction=0.0,
        save_every=0,
        report_to="none",
        augment=augment,
        seed=args.seed,
    )
    started = time.perf_counter()
    result = train(config)
    return str(result.run_dir), time.perf_counter() - started


def run_name(args: argparse.Namespace, arm: str, n: int) -> str:
    """The training run's folder name: fold<K>-<arm>-<n>, or dev-<arm>-<n> with --dev."""
    return f"{'dev' if args.dev else f'fold{args.fold}'}-{arm.replace('+', '-')}-{n}"


def train_and_score(chosen: list[dict], scored: list[dict], arm: str, n: int, args: argparse.Namespace) -> dict:
    augment = args.augment if arm == "active+augment" else 0
    run_dir, train_s = train_run(chosen, run_name(args, arm, n), args.steps, augment, args)
    ranked = score(run_dir, scored, f"{arm} {n}", args.rank)
    if args.rank != "none":  # the same adapter's answers unranked, paired
        plain = score(run_dir, scored, f"{arm} {n} unranked", "none")
        ranked["unranked"] = {k: plain[k] for k in ("micro_f1", "fields", "score_s")}
    return {
        **ranked,
        "steps": args.steps,
        "batch": args.batch,
        "augment": augment,
        "train_s": train_s,
        "ids": [r["id"] for r in chosen],
        "credit": CREDIT,
    }


def score(run_dir: str, scored: list[dict], label: str, rank: str) -> dict:
    """The product's extraction by the run's adapter on `scored` (candidate ranking `rank`, or "none"):
    micro-F1, per field, and each answer."""
    from backend.inference.bundle import AdapterBundle
    from backend.inference.extraction import Document, extract_many
    from backend.inference.pool import ModelPool
    from backend.inference.spec import ExtractionSpec
    from backend.inference.stages import reranked
    from backend.models.hardware import cpu_kind
    from backend.scoring.metrics import score_document, summarize

    pool, target, spec = ModelPool(), AdapterBundle.of_folder(run_dir), ExtractionSpec.from_names(NAMES)
    from tqdm import tqdm

    started, results = time.perf_counter(), []
    with tqdm(total=len(scored), unit="receipt", desc=f"scoring {label}") as bar:
        for start in range(0, len(scored), 8):
            part = [Document(r["text"], spec) for r in scored[start : start + 8]]
            results += extract_many(pool, target, part, rank=False if rank == "none" else rank)
            bar.update(len(scored[start : start + 8]))
    documents = [
        score_document(i, json.dumps(o["fields"]), r["fields"], NAMES, r["text"])
        for i, (o, r) in enumerate(zip(results, scored))
    ]
    summary = summarize(documents, NAMES)
    answers = [  # what each scored receipt got: thresholds can later be fitted on the folds' answers
        {
            "id": r["id"],
            "fields": o["fields"],
            "confidence": o["confidence"],
            "grounded": {k: v is not None for k, v in o["grounding"].items()},
            "checks": o["checks"],
            **({"reranked": sorted(reranked(o["ranking"]))} if o.get("ranking") else {}),
        }
        for o, r in zip(results, scored)
    ]
    return {
        "rank": None if rank == "none" else rank,
        "micro_f1": summary["micro"]["f1"],
        "fields": {name: summary["fields"][name]["f1"] for name in NAMES},
        "scored": len(scored),
        "score_s": time.perf_counter() - started,
        "answers": answers,
        "cpu": str(cpu_kind()),
        "date": time.strftime("%Y-%m-%d"),
    }


def score_saved(path: Path, scored: list[dict], args: argparse.Namespace) -> None:
    """`--rescore`: the saved point at `path` scored again; or, for a ranked point not saved yet, the
    saved unranked point's adapter scored with `--rank` (nothing is trained either way)."""
    plain = path.with_name(path.name.replace(suffix(args), "")) if args.rank != "none" else path
    if path.is_file():
        rescore(path, scored, args)
    elif plain.is_file():
        rank_saved(plain, path, scored, args)
    else:
        print(f"{path.name}: not saved, nothing to score again")


def rank_saved(plain: Path, path: Path, scored: list[dict], args: argparse.Namespace) -> None:
    """The unranked point saved at `plain` scored with `--rank` by its run's adapter, saved at `path`
    with the saved point's figures as its `unranked` entry."""
    point = json.loads(plain.read_text())
    run_dir = args.runs / run_name(args, point["arm"], point["labels"])
    if not (run_dir / "adapter").is_dir():
        raise SystemExit(f"{plain.name}: no adapter at {run_dir} to score (--runs names the runs' folder)")
    ranked = score(str(run_dir), scored, f"{point.get('arm')} {point.get('labels')} {args.rank}", args.rank)
    unranked = {k: point[k] for k in ("micro_f1", "fields", "score_s", "date") if k in point}
    save(path, {**point, **ranked, "unranked": unranked})
    print(f"{path.name}: micro-F1 {ranked['micro_f1']:.3f} ({args.rank} ranking; unranked {point['micro_f1']:.3f})")


def rescore(path: Path, scored: list[dict], args: argparse.Namespace) -> None:
    """A saved point scored again by its run's adapter (answers kept as points keep them now); its
    training figures stay."""
    point = json.loads(path.read_text())
    run_dir = args.runs / run_name(args, point["arm"], point["labels"])
    if not (run_dir / "adapter").is_dir():
        raise SystemExit(f"{path.name}: no adapter at {run_dir} to score again (--runs names the runs' folder)")
    fresh = score(str(run_dir), scored, f"{point['arm']} {point['labels']} again", point.get("rank") or "none")
    save(path, {**point, **fresh, "rescored_from": {"micro_f1": point["micro_f1"], "date": point.get("date")}})
    print(f"{path.name}: micro-F1 {fresh['micro_f1']:.3f} scored again (was {point['micro_f1']:.3f})")


def save(path: Path, value: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, indent=1, ensure_ascii=False))
    tmp.replace(path)  # a point is saved whole or not at all


def report(folder: Path) -> None:
    """Per fold its table and `labels_to_match`; then both over the folds that have every point (a mean
    over folds that have different points would compare one fold's arm with another's random)."""
    points = [json.loads(p.read_text()) for p in sorted(folder.glob("fold*-*-[0-9]*.json"))]
    points = [p for p in points if not p.get("rank")]  # the curves: every point scored unranked
    if not points:
        raise SystemExit(f"no saved points in {folder}: run a fold first")
    counts = sorted({p["labels"] for p in points})
    folds = sorted({p["fold"] for p in points})
    by_fold = {f: [p for p in points if p["fold"] == f] for f in folds}
    for fold, mine in by_fold.items():  # arms compared within a fold: folds differ by more than arms do
        print(f"fold {fold}: micro-F1 per arm and labels")
        _table(_curves(mine), counts)
        print(f"fold {fold} labels_to_match: {labels_to_match(_curves(mine)) or 'not measured'}")
    every = {(p["arm"], p["labels"]) for p in points}
    complete = [f for f, mine in by_fold.items() if {(p["arm"], p["labels"]) for p in mine} == every]
    if len(complete) > 1:
        pooled = _curves([p for p in points if p["fold"] in complete])
        print(f"folds {complete} (those with every point); micro-F1 mean (min–max); cpu {points[0]['cpu']}")
        _table(pooled, counts)
        print(f"labels_to_match: {labels_to_match(pooled) or 'not measured'}")
    else:
        missing = {f: sorted(every - {(p["arm"], p["labels"]) for p in mine}) for f, mine in by_fold.items()}
        print(f"labels_to_match: not measured over folds (fewer than two folds have every point; missing {missing})")
    for p in sorted(folder.glob("dev-*.json")):
        dev = json.loads(p.read_text())
        fields = ", ".join(f"{k} {v:.3f}" for k, v in dev["fields"].items())
        how = f", {dev['rank']} ranking" if dev.get("rank") else ""
        print(
            f"dev, {dev['arm']} on all {dev['labels']} train-part labels{how}: micro-F1 {dev['micro_f1']:.3f} ({fields})"
        )
        if dev.get("unranked"):
            print(f"  the same adapter unranked: micro-F1 {dev['unranked']['micro_f1']:.3f}")
    draw({f: _curves(mine) for f, mine in by_fold.items()}, folder / "label_efficiency.png")


def _curves(points: list[dict]) -> dict[str, dict[int, list[float]]]:
    curves: dict[str, dict[int, list[float]]] = {}
    for p in points:
        curves.setdefault(p["arm"], {}).setdefault(p["labels"], []).append(p["micro_f1"])
    return curves


def _table(curves: dict[str, dict[int, list[float]]], counts: list[int]) -> None:
    print(f"{'arm':16}" + "".join(f"{n:>20}" for n in counts))
    for arm in ARMS:
        row = curves.get(arm, {})
        print(f"{arm:16}" + "".join(f"{_cell(row.get(n)):>20}" for n in counts))


def _cell(values: list[float] | None) -> str:
    if not values:
        return "-"
    mean = sum(values) / len(values)
    return f"{mean:.3f} ({min(values):.3f}–{max(values):.3f})" if len(values) > 1 else f"{mean:.3f}"


def labels_to_match(curves: dict[str, dict[int, list[float]]]) -> str | None:
    """The labels the better active arm needs to reach random's micro-F1 at random's largest point:
    interpolated on log2(labels) between the points around it; None where a curve is missing."""
    random_curve = curves.get("random", {})
    if not random_curve:
        return None
    largest = max(random_curve)
    goal = sum(random_curve[largest]) / len(random_curve[largest])
    best = None
    for arm in ("active", "active+augment"):
        curve = sorted((n, sum(v) / len(v)) for n, v in curves.get(arm, {}).items())
        for (n0, f0), (n1, f1) in zip([(None, None)] + curve, curve):
            if f1 >= goal:
                if n0 is None:
                    need = f"≤ {n1}"
                else:
                    share = (goal - f0) / (f1 - f0)
                    need = str(round(2 ** (math.log2(n0) + share * (math.log2(n1) - math.log2(n0)))))
                value = int(need.lstrip("≤ "))
                if best is None or value < best[0]:
                    best = (value, f"{need} ({arm}; random-{largest}: {goal:.3f})")
                break
    measured = [n for arm in ("active", "active+augment") for n in curves.get(arm, {})]
    if best:
        return best[1]
    return (
        f"> {max(measured)} (no active point up to {max(measured)} reaches random-{largest}: {goal:.3f})"
        if measured
        else None
    )


def draw(by_fold: dict[int, dict[str, dict[int, list[float]]]], out: Path) -> None:
    """Each fold's curve of each arm: colour by arm, line style by fold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    colours = dict(zip(ARMS, ("tab:grey", "tab:blue", "tab:green")))
    for fold, curves in by_fold.items():
        style = ("-", "--", ":", "-.")[fold % 4]
        for arm in ARMS:
            curve = sorted(curves.get(arm, {}).items())
            if curve:
                xs, ys = [n for n, _ in curve], [sum(v) / len(v) for _, v in curve]
                ax.plot(xs, ys, style, marker="o", color=colours[arm], label=f"{arm}, fold {fold}")
    ax.set_xscale("log", base=2)
    counts = sorted({n for curves in by_fold.values() for curve in curves.values() for n in curve})
    ax.set_xticks(counts, [str(n) for n in counts])
    ax.minorticks_off()
    ax.set_xlabel("labelled receipts")
    ax.set_ylabel("micro-F1 on the fold's 100 receipts")
    ax.set_title("Labels chosen by value vs at random\n(SmolLM2, the same steps per point)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")


if __name__ == "__main__":
    main()
