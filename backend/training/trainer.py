"""tunebridge's LoRA trainer: a plain PyTorch loop built for CPU speed, correct on CUDA too.

Why not TRL's SFTTrainer: on this CPU the same recipe runs several times faster here
(benchmarks/train_throughput.py measures both side by side). What makes the difference:
- frozen base weights stored in bf16 and bf16 autocast (AMX units), adapters kept in fp32;
- batches grouped by length and right-padded without an attention mask (exact: attention is causal);
- the output layer and the loss computed only at answer positions (completion-only training
  needs no logits for prompt tokens, which are ~85% of an extraction example);
- no gradient checkpointing and no LoRA dropout by default.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from backend.prompts import ExtractionSchema
from backend.training import checkpoint as ckpt
from backend.training.batching import collate, run_batches
from backend.training.config import TrainConfig
from backend.training.data import check_usable, load_jsonl, split
from backend.training.validation import HIGHER_IS_BETTER, ExtractionCheck
from backend.training.runtime import Runtime, build_lora_model, tune_cpu_allocator
from backend.training.tokenize import IGNORE, Encoded, EncodedSet, encode_examples
from backend.training.tracking import Tracker, plot_loss


@dataclass
class TrainResult:
    run_dir: Path
    status: str  # "succeeded" | "cancelled"
    summary: dict[str, Any]
    model: Any = None  # the trained peft model, still in memory (not serialised)

    @property
    def adapter_dir(self) -> Path:
        return self.run_dir / "adapter"


class AnswerLoss:
    """Cross-entropy over answer tokens only; logits are never computed for prompt positions."""

    def __init__(self, peft_model):
        base = peft_model.get_base_model()
        self.decoder = base.get_decoder()
        self.head = base.get_output_embeddings()
        self.softcap = getattr(base.config, "final_logit_softcapping", None)

    def __call__(self, ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Summed (not averaged) loss, so micro-batches add up to an exact per-token mean."""
        hidden = self.decoder(input_ids=ids, use_cache=False).last_hidden_state
        target = labels[:, 1:]
        mask = target != IGNORE
        with torch.autocast(hidden.device.type, enabled=False):  # fp32 logits: bf16 ones cost accuracy
            selected = hidden[:, :-1][mask].float()
            logits = F.linear(selected, self.head.weight.float(), None if self.head.bias is None else self.head.bias.float())
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return F.cross_entropy(logits, target[mask], reduction="sum")


def _schedule(config: TrainConfig, total_steps: int) -> Callable[[int], float]:
    warmup = int(total_steps * config.warmup_ratio)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if config.lr_scheduler == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total_steps - warmup)
        if config.lr_scheduler == "linear":
            return max(0.0, 1.0 - progress)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def prepare_data(config: TrainConfig, tokenizer) -> tuple[EncodedSet, EncodedSet, dict[str, Any], list]:
    """Encoded training and validation sets, a data report, and the validation examples as parsed."""
    schema = None
    if config.schema:
        schema = ExtractionSchema.from_json_schema(json.loads(Path(config.schema).read_text()))
    loaded = load_jsonl(config.data, schema=schema)
    check_usable(loaded, skip_invalid=config.skip_invalid, source=", ".join(config.data))
    train_ex, val_ex = split(loaded.examples, val_fraction=config.val_fraction, seed=config.seed)
    train_set = encode_examples(tokenizer, train_ex, max_length=config.max_length)
    val_set = encode_examples(tokenizer, val_ex, max_length=config.max_length)
    report = {
        **loaded.summary(),
        "invalid": [str(i) for i in loaded.issues[:50]],
        "train_examples": len(train_set.items),
        "val_examples": len(val_set.items),
        "too_long": [f"{o} ({n} tokens > max_length {config.max_length})" for o, n in train_set.too_long + val_set.too_long],
    }
    if not train_set.items:
        raise ValueError(f"no training example fits max_length={config.max_length}: " + "; ".join(report["too_long"][:5]))
    return train_set, val_set, report, val_ex


def _new_run_dir(config: TrainConfig) -> Path:
    name = config.run_name or datetime.now().strftime("train-%Y%m%d-%H%M%S")
    run_dir = Path(config.output_dir) / name
    if ckpt.latest_checkpoint(run_dir) or (run_dir / "summary.json").exists():
        raise FileExistsError(f"run folder {run_dir} already holds a run; resume it or choose another run_name")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
    return run_dir


def train(
    config: TrainConfig,
    *,
    resume_dir: str | Path | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    progress_bar: bool = True,
) -> TrainResult:
    """Train (or resume) one run. `should_stop` is polled between steps: when it returns True the
    run saves a checkpoint and returns with status "cancelled"."""
    if resume_dir is not None:
        run_dir = Path(resume_dir)
        if not (run_dir / "config.json").is_file():
            raise FileNotFoundError(f"cannot resume {run_dir}: no config.json there (not a run folder)")
        done = run_dir / "summary.json"
        if done.is_file() and json.loads(done.read_text()).get("status") == "succeeded":
            raise ValueError(f"cannot resume {run_dir}: the run already finished")
        config = TrainConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    else:
        run_dir = _new_run_dir(config)
    torch.set_num_threads(config.threads or torch.get_num_threads())
    random.seed(config.seed)
    started = time.time()

    runtime = Runtime.from_config(config)
    if runtime.device == "cpu":
        tune_cpu_allocator()
    model_path, tokenizer, model = build_lora_model(config, runtime)
    train_set, val_set, data_report, val_examples = prepare_data(config, tokenizer)
    check = None
    if config.eval_examples and data_report["schema"]:
        check = ExtractionCheck(val_examples, schema=data_report["schema"], tokenizer=tokenizer,
                                limit=config.eval_examples, batch_size=config.micro_batch_size)
    metric = config.eval_metric if config.eval_metric != "auto" else ("micro_f1" if check else "val_loss")
    lengths = [len(e.input_ids) for e in train_set.items]
    batches = run_batches(lengths, batch_size=config.micro_batch_size, seed=config.seed,
                          epochs=config.epochs, group_by_length=config.group_by_length)
    total_steps = math.ceil(len(batches) / config.grad_accum)
    steps_per_epoch = max(1.0, math.ceil(len(lengths) / config.micro_batch_size) / config.grad_accum)
    if config.max_steps:
        total_steps = config.max_steps
        while len(batches) < total_steps * config.grad_accum:  # max_steps beyond the epochs: keep cycling
            more = run_batches(lengths, batch_size=config.micro_batch_size, seed=config.seed + len(batches),
                               epochs=1, group_by_length=config.group_by_length)
            batches.extend(more)

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(config, total_steps))
    loss_fn = AnswerLoss(model)

    step, tokens_seen, elapsed_before = 0, 0, 0.0
    if resume_dir is not None:
        latest = ckpt.latest_checkpoint(run_dir)
        if latest is not None:
            state = ckpt.load_checkpoint(latest, model=model, optimizer=optimizer, scheduler=scheduler)
            step, tokens_seen, elapsed_before = state["step"], state["tokens_seen"], state["train_time_s"]
        _truncate_metrics(run_dir / "metrics.jsonl", after_step=step)  # steps after it are trained again

    tracker = Tracker(run_dir, report_to=config.report_to, config=config.to_dict(), run_name=run_dir.name)
    bar = None
    if progress_bar:
        from tqdm.auto import tqdm

        bar = tqdm(total=total_steps, initial=step, desc="train", unit="step", dynamic_ncols=True)

    def state_now() -> dict[str, Any]:
        return {"step": step, "total_steps": total_steps, "tokens_seen": tokens_seen,
                "train_time_s": elapsed_before + (time.time() - loop_start)}

    def validate() -> float:
        return evaluate_loss(model, loss_fn, val_set, runtime=runtime, batch_size=config.micro_batch_size,
                             pad_id=tokenizer.pad_token_id)

    def save() -> None:
        ckpt.save_checkpoint(run_dir, model=model, optimizer=optimizer, scheduler=scheduler,
                             state=state_now(), keep=config.keep_checkpoints)

    best_file = run_dir / "best.json"
    best = json.loads(best_file.read_text()) if best_file.is_file() else None

    def evaluate_now() -> dict[str, Any]:
        """Validation loss, extraction metrics when the data has them, and the best adapter kept."""
        nonlocal best
        found: dict[str, Any] = {"val_loss": round(validate(), 6)}
        if check:
            m = check.run(model, runtime)
            found.update({f"val_{k}": v for k, v in m.items() if k != "fields"}, val_fields_f1=m["fields"])
        value = found.get("val_micro_f1" if metric == "micro_f1" else "val_loss")
        if config.keep_best and value is not None and (
                best is None or (value > best["value"] if HIGHER_IS_BETTER[metric] else value < best["value"])):
            model.save_pretrained(run_dir / "best" / "adapter")
            best = {"step": step, "metric": metric, "value": value}
            best_file.write_text(json.dumps(best))
        return found

    status, last_loss, val_loss, stopped_early, validation = "succeeded", None, None, None, None
    start_step, loop_start = step, time.time()
    model.train()
    while step < total_steps:
        if should_stop():
            status = "cancelled"
            break
        if config.max_minutes and state_now()["train_time_s"] >= config.max_minutes * 60:
            stopped_early = f"time budget of {config.max_minutes:g} min reached at step {step}/{total_steps}"
            break
        t0 = time.time()
        micro = [[train_set.items[i] for i in batch]
                 for batch in batches[step * config.grad_accum:(step + 1) * config.grad_accum]]
        result = _optimizer_step(micro, loss_fn=loss_fn, runtime=runtime, pad_id=tokenizer.pad_token_id,
                                 params=params, optimizer=optimizer, scheduler=scheduler,
                                 max_grad_norm=config.max_grad_norm)
        step += 1
        tokens_seen += result["tokens"]
        step_loss = last_loss = result["loss"]
        dt = time.time() - t0
        record = {"step": step, "epoch": round(step / steps_per_epoch, 4), "loss": round(step_loss, 6),
                  "lr": scheduler.get_last_lr()[0], "grad_norm": round(result["grad_norm"], 6),
                  "tokens": result["tokens"], "answer_tokens": result["answer_tokens"],
                  "tokens_per_s": round(result["tokens"] / dt, 2), "step_time_s": round(dt, 4)}
        if config.eval_every and step % config.eval_every == 0 and val_set.items and step < total_steps:
            record.update(evaluate_now())
            val_loss = record["val_loss"]
        if step % config.log_every == 0 or step == total_steps:
            tracker.log(record)
        if bar is not None:
            bar.set_postfix(loss=f"{step_loss:.4f}", tok_s=f"{record['tokens_per_s']:.0f}")
            bar.update(1)
        if on_progress is not None:
            rate = (time.time() - loop_start) / max(1, step - start_step)
            on_progress({**record, "total_steps": total_steps, "eta_s": round(rate * (total_steps - step), 1)})
        if config.save_every and step % config.save_every == 0 and step < total_steps:
            save()
    if bar is not None:
        bar.close()

    if status == "cancelled":
        save()
    elif val_set.items:
        final_eval = {"step": step, **evaluate_now()}
        val_loss = final_eval["val_loss"]
        tracker.log(final_eval)
        validation = {k: v for k, v in final_eval.items() if k != "step"}
    train_time = elapsed_before + (time.time() - loop_start)
    summary = {
        "status": status, "run_dir": str(run_dir), "base_model": config.model, "base_model_path": model_path,
        "runtime": runtime.describe(), "steps": step, "total_steps": total_steps, "tokens_seen": tokens_seen,
        "train_time_s": round(train_time, 2), "tokens_per_s": round(tokens_seen / max(train_time, 1e-9), 2),
        "final_loss": last_loss, "val_loss": val_loss, "validation": validation, "stopped_early": stopped_early, "wall_time_s": round(time.time() - started, 2),
        "data": data_report, "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if status == "succeeded":
        _save_outputs(run_dir, model=model, tokenizer=tokenizer, config=config, summary=summary)
        if best is not None:
            summary["best"] = best
            if best["step"] != step:  # ship the best evaluation's adapter, not the last step's
                shutil.copytree(run_dir / "best" / "adapter", run_dir / "adapter", dirs_exist_ok=True)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    plot_loss(run_dir / "metrics.jsonl", run_dir / "loss.png", title=f"{run_dir.name} — {config.model}")
    tracker.finish(summary)
    return TrainResult(run_dir, status, summary, model)


def _optimizer_step(micro: list[list[Encoded]], *, loss_fn: AnswerLoss, runtime: Runtime, pad_id: int,
                    params: list[torch.nn.Parameter], optimizer, scheduler, max_grad_norm: float) -> dict[str, float]:
    """One optimizer step over `grad_accum` micro-batches; the loss is the mean over all their
    answer tokens (each micro-batch's summed loss divided by the step's answer-token count)."""
    n_answer = sum(1 for batch in micro for e in batch for label in e.labels[1:] if label != IGNORE)
    total = 0.0
    for batch in micro:
        ids, labels = collate(batch, pad_id=pad_id)
        with runtime.autocast():
            loss = loss_fn(ids.to(runtime.device), labels.to(runtime.device)) / n_answer
        loss.backward()
        total += loss.item()
    grad_norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm or float("inf")).item()
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return {"loss": total, "grad_norm": grad_norm, "answer_tokens": n_answer,
            "tokens": sum(len(e.input_ids) for batch in micro for e in batch)}


@torch.no_grad()
def evaluate_loss(model, loss_fn: AnswerLoss, data: EncodedSet, *, runtime: Runtime, batch_size: int, pad_id: int) -> float:
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    order = sorted(range(len(data.items)), key=lambda i: len(data.items[i].input_ids))
    for start in range(0, len(order), batch_size):
        items = [data.items[i] for i in order[start:start + batch_size]]
        ids, labels = collate(items, pad_id=pad_id)
        with runtime.autocast():
            total += loss_fn(ids.to(runtime.device), labels.to(runtime.device)).item()
        count += int((labels[:, 1:] != IGNORE).sum())
    model.train(was_training)
    return total / max(1, count)


def _save_outputs(run_dir: Path, *, model, tokenizer, config: TrainConfig, summary: dict[str, Any]) -> None:
    adapter = run_dir / "adapter"
    model.save_pretrained(adapter)
    (adapter / "tunebridge.json").write_text(json.dumps({"base_model": config.model, "runtime": summary["runtime"]}, indent=2))
    tokenizer.save_pretrained(run_dir / "tokenizer")
    summary["adapter_dir"] = str(adapter)


def _truncate_metrics(path: Path, *, after_step: int) -> None:
    if path.exists():
        keep = [l for l in path.read_text().splitlines() if l.strip() and json.loads(l).get("step", 0) <= after_step]
        path.write_text("".join(l + "\n" for l in keep))
