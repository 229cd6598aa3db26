"""Training configuration: one typed dataclass, every field defaulted and explained.

The CLI builds its flags from these fields (`help` metadata), and the backend's train jobs send the
same keys as JSON, so each option is documented once, here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


def _f(default: Any, help: str, **extra: Any) -> Any:
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help, **extra})
    return field(default=default, metadata={"help": help, **extra})


@dataclass
class TrainConfig:
    # --- data ---
    data: list[str] = _f([], "JSONL file(s): chat, alpaca, dolly, prompt/completion or extraction records.")
    schema: str | None = _f(None, "JSON Schema file for extraction records; default: the union of their field names.")
    val_fraction: float = _f(0.1, "Share of examples held out for validation (seeded split); 0 for none.")
    max_length: int = _f(2048, "Longest example in tokens; longer ones are reported and skipped, never cut.")
    skip_invalid: bool = _f(False, "Train on the valid lines when some are invalid (they are still reported).")
    seed: int = _f(42, "Seed for the split, batch order and LoRA initialisation.")

    # --- model ---
    model: str = _f("smollm2-135m", "Base model: bundled name, local folder, .gguf file, or cached hub id.")
    quantize: str = _f("auto", "Base weights: auto (4bit on CUDA, none on CPU), none, or 4bit (NF4, QLoRA).",
                       choices=["auto", "none", "4bit"])
    precision: str = _f("auto", "Compute dtype: auto (bf16 where the hardware has it), bf16 or fp32.",
                        choices=["auto", "bf16", "fp32"])
    device: str = _f("auto", "auto, cpu or cuda.", choices=["auto", "cpu", "cuda"])

    # --- LoRA ---
    lora_r: int = _f(16, "LoRA rank.")
    lora_alpha: int = _f(32, "LoRA alpha (scale = alpha / r).")
    lora_dropout: float = _f(0.0, "LoRA dropout. 0 by default: its random masks cost ~20% of a CPU step.")
    target_modules: str = _f("all-linear", "Modules to adapt: all-linear, or comma-separated names (q_proj,v_proj).")

    # --- optimisation ---
    epochs: float = _f(1.0, "Passes over the training split (fractions allowed).")
    max_steps: int = _f(0, "Stop after this many optimizer steps (0: derived from epochs).")
    max_minutes: float = _f(0.0, "Time budget: finish (and save the adapter) after this many minutes of training (0: none).")
    batch_size: int = _f(8, "Examples per optimizer step (per micro-batch times grad_accum).")
    grad_accum: int = _f(1, "Micro-batches per optimizer step; batch_size must divide by it.")
    learning_rate: float = _f(2e-4, "Peak learning rate (AdamW).")
    lr_scheduler: str = _f("cosine", "Learning-rate schedule after warm-up.", choices=["cosine", "linear", "constant"])
    warmup_ratio: float = _f(0.05, "Share of steps spent warming up linearly from 0.")
    weight_decay: float = _f(0.0, "AdamW weight decay on LoRA weights.")
    max_grad_norm: float = _f(1.0, "Gradient clipping norm (0 disables).")
    group_by_length: bool = _f(True, "Batch examples of similar length together (less padding, same data).")
    threads: int = _f(0, "CPU threads for torch (0: all cores).")

    # --- outputs, checkpoints, tracking ---
    output_dir: str = _f("runs", "Folder that holds one sub-folder per run.")
    run_name: str | None = _f(None, "Run folder name (default: train-<timestamp>).")
    save_every: int = _f(50, "Write a resumable checkpoint every N steps (0: only at the end).")
    keep_checkpoints: int = _f(2, "How many recent checkpoints to keep.")
    eval_every: int = _f(0, "Evaluate on the validation split every N steps (0: only at the end).")
    eval_examples: int = _f(32, "Validation extraction records answered at each evaluation for field-level "
                                "metrics (micro-F1, JSON validity); 0: loss only.")
    eval_metric: str = _f("auto", "Metric that picks the best evaluation: auto (micro_f1 for extraction data, "
                                  "else val_loss), micro_f1 or val_loss.", choices=["auto", "micro_f1", "val_loss"])
    keep_best: bool = _f(True, "Ship the adapter of the best evaluation (by eval_metric) as the run's adapter.")
    log_every: int = _f(1, "Write metrics every N steps.")
    report_to: str = _f("wandb", "Experiment tracking: wandb (offline unless WANDB_MODE says otherwise) or none.",
                        choices=["wandb", "none"])

    def __post_init__(self) -> None:
        if isinstance(self.data, str):
            self.data = [self.data]
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise ValueError(f"{f.name}: got {getattr(self, f.name)!r}, expected one of {choices}")
        checks = [
            ("val_fraction", 0 <= self.val_fraction < 1, "a number in [0, 1)"),
            ("max_length", self.max_length >= 16, "at least 16"),
            ("lora_r", self.lora_r >= 1, "at least 1"),
            ("lora_dropout", 0 <= self.lora_dropout < 1, "in [0, 1)"),
            ("epochs", self.epochs > 0, "greater than 0"),
            ("max_steps", self.max_steps >= 0, "0 or more"),
            ("max_minutes", self.max_minutes >= 0, "0 or more"),
            ("batch_size", self.batch_size >= 1, "at least 1"),
            ("grad_accum", self.grad_accum >= 1 and self.batch_size % self.grad_accum == 0,
             f"at least 1 and a divisor of batch_size ({self.batch_size})"),
            ("learning_rate", self.learning_rate > 0, "greater than 0"),
            ("warmup_ratio", 0 <= self.warmup_ratio < 1, "in [0, 1)"),
            ("save_every", self.save_every >= 0, "0 or more"),
            ("keep_checkpoints", self.keep_checkpoints >= 1, "at least 1"),
            ("log_every", self.log_every >= 1, "at least 1"),
            ("eval_every", self.eval_every >= 0, "0 or more"),
            ("eval_examples", self.eval_examples >= 0, "0 or more"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise ValueError(f"{name}: got {getattr(self, name)!r}, expected {expected}")

    @property
    def micro_batch_size(self) -> int:
        return self.batch_size // self.grad_accum

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        return from_known(cls, values, what="training")


def from_known(cls, values: dict[str, Any], *, what: str):
    """Build the dataclass `cls` from `values`, refusing keys it does not have by name (config from
    JSON: a typo must not be dropped silently)."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {what} option(s) {unknown}; known: {sorted(known)}")
    return cls(**values)
