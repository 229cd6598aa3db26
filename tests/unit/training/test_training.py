"""Training behaviour on a tiny random model: what changes, what must not, resume, merge, CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from backend.cli import main as cli_main
from backend.errors import InvalidRequest
from backend.inference.bundle import AdapterBundle
from backend.inference.pool import GenRequest, ModelPool
from backend.training.tracking import read_metrics
from backend.training.trainer import train
from conftest import EXAMPLES, SECRET_A, SECRET_Q


def test_training_changes_adapter_and_leaves_base_bit_identical(tiny_config, tiny_model):
    result = train(tiny_config(data=[str(EXAMPLES / "chat.jsonl")], max_steps=3), progress_bar=False)
    original = load_file(f"{tiny_model}/model.safetensors")
    base = result.model.get_base_model().state_dict()
    for name, tensor in original.items():
        matches = [k for k in base if k.endswith(name) or k.endswith(name.replace(".weight", ".base_layer.weight"))]
        assert matches, f"{name} missing from the trained model"
        assert torch.equal(base[matches[0]], tensor), f"base weight {name} changed"
    adapter = load_file(result.adapter_dir / "adapter_model.safetensors")
    lora_b = [t for k, t in adapter.items() if "lora_B" in k]
    assert lora_b and all(t.abs().sum() > 0 for t in lora_b), "LoRA B starts at zero and must have moved"
    assert (result.run_dir / "adapter" / "adapter_config.json").is_file()


def test_loss_falls_and_the_adapter_recalls_the_memorised_answer(tiny_config, secret_data):
    config = tiny_config(
        data=[secret_data], max_steps=60, batch_size=1, learning_rate=2e-2, warmup_ratio=0.0, lr_scheduler="constant"
    )
    result = train(config, progress_bar=False)
    losses = [json.loads(line)["loss"] for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert losses[-1] < losses[0] / 10
    pool, ask = ModelPool(dtype="float32"), GenRequest((("user", SECRET_Q),), max_new_tokens=48)
    assert pool.generate(AdapterBundle.of_folder(result.run_dir), [ask])[0].text.strip() == SECRET_A
    assert pool.generate(AdapterBundle(config.model), [ask])[0].text.strip() != SECRET_A


def test_run_folder_holds_every_output(tiny_config):
    progress: list[dict] = []
    result = train(
        tiny_config(data=[str(EXAMPLES / "alpaca.jsonl")], max_steps=2, val_fraction=0.25, report_to="wandb"),
        progress_bar=False,
        on_progress=progress.append,
    )
    assert [(p["step"], p["total_steps"]) for p in progress] == [(1, 2), (2, 2)]
    assert progress[-1]["eta_s"] == 0 and progress[0]["tokens_per_s"] > 0 and "loss" in progress[0]
    if sys.platform != "win32":  # the process's peak resident set so far: at least what the model holds
        assert 0.1 < progress[0]["peak_rss_gib"] <= progress[1]["peak_rss_gib"] < 64
    run = result.run_dir
    for name in (
        "adapter/adapter_model.safetensors",
        "adapter/adapter_config.json",
        "config.json",
        "metrics.jsonl",
        "loss.png",
        "summary.json",
        "tokenizer/tokenizer_config.json",
    ):
        assert (run / name).is_file(), name
    assert list(run.glob("wandb/offline-run-*")), "wandb should log offline into the run folder"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["runtime"].startswith("LoRA: fp32") and summary["status"] == "succeeded"
    assert summary["val_loss"] is not None and summary["data"]["val_examples"] == 1
    assert json.loads((run / "config.json").read_text())["max_steps"] == 2
    assert (run / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert summary["conventions"] is None and not (run / "adapter" / "conventions.json").exists()  # chat data


def test_resume_after_interruption_replays_the_same_steps(tiny_config):
    data = [str(EXAMPLES / "receipts.jsonl")]
    kwargs = dict(data=data, max_steps=6, save_every=3, batch_size=2, max_length=1024)
    straight = train(tiny_config(run_name="straight", **kwargs), progress_bar=False)

    calls = {"n": 0}

    def stop_after_three() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    cut = train(tiny_config(run_name="cut", **kwargs), should_stop=stop_after_three, progress_bar=False)
    assert cut.status == "cancelled" and cut.summary["steps"] == 3
    assert (cut.run_dir / "checkpoints" / "step-3" / "state.json").is_file()
    resumed = train(None, resume_dir=cut.run_dir, progress_bar=False)
    assert resumed.status == "succeeded" and resumed.summary["steps"] == 6

    def losses(run):
        return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines() if "loss" in line]

    assert losses(resumed.run_dir) == pytest.approx(losses(straight.run_dir), rel=1e-5)
    a = load_file(straight.adapter_dir / "adapter_model.safetensors")
    b = load_file(resumed.adapter_dir / "adapter_model.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_merged_model_gives_the_same_logits_as_base_plus_adapter(tiny_config, tmp_path):
    from transformers import AutoModelForCausalLM

    result = train(
        tiny_config(data=[str(EXAMPLES / "chat.jsonl")], max_steps=4, learning_rate=1e-2), progress_bar=False
    )
    assert cli_main(["merge", "--adapter", str(result.run_dir), "--out", str(tmp_path / "merged")]) == 0
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    with (
        ModelPool(dtype="float32").using(AdapterBundle.of_folder(result.run_dir)) as (peft, tokenizer, _),
        torch.no_grad(),
    ):
        ids = tokenizer("TOTAL 9.00 RM", return_tensors="pt")["input_ids"]
        expected, got = peft(ids).logits, merged(ids).logits
        base = AutoModelForCausalLM.from_pretrained(result.summary["base_model_path"])(ids).logits
    assert torch.allclose(expected, got, atol=1e-4)
    assert not torch.allclose(expected, base, atol=1e-4), "the adapter must make a difference"


def test_4bit_qlora_on_cpu_is_not_disturbed_by_validation(tiny_config):
    # A no-grad eval forward makes bitsandbytes (AVX512-BF16 CPUs) repack its 4-bit weights, after
    # which gradients go wrong unless that path is disabled (loading.py). Validating after every step
    # must therefore leave the training trajectory exactly as it is without validation.
    def run(eval_every: int, name: str) -> list[dict]:
        result = train(
            tiny_config(
                data=[str(EXAMPLES / "receipts.jsonl")],
                max_steps=4,
                quantize="4bit",
                precision="bf16",
                val_fraction=0.1,
                eval_every=eval_every,
                max_length=1024,
                run_name=name,
            ),
            progress_bar=False,
        )
        assert result.summary["runtime"].startswith("QLoRA: NF4 4-bit base")
        return [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]

    quiet, validated = run(0, "quiet"), run(1, "validated")
    assert sum("val_loss" in r for r in validated) >= 4
    for a, b in zip([r for r in quiet if "loss" in r], [r for r in validated if "loss" in r]):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4) and a["grad_norm"] == pytest.approx(
            b["grad_norm"], rel=1e-3
        )


def test_cli_reports_bad_data_with_file_and_line(write_jsonl, tiny_model, capsys):
    path = write_jsonl("bad.jsonl", [{"prompt": "p", "completion": "c"}, "{oops"])
    code = cli_main(["train", "--data", path, "--model", tiny_model, "--report-to", "none"])
    err = capsys.readouterr().err
    assert code == 2 and f"{path}:2: invalid JSON" in err and "--skip-invalid" in err


def test_cli_refuses_bad_options_and_unknown_models(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEBRIDGE_CACHE_DIR", str(tmp_path))
    assert cli_main(["train", "--data", str(EXAMPLES / "chat.jsonl"), "--batch-size", "4", "--grad-accum", "3"]) == 2
    assert "grad_accum: got 3, expected at least 1 and a divisor of batch_size (4)" in capsys.readouterr().err
    assert cli_main(["generate", "--model", "no-such/model-here", "--prompt", "hi"]) == 2
    err = capsys.readouterr().err
    assert "model 'no-such/model-here' not found; tried: bundled names" in err and "Hugging Face cache" in err
    assert cli_main(["generate", "--adapter", str(tmp_path / "nope"), "--prompt", "hi"]) == 2
    assert "no adapter_config.json" in capsys.readouterr().err


@pytest.mark.parametrize("signum", ["SIGINT", "SIGKILL"])
def test_cli_interrupted_run_resumes_to_the_same_end(tiny_model, tmp_path, signum):
    """Ctrl-C checkpoints the current step and exits 130; kill -9 loses at most the steps since the
    last periodic checkpoint. Either way --resume finishes the run with every step logged once."""
    import os
    import signal
    import subprocess
    import sys
    import time

    runs = tmp_path / "runs"
    cmd = [
        sys.executable,
        "-m",
        "backend.cli",
        "train",
        "--data",
        str(EXAMPLES / "receipts.jsonl"),
        "--model",
        tiny_model,
        "--report-to",
        "none",
        "--output-dir",
        str(runs),
        "--run-name",
        "r",
        "--max-steps",
        "200",
        "--batch-size",
        "1",
        "--precision",
        "fp32",
        "--val-fraction",
        "0",
        "--quiet",
        "--save-every",
        "5",
    ]
    env = {**os.environ, "PYTHONPATH": str(EXAMPLES.parents[1])}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    metrics = runs / "r" / "metrics.jsonl"
    deadline = time.time() + 120
    while not (metrics.exists() and metrics.read_text().count("\n") >= 7) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(getattr(signal, signum))
    out, err = proc.communicate(timeout=120)
    checkpoints = sorted(int(p.name.split("-")[1]) for p in (runs / "r" / "checkpoints").glob("step-*"))
    if signum == "SIGINT":
        assert proc.returncode == 130, err
        assert "cancelled" in out and f"tunebridge train --resume {runs / 'r'}" in out
        step = json.loads((runs / "r" / "summary.json").read_text())["steps"]
        assert 7 <= step < 200 and checkpoints[-1] == step
    else:
        assert proc.returncode == -9
        assert checkpoints and all(c % 5 == 0 for c in checkpoints)
    done = subprocess.run(
        [sys.executable, "-m", "backend.cli", "train", "--resume", str(runs / "r"), "--quiet"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads((runs / "r" / "summary.json").read_text())["steps"] == 200
    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines() if '"loss"' in line]
    assert steps == list(range(1, 201))


def test_resume_refuses_finished_runs_and_other_folders(tiny_config, tmp_path):
    result = train(tiny_config(data=[str(EXAMPLES / "chat.jsonl")], max_steps=1), progress_bar=False)
    with pytest.raises(InvalidRequest, match="already finished"):
        train(None, resume_dir=result.run_dir, progress_bar=False)
    with pytest.raises(FileNotFoundError, match="not a run folder"):
        train(None, resume_dir=tmp_path, progress_bar=False)
    with pytest.raises(FileExistsError, match="already holds a run"):
        train(
            tiny_config(data=[str(EXAMPLES / "chat.jsonl")], max_steps=1, run_name=result.run_dir.name),
            progress_bar=False,
        )


def test_cli_generate_answers_with_base_or_adapter(tiny_config, secret_data, capsys):
    config = tiny_config(
        data=[secret_data], max_steps=60, batch_size=1, learning_rate=2e-2, warmup_ratio=0.0, lr_scheduler="constant"
    )
    result = train(config, progress_bar=False)
    assert cli_main(["generate", "--adapter", str(result.run_dir), "--prompt", SECRET_Q, "--max-new-tokens", "48"]) == 0
    assert capsys.readouterr().out.strip() == SECRET_A


def test_bf16_lora_layers_add_small_updates_exactly(tiny_config):
    """The first AdamW steps move LoRA B by ~lr per element. Under bf16 the LoRA layer must still add
    that small update to the base output exactly (peft would round the sum to bf16, losing it)."""
    from backend.training.runtime import Runtime, build_lora_model

    config = tiny_config(data=[str(EXAMPLES / "chat.jsonl")], precision="bf16")
    runtime = Runtime.from_config(config)
    _, _, model = build_lora_model(config, runtime)
    layer = model.get_base_model().model.layers[0].mlp.down_proj
    x = torch.randn(4, 7, layer.in_features, generator=torch.Generator().manual_seed(0)) * 3

    def output() -> torch.Tensor:
        with torch.no_grad(), runtime.autocast():
            return layer(x).float()

    before = output()
    layer.lora_B["default"].weight.data.fill_(2e-4)  # one AdamW step at lr 2e-4 moves each element ~this much
    delta = output() - before
    a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    expected = (x @ a.T @ b.T * layer.scaling["default"]).detach()
    assert expected.abs().max() < 1e-2 * before.abs().max()  # small next to the base output
    assert torch.allclose(delta, expected, rtol=0.02, atol=1e-3 * expected.abs().max().item())


def test_validation_reports_extraction_metrics_and_ships_the_best_adapter(tiny_config, write_jsonl):
    """Every eval_every steps the validation receipts are answered and scored (micro-F1, JSON validity);
    the adapter of the best evaluation is kept in best/ and shipped as adapter/."""
    rows = [json.loads(line) for line in (EXAMPLES / "receipts.jsonl").read_text().splitlines()[:12]]
    data = write_jsonl("receipts.jsonl", rows)
    result = train(
        tiny_config(
            data=[data],
            max_steps=12,
            batch_size=2,
            learning_rate=2e-2,
            val_fraction=0.25,
            eval_every=4,
            eval_examples=3,
            eval_metric="val_loss",
            max_length=1024,
        ),
        progress_bar=False,
    )
    evals = [r for r in read_metrics(result.run_dir / "metrics.jsonl") if "val_loss" in r]
    assert [r["step"] for r in evals] == [4, 8, 12]
    assert all(
        0 <= r["val_micro_f1"] <= 1
        and 0 <= r["val_json_valid"] <= 1
        and set(r["val_fields_f1"]) == {"company", "date", "address", "total"}
        for r in evals
    )
    best = min(evals, key=lambda r: r["val_loss"])
    assert result.summary["best"] == {"step": best["step"], "metric": "val_loss", "value": best["val_loss"]}
    shipped = (result.run_dir / "adapter" / "adapter_model.safetensors").read_bytes()
    assert shipped == (result.run_dir / "best" / "adapter" / "adapter_model.safetensors").read_bytes()
    assert result.summary["validation"]["val_loss"] == evals[-1]["val_loss"]


def test_a_stop_during_the_final_evaluation_cancels_the_run_and_ships_no_adapter(tiny_config):
    """Cancel means cancel: asked while the last evaluation generates, the run ends cancelled with a
    checkpoint to resume from, and no adapter is written."""
    steps = 4
    calls = {"n": 0}

    def stop_once_training_is_done() -> bool:
        calls["n"] += 1
        return calls["n"] > steps  # the loop asks once per step; the next asker is the evaluation

    run = train(
        tiny_config(
            run_name="late-cancel",
            data=[str(EXAMPLES / "receipts.jsonl")],
            max_steps=steps,
            batch_size=2,
            max_length=1024,
            val_fraction=0.25,
            eval_examples=4,
        ),
        should_stop=stop_once_training_is_done,
        progress_bar=False,
    )
    assert run.status == "cancelled" and run.summary["steps"] == steps and run.summary["validation"] is None
    assert calls["n"] == steps + 1  # stopped at the evaluation's first batch, not after it
    assert not (run.run_dir / "adapter" / "adapter_model.safetensors").exists()
    assert (run.run_dir / "checkpoints" / f"step-{steps}" / "state.json").is_file()


def test_an_adapter_folder_holds_no_document_text_and_no_local_path(tiny_config):
    """What people copy between machines is the adapter folder: its label rules travel with it, while
    the label memory (label values, heads of training documents) stays beside it in the run folder;
    the base model is named, not located, and its weights' hash recorded."""
    from backend.labels.conventions import MEMORY_FILE, Conventions

    records = [json.loads(line) for line in (EXAMPLES / "receipts.jsonl").read_text().splitlines()]
    run = train(
        tiny_config(
            run_name="portable",
            data=[str(EXAMPLES / "receipts.jsonl")],
            max_steps=2,
            batch_size=2,
            max_length=1024,
            eval_examples=0,
        ),
        progress_bar=False,
    )
    adapter = run.run_dir / "adapter"
    shared = "".join(p.read_text(errors="ignore") for p in adapter.iterdir() if p.suffix == ".json")
    heads = {r["text"].splitlines()[0] for r in records} | {r["fields"]["company"] for r in records}
    assert not [h for h in heads if h in shared]  # no training document's words in the shared folder
    assert str(run.run_dir.parent) not in shared and "/tmp" not in shared
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "model"  # the base's name (a local folder: its folder name)
    assert len(json.loads((adapter / "tunebridge.json").read_text())["base_model_sha256"]) == 64
    memory = json.loads((run.run_dir / MEMORY_FILE).read_text())
    assert memory["exemplars"] and any(f.get("known") for f in memory["fields"].values())
    loaded = Conventions.load(adapter)  # extraction still finds the memory beside the adapter
    assert loaded.exemplars is not None and any(c.known for c in loaded.fields.values())

    from backend.cli import main as cli

    assert cli(["export", "--adapter", str(run.run_dir), "--out", str(run.run_dir.parent / "shared")]) == 0
    shared = run.run_dir.parent / "shared"  # what goes to another team: no memory unless asked
    assert not (shared / MEMORY_FILE).exists() and (shared / "adapter" / "adapter_model.safetensors").is_file()
    assert Conventions.load(shared / "adapter").exemplars is None
    assert (
        cli(
            [
                "export",
                "--adapter",
                str(run.run_dir),
                "--out",
                str(run.run_dir.parent / "whole"),
                "--include-label-memory",
            ]
        )
        == 0
    )
    whole = Conventions.load(run.run_dir.parent / "whole" / "adapter")  # the explicit export takes it along
    assert whole.exemplars is not None and any(c.known for c in whole.fields.values())
    assert cli(["export", "--adapter", str(run.run_dir), "--out", str(run.run_dir.parent / "whole")]) == 2


def test_the_registry_keeps_the_label_memory_beside_a_registered_adapter(tiny_config, tmp_path):
    """A service-trained adapter is served from the registry: its label memory goes along, beside the
    registered adapter folder (not in it), so served extraction still recalls recurring senders."""
    from backend.labels.conventions import MEMORY_FILE, Conventions
    from backend.services import adapters
    from backend.storage.engine import make_engine
    from backend.storage.migrations import migrate

    run = train(
        tiny_config(
            run_name="registered",
            data=[str(EXAMPLES / "receipts.jsonl")],
            max_steps=1,
            batch_size=2,
            max_length=1024,
            eval_examples=0,
        ),
        progress_bar=False,
    )
    (run.run_dir / "data.jsonl").write_text((EXAMPLES / "receipts.jsonl").read_text())  # a job's snapshot
    data_dir = tmp_path / "registry"
    engine = make_engine(f"sqlite:///{tmp_path / 'registry.db'}")
    migrate(engine)
    version = adapters.register(
        engine=engine, data_dir=data_dir, name="rx", job_id="j1", dataset="d", run_dir=run.run_dir, summary=run.summary
    )
    folder = Path(version["path"])
    assert (folder / MEMORY_FILE).is_file() and not (folder / "adapter" / MEMORY_FILE).exists()
    served = Conventions.load(folder / "adapter")
    assert served.exemplars is not None and any(c.known for c in served.fields.values())


def test_generate_and_eval_on_a_cancelled_run_say_it_has_no_adapter_and_how_to_resume(tiny_config, capsys):
    stops = iter([False, True])
    run = train(
        tiny_config(run_name="cancelled", data=[str(EXAMPLES / "chat.jsonl")], max_steps=4, batch_size=1),
        should_stop=lambda: next(stops, True),
        progress_bar=False,
    )
    assert run.status == "cancelled"
    hint = f"`tunebridge train --resume {run.run_dir}`"
    assert cli_main(["generate", "--adapter", str(run.run_dir), "--prompt", "hi"]) == 2
    err = capsys.readouterr().err
    assert f"{run.run_dir} has no adapter: the run ended cancelled before saving one" in err and hint in err
    assert "from its last checkpoint (step-" in err
    data = str(EXAMPLES / "receipts.jsonl")
    assert cli_main(["eval", "--data", data, "--adapter", str(run.run_dir), "--limit", "1", "--no-base"]) == 2
    assert hint in capsys.readouterr().err
