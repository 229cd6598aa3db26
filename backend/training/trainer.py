"""`train`: one run, in this process or launched over several (torchrun / accelerate launch).

The caller's choice is made here, once: a config with a launcher hands the run folder to the
launcher (launch.py), whose ranks each run the recipe on it; otherwise the recipe (recipe.py) runs in
this process. The CLI, the worker, the demo and the benchmarks all call `train`.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from backend.training.config import TrainConfig
from backend.training.distributed import launched
from backend.training.launch import launch
from backend.training.recipe import Recipe, TrainResult, load_data, open_run

__all__ = ["TrainResult", "train"]


def train(
    config: TrainConfig | None,
    *,
    resume_dir: str | Path | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    progress_bar: bool = True,
) -> TrainResult:
    """Train (or resume) one run. `should_stop` is polled between steps: when it returns True the
    run saves a checkpoint and returns with status "cancelled". With `config.launcher` set, the run
    is handed to torchrun / accelerate launch and this process follows it."""
    data = load_data(config) if config is not None and resume_dir is None and not launched() else None
    config, run_dir = open_run(config, resume_dir)
    if config.launcher != "none" and not launched():
        return launch(
            config, run_dir=run_dir, should_stop=should_stop, on_progress=on_progress, progress_bar=progress_bar
        )
    recipe = Recipe(
        config,
        run_dir,
        resume=resume_dir is not None,
        should_stop=should_stop,
        on_progress=on_progress,
        progress_bar=progress_bar,
        data=data,
    )
    try:
        return recipe.run()
    except BaseException:
        if resume_dir is None and recipe.step_n == 0 and not launched():
            _remove_if_only_ours(run_dir)  # failed before training: leave no empty run folder behind
        raise


# What a run writes into its folder before its first step.
SET_UP = {"config.json", "config.yaml", "wandb", "wandb_id.txt"}


def _remove_if_only_ours(run_dir: Path) -> None:
    """Remove a new run's folder when it holds only what the run wrote while setting up (a folder that
    also holds the caller's files, such as a worker's data snapshot, is left as it is)."""
    if run_dir.is_dir() and {p.name for p in run_dir.iterdir()} <= SET_UP:
        shutil.rmtree(run_dir, ignore_errors=True)
