"""`tunebridge vllm`: the commands that serve the registry's adapters with vLLM under tunebridge's
names, and adapter folders in the layout vLLM's LoRA loader reads. (vLLM itself needs a GPU build;
it is not installed here.)"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

VLLM_LORA_MODULES = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


def test_vllm_commands_name_every_version_and_alias(tiny_config, write_jsonl, tmp_path):
    from safetensors import safe_open

    from backend.services import adapters
    from backend.storage.engine import make_engine
    from backend.storage.migrations import migrate
    from backend.training.trainer import train

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    engine = make_engine(f"sqlite:///{data_dir / 'tunebridge.db'}")
    migrate(engine)
    data = write_jsonl("d.jsonl", [{"prompt": "2+2?", "completion": "4"}] * 4)
    run = train(tiny_config(data=[data], max_steps=2), progress_bar=False)
    (run.run_dir / "data.jsonl").write_text(Path(data).read_text())  # a job's data snapshot, as workers keep it
    for job in ("j1", "j2"):
        adapters.register(
            engine=engine,
            data_dir=data_dir,
            name="receipts",
            job_id=job,
            dataset="d",
            run_dir=run.run_dir,
            summary=run.summary,
        )
    adapters.set_alias(engine=engine, name="receipts", alias="prod", version=1)

    out = subprocess.run(
        [sys.executable, "-m", "backend.cli", "vllm", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    command = shlex.split([line for line in out.splitlines() if line.startswith("vllm serve")][0])
    base = Path(command[2])
    assert (base / "config.json").is_file() and list(base.glob("*.safetensors"))
    assert command[command.index("--served-model-name") + 1] == run.summary["base_model"]
    assert command[command.index("--max-lora-rank") + 1] == "16"  # our default rank 16
    modules = dict(m.split("=", 1) for m in command[command.index("--lora-modules") + 1 :])
    assert set(modules) == {"receipts", "receipts@1", "receipts@2", "receipts@prod"}
    assert modules["receipts"] == modules["receipts@2"] != modules["receipts@prod"] == modules["receipts@1"]
    for folder in map(Path, modules.values()):
        config = json.loads((folder / "adapter_config.json").read_text())
        modules_adapted = {m.rsplit(".", 1)[-1] for m in config["target_modules"]}  # vLLM matches the last part
        assert modules_adapted <= VLLM_LORA_MODULES and config["r"] <= 16
        with safe_open(str(folder / "adapter_model.safetensors"), "pt") as f:
            keys = list(f.keys())
        assert keys and all(k.startswith("base_model.model.") and (".lora_A." in k or ".lora_B." in k) for k in keys)


def test_vllm_command_without_a_registry_says_so(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "backend.cli", "vllm", "--data-dir", str(tmp_path / "none")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "no registry" in done.stderr
