"""How long it takes to order documents for review (`backend/labels/suggest.py`): N documents held for
review scored against M training heads of their dataset — sign the training heads, then score and rank.

The documents are synthetic receipts: a made-up sender block (name, street, town, phone; seeded) over
the body of a receipt from examples/data/receipts.jsonl, and a made-up record (confidence, grounding,
validation). Half of the documents come from senders in the training set, half from new ones; the
result also says how well novelty tells them apart (the known senders' largest novelty against the new
senders' smallest). Results go to benchmarks/results/suggest_speed.json.

    python benchmarks/suggest_speed.py                # 1,000 documents against 1,000 training heads
    python benchmarks/suggest_speed.py --docs 5000 --train 5000
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
from pathlib import Path

import torch

from backend.labels.novelty import HeadIndex
from backend.labels.suggest import rank

ROOT = Path(__file__).resolve().parents[1]
SYLLABLES = ["ka", "lo", "mer", "dan", "tri", "vo", "sen", "ar", "pe", "lu", "zor", "in", "ta", "bru", "ne"]
KINDS = ["SDN BHD", "ENTERPRISE", "TRADING", "CAFE", "HARDWARE", "RESTAURANT", "MART", "LTD"]
STREETS = ["JALAN", "LORONG", "PERSIARAN", "TAMAN"]


def sender(rng: random.Random) -> str:
    name = " ".join("".join(rng.choices(SYLLABLES, k=rng.randint(2, 3))).upper() for _ in range(2))
    street = f"NO. {rng.randint(1, 99)}, {rng.choice(STREETS)} {''.join(rng.choices(SYLLABLES, k=3)).upper()}"
    town = f"{rng.randint(10000, 99999)} {''.join(rng.choices(SYLLABLES, k=2)).upper()}"
    return f"{name} {rng.choice(KINDS)}\n({rng.randint(100000, 999999)}-X)\n{street}\n{town}\nTEL: 0{rng.randint(10**8, 10**9)}"


def record(rng: random.Random, head: str, body: str) -> dict:
    fields = ["company", "date", "address", "total"]
    issue = {"code": "total_mismatch", "field": "total", "message": "-", "severity": "error"}
    return {
        "text": f"{head}\n{body}",
        "doc_type": "receipt",
        "fields": {f: "x" for f in fields},
        "confidence": {f: rng.random() for f in fields},
        "calibrated": True,
        "grounding": {f: ({"match": "exact"} if rng.random() < 0.8 else None) for f in fields},
        "validation": [issue] if rng.random() < 0.2 else [],
    }


def corpus(docs: int, train: int, seed: int) -> tuple[list[str], list[dict], list[bool]]:
    rng = random.Random(seed)
    bodies = [
        "\n".join(json.loads(line)["text"].splitlines()[5:])
        for line in (ROOT / "examples" / "data" / "receipts.jsonl").read_text().splitlines()
    ]
    senders = [sender(rng) for _ in range(train)]
    training = [f"{s}\n{rng.choice(bodies)}" for s in senders]
    known = [i % 2 == 0 for i in range(docs)]
    heads = [rng.choice(senders) if k else sender(rng) for k in known]
    return training, [record(rng, h, rng.choice(bodies)) for h in heads], known


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=1000, help="documents to score")
    parser.add_argument("--train", type=int, default=1000, help="training heads to compare them with")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs (the median is reported)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    training, records, known = corpus(args.docs, args.train, args.seed)
    build, score, order = [], [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        index = HeadIndex.build(training)
        built = time.perf_counter()
        order = rank(records, index=index)
        done = time.perf_counter()
        build.append(built - start)
        score.append(done - built)
    novelty = {i: v.signals["novelty"] for i, v in order}
    result = {
        "docs": args.docs,
        "train_heads": args.train,
        "repeats": args.repeats,
        "sign_training_heads_s": round(statistics.median(build), 4),
        "score_and_rank_s": round(statistics.median(score), 4),
        "total_s": round(statistics.median(b + s for b, s in zip(build, score)), 4),
        "known_sender_max_novelty": round(max(n for i, n in novelty.items() if known[i]), 3),
        "new_sender_min_novelty": round(min(n for i, n in novelty.items() if not known[i]), 3),
        "cpu": torch.backends.cpu.get_cpu_capability(),
        "machine": platform.machine(),
        "threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d"),
    }
    print(
        f"cpu: {result['cpu']}; {args.docs} documents against {args.train} training heads: "
        f"sign heads {result['sign_training_heads_s']:.3f} s, score and rank {result['score_and_rank_s']:.3f} s, "
        f"total {result['total_s']:.3f} s (median of {args.repeats}); novelty of known senders <= "
        f"{result['known_sender_max_novelty']}, of new senders >= {result['new_sender_min_novelty']}"
    )
    out = ROOT / "benchmarks" / "results" / "suggest_speed.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"results: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
