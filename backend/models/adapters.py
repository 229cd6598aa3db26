"""Locate a trained adapter on disk and the base model it belongs to."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from backend.errors import NotFound


class AdapterNotFoundError(NotFound):
    """No adapter folder, or no registered adapter, under that name."""


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
            meta, run = candidate / "tunebridge.json", candidate.parent / "summary.json"
            run_base = json.loads(run.read_text()).get("base_model") if run.is_file() else None
            if run_base:  # the run this adapter came from, on this machine: the base as it was given
                base = run_base
            elif meta.is_file():  # a copied adapter folder: the base by name
                base = json.loads(meta.read_text())["base_model"]
            else:
                base = json.loads((candidate / "adapter_config.json").read_text()).get("base_model_name_or_path")
            if not base:
                raise AdapterNotFoundError(f"{candidate}: adapter does not name its base model")
            tok = candidate.parent / "tokenizer"
            return AdapterRef(candidate, base, tok if (tok / "tokenizer_config.json").is_file() else None)
    unfinished = _unfinished_run(given)
    if unfinished:
        raise AdapterNotFoundError(unfinished)
    raise AdapterNotFoundError(
        f"adapter {str(ref)!r} not found: no adapter_config.json in {given} or {given / 'adapter'}"
    )


def _unfinished_run(folder: Path) -> str | None:
    """What to tell about a training run folder that has no adapter (cancelled, failed or still running),
    or None when `folder` is no run folder. A run writes its adapter only when it succeeds."""
    if not (folder / "config.json").is_file() or not any(
        (folder / name).exists() for name in ("config.yaml", "summary.json", "checkpoints", "metrics.jsonl")
    ):
        return None
    summary = folder / "summary.json"
    try:
        status = json.loads(summary.read_text()).get("status") if summary.is_file() else None
    except (OSError, ValueError):
        status = None
    if status == "succeeded":
        return f"{folder} has no adapter: the run succeeded, but its adapter/ folder was removed since"
    how = f"the run ended {status}" if status else "the run has not finished (stopped, or still training)"
    steps = [p.name for p in (folder / "checkpoints").glob("step-*") if (p / "state.json").is_file()]
    last = max(steps, key=lambda name: int(name.split("-")[1]) if name.split("-")[1].isdigit() else -1, default=None)
    where = f"from its last checkpoint ({last})" if last else "from the start (it saved no checkpoint)"
    return (
        f"{folder} has no adapter: {how} before saving one; resume it {where} with `tunebridge train --resume {folder}`"
    )
