"""`train`: one run, in this process or launched over several (torchrun / accelerate launch).

The caller's choice is made here, once: a config with a launcher hands the run folder to the
launcher (launch.py), whose ranks each run the recipe on it; otherwise the recipe (recipe.py) runs in
this process. The CLI, the worker, the demo and the benchmarks all call `train`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from backend.training.config import TrainConfig
from backend.training.distributed import launched
from backend.training.launch import launch
from backend.training.recipe import Recipe, TrainResult, open_run

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
    config, run_dir = open_run(config, resume_dir)
    if config.launcher != "none" and not launched():
        return launch(
            config, run_dir=run_dir, should_stop=should_stop, on_progress=on_progress, progress_bar=progress_bar
        )
    return Recipe(
        config,
        run_dir,
        resume=resume_dir is not None,
        should_stop=should_stop,
        on_progress=on_progress,
        progress_bar=progress_bar,
    ).run()
