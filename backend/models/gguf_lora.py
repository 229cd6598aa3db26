"""Write a PEFT LoRA adapter as a GGUF LoRA adapter, for llama.cpp (`--lora`) and Ollama (`ADAPTER`) on
top of the base model written as GGUF by `gguf_export.write_gguf`.

As llama.cpp's `convert_lora_to_gguf.py` does: `general.type` = adapter, `adapter.type` = lora,
`adapter.lora.alpha` such that llama.cpp's scale (alpha / rank) is PEFT's scaling, and for every
adapted matrix `<gguf name>.lora_a` (rank × in) and `.lora_b` (out × rank), the q and k `lora_b`
rows permuted as the base weights are. Plain LoRA only: one rank and alpha for every module, no DoRA,
no biases, no extra trained modules.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from backend.models.gguf_export import GGUFExportError, permute_heads

PEFT_PREFIX = "base_model.model."


def write_gguf_lora(adapter_dir: str | Path, base_config: Any, path: str | Path) -> Path:
    import gguf
    import torch
    from safetensors.torch import load_file

    adapter_dir = Path(adapter_dir)
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    check_plain_lora(adapter_dir)
    rank = int(config["r"])
    scaling = config["lora_alpha"] / (math.sqrt(rank) if config.get("use_rslora") else rank)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, base_config.num_hidden_layers)
    n_head = base_config.num_attention_heads
    n_kv = base_config.num_key_value_heads or n_head
    weights = load_file(adapter_dir / "adapter_model.safetensors")

    writer = gguf.GGUFWriter(str(path), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(scaling * rank))
    for key in sorted(weights):
        if ".lora_A." not in key:
            continue
        module = key.removeprefix(PEFT_PREFIX).split(".lora_A.")[0]
        found = names.get_name(f"{module}.weight", try_suffixes=(".weight",))
        b_key = key.replace(".lora_A.", ".lora_B.")
        if found is None or b_key not in weights:
            raise GGUFExportError(f"{adapter_dir}: adapter tensor {key} has no place in a llama GGUF")
        lora_a = weights[key].to(torch.float32).numpy()
        lora_b = weights[b_key].to(torch.float32).numpy()
        if module.endswith("q_proj"):
            lora_b = permute_heads(lora_b, n_head)
        elif module.endswith("k_proj"):
            lora_b = permute_heads(lora_b, n_kv)
        writer.add_tensor(f"{found}.lora_a", lora_a)
        writer.add_tensor(f"{found}.lora_b", lora_b)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(path)


def check_plain_lora(adapter_dir: Path) -> None:
    """Raise GGUFExportError, naming what it uses, unless the adapter is plain LoRA."""
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    unsupported = [
        name
        for name, present in (
            ("peft_type other than LORA", config.get("peft_type") != "LORA"),
            ("use_dora", config.get("use_dora")),
            ("rank_pattern", config.get("rank_pattern")),
            ("alpha_pattern", config.get("alpha_pattern")),
            ("modules_to_save", config.get("modules_to_save")),
            ("trainable_token_indices", config.get("trainable_token_indices")),
            ("bias", config.get("bias", "none") != "none" or config.get("lora_bias")),
        )
        if present
    ]
    if unsupported:
        raise GGUFExportError(
            f"{adapter_dir}: a GGUF LoRA adapter holds plain LoRA only; this adapter uses {', '.join(unsupported)} "
            "(export it merged instead: --format gguf)"
        )
