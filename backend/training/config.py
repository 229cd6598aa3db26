"""Training configuration: one typed dataclass, every field defaulted and explained.

The CLI builds its flags from these fields (`help` metadata), a run file (`tunebridge train --config`,
runfile.py) holds the same keys as YAML or JSON, and the backend's train jobs send them as JSON, so
each option is documented once, here.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from backend.errors import InvalidRequest
from backend.labels.profile import load_profile
from backend.models.chat_templates import read_chat_template


def _f(default: Any, help: str, **extra: Any) -> Any:
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help, **extra})
    return field(default=default, metadata={"help": help, **extra})


@dataclass
class TrainConfig:
    # --- data ---
    data: list[str] = _f(
        [],
        "JSONL file(s): chat (messages, or ShareGPT conversations), alpaca, dolly, prompt/completion or extraction records.",
    )
    schema: str | None = _f(None, "JSON Schema file for extraction records; default: the union of their field names.")
    val_fraction: float = _f(0.1, "Share of examples held out for validation (seeded split); 0 for none.")
    max_length: int = _f(2048, "Longest example in tokens; longer ones are reported and skipped, never cut.")
    skip_invalid: bool = _f(False, "Train on the valid lines when some are invalid (they are still reported).")
    seed: int = _f(42, "Seed for the split, batch order and LoRA initialisation.")
    label_profile: str = _f(
        "receipts",
        "Label profile for the label rules learned from extraction records: "
        "receipts, documents, or a profile JSON file (backend/labels/profiles).",
    )
    augment: int = _f(
        0,
        "Extra training documents made from each extraction record (0: none): sender block, amounts, "
        "dates, spacing and line order rewritten with their labels; only the training split is augmented.",
    )

    # --- model ---
    model: str = _f("smollm2-135m", "Base model: bundled name, local folder, .gguf file, or cached hub id.")
    quantize: str = _f(
        "auto",
        "Base weights: auto (4bit on CUDA; int8 on x86 CPUs without bf16 units; none elsewhere), none, 4bit "
        "(NF4, QLoRA), or int8 (x86 CPUs: the frozen base's linear layers in dynamic int8, fp32 compute).",
        choices=["auto", "none", "4bit", "int8"],
    )
    precision: str = _f(
        "auto", "Compute dtype: auto (bf16 where the hardware has it), bf16 or fp32.", choices=["auto", "bf16", "fp32"]
    )
    device: str = _f("auto", "auto, cpu or cuda.", choices=["auto", "cpu", "cuda"])
    chat_template: str | None = _f(
        None,
        "Chat template for a base model without one: chatml, gemma, or a Jinja template file "
        "(replaces the model's own); default: the model's own, else chatml.",
    )

    # --- LoRA ---
    lora_r: int = _f(16, "LoRA rank.")
    lora_alpha: int = _f(32, "LoRA alpha (scale = alpha / r).")
    lora_dropout: float = _f(0.0, "LoRA dropout. 0 by default: its random masks cost ~20% of a CPU step.")
    target_modules: str = _f("all-linear", "Modules to adapt: all-linear, or comma-separated names (q_proj,v_proj).")
    lora_layers: int = _f(
        0,
        "Adapt only the last N decoder layers (0: all). The backward pass stops at the lowest adapted "
        "layer, so a step costs less; fewer weights learn.",
    )

    # --- optimisation ---
    epochs: float = _f(1.0, "Passes over the training split (fractions allowed).")
    max_steps: int = _f(0, "Stop after this many optimizer steps (0: derived from epochs).")
    max_minutes: float = _f(
        0.0, "Time budget: finish (and save the adapter) after this many minutes of training (0: none)."
    )
    batch_size: int = _f(8, "Examples per optimizer step over all processes (micro-batch × grad_accum × processes).")
    grad_accum: int = _f(1, "Micro-batches per optimizer step; batch_size must divide by it.")
    learning_rate: float = _f(2e-4, "Peak learning rate (AdamW).")
    lr_scheduler: str = _f("cosine", "Learning-rate schedule after warm-up.", choices=["cosine", "linear", "constant"])
    warmup_ratio: float = _f(0.05, "Share of steps spent warming up linearly from 0.")
    weight_decay: float = _f(0.0, "AdamW weight decay on LoRA weights.")
    max_grad_norm: float = _f(1.0, "Gradient clipping norm (0 disables).")
    group_by_length: bool = _f(True, "Batch examples of similar length together (less padding, same data).")
    threads: int = _f(
        0,
        "CPU threads for torch (0: an even share of the cores among the tunebridge processes "
        "running here), shared among the processes of a launched run.",
    )
    share_prefix: bool = _f(
        True,
        "Read the prompt tokens every example of a step starts with once per step instead of once per "
        "example (the same loss and gradient; one process only).",
    )
    pass_tokens: int = _f(
        -1,
        "Most padded tokens in one forward/backward pass: a larger micro-batch runs as several "
        "passes with the same gradient, bounding peak memory, and a row longer than this alone "
        "recomputes its activations in the backward (-1: sized to the model and the precision that "
        "runs; 0: no limit).",
    )

    # --- several processes (docs/distributed.md) ---
    launcher: str = _f(
        "none",
        "Data-parallel training in several processes started by torchrun or accelerate "
        "launch; none: this process alone.",
        choices=["none", "torchrun", "accelerate"],
    )
    nproc: int = _f(
        1,
        "Processes to start: torchrun's --nproc-per-node (this machine), accelerate's --num_processes (all machines).",
    )
    strategy: str = _f(
        "ddp",
        "With several processes: ddp (a model replica each, gradients all-reduced) or fsdp "
        "(weights sharded across GPUs, for models one GPU cannot hold).",
        choices=["ddp", "fsdp"],
    )
    launcher_args: str = _f(
        "",
        "Multi-node options for the launcher, e.g. torchrun '--nnodes 2 --node-rank 0 "
        "--rdzv-endpoint host0:29500', accelerate '--num_machines 2 --machine_rank 0 "
        "--main_process_ip host0 --main_process_port 29500'. Only such options are accepted.",
    )

    # --- outputs, checkpoints, tracking ---
    output_dir: str = _f("runs", "Folder that holds one sub-folder per run.")
    run_name: str | None = _f(None, "Run folder name (default: train-<timestamp>).")
    save_every: int = _f(50, "Write a resumable checkpoint every N steps (0: only at the end).")
    keep_checkpoints: int = _f(2, "How many recent checkpoints to keep.")
    eval_every: int = _f(0, "Evaluate on the validation split every N steps (0: only at the end).")
    eval_examples: int = _f(
        32,
        "Validation extraction records answered at each evaluation for field-level "
        "metrics (micro-F1, JSON validity); 0: loss only.",
    )
    eval_metric: str = _f(
        "auto",
        "Metric that picks the best evaluation: auto (micro_f1 for extraction data, "
        "else val_loss), micro_f1 or val_loss.",
        choices=["auto", "micro_f1", "val_loss"],
    )
    keep_best: bool = _f(True, "Ship the adapter of the best evaluation (by eval_metric) as the run's adapter.")
    log_every: int = _f(1, "Write metrics every N steps.")
    report_to: str = _f(
        "wandb",
        "Experiment tracking: wandb (offline unless WANDB_MODE says otherwise) or none.",
        choices=["wandb", "none"],
    )

    def __post_init__(self) -> None:
        if isinstance(self.data, str):
            self.data = [self.data]
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise InvalidRequest(f"{f.name}: got {getattr(self, f.name)!r}, expected one of {choices}")
        checks = [
            ("val_fraction", 0 <= self.val_fraction < 1, "a number in [0, 1)"),
            ("max_length", self.max_length >= 16, "at least 16"),
            ("lora_r", 1 <= self.lora_r <= 1024, "from 1 to 1024"),
            ("lora_alpha", 1 <= self.lora_alpha <= 65536, "from 1 to 65536"),
            ("lora_layers", self.lora_layers >= 0, "0 (all layers) or a positive number of layers"),
            ("lora_dropout", 0 <= self.lora_dropout < 1, "in [0, 1)"),
            ("epochs", 0 < self.epochs <= 1000, "greater than 0, at most 1000"),
            ("max_steps", 0 <= self.max_steps <= 10_000_000, "from 0 to 10,000,000"),
            ("max_minutes", self.max_minutes >= 0, "0 or more"),
            ("batch_size", 1 <= self.batch_size <= 65536, "from 1 to 65536"),
            ("max_length", self.max_length <= 1_048_576, "at most 1,048,576"),
            ("threads", 0 <= self.threads <= 4096, "from 0 to 4096"),
            ("pass_tokens", self.pass_tokens >= -1, "-1 (sized to the model), 0 (no limit) or a token count"),
            (
                "nproc",
                1 <= self.nproc <= 1024 and (self.nproc == 1 or self.launcher != "none"),
                "at most 1024"
                if self.nproc > 1024
                else "1 without a launcher (set launcher: torchrun or accelerate)"
                if self.nproc > 1
                else "at least 1",
            ),
            (
                "nproc",
                self.nproc >= 1 and (self.nproc == 1 or self.launcher != "none"),
                "1 without a launcher (set launcher: torchrun or accelerate)" if self.nproc > 1 else "at least 1",
            ),
            (
                "grad_accum",
                self.grad_accum >= 1 and self.batch_size % self.grad_accum == 0,
                f"at least 1 and a divisor of batch_size ({self.batch_size})",
            ),
            (
                "batch_size",
                min(self.grad_accum, self.nproc) < 1 or self.batch_size % (self.grad_accum * self.nproc) == 0,
                f"a multiple of grad_accum × nproc ({self.grad_accum} × {self.nproc}): the global batch splits evenly",
            ),
            ("learning_rate", self.learning_rate > 0, "greater than 0"),
            ("warmup_ratio", 0 <= self.warmup_ratio < 1, "in [0, 1)"),
            ("save_every", self.save_every >= 0, "0 or more"),
            ("keep_checkpoints", self.keep_checkpoints >= 1, "at least 1"),
            ("log_every", self.log_every >= 1, "at least 1"),
            ("eval_every", self.eval_every >= 0, "0 or more"),
            ("eval_examples", self.eval_examples >= 0, "0 or more"),
            ("augment", 0 <= self.augment <= 100, "from 0 to 100"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise InvalidRequest(f"{name}: got {getattr(self, name)!r}, expected {expected}")
        load_profile(self.label_profile)  # a shipped name or a readable profile file, before any model loads
        if self.chat_template is not None:
            read_chat_template(self.chat_template)  # likewise: a shipped name or a valid template file
        problem = launcher_args_problem(self.launcher, self.launcher_args)
        if problem:
            raise InvalidRequest(f"launcher_args: got {self.launcher_args!r}, {problem}")

    @property
    def micro_batch_size(self) -> int:
        return self.batch_size // self.grad_accum

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        return from_known(cls, values, what="training")


# What launcher_args may say: where the other machines are, never what the launcher runs (train jobs
# from the API carry this field to a worker). Options with a value, then valueless flags.
LAUNCHER_OPTIONS = {
    "torchrun": (
        {
            "--nnodes",
            "--node-rank",
            "--node_rank",
            "--rdzv-endpoint",
            "--rdzv_endpoint",
            "--rdzv-backend",
            "--rdzv_backend",
            "--rdzv-id",
            "--rdzv_id",
            "--master-addr",
            "--master_addr",
            "--master-port",
            "--master_port",
            "--max-restarts",
            "--max_restarts",
        },
        {"--standalone"},
    ),
    "accelerate": (
        {"--num_machines", "--machine_rank", "--main_process_ip", "--main_process_port", "--rdzv_backend", "--gpu_ids"},
        {"--same_network"},
    ),
}


def launcher_args_problem(launcher: str, args: str) -> str | None:
    if not args.strip():
        return None
    if launcher not in LAUNCHER_OPTIONS:
        return "expected nothing without a launcher"
    valued, flags = LAUNCHER_OPTIONS[launcher]
    try:
        words = shlex.split(args)
    except ValueError as exc:
        return f"expected shell words ({exc})"
    while words:
        word = words.pop(0)
        name, has_value, value = word.partition("=")
        if name in flags and not has_value:
            continue
        if name not in valued:
            return f"expected only {launcher} options among {sorted(valued | flags)}"
        value = value if has_value else (words.pop(0) if words else "")
        if not re.fullmatch(r"[\w.:,@-]+", value) or value.startswith("-"):
            return f"expected a value (host, port, number or id) after {name}"
    return None


def from_known(cls, values: dict[str, Any], *, what: str):
    """Build the dataclass `cls` from `values`, refusing keys it does not have by name (config from
    JSON or YAML: a typo must not be dropped silently) and values of the wrong type ("abc" for a number)."""
    check_known(cls, values, what=what)
    return cls(**values)


def check_known(cls, values: dict[str, Any], *, what: str) -> None:
    """`values` as options of the dataclass `cls`: every key one of its fields, every value of its type."""
    if not isinstance(values, dict):
        raise InvalidRequest(f"{what} options: got {type(values).__name__}, expected an object of options")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise InvalidRequest(unknown_options(unknown, known=fields, what=what))
    for name, value in values.items():
        expected = _type_problem(str(fields[name].type), value)
        if expected:
            raise InvalidRequest(f"{name}: got {value!r} ({type(value).__name__}), expected {expected}")


def unknown_options(unknown: list[str], *, known: Iterable[str], what: str) -> str:
    """The error for keys that are no option: each named with the closest option, if one is close."""
    known = sorted(known)
    close = {name: difflib.get_close_matches(str(name), known, n=1) for name in unknown}
    hints = "; ".join(f"{name!r}: did you mean {match[0]!r}?" for name, match in close.items() if match)
    message = f"unknown {what} option(s) {unknown}" + (f" ({hints})" if hints else "")
    return message if all(close.values()) else f"{message}; known: {known}"


def _type_problem(annotation: str, value: Any) -> str | None:
    """What `value` should have been for a field typed `annotation`, or None when it fits."""
    optional = annotation.endswith("| None")
    base = annotation.removesuffix("| None").strip()
    if value is None:
        return None if optional else f"a value of type {base}"
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if base == "int":
        ok = number and float(value).is_integer() and abs(value) < 2**53
        return None if ok else "a whole number"
    if base == "float":
        ok = number and value == value and abs(value) != float("inf")
        return None if ok else "a number"
    if base == "bool":
        return None if isinstance(value, bool) else "true or false"
    if base == "str":
        return None if isinstance(value, str) else "a string"
    if base == "list[str]":
        ok = isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))
        return None if ok else "a list of strings"
    return None
