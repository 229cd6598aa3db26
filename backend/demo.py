"""The main job on embedded defaults: fine-tune the bundled model on bundled receipts for a few
minutes, evaluate base vs fine-tuned on held-out receipts (field-level F1 report and chart), show
some answers side by side, then run the agents over examples/documents with the new adapter."""

from __future__ import annotations

import json
import random
import textwrap
from pathlib import Path

from backend.evaluation.runner import evaluate, load_eval_set, write_eval
from backend.inference.pool import ModelPool
from backend.services.evaluations import build_candidates
from backend.training.config import TrainConfig
from backend.training.trainer import train

ROOT = Path(__file__).resolve().parents[1]
RECEIPTS = ROOT / "examples" / "data" / "receipts.jsonl"
DOCUMENTS = ROOT / "examples" / "documents"
HELD_OUT, SHOWN = 8, 3
TRAIN_SHARE = 0.55  # of the demo's time budget; evaluation and the agents get the rest


def run_demo(*, minutes: float, output_dir: str, whole_agents_step: bool = False) -> int:
    """The demo within about `minutes` on any machine: training is sized to its share after measuring
    this machine's speed in its first steps, and the agents stop starting documents when time is up
    (unless `whole_agents_step`)."""
    import time

    deadline = time.monotonic() + minutes * 60
    records = [json.loads(line) for line in RECEIPTS.read_text().splitlines() if line.strip()]
    random.Random(0).shuffle(records)
    held_out, train_records = records[:HELD_OUT], records[HELD_OUT:]
    run_dir = Path(output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    train_file, eval_file = run_dir / "demo-train.jsonl", run_dir / "demo-heldout.jsonl"
    for path, rows in ((train_file, train_records), (eval_file, held_out)):
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))

    train_minutes = round(minutes * TRAIN_SHARE, 1)
    print(f"1/3 fine-tuning the bundled model on {len(train_records)} receipts "
          f"(SROIE, CC BY 4.0), about {train_minutes:g} minutes ...")
    config = TrainConfig(data=[str(train_file)], epochs=3, batch_size=4, learning_rate=1e-3,
                         max_minutes=train_minutes, val_fraction=0.0, output_dir=output_dir, save_every=0)
    result = train(config)
    s = result.summary
    print(f"   {s['steps']} steps, {s['tokens_per_s']:.0f} tokens/s, {s['train_time_s']:.0f} s; "
          f"loss {s['final_loss']:.3f}\n   path: {s['runtime']}")
    if s.get("fitted_to_budget"):
        fit = s["fitted_to_budget"]
        print(f"   sized to this machine: {fit['steps']} of {fit['planned']} planned steps fit "
              f"{train_minutes:g} min at {fit['tokens_per_s']:.0f} tokens/s")

    print(f"2/3 base model vs fine-tuned on {HELD_OUT} receipts the model never saw ...")
    examples, schema = load_eval_set(eval_file)
    candidates = build_candidates(adapters=[str(result.run_dir)], include_base=True, model=None,
                                  default_base=config.model)
    outcome = evaluate(examples=examples, schema=schema, candidates=candidates, pool=ModelPool(), max_new_tokens=160)
    paths = write_eval({"data": str(eval_file), **outcome}, result.run_dir / "eval",
                       title="tunebridge demo: base vs fine-tuned on held-out receipts")
    for entry, shown in zip(outcome["candidates"].values(), ("base model", "fine-tuned")):
        x = entry["extraction"]
        fields = ", ".join(f"{f} {v['f1']:.2f}" for f, v in x["fields"].items())
        print(f"   {shown:<11} micro-F1 {x['micro']['f1']:.3f} ({fields}); valid JSON {x['json_valid']:.0%}")
    base, tuned = (entry["predictions"] for entry in outcome["candidates"].values())
    for record, before, after in list(zip(held_out, base, tuned))[:SHOWN]:
        print(f"\n- expected:   {json.dumps(record['fields'], ensure_ascii=False)}\n"
              f"- base model: {_short(before['raw'])}\n- fine-tuned: {_short(after['raw'])}")
    print(f"\nreport: {paths['report']} (chart: {paths['chart']}); run folder: {result.run_dir}")
    run_agents(result.run_dir, deadline=None if whole_agents_step else deadline)
    return 0


def run_agents(run_dir: Path, *, deadline: float | None = None) -> None:
    """Step 3: the agents' graph over the example documents with the adapter just trained."""
    import sqlite3

    from langgraph.checkpoint.sqlite import SqliteSaver

    from agents.cli import expand, run_documents, summary_table
    from agents.graph import Deps, build_graph
    from agents.models import EngineModel
    from agents.policy import Policy
    from agents.store import Store

    files = expand([str(DOCUMENTS)])
    print(f"\n3/3 the agents on {len(files)} documents in {DOCUMENTS.relative_to(ROOT)} (extract, validate, "
          "decide; doubtful ones held for review) ...")
    folder = run_dir / "agents"
    store = Store(folder / "agents.sqlite")
    # A receipts adapter trained for minutes: short answers and one repair keep this step to minutes.
    model = EngineModel(adapter=str(run_dir), max_new_tokens=48, answer_tokens=384)
    graph = build_graph(Deps(model=model, policy=Policy.load(None), store=store, max_repairs=1),
                        SqliteSaver(sqlite3.connect(str(store.path), check_same_thread=False)))
    records, report = run_documents(graph, store, files, out=folder / "results.jsonl", deadline=deadline)
    print(summary_table(records))
    print(f"records: {folder / 'results.jsonl'}\nreport: {report}\n"
          f"reviews: tunebridge review list --db {store.path}")
    if not any(r.get("calibrated") for r in records):
        print("approvals rest on calibrated confidence: calibrate the adapter on labelled receipts it never saw, "
              f"then run the agents again:\n  tunebridge eval --adapter {run_dir} --data {run_dir.parent / 'demo-heldout.jsonl'} "
              f"--constrained --calibrate\n  tunebridge extract {DOCUMENTS.relative_to(ROOT)} --adapter {run_dir}")


def _short(text: str, width: int = 400) -> str:
    return textwrap.shorten(text.replace("\n", " "), width=width, placeholder=" ...") or "(empty)"
