"""Hand a prepared run folder to torchrun or `accelerate launch`, and follow it from this process.

The parent (the CLI or a worker, through `train()`) writes the run folder as usual, then starts

    python -m torch.distributed.run --standalone --nproc-per-node N -m backend.training.launch RUN_DIR ...
    python -m accelerate.commands.launch --multi_gpu --num_processes N -m backend.training.launch RUN_DIR ...

Every rank runs `train(None, resume_dir=RUN_DIR)` (a fresh folder simply has no checkpoint yet);
rank 0 writes the outputs as a single process would. Through a private control folder the ranks
report progress (rank 0 appends each step's record) and learn about a stop request (a file), so
`should_stop`, `on_progress` and the returned TrainResult behave as in a single process; only
`TrainResult.model` is None (the model lived in the ranks).

Processes never outlive their parent: the launcher gets SIGTERM if the parent dies (it forwards it
to the ranks, which checkpoint and stop), and each rank is killed if its launcher dies.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from backend.errors import Conflict, InvalidRequest, NotFound, TunebridgeError
from backend.training.config import TrainConfig

# a rank's error of one of these kinds is raised again as itself in the parent
_ERRORS = (InvalidRequest, NotFound, Conflict, TunebridgeError, FileNotFoundError, FileExistsError)


def launcher_command(config: TrainConfig, *, run_dir: Path, control: Path, progress_bar: bool) -> list[str]:
    extra = shlex.split(config.launcher_args)
    if config.launcher == "torchrun":
        head = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(config.nproc)]
        head += extra or ["--standalone"]  # one machine: a free port of its own (jobs side by side)
    else:
        head = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(config.nproc)]
        if config.nproc > 1:
            head.append("--multi_gpu")  # accelerate's name for "start N data-parallel processes", also on CPU
        head += extra or [
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "--main_process_port",
            str(_free_port()),
        ]  # precision is ours (TrainConfig.precision)
    tail = ["-m", "backend.training.launch", str(run_dir), "--control", str(control)]
    return head + tail + (["--progress-bar"] if progress_bar else [])


def launch(
    config: TrainConfig,
    *,
    run_dir: Path,
    should_stop: Callable[[], bool],
    on_progress: Callable[[dict[str, Any]], None] | None,
    progress_bar: bool,
):
    from backend.training.recipe import TrainResult

    started = time.time()
    with tempfile.TemporaryDirectory(prefix="tunebridge-launch-") as tmp:
        control = Path(tmp)
        cmd = launcher_command(config, run_dir=run_dir, control=control, progress_bar=progress_bar)
        root = str(Path(__file__).resolve().parents[2])
        env = {
            **os.environ,
            "TUNEBRIDGE_LAUNCHED": "1",
            "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p),
        }
        proc = subprocess.Popen(cmd, env=env, start_new_session=True, preexec_fn=_parent_death_signal(signal.SIGTERM))
        progress, offset, stopping = control / "progress.jsonl", 0, False
        try:
            while True:
                try:
                    proc.wait(timeout=0.25)
                    break
                except subprocess.TimeoutExpired:
                    pass
                offset = _relay(progress, offset, on_progress)
                if not stopping and should_stop():
                    (control / "stop").touch()
                    stopping = True
            _relay(progress, offset, on_progress)
        except BaseException:  # a second Ctrl-C, or an error here: the ranks must not run on
            proc.kill()  # the ranks die with it (parent-death signal)
            proc.wait()
            raise
        errors = sorted(control.glob("error-rank-*.json"), key=lambda p: p.stat().st_mtime)
        first_error = json.loads(errors[0].read_text()) if errors else None  # the cause; later ones often echo it
    summary_file = run_dir / "summary.json"
    if summary_file.is_file() and summary_file.stat().st_mtime >= started:
        summary = json.loads(summary_file.read_text())
        return TrainResult(run_dir, summary["status"], summary)
    if proc.returncode == 0:  # a node other than rank 0's: the run's outputs are written there
        status = "cancelled" if stopping else "succeeded"
        return TrainResult(run_dir, status, {"status": status, "run_dir": str(run_dir), "remote": True})
    if first_error:
        kinds = {k.__name__: k for k in _ERRORS}
        raise kinds.get(first_error["kind"] or "", TunebridgeError)(first_error["text"])
    raise TunebridgeError(
        f"{config.launcher} exited with code {proc.returncode} before the run finished; "
        f"the ranks' output is above (resume with: tunebridge train --resume {run_dir})"
    )


def _relay(path: Path, offset: int, on_progress: Callable[[dict[str, Any]], None] | None) -> int:
    """Pass on each complete progress line written since `offset`; returns the new offset."""
    if not path.exists():
        return offset
    with path.open("rb") as handle:
        handle.seek(offset)
        chunk = handle.read()
    done = chunk.rfind(b"\n") + 1
    for line in chunk[:done].splitlines():
        if line.strip() and on_progress is not None:
            on_progress(json.loads(line))
    return offset + done


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _parent_death_signal(signum: int) -> Callable[[], None] | None:
    """A preexec function asking Linux to send `signum` to the child when its parent dies."""
    if not sys.platform.startswith("linux"):
        return None

    def arm() -> None:
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signum)

    return arm


def main(argv: list[str] | None = None) -> int:
    """Entry point of each rank (started by the launcher, not by hand)."""
    parser = argparse.ArgumentParser(prog="python -m backend.training.launch")
    parser.add_argument("run_dir")
    parser.add_argument("--control", required=True, help="folder shared with the parent: progress, stop, errors")
    parser.add_argument("--progress-bar", action="store_true")
    args = parser.parse_args(argv)
    arm = _parent_death_signal(signal.SIGKILL)
    launcher = os.getppid()
    if arm is not None:
        arm()
        if os.getppid() != launcher:  # the launcher died before we armed
            return 1
    requested = threading.Event()  # the launcher forwards SIGTERM/SIGINT: checkpoint and stop
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: requested.set())
    control = Path(args.control)
    stop_file = control / "stop"

    def on_progress(record: dict[str, Any]) -> None:
        with (control / "progress.jsonl").open("a") as handle:
            handle.write(json.dumps(record) + "\n")

    from backend.training.recipe import Recipe, open_run

    code = 0
    try:
        config, run_dir = open_run(None, args.run_dir)
        Recipe(
            config,
            run_dir,
            resume=True,
            should_stop=lambda: requested.is_set() or stop_file.exists(),
            on_progress=on_progress,
            progress_bar=args.progress_bar,
        ).run()
    except Exception as exc:  # for the parent to raise: the nearest of _ERRORS, else TunebridgeError
        kind = next((k.__name__ for k in type(exc).__mro__ if k in _ERRORS), None)
        text = str(exc) if kind else f"{type(exc).__name__}: {exc}"
        (control / f"error-rank-{os.environ.get('RANK', '0')}.json").write_text(
            json.dumps({"kind": kind, "text": text})
        )
        traceback.print_exc()
        code = 1
    # Leave without running destructors: the gloo process group kept alive by distributed.KEEP_ALIVE would
    # otherwise be torn down at interpreter exit, where it can deadlock on the GIL.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
