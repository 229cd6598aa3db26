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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from backend.prompts import ExtractionSchema
from backend.training import checkpoint as ckpt
from backend.training.batching import collate, run_batches
from backend.training.config import TrainConfig
from backend.training.data import check_usable, load_jsonl, split
from backend.training.distributed import Parallel, launched
from backend.training.runtime import Runtime, build_lora_model, tune_cpu_allocator
from backend.training.tokenize import IGNORE, Encoded, EncodedSet, encode_examples
from backend.training.tracking import Tracker, plot_loss
from backend.training.validation import HIGHER_IS_BETTER, EvaluationStopped, ExtractionCheck


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


def prepare_data(config: TrainConfig, tokenizer) -> tuple[EncodedSet, EncodedSet, dict[str, Any], list, list]:
    """Encoded training and validation sets, a data report, and the validation and training examples as parsed."""
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
    return train_set, val_set, report, val_ex, train_ex


def _new_run_dir(config: TrainConfig) -> Path:
    name = config.run_name or datetime.now().strftime("train-%Y%m%d-%H%M%S")
    run_dir = Path(config.output_dir) / name
    if ckpt.latest_checkpoint(run_dir) or (run_dir / "summary.json").exists():
        raise FileExistsError(f"run folder {run_dir} already holds a run; resume it or choose another run_name")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
    return run_dir


def train(
    config: TrainConfig | None,
    *,
    resume_dir: str | Path | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    progress_bar: bool = True,
) -> TrainResult:
    """Train (or resume) one run. `should_stop` is polled between steps: when it returns True the
    run saves a checkpoint and returns with status "cancelled". With `config.launcher` set, the run
    is handed to torchrun / accelerate launch (launch.py) and this process follows it."""
    if resume_dir is not None:
        run_dir = Path(resume_dir)
        if not (run_dir / "config.json").is_file():
            raise FileNotFoundError(f"cannot resume {run_dir}: no config.json there (not a run folder)")
        done = run_dir / "summary.json"
        if done.is_file() and json.loads(done.read_text()).get("status") == "succeeded":
            raise ValueError(f"cannot resume {run_dir}: the run already finished")
        config = TrainConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    else:
        if config is None:
            raise ValueError("train: a new run needs a config (None only with resume_dir)")
        if launched() and Parallel.from_env().enabled:
            raise ValueError("a launched rank trains a prepared run folder: start it with "
                             "`tunebridge train --launcher torchrun|accelerate`, not the launcher around the CLI")
        run_dir = _new_run_dir(config)
    if config.launcher != "none" and not launched():
        from backend.training.launch import launch

        return launch(config, run_dir=run_dir, should_stop=should_stop, on_progress=on_progress,
                      progress_bar=progress_bar)
    par = Parallel.from_env(config.strategy)
    torch.set_num_threads(par.threads(config.threads))
    random.seed(config.seed)
    started = time.time()

    runtime = Runtime.from_config(config)
    if runtime.device == "cpu":
        tune_cpu_allocator()
    par.setup(runtime.device, batch_size=config.batch_size, grad_accum=config.grad_accum)
    model_path, tokenizer, model = build_lora_model(config, runtime, fsdp=par.fsdp)
    train_set, val_set, data_report, val_examples, train_examples = prepare_data(config, tokenizer)
    # generation-based metrics run on rank 0; not under FSDP, where no rank holds the whole model
    extraction, check = bool(config.eval_examples and data_report["schema"]) and not par.fsdp, None
    if par.fsdp and config.eval_metric == "micro_f1":
        raise ValueError("eval_metric: got 'micro_f1' with strategy fsdp, expected val_loss or auto (FSDP runs no "
                         "generation during training; evaluate the adapter afterwards)")
    if extraction and par.main:
        check = ExtractionCheck(val_examples, schema=data_report["schema"], tokenizer=tokenizer,
                                limit=config.eval_examples, batch_size=config.micro_batch_size)
    metric = config.eval_metric if config.eval_metric != "auto" else ("micro_f1" if extraction else "val_loss")
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

    latest = ckpt.latest_checkpoint(run_dir) if resume_dir is not None else None
    if latest is not None:
        ckpt.load_adapter(latest, model=model)  # before wrapping: FSDP shards what it finds
    loss_fn = AnswerLoss(model)
    forward = par.wrap(model, loss_fn)  # loss_fn itself in one process
    params = par.trainable(model)
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(config, total_steps))

    step, tokens_seen, elapsed_before = 0, 0, 0.0
    if resume_dir is not None:
        if latest is not None:
            state = ckpt.load_training_state(latest, optimizer=optimizer, scheduler=scheduler,
                                             load_optimizer=par.load_optimizer_state)
            step, tokens_seen, elapsed_before = state["step"], state["tokens_seen"], state["train_time_s"]
        if par.main:
            _truncate_metrics(run_dir / "metrics.jsonl", after_step=step)  # steps after it are trained again

    tracker = None
    if par.main:
        tracker = Tracker(run_dir, report_to=config.report_to, config=config.to_dict(), run_name=run_dir.name)
    bar = None
    if progress_bar and par.main:
        from tqdm.auto import tqdm

        bar = tqdm(total=total_steps, initial=step, desc="train", unit="step", dynamic_ncols=True)

    def state_now() -> dict[str, Any]:
        return {"step": step, "total_steps": total_steps, "tokens_seen": tokens_seen,
                "train_time_s": elapsed_before + (time.time() - loop_start)}

    def validate() -> float:
        return evaluate_loss(model, loss_fn, val_set, runtime=runtime, batch_size=config.micro_batch_size,
                             pad_id=tokenizer.pad_token_id, forward=forward, parallel=par)

    def save() -> None:
        weights, optimizer_state = par.adapter_weights(), par.optimizer_state(optimizer)  # collectives under FSDP
        if par.main:
            ckpt.save_checkpoint(run_dir, model=model, optimizer=optimizer, scheduler=scheduler, state=state_now(),
                                 keep=config.keep_checkpoints, weights=weights, optimizer_state=optimizer_state)
        par.barrier()

    best_file = run_dir / "best.json"
    best = json.loads(best_file.read_text()) if best_file.is_file() else None

    def evaluate_now() -> dict[str, Any]:
        """Validation loss, extraction metrics when the data has them, and the best adapter kept."""
        nonlocal best
        found: dict[str, Any] = {"val_loss": round(validate(), 6)}
        if check:  # rank 0 only; a single process may stop between its answers
            m = check.run(model, runtime, should_stop=None if par.enabled else should_stop)
            found.update({f"val_{k}": v for k, v in m.items() if k != "fields"}, val_fields_f1=m["fields"])
        found = par.broadcast(found)
        value = found.get("val_micro_f1" if metric == "micro_f1" else "val_loss")
        if config.keep_best and value is not None and (
                best is None or (value > best["value"] if HIGHER_IS_BETTER[metric] else value < best["value"])):
            weights = par.adapter_weights()
            if par.main:
                ckpt.save_adapter(model, run_dir / "best" / "adapter", weights=weights)
            best = {"step": step, "metric": metric, "value": value}
            if par.main:
                best_file.write_text(json.dumps(best))
        return found

    status, last_loss, val_loss, stopped_early, validation = "succeeded", None, None, None, None
    start_step, loop_start = step, time.time()
    model.train()
    while step < total_steps:
        stop, out_of_time = par.agree([should_stop(), bool(config.max_minutes) and
                                       state_now()["train_time_s"] >= config.max_minutes * 60])
        if stop:
            status = "cancelled"
            break
        if out_of_time:
            stopped_early = f"time budget of {config.max_minutes:g} min reached at step {step}/{total_steps}"
            break
        t0 = time.time()
        micro = [[train_set.items[i] for i in batch]
                 for batch in batches[step * config.grad_accum:(step + 1) * config.grad_accum]]
        result = _optimizer_step(micro, forward=forward, runtime=runtime, pad_id=tokenizer.pad_token_id,
                                 params=params, optimizer=optimizer, scheduler=scheduler,
                                 max_grad_norm=config.max_grad_norm, parallel=par)
        step += 1
        tokens_seen += int(result["tokens"])
        step_loss = last_loss = result["loss"]
        dt = time.time() - t0
        record = {"step": step, "epoch": round(step / steps_per_epoch, 4), "loss": round(step_loss, 6),
                  "lr": scheduler.get_last_lr()[0], "grad_norm": round(result["grad_norm"], 6),
                  "tokens": result["tokens"], "answer_tokens": result["answer_tokens"],
                  "tokens_per_s": round(result["tokens"] / dt, 2), "step_time_s": round(dt, 4)}
        if config.eval_every and step % config.eval_every == 0 and val_set.items and step < total_steps:
            record.update(evaluate_now())
            val_loss = record["val_loss"]
        if tracker is not None and (step % config.log_every == 0 or step == total_steps):
            tracker.log(record)
        if bar is not None:
            bar.set_postfix(loss=f"{step_loss:.4f}", tok_s=f"{record['tokens_per_s']:.0f}")
            bar.update(1)
        if on_progress is not None and par.main:
            rate = (time.time() - loop_start) / max(1, step - start_step)
            on_progress({**record, "total_steps": total_steps, "eta_s": round(rate * (total_steps - step), 1)})
        if config.save_every and step % config.save_every == 0 and step < total_steps:
            save()
    if bar is not None:
        bar.close()

    if status != "cancelled" and val_set.items:
        try:
            final_eval = {"step": step, **evaluate_now()}
            val_loss = final_eval["val_loss"]
            if tracker is not None:
                tracker.log(final_eval)
            validation = {k: v for k, v in final_eval.items() if k != "step"}
        except EvaluationStopped:
            status = "cancelled"
    if status != "cancelled" and not par.enabled and should_stop():  # asked during the last step or evaluation
        status = "cancelled"
    if status == "cancelled":
        save()
    train_time = elapsed_before + (time.time() - loop_start)
    described = runtime.describe() + (f"; {par.describe()}" if par.enabled else "")
    summary = {
        "status": status, "run_dir": str(run_dir), "base_model": config.model, "base_model_path": model_path,
        "runtime": described, "steps": step, "total_steps": total_steps, "tokens_seen": tokens_seen,
        "train_time_s": round(train_time, 2), "tokens_per_s": round(tokens_seen / max(train_time, 1e-9), 2),
        "final_loss": last_loss, "val_loss": val_loss, "validation": validation, "stopped_early": stopped_early, "wall_time_s": round(time.time() - started, 2),
        "data": data_report, "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    weights = par.adapter_weights() if status == "succeeded" else None
    if par.main:
        if status == "succeeded":
            _save_outputs(run_dir, model=model, tokenizer=tokenizer, config=config, summary=summary, weights=weights)
            summary["conventions"] = save_conventions(run_dir / "adapter", train_examples)
            if best is not None:
                summary["best"] = best
                if best["step"] != step:  # ship the best evaluation's adapter, not the last step's
                    shutil.copytree(run_dir / "best" / "adapter", run_dir / "adapter", dirs_exist_ok=True)
            ckpt.make_portable(run_dir / "adapter", base_model=config.model, base_path=model_path)
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        plot_loss(run_dir / "metrics.jsonl", run_dir / "loss.png", title=f"{run_dir.name} — {config.model}")
        if tracker is not None:  # par.main made one
            tracker.finish(summary)
    par.barrier()
    par.close()
    return TrainResult(run_dir, status, summary, model)


def _optimizer_step(micro: list[list[Encoded]], *, forward: Callable, runtime: Runtime, pad_id: int,
                    params: list[torch.nn.Parameter], optimizer, scheduler, max_grad_norm: float,
                    parallel: Parallel = Parallel()) -> dict[str, float]:  # noqa: B008 - only read, never changed
    """One optimizer step over `grad_accum` micro-batches; the loss is the mean over all their
    answer tokens (each micro-batch's summed loss divided by the step's answer-token count).
    With several processes each rank runs its share of every micro-batch (distributed.py)."""
    local = [parallel.shard(batch) for batch in micro]
    n_answer, tokens = parallel.all_sum([
        sum(1 for batch in local for e in batch for label in e.labels[1:] if label != IGNORE),
        sum(len(e.input_ids) for batch in local for e in batch)])
    n_answer, tokens = int(n_answer), int(tokens)
    per_rank = n_answer / parallel.world  # DDP/FSDP average gradients over ranks: scale back up
    total = 0.0
    for i, batch in enumerate(local):
        weight = 1.0
        if not batch:  # a short last batch left this rank nothing: a zero-weighted stand-in keeps ranks in step
            batch, weight = micro[i][:1], 0.0
        ids, labels = collate(batch, pad_id=pad_id)
        with parallel.no_sync(i < len(local) - 1):
            with runtime.autocast():
                loss = forward(ids.to(runtime.device), labels.to(runtime.device)) / per_rank
            if weight != 1.0:
                loss = loss * weight
            loss.backward()
        total += loss.item()
    if parallel.enabled:
        total = parallel.all_sum([total])[0] / parallel.world
    grad_norm = parallel.clip(params, max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return {"loss": total, "grad_norm": grad_norm, "answer_tokens": n_answer, "tokens": tokens}


@torch.no_grad()
def evaluate_loss(model, loss_fn: AnswerLoss, data: EncodedSet, *, runtime: Runtime, batch_size: int, pad_id: int,
                  forward: Callable | None = None, parallel: Parallel = Parallel()) -> float:  # noqa: B008 - only read
    """Mean loss per answer token; `forward` (the DDP/FSDP wrapper) and `parallel` split each batch
    over the ranks as training does."""
    forward = forward or loss_fn
    was_training = model.training
    model.eval()
    count: float  # a float once summed over the ranks
    total, count = 0.0, 0
    order = sorted(range(len(data.items)), key=lambda i: len(data.items[i].input_ids))
    for start in range(0, len(order), batch_size):
        batch = [data.items[i] for i in order[start:start + batch_size]]
        share = parallel.shard(batch)
        ids, labels = collate(share or batch[:1], pad_id=pad_id)
        with runtime.autocast():
            loss = forward(ids.to(runtime.device), labels.to(runtime.device)).item()
        if share:  # an empty share ran a stand-in (FSDP needs every rank's forward): not counted
            total += loss
            count += int((labels[:, 1:] != IGNORE).sum())
    model.train(was_training)
    if parallel.enabled:
        total, count = parallel.all_sum([total, count])
    return total / max(1, count)


def _save_outputs(run_dir: Path, *, model, tokenizer, config: TrainConfig, summary: dict[str, Any],
                  weights: dict[str, torch.Tensor] | None = None) -> None:
    adapter = run_dir / "adapter"
    ckpt.save_adapter(model, adapter, weights=weights)
    (adapter / "tunebridge.json").write_text(json.dumps({"base_model": config.model, "runtime": summary["runtime"]}, indent=2))
    tokenizer.save_pretrained(run_dir / "tokenizer")
    summary["adapter_dir"] = str(adapter)


def save_conventions(adapter: Path, examples: list) -> str | None:
    """The label conventions learned from the extraction records trained on (backend/scoring/conventions.py),
    saved with the adapter, and the label memory beside it in the run folder (it quotes the documents):
    extraction then writes values the labels' way. The file's path, or None when there were no
    extraction records to learn from."""
    from backend.scoring.conventions import learn

    records = [e.record for e in examples if e.record is not None]
    if not records:
        return None
    conventions = learn([(r["text"], r["fields"]) for r in records])
    return str(conventions.save(adapter, memory_folder=adapter.parent)) if conventions.fields else None


def _truncate_metrics(path: Path, *, after_step: int) -> None:
    if path.exists():
        keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line).get("step", 0) <= after_step]
        path.write_text("".join(line + "\n" for line in keep))
