"""Export an adapter to share it: the LoRA folder (with its tokenizer) as another machine loads it,
and — only when asked — the label memory, which quotes training documents; or merged into its base
as one GGUF file for llama.cpp and Ollama, with an Ollama Modelfile."""

from __future__ import annotations

import shutil
from pathlib import Path

from backend.labels.conventions import MEMORY_FILE
from backend.models.adapters import find_adapter

GGUF_NAME = "model.gguf"
LORA_NAME = "adapter.gguf"


def export_adapter(adapter: str | Path, out_dir: str | Path, *, include_label_memory: bool = False) -> Path:
    """Copy the adapter found at `adapter` (run folder, registered version folder or adapter folder) to
    `out_dir`/adapter (+ `out_dir`/tokenizer). The label memory (`label_memory.json`: recurring senders'
    labels and the first lines of training documents) is left behind unless `include_label_memory`."""
    ref = find_adapter(adapter)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"output folder {out} is not empty")
    memory = ref.path.parent / MEMORY_FILE
    if include_label_memory and not memory.is_file():
        raise FileNotFoundError(
            f"{adapter}: no {MEMORY_FILE} beside the adapter to include (it is written by "
            "training runs that learn label rules)"
        )
    out.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ref.path, out / "adapter", ignore=shutil.ignore_patterns(MEMORY_FILE))
    if ref.tokenizer_path is not None:
        shutil.copytree(ref.tokenizer_path, out / "tokenizer")
    if include_label_memory:
        shutil.copy2(memory, out / MEMORY_FILE)
    return out


def export_gguf(adapter: str | Path, out_dir: str | Path, *, out_type: str = "f16", lora: bool = False) -> Path:
    """Merge the adapter into its base and write `out_dir`/model.gguf (llama.cpp, Ollama) with an
    Ollama `Modelfile` beside it; with `lora`, write the base as base.gguf and the adapter apart as
    adapter.gguf (a GGUF LoRA) instead. The chat format is checked before anything is written."""
    import json

    import torch
    from transformers import AutoModelForCausalLM

    from backend.models.gguf_export import check_supported, write_gguf
    from backend.models.gguf_lora import check_plain_lora, write_gguf_lora
    from backend.models.loading import load_tokenizer, resolve_model
    from backend.models.modelfile import chat_format, modelfile_text
    from backend.training.merge import load_merged

    ref = find_adapter(adapter)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"output folder {out} is not empty")
    if lora:
        check_plain_lora(ref.path)
        base_path = resolve_model(ref.base_model)
        model = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
        tokenizer = load_tokenizer(str(ref.tokenizer_path) if ref.tokenizer_path else base_path)
    else:
        model, tokenizer = load_merged(ref)
    check_supported(model.config, out_type)
    gguf_name = "base.gguf" if lora else GGUF_NAME
    modelfile = modelfile_text(chat_format(tokenizer), gguf_name, LORA_NAME if lora else None)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    try:
        written.append(
            write_gguf(model, tokenizer, out / f".{gguf_name}.partial", out_type=out_type, name=ref.path.parent.name)
        )
        if lora:
            written.append(write_gguf_lora(ref.path, model.config, out / f".{LORA_NAME}.partial"))
    except BaseException:
        for path in written + [out / f".{gguf_name}.partial", out / f".{LORA_NAME}.partial"]:
            path.unlink(missing_ok=True)
        raise
    for path in written:
        path.replace(out / path.name.removeprefix(".").removesuffix(".partial"))
    (out / "Modelfile").write_text(modelfile)
    (out / "tunebridge.json").write_text(
        json.dumps(
            {
                "merged_from" if not lora else "adapter": str(ref.path),
                "base_model": ref.base_model,
                "gguf_type": out_type,
            },
            indent=2,
        )
    )
    return out
