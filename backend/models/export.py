"""Export an adapter to share it: the LoRA folder (with its tokenizer) as another machine loads it,
and — only when asked — the label memory, which quotes training documents; or merged into its base
as one GGUF file for llama.cpp and Ollama, with an Ollama Modelfile."""

from __future__ import annotations

import shutil
from pathlib import Path

from backend.labels.conventions import MEMORY_FILE
from backend.models.adapters import find_adapter

GGUF_NAME = "model.gguf"


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


def export_gguf(adapter: str | Path, out_dir: str | Path, *, out_type: str = "f16") -> Path:
    """Merge the adapter into its base and write `out_dir`/model.gguf (llama.cpp, Ollama) with an
    Ollama `Modelfile` beside it. The chat format is checked before the model is written."""
    import json

    from backend.models.gguf_export import write_gguf
    from backend.models.modelfile import chat_format, modelfile_text
    from backend.training.merge import load_merged

    ref = find_adapter(adapter)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"output folder {out} is not empty")
    model, tokenizer = load_merged(ref)
    modelfile = modelfile_text(chat_format(tokenizer), GGUF_NAME)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{GGUF_NAME}.partial"
    try:
        write_gguf(model, tokenizer, tmp, out_type=out_type, name=ref.path.parent.name)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(out / GGUF_NAME)
    (out / "Modelfile").write_text(modelfile)
    (out / "tunebridge.json").write_text(
        json.dumps({"merged_from": str(ref.path), "base_model": ref.base_model, "gguf_type": out_type}, indent=2)
    )
    return out
