"""How safe the agents' decisions are on the example documents: of the documents an adapter's
extraction led to `approve`, how many were wrong — an approval resting on a decision field (one the
policy requires, or one a rule reads) whose value differs from the document's gold JSON — and how
many documents were decided without a person (approve or reject).

    .venv/bin/python benchmarks/decisions.py runs/<run>/agents/results.jsonl [...more results files]

A results file is what `tunebridge extract examples/documents --adapter ... --out FILE` or `make demo`
(its `agents/results.jsonl`) writes. Amounts are compared as numbers (within a cent), text after
collapsing case and spaces. The goal is 0 wrong approvals for every adapter, weak or strong.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DOCUMENTS = ROOT / "examples" / "documents"


def _same(a: Any, b: Any) -> bool:
    from backend.values import parse_amount

    if isinstance(a, (int, float)) or isinstance(b, (int, float)):
        x, y = parse_amount(a), parse_amount(b)
        return x is not None and y is not None and abs(x - y) < 0.005
    return " ".join(str(a or "").casefold().split()) == " ".join(str(b or "").casefold().split())


def score(records: list[dict[str, Any]]) -> dict[str, Any]:
    from agents.policy import Policy, get

    policy = Policy.load(None)
    out = {"documents": 0, "auto_decided": 0, "approved": 0, "wrong_approvals": [], "decisions": {}}
    for record in records:
        gold_file = DOCUMENTS / f"{Path(record['path']).stem}.json"
        if not gold_file.is_file():
            continue
        gold = json.loads(gold_file.read_text())
        out["documents"] += 1
        decision = record.get("decision")
        out["decisions"][decision] = out["decisions"].get(decision, 0) + 1
        out["auto_decided"] += decision in ("approve", "reject") and record.get("status") != "pending_review"
        if decision != "approve":
            continue
        out["approved"] += 1
        fields = policy.decision_fields(gold["doc_type"])
        wrong = [name for name in fields if not _same(get(record.get("fields") or {}, name), get(gold["fields"], name))]
        if wrong:
            out["wrong_approvals"].append({"document": Path(record["path"]).name, "fields": wrong})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", help="agents results JSONL file(s)")
    parser.add_argument("--out", help="also write the scores as JSON here (e.g. benchmarks/results/decisions.json)")
    args = parser.parse_args()
    failed, scores = False, {}
    for name in args.results:
        records = [json.loads(line) for line in Path(name).read_text().splitlines() if line.strip()]
        s = score(records)
        print(
            f"{name}: {s['documents']} documents; decisions {s['decisions']}; decided without a person "
            f"{s['auto_decided']}; approved {s['approved']}; wrong approvals {len(s['wrong_approvals'])}"
        )
        for w in s["wrong_approvals"]:
            print(f"  wrong approval: {w['document']} ({', '.join(w['fields'])} differ from the gold)")
        failed |= bool(s["wrong_approvals"])
        scores[Path(name).name] = s  # by file name: the folder is the machine's own
    if args.out:
        Path(args.out).write_text(json.dumps(scores, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
