"""Data-parallel training through torchrun / accelerate launch: 2 CPU ranks (gloo) learn what one
process learns from the same global batches."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from backend.errors import InvalidRequest
from backend.training.config import TrainConfig
from backend.training.trainer import train
from conftest import EXAMPLES

# Each rank pads and multiplies its own share, and the ranks' gradients are summed by all-reduce:
# fp32 results then differ from one process's in the last bits. Losses and gradient norms (which
# would expose a wrong split or a wrong gradient scale: clipping is active) agree to ~1e-7 relative.
# AdamW divides by sqrt(v), which magnifies those bits for the few elements whose gradient is near
# zero: measured, 8 of 32,768 adapter elements moved apart by more than 1e-6 (at most 1.6e-5) and the
# adapters' relative distance was 2e-6. ATOL is lr/200, half a percent of what one step can move
# an element; a wrong global batch moves them by ~lr.
ATOL, RTOL, REL_DISTANCE = 5e-5, 1e-4, 1e-5


@pytest.fixture
def receipts(write_jsonl) -> str:
    """9 training receipts and 1 held out: with micro-batches of 2 every epoch ends on a single
    example, so one rank's share is empty (its zero-weighted stand-in must not change the result)."""
    rows = [json.loads(line) for line in (EXAMPLES / "receipts.jsonl").read_text().splitlines()[:10]]
    return write_jsonl("receipts.jsonl", rows)


def _common(data: str) -> dict:
    return dict(
        data=[data],
        max_steps=8,
        batch_size=4,
        grad_accum=2,
        learning_rate=1e-2,
        warmup_ratio=0.0,
        val_fraction=0.1,
        eval_examples=0,
        max_length=1024,
        lora_dropout=0.0,
        save_every=0,
        # ranks read every row whole; the one-process reference too, so the two differ by nothing but
        # the order of float sums (reading the shared prompt once: test_shared_prefix.py)
        share_prefix=False,
    )


def _steps(run, key: str) -> list[float]:
    return [json.loads(line)[key] for line in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]


def _assert_same_training(a, b) -> str:
    assert len(_steps(b.run_dir, "loss")) == 8
    assert _steps(a.run_dir, "loss") == pytest.approx(_steps(b.run_dir, "loss"), rel=1e-5)
    assert _steps(a.run_dir, "grad_norm") == pytest.approx(_steps(b.run_dir, "grad_norm"), rel=1e-5)
    assert _steps(a.run_dir, "tokens") == _steps(b.run_dir, "tokens")
    assert a.summary["val_loss"] == pytest.approx(b.summary["val_loss"], rel=1e-5)
    wa = load_file(a.adapter_dir / "adapter_model.safetensors")
    wb = load_file(b.adapter_dir / "adapter_model.safetensors")
    assert wa.keys() == wb.keys() and wa
    worst = max((wa[k] - wb[k]).abs().max().item() for k in wa)
    distance = (sum((wa[k] - wb[k]).square().sum() for k in wa) / sum(wa[k].square().sum() for k in wa)).sqrt().item()
    assert all(torch.allclose(wa[k], wb[k], atol=ATOL, rtol=RTOL) for k in wa), worst
    assert distance < REL_DISTANCE
    return f"max |adapter diff| {worst:.1e}, relative distance {distance:.1e}, losses {_steps(b.run_dir, 'loss')}"


def _cut_and_resume(tiny_config, receipts, **launch):
    """A launched run cancelled from the parent after its first step (stop file), checkpointed by
    the ranks, then resumed by a second launch to the end."""
    progress: list[dict] = []
    cut = train(
        tiny_config(run_name="launched", **launch, **_common(receipts)),
        progress_bar=False,
        on_progress=progress.append,
        should_stop=lambda: len(progress) >= 1,
    )
    assert cut.status == "cancelled" and 1 <= cut.summary["steps"] < 8
    assert (cut.run_dir / "checkpoints" / f"step-{cut.summary['steps']}" / "state.json").is_file()
    assert [p["step"] for p in progress] == list(range(1, cut.summary["steps"] + 1))
    assert progress[0]["total_steps"] == 8 and "eta_s" in progress[0]
    done = train(None, resume_dir=cut.run_dir, progress_bar=False)
    assert done.status == "succeeded" and done.summary["steps"] == 8 and done.model is None
    return done


def test_two_gloo_ranks_under_torchrun_ddp_learn_what_one_process_learns(tiny_config, receipts):
    single = train(tiny_config(run_name="single", **_common(receipts)), progress_bar=False)
    ddp = _cut_and_resume(tiny_config, receipts, launcher="torchrun", nproc=2)
    assert ddp.summary["runtime"].endswith("DDP over 2 processes (gloo)")
    print("DDP vs one process:", _assert_same_training(single, ddp))


def test_fsdp_under_accelerate_launch_learns_what_one_process_learns(tiny_config, receipts):
    """FSDP (sharded adapter, gathered for checkpoints and the adapter file) on 2 CPU ranks."""
    single = train(tiny_config(run_name="single", **_common(receipts)), progress_bar=False)
    fsdp = _cut_and_resume(tiny_config, receipts, launcher="accelerate", nproc=2, strategy="fsdp")
    assert fsdp.summary["runtime"].endswith("FSDP over 2 processes (gloo)")
    print("FSDP vs one process:", _assert_same_training(single, fsdp))


def test_config_checks_the_global_batch_and_the_launcher():
    with pytest.raises(InvalidRequest, match="nproc: got 2, expected 1 without a launcher"):
        TrainConfig(nproc=2)
    with pytest.raises(InvalidRequest, match=r"batch_size: got 6, expected a multiple of grad_accum × nproc \(2 × 2\)"):
        TrainConfig(launcher="torchrun", nproc=2, batch_size=6, grad_accum=2)
    config = TrainConfig.from_dict({"launcher": "accelerate", "nproc": 4, "batch_size": 8})  # the job API's path
    assert (config.launcher, config.nproc, config.strategy) == ("accelerate", 4, "ddp")
    TrainConfig(launcher="torchrun", launcher_args="--nnodes 2 --node-rank 1 --rdzv-endpoint host0:29500")
    for smuggled in ("--no-python bash -c 'id'", "--nnodes 1 /tmp/other_script.py", "--master-addr --run-path"):
        with pytest.raises(InvalidRequest, match="launcher_args: got"):  # a job must not choose what the launcher runs
            TrainConfig(launcher="torchrun", launcher_args=smuggled)


def test_a_rank_error_reaches_the_caller_as_itself(tiny_config, write_jsonl):
    bad = write_jsonl("bad.jsonl", [{"prompt": "p", "completion": "c"}, "{oops"])
    with pytest.raises(InvalidRequest, match="bad.jsonl:2: invalid JSON"):
        train(tiny_config(data=[bad], launcher="torchrun", nproc=2), progress_bar=False)
