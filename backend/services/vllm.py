"""Serving the registry's adapters with vLLM, for users who outgrow one machine.

vLLM's OpenAI-compatible server takes a base model folder and LoRA adapters by name
(`--enable-lora --lora-modules name=path`). `vllm_commands` writes one `vllm serve` command per
base model in the registry, naming each adapter the way tunebridge does — `receipts` (newest),
`receipts@3`, `receipts@prod` — so clients (agents, n8n nodes, the openai SDK) switch servers by
changing only the base URL. vLLM has no aliases: a server started this way keeps serving what
`name@prod` was at start; `tunebridge vllm push` (backend/services/vllm_push.py) loads a promoted
version into a running server and, with --alias, points the alias name there at it (docs/vllm.md).
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from backend.services import adapters

RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # the --max-lora-rank values vLLM accepts


def vllm_commands(*, engine: Engine, base_path=None, port: int = 8001) -> list[dict[str, Any]]:
    """Per base model: the adapters' served names and the `vllm serve` argv. `base_path` maps a base
    model reference to its folder (default: tunebridge's resolution; GGUF bases are converted once
    to safetensors, which vLLM reads)."""
    from backend.models.loading import resolve_model

    resolve = base_path or resolve_model
    by_base: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for entry in adapters.list_adapters(engine=engine):
        newest = entry["versions"][0]
        names = [(entry["name"], newest)] + [(v["id"], v) for v in entry["versions"]]
        by_base_version = {v["version"]: v for v in entry["versions"]}
        names += [
            (f"{entry['name']}@{alias}", by_base_version[version])
            for alias, version in entry["aliases"].items()
            if version in by_base_version
        ]
        for served, version in names:
            by_base.setdefault(version["base_model"], []).append((served, version))
    out = []
    for base, served in sorted(by_base.items()):
        rank = max(_rank(Path(v["path"]) / "adapter") for _, v in served)
        modules = [f"{name}={Path(v['path']) / 'adapter'}" for name, v in served]
        argv = [
            "vllm",
            "serve",
            str(resolve(base)),
            "--served-model-name",
            base,
            "--port",
            str(port),
            "--enable-lora",
            "--max-lora-rank",
            str(next((r for r in RANKS if r >= rank), rank)),
            "--max-loras",
            str(min(len(served), 8)),
            "--lora-modules",
            *modules,
        ]
        out.append(
            {"base_model": base, "adapters": [name for name, _ in served], "argv": argv, "command": shlex.join(argv)}
        )
        port += 1
    return out


def _rank(adapter_dir: Path) -> int:
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    return max([int(config.get("r", 8)), *map(int, (config.get("rank_pattern") or {}).values())])
