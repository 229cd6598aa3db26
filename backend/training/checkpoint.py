"""Resumable checkpoints: adapter weights, optimizer, scheduler, RNG states and the step counter.

Each checkpoint is written to a temporary folder and renamed into place, so a process killed while
saving never leaves a half-written checkpoint that resume would pick up.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import torch
from peft import get_peft_model_state_dict, set_peft_model_state_dict
from safetensors.torch import load_file, save_file


def checkpoint_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = [p for p in checkpoint_dir(run_dir).glob("step-*") if (p / "state.json").is_file()]
    return max(found, key=lambda p: int(p.name.split("-")[1]), default=None)


def save_checkpoint(
    run_dir: Path,
    *,
    model,
    optimizer,
    scheduler,
    state: dict[str, Any],
    keep: int,
    weights: dict[str, torch.Tensor] | None = None,
    optimizer_state: dict[str, Any] | None = None,
) -> Path:
    """`weights` / `optimizer_state`: gathered by the caller where the model is sharded (FSDP)."""
    root = checkpoint_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{state['step']}"
    tmp = root / f".tmp-step-{state['step']}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    weights = get_peft_model_state_dict(model) if weights is None else weights
    weights = {k: v.detach().cpu().contiguous() for k, v in weights.items()}
    save_file(weights, tmp / "adapter.safetensors")
    optimizer_state = optimizer.state_dict() if optimizer_state is None else optimizer_state
    torch.save(
        {
            "optimizer": optimizer_state,
            "scheduler": scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "python_rng": random.getstate(),
        },
        tmp / "trainer.pt",
    )
    (tmp / "state.json").write_text(json.dumps(state, indent=2))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    steps = sorted((p for p in root.glob("step-*")), key=lambda p: int(p.name.split("-")[1]))
    for old in steps[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def save_adapter(model, directory: Path, *, weights: dict[str, torch.Tensor] | None = None) -> None:
    """The adapter folder (adapter_config.json + adapter_model.safetensors) peft loads; `weights`
    (keyed as peft's file) where the model is sharded and peft cannot read them itself (FSDP)."""
    if weights is None:
        model.save_pretrained(directory)
        return
    import copy

    config = copy.copy(model.peft_config["default"])
    config.inference_mode = True
    Path(directory).mkdir(parents=True, exist_ok=True)
    config.save_pretrained(directory)
    save_file(
        {k: v.detach().cpu().contiguous() for k, v in weights.items()},
        Path(directory) / "adapter_model.safetensors",
        metadata={"format": "pt"},
    )


def load_checkpoint(path: Path, *, model, optimizer, scheduler) -> dict[str, Any]:
    load_adapter(path, model=model)
    return load_training_state(path, optimizer=optimizer, scheduler=scheduler)


def load_adapter(path: Path, *, model) -> None:
    set_peft_model_state_dict(model, load_file(path / "adapter.safetensors"))


def load_training_state(path: Path, *, optimizer, scheduler, load_optimizer=None) -> dict[str, Any]:
    """Optimizer, scheduler and RNG states and the step counter; `load_optimizer(optimizer, state)`
    where the optimizer state needs converting (FSDP)."""
    blob = torch.load(path / "trainer.pt", weights_only=False)
    (load_optimizer or (lambda opt, st: opt.load_state_dict(st)))(optimizer, blob["optimizer"])
    scheduler.load_state_dict(blob["scheduler"])
    torch.set_rng_state(blob["torch_rng"])
    random.setstate(blob["python_rng"])
    return json.loads((path / "state.json").read_text())


def make_portable(adapter: Path, *, base_model: str, base_path: str) -> None:
    """An adapter folder fit to copy to another machine: adapter_config.json and tunebridge.json name
    the base model as the run was given it (a bundled name or hub id; a local folder by its folder
    name), never a path of this machine (the run folder's summary.json keeps that, for loading here),
    and tunebridge.json records the base weights' SHA-256 so a copy can be checked against its base."""
    import hashlib

    name = Path(base_model).name if os.path.isabs(base_model) else base_model
    config_file = adapter / "adapter_config.json"
    config = json.loads(config_file.read_text())
    config["base_model_name_or_path"] = name
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    digest = hashlib.sha256()
    for weights in sorted(Path(base_path).glob("*.safetensors")):
        with open(weights, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    meta_file = adapter / "tunebridge.json"
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    meta.update(base_model=name, base_model_sha256=digest.hexdigest())
    meta_file.write_text(json.dumps(meta, indent=2) + "\n")
