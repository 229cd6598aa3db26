"""Fold a LoRA adapter into its base model: a standalone folder plain transformers can load."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from backend.models.adapters import AdapterRef, find_adapter
from backend.models.loading import load_tokenizer, resolve_model


def merge_adapter(adapter: str | Path, out_dir: str | Path) -> Path:
    ref = find_adapter(adapter)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"output folder {out} is not empty")
    merged, tokenizer = load_merged(ref)
    merged.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "tunebridge.json").write_text(
        json.dumps({"merged_from": str(ref.path), "base_model": ref.base_model}, indent=2)
    )
    return out


def load_merged(ref: AdapterRef):
    """The base model (float32) with the adapter folded in, and the tokenizer saved with the run."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base_path = resolve_model(ref.base_model)
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, str(ref.path)).merge_and_unload()
    return merged, load_tokenizer(str(ref.tokenizer_path) if ref.tokenizer_path else base_path)
