"""The main job on embedded defaults: fine-tune the bundled model on bundled receipts for a few
minutes, then show its answers on held-out receipts before and after fine-tuning."""

from __future__ import annotations

import json
import random
import textwrap
from pathlib import Path

from backend.inference.generate import chat, load_for_inference
from backend.prompts import ExtractionSchema, extraction_messages
from backend.training.config import TrainConfig
from backend.training.trainer import train

RECEIPTS = Path(__file__).resolve().parents[1] / "examples" / "data" / "receipts.jsonl"
SHOWN = 3


def run_demo(*, minutes: float, output_dir: str) -> int:
    records = [json.loads(line) for line in RECEIPTS.read_text().splitlines() if line.strip()]
    random.Random(0).shuffle(records)
    held_out, train_records = records[:SHOWN], records[SHOWN:]
    run_dir = Path(output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    train_file = run_dir / "demo-train.jsonl"
    train_file.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in train_records))

    print(f"1/2 fine-tuning the bundled model on {len(train_records)} receipts "
          f"(SROIE, CC BY 4.0), about {minutes:g} minutes ...")
    config = TrainConfig(data=[str(train_file)], epochs=3, learning_rate=1e-3, max_minutes=minutes,
                         val_fraction=0.1, output_dir=output_dir, save_every=0)
    result = train(config)
    s = result.summary
    print(f"   {s['steps']} steps, {s['tokens_per_s']:.0f} tokens/s, {s['train_time_s']:.0f} s; "
          f"loss {s['final_loss']:.3f}, validation loss {s['val_loss']:.3f}; {s['runtime']}")

    print(f"2/2 answers on {SHOWN} receipts the model never saw, before and after fine-tuning:")
    loaded = load_for_inference(adapter=str(result.run_dir))
    schema = ExtractionSchema.from_names(["company", "date", "address", "total"])
    lines = ["# tunebridge demo: before and after fine-tuning", ""]
    for record in held_out:
        messages = extraction_messages(record["text"], schema)
        with loaded.model.disable_adapter():
            before = chat(loaded, messages, max_new_tokens=120)
        after = chat(loaded, messages, max_new_tokens=120)
        block = [f"## receipt {record['id']}", "", f"- expected:   {json.dumps(record['fields'], ensure_ascii=False)}",
                 f"- base model: {_short(before)}", f"- fine-tuned: {_short(after)}", ""]
        print("\n".join(block))
        lines += block
    (result.run_dir / "demo.md").write_text("\n".join(lines))
    print(f"run folder: {result.run_dir} (adapter/, loss.png, metrics.jsonl, demo.md)")
    return 0


def _short(text: str, width: int = 400) -> str:
    return textwrap.shorten(text.replace("\n", " "), width=width, placeholder=" ...") or "(empty)"
