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


def save_checkpoint(run_dir: Path, *, model, optimizer, scheduler, state: dict[str, Any], keep: int) -> Path:
    root = checkpoint_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{state['step']}"
    tmp = root / f".tmp-step-{state['step']}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    weights = {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(model).items()}
    save_file(weights, tmp / "adapter.safetensors")
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "torch_rng": torch.get_rng_state(), "python_rng": random.getstate()}, tmp / "trainer.pt")
    (tmp / "state.json").write_text(json.dumps(state, indent=2))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    steps = sorted((p for p in root.glob("step-*")), key=lambda p: int(p.name.split("-")[1]))
    for old in steps[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: Path, *, model, optimizer, scheduler) -> dict[str, Any]:
    set_peft_model_state_dict(model, load_file(path / "adapter.safetensors"))
    blob = torch.load(path / "trainer.pt", weights_only=False)
    optimizer.load_state_dict(blob["optimizer"])
    scheduler.load_state_dict(blob["scheduler"])
    torch.set_rng_state(blob["torch_rng"])
    random.setstate(blob["python_rng"])
    return json.loads((path / "state.json").read_text())
