"""Shared fixtures: a tiny random chat model (built once per session) and isolated folders."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "data"
SECRET_Q, SECRET_A = "What is the secret word?", "The secret word is pineapple-42."


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    from backend.models.tiny import build_tiny_model

    texts = [json.loads(line)["text"] for line in (EXAMPLES / "receipts.jsonl").read_text().splitlines()[:16]]
    texts.append(f"{SECRET_Q} {SECRET_A}")
    return str(build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", texts=texts))


@pytest.fixture
def write_jsonl(tmp_path):
    def write(name: str, rows: list) -> str:
        path = tmp_path / name
        path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
        return str(path)

    return write


@pytest.fixture
def secret_data(write_jsonl) -> str:
    chat = {"messages": [{"role": "user", "content": SECRET_Q}, {"role": "assistant", "content": SECRET_A}]}
    return write_jsonl("secret.jsonl", [chat])


@pytest.fixture
def tiny_config(tiny_model, tmp_path):
    """A TrainConfig factory on the tiny model, writing into this test's folder."""
    from backend.training.config import TrainConfig

    def make(**overrides):
        values = dict(
            model=tiny_model,
            output_dir=str(tmp_path / "runs"),
            report_to="none",
            save_every=0,
            val_fraction=0.0,
            batch_size=2,
            precision="fp32",
            quantize="none",  # the same numerics on every CPU kind (auto's choice: test_hardware.py)
            threads=1,
        )
        values.update(overrides)
        return TrainConfig(**values)

    return make


@pytest.fixture(scope="module")
def service(tmp_path_factory, tiny_model):
    """The real service (uvicorn + one worker process, SQLite) on the tiny model, per test module."""
    from servers import tiny_service

    with tiny_service(tmp_path_factory.mktemp("service-data"), tiny_model) as running:
        yield running
