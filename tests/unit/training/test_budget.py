"""A time-budgeted run is sized to the machine after its first steps: the whole learning-rate schedule
fits the budget on a slow machine, and a fast machine runs the plan as it was (fake speeds)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backend.training.recipe import FIT_AFTER, Recipe
from backend.training.trainer import train

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "data"


@pytest.mark.parametrize(("seconds_per_step", "steps"), [(10.0, 6), (0.1, 40)])
def test_the_schedule_is_sized_to_the_time_budget(tiny_config, monkeypatch, seconds_per_step, steps):
    monkeypatch.setattr(Recipe, "train_time", lambda self: self.step_n * seconds_per_step)  # the machine's speed
    config = tiny_config(
        data=[str(EXAMPLES / "alpaca.jsonl")],
        max_steps=40,
        batch_size=2,
        max_minutes=1.0,
        learning_rate=1e-3,
        warmup_ratio=0.0,
    )
    result = train(config, progress_bar=False)
    s = result.summary
    assert result.status == "succeeded" and s["steps"] == s["total_steps"] == steps
    assert s.get("stopped_early") is None  # the run ended with its schedule, not cut off by the clock
    lrs = [
        json.loads(line)["lr"] for line in (result.run_dir / "metrics.jsonl").read_text().splitlines() if '"lr"' in line
    ]
    if seconds_per_step > 1:  # slow: 60 s fit 6 steps of 10 s; the cosine schedule decays within them
        assert s["fitted_to_budget"]["planned"] == 40 and s["fitted_to_budget"]["steps"] == 6
        assert lrs[FIT_AFTER] < lrs[1] and lrs[-1] < 0.1 * lrs[0]
    else:  # fast: the 40 planned steps fit, nothing changes
        assert "fitted_to_budget" not in s


def test_bad_data_is_refused_before_the_model_loads_and_leaves_no_run_folder(tiny_config, tmp_path):
    from backend.training.data import DatasetError

    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n{not json\n')
    # the model does not exist: had it been loaded first, that error would come instead of the data's
    config = tiny_config(data=[str(broken)], model=str(tmp_path / "no-such-model"), max_steps=1)
    with pytest.raises(DatasetError, match="broken.jsonl"):
        train(config, progress_bar=False)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_run_that_fails_before_its_first_step_leaves_no_run_folder(tiny_config, tmp_path):
    config = tiny_config(data=[str(EXAMPLES / "alpaca.jsonl")], model=str(tmp_path / "no-such-model"), max_steps=1)
    with pytest.raises(Exception, match="no-such-model"):
        train(config, progress_bar=False)
    assert not any((tmp_path / "runs").iterdir())
    kept = tmp_path / "runs" / "job-1"  # a folder that holds the caller's own files stays
    kept.mkdir()
    (kept / "data.jsonl").write_text("")
    with pytest.raises(Exception, match="no-such-model"):
        train(
            tiny_config(data=[str(EXAMPLES / "alpaca.jsonl")], model=str(tmp_path / "no-such-model"), run_name="job-1"),
            progress_bar=False,
        )
    assert sorted(p.name for p in kept.iterdir()) == ["config.json", "config.yaml", "data.jsonl"]
