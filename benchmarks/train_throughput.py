"""Training throughput: tunebridge's trainer vs the plain recipe, side by side on this machine.

    .venv/bin/python benchmarks/train_throughput.py [--steps 7 --batch-size 8 --epochs 2 --data FILE]

Both train a LoRA (r=16, alpha=32, all linear layers) on the bundled SmolLM2-135M over the same
receipts for the same number of steps (`epochs` passes over steps x batch examples), each in its own
process so peak RSS is its own:
- plain: TRL SFTTrainer + peft defaults, fp32, padding to the longest, completion-only loss on a
  prompt/completion dataset (what the seminar notebook does; TRL turns gradient checkpointing on);
- tunebridge: backend.training.trainer with its defaults (bf16 on AMX, length-grouped batches,
  logits only at answer positions).
Afterwards both adapters are scored with the same answer-token loss on the same held-out receipts:
"equal loss after the same number of tokens" is checked there, not on noisy per-batch losses.
Prints the CPU kind, tokens/s, peak RSS, held-out loss, useful FLOP/s against a matmul peak (in the dtype tunebridge computes in there) measured in
the same run, and `ratio: <tunebridge tokens/s / plain tokens/s>`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_DATA = ROOT / "examples" / "data" / "receipts.jsonl"
HELD_OUT = 8


def _split(data: Path, n_train: int):
    from backend.training.data import load_jsonl

    examples = load_jsonl(data).examples
    if len(examples) < n_train + HELD_OUT:
        raise SystemExit(f"{data} has {len(examples)} examples; need {n_train} + {HELD_OUT} held out")
    return examples[:n_train], examples[-HELD_OUT:]


def run_plain(args, out: Path) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    from backend.models import load_tokenizer, resolve_model

    torch.set_num_threads(args.threads)
    train_ex, _ = _split(args.data, args.steps * args.batch_size)
    rows = [{"prompt": ex.messages[:-1], "completion": ex.messages[-1:]} for ex in train_ex]
    path = resolve_model()
    tokenizer = load_tokenizer(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    config = SFTConfig(
        output_dir=str(out),
        per_device_train_batch_size=args.batch_size,
        max_steps=args.steps * args.epochs,
        learning_rate=args.lr,
        lr_scheduler_type="constant",
        warmup_steps=0,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        bf16=False,
        max_length=2048,
        seed=args.seed,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    lora = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = SFTTrainer(
        model=model, args=config, train_dataset=Dataset.from_list(rows), processing_class=tokenizer, peft_config=lora
    )
    started = time.time()
    trainer.train()
    seconds = time.time() - started
    trainer.model.save_pretrained(out / "adapter")
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"seconds": seconds, "losses": losses, "adapter": str(out / "adapter")}


def run_tunebridge(args, out: Path) -> dict:
    from backend.training.config import TrainConfig
    from backend.training.trainer import train

    train_ex, _ = _split(args.data, args.steps * args.batch_size)
    data = out / "train.jsonl"
    data.write_text("".join(json.dumps({"messages": ex.messages}) + "\n" for ex in train_ex))
    config = TrainConfig(
        data=[str(data)],
        val_fraction=0.0,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        lr_scheduler="constant",
        warmup_ratio=0.0,
        report_to="none",
        save_every=0,
        output_dir=str(out),
        run_name="tb",
        seed=args.seed,
        threads=args.threads,
        **json.loads(args.variant or "{}"),
    )
    result = train(config, progress_bar=False)
    losses = [
        json.loads(line)["loss"]
        for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()
        if '"loss"' in line
    ]
    return {
        "seconds": result.summary["train_time_s"],
        "losses": losses,
        "adapter": str(result.adapter_dir),
        "runtime": result.summary["runtime"],
    }


def held_out_loss(args, adapter: str) -> float:
    """Answer-token cross-entropy of base+adapter on the held-out receipts (fp32, one definition)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from backend.models import load_tokenizer, resolve_model
    from backend.training.runtime import Runtime
    from backend.training.steps import AnswerLoss, evaluate_loss
    from backend.training.tokenize import encode_examples

    _, held = _split(args.data, args.steps * args.batch_size)
    path = resolve_model()
    tokenizer = load_tokenizer(path)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), adapter)
    encoded = encode_examples(tokenizer, held, max_length=4096)
    return evaluate_loss(
        model,
        AnswerLoss(model),
        encoded,
        runtime=Runtime("cpu", torch.float32, "none"),
        batch_size=4,
        pad_id=tokenizer.pad_token_id,
    )


def workload(args) -> dict:
    """Tokens trained on and the useful FLOPs they need (the same count for both methods)."""
    from transformers import AutoConfig

    from backend.models import load_tokenizer, resolve_model
    from backend.training.tokenize import encode_examples

    path = resolve_model()
    cfg = AutoConfig.from_pretrained(path)
    train_ex, _ = _split(args.data, args.steps * args.batch_size)
    enc = encode_examples(load_tokenizer(path), train_ex, max_length=4096)
    h, layers, inter = cfg.hidden_size, cfg.num_hidden_layers, cfg.intermediate_size
    kv = h * cfg.num_key_value_heads // cfg.num_attention_heads
    body = layers * (2 * h * h + 2 * h * kv + 3 * h * inter)  # weights touched per token
    tokens = enc.n_tokens * args.epochs
    answer = sum(e.n_answer_tokens for e in enc.items) * args.epochs
    # forward 2 FLOPs per weight per token, backward (activation gradients only; the base is frozen) 2 more;
    # attention scores and mixing (causal, so half of T^2), and the output layer only where there are labels.
    flops = (
        4 * body * tokens
        + 4 * layers * h * sum(len(e.input_ids) ** 2 for e in enc.items) * args.epochs
        + 4 * cfg.vocab_size * h * answer
    )
    return {"tokens": tokens, "answer_tokens": answer, "useful_flops": flops}


def matmul_peak(threads: int, dtype) -> float:
    import torch

    torch.set_num_threads(threads)
    a = torch.randn(2048, 2048, dtype=dtype)
    b = torch.randn(2048, 2048, dtype=dtype)
    for _ in range(3):
        a @ b
    n, started = 20, time.time()
    for _ in range(n):
        a @ b
    return 2 * 2048**3 * n / (time.time() - started)


def child(args) -> None:
    out = Path(args.out)
    result = (run_plain if args.only == "plain" else run_tunebridge)(args, out)
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["held_out_loss"] = held_out_loss(args, result["adapter"])
    (out / "result.json").write_text(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="extraction or chat JSONL")
    parser.add_argument("--steps", type=int, default=7, help="steps per epoch (steps x batch-size receipts)")
    parser.add_argument("--epochs", type=int, default=2, help="passes over those receipts")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--only", choices=["plain", "tunebridge"], help=argparse.SUPPRESS)
    parser.add_argument(
        "--variant",
        metavar="JSON",
        help="TrainConfig overrides for the tunebridge side, for "
        'ablations, e.g. \'{"precision": "fp32", "group_by_length": false}\'',
    )
    parser.add_argument(
        "--also",
        metavar="JSON",
        action="append",
        default=[],
        help="another tunebridge side with these overrides on top of --variant, run in the same "
        "session with its own ratio (repeatable), e.g. '{\"share_prefix\": false}' to see what a lever gives",
    )
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.only:
        return child(args)
    if importlib.util.find_spec("trl") is None or importlib.util.find_spec("datasets") is None:
        raise SystemExit("the plain TRL recipe needs the bench extra: make bench, or pip install -e '.[bench]'")

    import torch

    from backend.models.hardware import compute_path, cpu_kind

    work = workload(args)
    path = compute_path(cpu_kind())  # the peak in the dtype tunebridge computes in here (bf16 is emulated on AVX2)
    peak = matmul_peak(args.threads, torch.bfloat16 if path.dtype == "bf16" else torch.float32)
    print(f"cpu: {cpu_kind()}")
    print(
        f"workload: {args.epochs} epochs x {args.steps} steps x {args.batch_size} receipts = {work['tokens']} tokens "
        f"({work['answer_tokens']} answer tokens), {args.threads} threads"
    )
    print(f"{path.dtype} 2048x2048 matmul peak: {peak / 1e12:.2f} TFLOP/s")
    results = {}
    base = json.loads(args.variant or "{}")
    sides = [("plain", "plain", base), ("tunebridge", "tunebridge", base)]
    sides += [(f"tunebridge {extra}", "tunebridge", {**base, **json.loads(extra)}) for extra in args.also]
    with tempfile.TemporaryDirectory() as tmp:
        for k, (name, kind, variant) in enumerate(sides):
            out = Path(tmp) / str(k)
            out.mkdir()
            cmd = [
                sys.executable,
                __file__,
                "--only",
                kind,
                "--out",
                str(out),
                "--data",
                str(args.data),
                "--steps",
                str(args.steps),
                "--epochs",
                str(args.epochs),
                "--batch-size",
                str(args.batch_size),
                "--lr",
                str(args.lr),
                "--seed",
                str(args.seed),
                "--threads",
                str(args.threads),
                "--variant",
                json.dumps(variant),
            ]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            results[name] = r = json.loads((out / "result.json").read_text())
            r["tokens_per_s"] = work["tokens"] / r["seconds"]
            r["flops_per_s"] = work["useful_flops"] / r["seconds"]
            print(
                f"{name}: {r['seconds']:7.1f} s  {r['tokens_per_s']:7.1f} tokens/s  "
                f"{r['flops_per_s'] / 1e12:.3f} useful TFLOP/s ({100 * r['flops_per_s'] / peak:.1f}% of peak)  "
                f"peak RSS {r['peak_rss_mib']:.0f} MiB  held-out loss {r['held_out_loss']:.4f}  "
                f"first/last step loss {r['losses'][0]:.3f}/{r['losses'][-1]:.3f}"
            )
    plain, tb = results["plain"], results["tunebridge"]
    diff = (tb["held_out_loss"] - plain["held_out_loss"]) / plain["held_out_loss"]
    print(f"held-out loss difference: {100 * diff:+.1f}% ({'within' if abs(diff) <= 0.05 else 'OUTSIDE'} ±5%)")
    print(f"tunebridge runtime: {tb.get('runtime')}")
    for name, _, _ in sides[2:]:
        r = results[name]
        print(
            f"{name}: ratio {r['tokens_per_s'] / plain['tokens_per_s']:.2f}, tunebridge over it "
            f"{tb['tokens_per_s'] / r['tokens_per_s']:.3f}, held-out loss {r['held_out_loss']:.4f}"
        )
    print(f"ratio: {tb['tokens_per_s'] / plain['tokens_per_s']:.2f}")


if __name__ == "__main__":
    main()
