"""Locate a trained adapter on disk and the base model it belongs to."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


class AdapterNotFoundError(FileNotFoundError):
    pass


@dataclass(frozen=True)
class AdapterRef:
    path: Path  # folder with adapter_config.json + adapter_model.safetensors
    base_model: str  # model reference for backend.models.resolve_model
    tokenizer_path: Path | None  # the tokenizer (and chat template) saved with the run, if any


def find_adapter(ref: str | Path) -> AdapterRef:
    """Accept a run folder (holding adapter/) or an adapter folder itself."""
    given = Path(ref).expanduser()
    for candidate in (given, given / "adapter"):
        if (candidate / "adapter_config.json").is_file():
            meta = candidate / "tunebridge.json"
            if meta.is_file():
                base = json.loads(meta.read_text())["base_model"]
            else:
                base = json.loads((candidate / "adapter_config.json").read_text()).get("base_model_name_or_path")
            if not base:
                raise AdapterNotFoundError(f"{candidate}: adapter does not name its base model")
            tok = candidate.parent / "tokenizer"
            return AdapterRef(candidate, base, tok if (tok / "tokenizer_config.json").is_file() else None)
    raise AdapterNotFoundError(
        f"adapter {str(ref)!r} not found: no adapter_config.json in {given} or {given / 'adapter'}"
    )
