"""The SROIE train/dev split that every quality figure in this repo is reported on.

    .venv/bin/python benchmarks/sroie_split.py --check   # the recorded split is what make_split() gives
    .venv/bin/python benchmarks/sroie_split.py --write   # (re)write benchmarks/sroie_split.json

Data: sroie_train.jsonl (kept outside the repository: benchmarks/README.md) — receipts from the ICDAR 2019 SROIE dataset (Z. Huang et al.,
"ICDAR2019 Competition on Scanned Receipt OCR and Information Extraction", ICDAR 2019,
doi:10.1109/ICDAR.2019.00244), CC BY 4.0. The split file records only their ids.

How the split is made (deterministic, from the source file alone):
1. The *tune* ids are the 60 receipts that `benchmarks/sroie_eval.py` held out (lines shuffled with
   `random.Random(42)`, first 60). The first SROIE adapter (runs/sroie/sroie-1128-2005) trained on
   every other receipt, so those 60 are the only ones it can be analysed on without leakage.
2. The *dev* ids are `random.Random(SEED).sample(...)` of DEV_SIZE ids drawn from the other 566
   (sorted first), so the dev receipts were seen by the old adapter but never by anything new.
3. The *train* part is everything else, the tune receipts included (500 receipts).

The dev receipts are held back: no training, prompt tuning, rule writing or error analysis looks at
them. Development reads `load_split()`'s train part (and `tune_rows()` or `fold_rows(k)`, subsets of it); only the final
report (`benchmarks/sroie_recipe.py`, default `--eval-on dev`) reads the dev part.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT.parent / "shared" / "data" / "sroie_train.jsonl"
SPLIT_FILE = ROOT / "benchmarks" / "sroie_split.json"
SEED = 2019
DEV_SIZE = 126
FOLDS, FOLD_SEED = 5, 5  # development folds over the train part (fold_rows)
OLD_SEED, OLD_VAL = 42, 60  # benchmarks/sroie_eval.py's defaults, which made runs/sroie/val.jsonl
CREDIT = ("Ids of receipts from the ICDAR 2019 SROIE dataset: Z. Huang et al., \"ICDAR2019 Competition on "
          "Scanned Receipt OCR and Information Extraction\", ICDAR 2019, doi:10.1109/ICDAR.2019.00244. "
          "Licence: CC BY 4.0.")


def _lines(source: Path) -> list[str]:
    return [line for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_split(source: Path = SOURCE, *, seed: int = SEED, dev_size: int = DEV_SIZE) -> dict[str, Any]:
    lines = _lines(source)
    ids = [json.loads(line)["id"] for line in lines]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{source}: duplicate ids")
    shuffled = list(lines)
    random.Random(OLD_SEED).shuffle(shuffled)
    tune = sorted(json.loads(line)["id"] for line in shuffled[:OLD_VAL])
    pool = sorted(set(ids) - set(tune))
    dev = sorted(random.Random(seed).sample(pool, dev_size))
    train = sorted(set(ids) - set(dev))
    return {
        "source": "sroie_train.jsonl",
        "source_sha256": sha256(source),
        "credit": CREDIT,
        "method": (f"tune = the {OLD_VAL} receipts benchmarks/sroie_eval.py held out (random.Random({OLD_SEED}) "
                   f"shuffle of the source lines, first {OLD_VAL}); dev = random.Random({seed}).sample of "
                   f"{dev_size} from the sorted remaining ids; train = all other ids (tune included). "
                   "Regenerate or check with benchmarks/sroie_split.py."),
        "seed": seed,
        "counts": {"source": len(ids), "train": len(train), "dev": len(dev), "tune": len(tune)},
        "dev_ids": dev,
        "train_ids": train,
        "tune_ids": tune,
    }


def load_record(split_file: Path = SPLIT_FILE) -> dict[str, Any]:
    return json.loads(split_file.read_text())


def check(source: Path = SOURCE, split_file: Path = SPLIT_FILE) -> list[str]:
    """What differs between the recorded split and the one make_split() gives now (empty: they match)."""
    recorded = load_record(split_file)
    problems = []
    if recorded["source_sha256"] != sha256(source):
        problems.append(f"{source} is not the file the split was made from (sha256 differs)")
    fresh = make_split(source, seed=recorded["seed"], dev_size=len(recorded["dev_ids"]))
    for key in ("dev_ids", "train_ids", "tune_ids", "seed", "counts"):
        if fresh[key] != recorded[key]:
            problems.append(f"{key} differs from make_split()")
    if set(recorded["dev_ids"]) & set(recorded["train_ids"]):
        problems.append("dev and train overlap")
    if not set(recorded["tune_ids"]) <= set(recorded["train_ids"]):
        problems.append("tune ids are not all in train")
    return problems


def _rows(source: Path, split_file: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    recorded = load_record(split_file)
    if recorded["source_sha256"] != sha256(source):
        raise ValueError(f"{source} differs from the file {split_file.name} was made from (sha256)")
    by_id = {}
    for line in _lines(source):
        row = json.loads(line)
        by_id[row["id"]] = row
    return recorded, by_id


def load_split(source: Path = SOURCE, split_file: Path = SPLIT_FILE) -> tuple[list[dict], list[dict]]:
    """(train rows, dev rows) of the recorded split, each a source record, in id order."""
    recorded, by_id = _rows(source, split_file)
    return [by_id[i] for i in recorded["train_ids"]], [by_id[i] for i in recorded["dev_ids"]]


def tune_rows(source: Path = SOURCE, split_file: Path = SPLIT_FILE) -> list[dict]:
    """The development slice: the old adapter's 60 held-out receipts (all in the train part)."""
    recorded, by_id = _rows(source, split_file)
    return [by_id[i] for i in recorded["tune_ids"]]


def fold_rows(fold: int, folds: int = FOLDS, source: Path = SOURCE, split_file: Path = SPLIT_FILE
              ) -> tuple[list[dict], list[dict]]:
    """(the train rows outside fold `fold`, the rows in it): the train part's ids, sorted, shuffled with
    `random.Random(FOLD_SEED)` and dealt round-robin into `folds` slices. A wider development slice than
    tune: each fold is scored by a model trained on the other folds, dev stays untouched."""
    if not 0 <= fold < folds:
        raise ValueError(f"fold {fold}: must be in 0..{folds - 1}")
    recorded, by_id = _rows(source, split_file)
    ids = sorted(recorded["train_ids"])
    random.Random(FOLD_SEED).shuffle(ids)
    held = set(ids[fold::folds])
    return ([by_id[i] for i in sorted(recorded["train_ids"]) if i not in held],
            [by_id[i] for i in sorted(held)])


def sample_rows(rows: list[dict], n: int, seed: int) -> list[dict]:
    """`n` of `rows`, drawn with `seed`, in their original order; samples with one seed nest (the 100
    receipts are among the 200), so a learning curve's points differ only in what was added."""
    if not 0 < n <= len(rows):
        raise ValueError(f"a sample of {n} from {len(rows)} rows: expected 1..{len(rows)}")
    order = random.Random(seed).sample(range(len(rows)), len(rows))
    return [rows[i] for i in sorted(order[:n])]


def write_jsonl(rows: list[dict], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=SOURCE)
    parser.add_argument("--out", type=Path, default=SPLIT_FILE)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--check", action="store_true")
    group.add_argument("--write", action="store_true")
    group.add_argument("--export-tune", type=Path, metavar="DIR",
                       help="write DIR/train.jsonl (the train part without the tune receipts and without the receipts "
                            "in examples/documents) and DIR/tune.jsonl (held out: to calibrate an adapter on)")
    args = parser.parse_args()
    if args.export_tune:
        train, _ = load_split(args.source, args.out)
        tune = tune_rows(args.source, args.out)
        shown = {p.stem.removeprefix("sroie_") for p in (ROOT / "examples" / "documents").glob("sroie_*.txt")}
        held = {r["id"] for r in tune} | shown
        args.export_tune.mkdir(parents=True, exist_ok=True)
        for name, rows in (("train", [r for r in train if r["id"] not in held]), ("tune", tune)):
            write_jsonl([{"text": r["text"], "fields": r["fields"]} for r in rows],
                        args.export_tune / f"{name}.jsonl")
            print(f"{args.export_tune / f'{name}.jsonl'}: {len(rows)} receipts")
        return
    if args.write:
        args.out.write_text(json.dumps(make_split(args.source), indent=1) + "\n")
        print(f"written: {args.out}")
        return
    problems = check(args.source, args.out)
    print("\n".join(problems) if problems else f"{args.out.name} matches make_split() and {args.source.name}")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
