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
    config = tiny_config(data=[str(EXAMPLES / "alpaca.jsonl")], max_steps=40, batch_size=2, max_minutes=1.0,
                         learning_rate=1e-3, warmup_ratio=0.0)
    result = train(config, progress_bar=False)
    s = result.summary
    assert result.status == "succeeded" and s["steps"] == s["total_steps"] == steps
    assert s.get("stopped_early") is None  # the run ended with its schedule, not cut off by the clock
    lrs = [json.loads(line)["lr"] for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()
           if '"lr"' in line]
    if seconds_per_step > 1:  # slow: 60 s fit 6 steps of 10 s; the cosine schedule decays within them
        assert s["fitted_to_budget"]["planned"] == 40 and s["fitted_to_budget"]["steps"] == 6
        assert lrs[FIT_AFTER] < lrs[1] and lrs[-1] < 0.1 * lrs[0]
    else:  # fast: the 40 planned steps fit, nothing changes
        assert "fitted_to_budget" not in s
