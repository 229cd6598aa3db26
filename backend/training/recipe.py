"""One training run as a recipe: `setup` builds the model, data, optimizer and tracker (resuming from
the run folder's last checkpoint), `step` runs one optimizer step, `evaluate` the validation loss and
extraction metrics (keeping the best adapter), `save` a checkpoint, `finish` the adapter, label rules
and summary. `run` is the loop. State lives on the object; a launched multi-process run runs one
recipe per rank (launch.py), chosen by the caller (trainer.py), never by the recipe.

A plain PyTorch loop built for CPU speed, correct on CUDA too. Why not TRL's SFTTrainer: on this CPU
the same recipe runs several times faster here (benchmarks/train_throughput.py measures both side by
side). What makes the difference:
- frozen base weights stored in bf16 and bf16 autocast (AMX units), adapters kept in fp32;
- batches grouped by length and right-padded without an attention mask (exact: attention is causal);
- the output layer and the loss computed only at answer positions (completion-only training
  needs no logits for prompt tokens, which are ~85% of an extraction example);
- the prompt tokens every example of a step starts with (instructions, field list) read once per step
  (`steps.SharedPrefix`; the same gradient);
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

from backend import cores
from backend.errors import InvalidRequest
from backend.prompts import ExtractionSchema
from backend.training import checkpoint as ckpt
from backend.training.augment import augment_records
from backend.training.batching import run_batches
from backend.training.config import TrainConfig
from backend.training.data import Example, LoadedData, check_usable, data_sha256, extraction_chat, load_jsonl, split
from backend.training.distributed import Parallel, launched
from backend.training.runfile import write_run_file
from backend.training.runtime import (
    Runtime,
    bound_onednn_cache,
    build_lora_model,
    pass_tokens,
    peak_rss_gib,
    release_freed_memory,
    tune_cpu_allocator,
)
from backend.training.steps import AnswerLoss, evaluate_loss, optimizer_step, schedule
from backend.training.tokenize import EncodedSet, encode_examples
from backend.training.tracking import Tracker, plot_loss
from backend.training.validation import HIGHER_IS_BETTER, EvaluationStopped, ExtractionCheck

FIT_AFTER = 3  # steps before a time-budgeted run is sized to its budget: the speed of steps 2..3 (step 1 warms up)


@dataclass
class TrainResult:
    run_dir: Path
    status: str  # "succeeded" | "cancelled"
    summary: dict[str, Any]
    model: Any = None  # the trained peft model, still in memory (not serialised)

    @property
    def adapter_dir(self) -> Path:
        return self.run_dir / "adapter"


def open_run(config: TrainConfig | None, resume_dir: str | Path | None) -> tuple[TrainConfig, Path]:
    """The run's config and folder: a new folder for `config`, or the folder to resume (its config)."""
    if resume_dir is not None:
        run_dir = Path(resume_dir)
        if not (run_dir / "config.json").is_file():
            raise FileNotFoundError(f"cannot resume {run_dir}: no config.json there (not a run folder)")
        done = run_dir / "summary.json"
        if done.is_file() and json.loads(done.read_text()).get("status") == "succeeded":
            raise InvalidRequest(f"cannot resume {run_dir}: the run already finished")
        return TrainConfig.from_dict(json.loads((run_dir / "config.json").read_text())), run_dir
    if config is None:
        raise TypeError("a new run needs a config")
    if launched() and Parallel.from_env().enabled:
        raise InvalidRequest(
            "a launched rank trains a prepared run folder: start it with "
            "`tunebridge train --launcher torchrun|accelerate`, not the launcher around the CLI"
        )
    return config, _new_run_dir(config)


class Recipe:
    """One run (or one rank's share of a launched run). `should_stop` is polled between steps and inside
    evaluation: the run then saves a checkpoint and finishes "cancelled"."""

    def __init__(
        self,
        config: TrainConfig,
        run_dir: Path,
        *,
        resume: bool = False,
        should_stop: Callable[[], bool] = lambda: False,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
        progress_bar: bool = True,
        data: LoadedData | None = None,
    ):
        self.config, self.run_dir, self.resume = config, run_dir, resume
        self.data = data  # the training data, already read and checked (`load_data`), or None: read in setup
        self.should_stop, self.on_progress, self.progress_bar = should_stop, on_progress, progress_bar
        self.step_n, self.tokens_seen, self.elapsed_before = 0, 0, 0.0
        self.last_loss: float | None = None
        self.val_loss: float | None = None
        self.best: dict[str, Any] | None = None
        self.bar: Any = None
        self.fitted: dict[str, Any] | None = None  # the run shortened to its time budget (`fit_schedule`)
        self.tracker: Tracker | None = None

    # -- setup -------------------------------------------------------------------------------------
    def setup(self) -> None:
        config, run_dir = self.config, self.run_dir
        self.par = par = Parallel.from_env(config.strategy)
        self.share = cores.claim("train", fixed=par.threads(config.threads) if par.enabled else config.threads)
        self.share.apply()
        random.seed(config.seed)
        self.started = time.time()
        self.runtime = runtime = Runtime.from_config(config)
        self.trim = False  # give the heap's free pages back after each step (`release_freed_memory`)
        if runtime.device == "cpu":
            self.trim = tune_cpu_allocator()
            bound_onednn_cache()
        par.setup(runtime.device, batch_size=config.batch_size, grad_accum=config.grad_accum)
        self.model_path, self.tokenizer, self.model = build_lora_model(config, runtime, fsdp=par.fsdp)
        self.pass_tokens = (
            config.pass_tokens
            if config.pass_tokens >= 0 or runtime.device != "cpu"
            else pass_tokens(self.model.config, runtime.compute_dtype)
        )
        (self.train_set, self.val_set, self.data_report, val_examples, self.train_examples) = prepare_data(
            config, self.tokenizer, self.data or load_data(config)
        )
        # generation-based metrics run on rank 0; not under FSDP, where no rank holds the whole model
        extraction = bool(config.eval_examples and self.data_report["schema"]) and not par.fsdp
        if par.fsdp and config.eval_metric == "micro_f1":
            raise InvalidRequest(
                "eval_metric: got 'micro_f1' with strategy fsdp, expected val_loss or auto (FSDP runs "
                "no generation during training; evaluate the adapter afterwards)"
            )
        self.check = None
        if extraction and par.main:
            self.check = ExtractionCheck(
                val_examples,
                schema=self.data_report["schema"],
                tokenizer=self.tokenizer,
                limit=config.eval_examples,
                batch_size=config.micro_batch_size,
            )
        self.metric = config.eval_metric if config.eval_metric != "auto" else ("micro_f1" if extraction else "val_loss")
        self._plan_batches()

        latest = ckpt.latest_checkpoint(run_dir) if self.resume else None
        if latest is not None:
            ckpt.load_adapter(latest, model=self.model)  # before wrapping: FSDP shards what it finds
        self.loss_fn = AnswerLoss(self.model)
        self.forward = par.wrap(self.model, self.loss_fn)  # loss_fn itself in one process
        self.params = par.trainable(self.model)
        self.optimizer = torch.optim.AdamW(self.params, lr=config.learning_rate, weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule(config, self.total_steps))
        if self.resume:
            if latest is not None:
                state = ckpt.load_training_state(
                    latest, optimizer=self.optimizer, scheduler=self.scheduler, load_optimizer=par.load_optimizer_state
                )
                self.step_n, self.tokens_seen = state["step"], state["tokens_seen"]
                self.elapsed_before = state["train_time_s"]
            if par.main:
                _truncate_metrics(run_dir / "metrics.jsonl", after_step=self.step_n)  # later steps are trained again
        if par.main:
            self.tracker = Tracker(run_dir, report_to=config.report_to, config=config.to_dict(), run_name=run_dir.name)
        if self.progress_bar and par.main:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total_steps, initial=self.step_n, desc="train", unit="step", dynamic_ncols=True)
        best_file = run_dir / "best.json"
        self.best = json.loads(best_file.read_text()) if best_file.is_file() else None

    def _plan_batches(self) -> None:
        config = self.config
        lengths = [len(e.input_ids) for e in self.train_set.items]
        self.batches = run_batches(
            lengths,
            batch_size=config.micro_batch_size,
            seed=config.seed,
            epochs=config.epochs,
            group_by_length=config.group_by_length,
        )
        self.total_steps = math.ceil(len(self.batches) / config.grad_accum)
        self.steps_per_epoch = max(1.0, math.ceil(len(lengths) / config.micro_batch_size) / config.grad_accum)
        if config.max_steps:
            self.total_steps = config.max_steps
            while len(self.batches) < self.total_steps * config.grad_accum:  # max_steps past the epochs: cycle
                self.batches.extend(
                    run_batches(
                        lengths,
                        batch_size=config.micro_batch_size,
                        seed=config.seed + len(self.batches),
                        epochs=1,
                        group_by_length=config.group_by_length,
                    )
                )

    # -- the loop's parts --------------------------------------------------------------------------
    def train_time(self) -> float:
        return self.elapsed_before + (time.time() - self.loop_start)

    def step(self) -> dict[str, Any]:
        """One optimizer step over `grad_accum` micro-batches; its metrics record."""
        config, n = self.config, self.step_n
        t0 = time.time()
        self.share.apply()  # another tunebridge process may have started or ended since the last step
        micro = [
            [self.train_set.items[i] for i in batch]
            for batch in self.batches[n * config.grad_accum : (n + 1) * config.grad_accum]
        ]
        result = optimizer_step(
            micro,
            forward=self.forward,
            runtime=self.runtime,
            pad_id=self.tokenizer.pad_token_id,
            params=self.params,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            max_grad_norm=config.max_grad_norm,
            parallel=self.par,
            max_tokens=max(0, self.pass_tokens),
            share_prefix=config.share_prefix,
        )
        self.step_n += 1
        self.tokens_seen += int(result["tokens"])
        self.last_loss = result["loss"]
        if self.trim:
            release_freed_memory()
        dt = time.time() - t0
        peak = peak_rss_gib() if self.runtime.device == "cpu" else None
        return {
            "step": self.step_n,
            "epoch": round(self.step_n / self.steps_per_epoch, 4),
            "loss": round(result["loss"], 6),
            "lr": self.scheduler.get_last_lr()[0],
            "grad_norm": round(result["grad_norm"], 6),
            "tokens": result["tokens"],
            "answer_tokens": result["answer_tokens"],
            "tokens_per_s": round(result["tokens"] / dt, 2),
            "step_time_s": round(dt, 4),
            **({"recomputed_passes": result["recomputed_passes"]} if result["recomputed_passes"] else {}),
            **({"peak_rss_gib": peak} if peak is not None else {}),
        }

    def evaluate(self) -> dict[str, Any]:
        """Validation loss, extraction metrics when the data has them, and the best adapter kept.
        Raises EvaluationStopped when `should_stop` says so between a single process's answers."""
        par, config = self.par, self.config
        found: dict[str, Any] = {
            "val_loss": round(
                evaluate_loss(
                    self.model,
                    self.loss_fn,
                    self.val_set,
                    runtime=self.runtime,
                    batch_size=config.micro_batch_size,
                    pad_id=self.tokenizer.pad_token_id,
                    forward=self.forward,
                    parallel=par,
                ),
                6,
            )
        }
        if self.check:  # rank 0 only; a single process may stop between its answers
            m = self.check.run(self.model, self.runtime, should_stop=None if par.enabled else self.should_stop)
            found.update({f"val_{k}": v for k, v in m.items() if k != "fields"}, val_fields_f1=m["fields"])
        found = par.broadcast(found)
        value = found.get("val_micro_f1" if self.metric == "micro_f1" else "val_loss")
        best = self.best
        if (
            config.keep_best
            and value is not None
            and (best is None or (value > best["value"] if HIGHER_IS_BETTER[self.metric] else value < best["value"]))
        ):
            weights = par.adapter_weights()
            if par.main:
                ckpt.save_adapter(self.model, self.run_dir / "best" / "adapter", weights=weights)
            self.best = {"step": self.step_n, "metric": self.metric, "value": value}
            if par.main:
                (self.run_dir / "best.json").write_text(json.dumps(self.best))
        self.val_loss = found["val_loss"]
        return found

    def fit_schedule(self, budget_s: float, since: tuple[float, int] = (0.0, 0)) -> None:
        """Shorten the run to the steps that fit the time budget at the speed measured since `since` (train
        time, tokens seen), so the learning-rate schedule (warm-up, decay) completes instead of being cut
        off when time runs out."""
        rate = (self.tokens_seen - since[1]) / max(self.train_time() - since[0], 1e-9)  # tokens/s here, now
        lengths = [len(self.train_set.items[i].input_ids) for batch in self.batches for i in batch]
        per_step = sum(lengths) / max(1, len(self.batches)) * self.config.grad_accum / rate
        fit = self.step_n + int((budget_s - self.train_time()) / per_step)
        if fit < self.total_steps:
            self.fitted = {
                "steps": max(fit, self.step_n + 1),
                "planned": self.total_steps,
                "tokens_per_s": round(rate, 1),
            }
            self.total_steps = self.fitted["steps"]
            self.scheduler.lr_lambdas = [schedule(self.config, self.total_steps)]
            if self.bar is not None:
                self.bar.total = self.total_steps
                self.bar.refresh()

    def save(self) -> None:
        """A checkpoint to resume from (collectives under FSDP: every rank calls it)."""
        par = self.par
        weights, optimizer_state = par.adapter_weights(), par.optimizer_state(self.optimizer)
        if par.main:
            state = {
                "step": self.step_n,
                "total_steps": self.total_steps,
                "tokens_seen": self.tokens_seen,
                "train_time_s": self.train_time(),
            }
            ckpt.save_checkpoint(
                self.run_dir,
                model=self.model,
                optimizer=self.optimizer,
                scheduler=self.scheduler,
                state=state,
                keep=self.config.keep_checkpoints,
                weights=weights,
                optimizer_state=optimizer_state,
            )
        par.barrier()

    def _report(self, record: dict[str, Any], start_step: int) -> None:
        config, step = self.config, self.step_n
        if self.tracker is not None and (step % config.log_every == 0 or step == self.total_steps):
            self.tracker.log(record)
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{record['loss']:.4f}", tok_s=f"{record['tokens_per_s']:.0f}")
            self.bar.update(1)
        if self.on_progress is not None and self.par.main:
            rate = (time.time() - self.loop_start) / max(1, step - start_step)
            self.on_progress(
                {**record, "total_steps": self.total_steps, "eta_s": round(rate * (self.total_steps - step), 1)}
            )

    # -- the run -----------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        self.setup()
        config, par = self.config, self.par
        status, stopped_early, validation = "succeeded", None, None
        start_step, self.loop_start = self.step_n, time.time()
        warmed = (0.0, 0)
        self.model.train()
        while self.step_n < self.total_steps:
            stop, out_of_time = par.agree(
                [self.should_stop(), bool(config.max_minutes) and self.train_time() >= config.max_minutes * 60]
            )
            if stop:
                status = "cancelled"
                break
            if out_of_time:
                stopped_early = (
                    f"time budget of {config.max_minutes:g} min reached at step {self.step_n}/{self.total_steps}"
                )
                break
            record = self.step()
            step = self.step_n
            if config.max_minutes and start_step == 0 and step == 1:
                warmed = (self.train_time(), self.tokens_seen)
            if config.max_minutes and start_step == 0 and step == FIT_AFTER:
                self.fit_schedule(config.max_minutes * 60, since=warmed)
            if config.eval_every and step % config.eval_every == 0 and self.val_set.items and step < self.total_steps:
                record.update(self.evaluate())
            self._report(record, start_step)
            if config.save_every and step % config.save_every == 0 and step < self.total_steps:
                self.save()
        if self.bar is not None:
            self.bar.close()

        if status != "cancelled" and self.val_set.items:
            try:
                final_eval = {"step": self.step_n, **self.evaluate()}
                if self.tracker is not None:
                    self.tracker.log(final_eval)
                validation = {k: v for k, v in final_eval.items() if k != "step"}
            except EvaluationStopped:
                status = "cancelled"
        if status != "cancelled" and not par.enabled and self.should_stop():  # asked in the last step or evaluation
            status = "cancelled"
        if status == "cancelled":
            self.save()
        return self.finish(status, stopped_early=stopped_early, validation=validation)

    def finish(
        self, status: str, *, stopped_early: str | None = None, validation: dict[str, Any] | None = None
    ) -> TrainResult:
        """The summary; for a finished run also the adapter (the best evaluation's), its tokenizer, label
        rules and label memory, made portable."""
        config, par, run_dir = self.config, self.par, self.run_dir
        train_time = self.train_time()
        described = self.runtime.describe() + (f"; {par.describe()}" if par.enabled else "")
        summary = {
            "status": status,
            "run_dir": str(run_dir),
            "base_model": config.model,
            "base_model_path": self.model_path,
            "runtime": described,
            "steps": self.step_n,
            "total_steps": self.total_steps,
            **({"fitted_to_budget": self.fitted} if self.fitted else {}),
            "pass_tokens": self.pass_tokens,
            "tokens_seen": self.tokens_seen,
            "train_time_s": round(train_time, 2),
            "tokens_per_s": round(self.tokens_seen / max(train_time, 1e-9), 2),
            "final_loss": self.last_loss,
            "val_loss": self.val_loss,
            "validation": validation,
            "stopped_early": stopped_early,
            "wall_time_s": round(time.time() - self.started, 2),
            "data": self.data_report,
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        weights = par.adapter_weights() if status == "succeeded" else None
        if par.main:
            if status == "succeeded":
                _save_outputs(
                    run_dir, model=self.model, tokenizer=self.tokenizer, config=config, summary=summary, weights=weights
                )
                summary["conventions"] = save_conventions(
                    run_dir / "adapter", self.train_examples, profile=self.config.label_profile
                )
                if self.best is not None:
                    summary["best"] = self.best
                    if self.best["step"] != self.step_n:  # ship the best evaluation's adapter, not the last step's
                        shutil.copytree(run_dir / "best" / "adapter", run_dir / "adapter", dirs_exist_ok=True)
                ckpt.make_portable(run_dir / "adapter", base_model=config.model, base_path=self.model_path)
            (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
            plot_loss(run_dir / "metrics.jsonl", run_dir / "loss.png", title=f"{run_dir.name} — {config.model}")
            if self.tracker is not None:
                self.tracker.finish(summary)
        par.barrier()
        par.close()
        return TrainResult(run_dir, status, summary, self.model)


def load_data(config: TrainConfig) -> LoadedData:
    """The run's data, read and checked: every bad line reported (file:line) before any model loads."""
    schema = None
    if config.schema:
        schema = ExtractionSchema.from_json_schema(json.loads(Path(config.schema).read_text()))
    loaded = load_jsonl(config.data, schema=schema)
    check_usable(loaded, skip_invalid=config.skip_invalid, source=", ".join(config.data))
    check_augmentable(config, loaded)
    return loaded


def check_augmentable(config: TrainConfig, loaded: LoadedData) -> None:
    """Refuse `augment` on data without extraction records: there is nothing it could rewrite."""
    if config.augment and not loaded.formats.get("extraction"):
        raise InvalidRequest(
            f"augment: got {config.augment}, but {', '.join(config.data)} holds no extraction records "
            f'({{"text", "fields"}}; found {dict(loaded.formats)}); augmentation rewrites labelled documents, '
            "so set augment to 0 for this data"
        )


def augment_examples(examples: list[Example], config: TrainConfig, schema: ExtractionSchema | None) -> list[Example]:
    """`config.augment` new examples from each extraction example (backend/training/augment.py)."""
    sources = [(e.origin, e.record) for e in examples if e.record is not None]
    if not config.augment or schema is None or not sources:
        return []
    made = augment_records([record for _, record in sources], config.augment, seed=config.seed)
    return [
        Example(extraction_chat(record, schema), f"{origin} (augmented)", "extraction", record)
        for (origin, _), records in zip(sources, made)
        for record in records
    ]


def prepare_data(
    config: TrainConfig, tokenizer, loaded: LoadedData
) -> tuple[EncodedSet, EncodedSet, dict[str, Any], list, list]:
    """Encoded training and validation sets, a data report, and the validation and training examples as parsed."""
    check_augmentable(config, loaded)
    train_ex, val_ex = split(loaded.examples, val_fraction=config.val_fraction, seed=config.seed)
    # augmented from the training split alone, after the split: validation documents are never rewritten or donors
    augmented = augment_examples(train_ex, config, loaded.schema)
    train_set = encode_examples(tokenizer, train_ex + augmented, max_length=config.max_length)
    val_set = encode_examples(tokenizer, val_ex, max_length=config.max_length)
    report = {
        **loaded.summary(),
        "sha256": data_sha256(config.data),
        "invalid": [str(i) for i in loaded.issues[:50]],
        "train_examples": len(train_set.items),
        "augmented": len(augmented),
        "val_examples": len(val_set.items),
        "too_long": [
            f"{o} ({n} tokens > max_length {config.max_length})" for o, n in train_set.too_long + val_set.too_long
        ],
    }
    if not train_set.items:
        raise InvalidRequest(
            f"no training example fits max_length={config.max_length}: " + "; ".join(report["too_long"][:5])
        )
    return train_set, val_set, report, val_ex, train_ex


def _new_run_dir(config: TrainConfig) -> Path:
    name = config.run_name or datetime.now().strftime("train-%Y%m%d-%H%M%S")
    run_dir = Path(config.output_dir) / name
    if ckpt.latest_checkpoint(run_dir) or (run_dir / "summary.json").exists():
        raise FileExistsError(f"run folder {run_dir} already holds a run; resume it or choose another run_name")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=2))  # what --resume reads
    write_run_file(config, run_dir)  # config.yaml: the same options, commented; --config on it reruns the run
    return run_dir


def _save_outputs(
    run_dir: Path,
    *,
    model,
    tokenizer,
    config: TrainConfig,
    summary: dict[str, Any],
    weights: dict[str, torch.Tensor] | None = None,
) -> None:
    adapter = run_dir / "adapter"
    ckpt.save_adapter(model, adapter, weights=weights)
    (adapter / "tunebridge.json").write_text(
        json.dumps({"base_model": config.model, "runtime": summary["runtime"]}, indent=2)
    )
    tokenizer.save_pretrained(run_dir / "tokenizer")
    summary["adapter_dir"] = str(adapter)


def save_conventions(adapter: Path, examples: list, *, profile: str | None = None) -> str | None:
    """The label conventions learned from the extraction records trained on (backend/labels/conventions.py),
    saved with the adapter, and the label memory beside it in the run folder (it quotes the documents):
    extraction then writes values the labels' way. The file's path, or None when there were no
    extraction records to learn from."""
    from backend.labels.conventions import learn

    records = [e.record for e in examples if e.record is not None]
    if not records:
        return None
    conventions = learn([(r["text"], r["fields"]) for r in records], profile=profile)
    return str(conventions.save(adapter, memory_folder=adapter.parent)) if conventions.fields else None


def _truncate_metrics(path: Path, *, after_step: int) -> None:
    if path.exists():
        keep = [
            line
            for line in path.read_text().splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= after_step
        ]
        path.write_text("".join(line + "\n" for line in keep))
