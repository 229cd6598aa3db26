"""Worker process: claims jobs from the database and runs them with the training core.

Each job trains on a snapshot of its dataset taken when it first starts, in `data_dir/jobs/<id>/`,
so a job resumed after a crash replays exactly the same data. A heartbeat thread renews the job's
lease and relays cancel requests; a worker asked to shut down checkpoints and puts its job back in
the queue (it is not a user cancel).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, make_url

from backend import cores
from backend.services import adapters, callbacks, datasets, jobs, webhooks, workers
from backend.settings import Settings
from backend.storage.engine import make_engine
from backend.storage.migrations import migrate

log = logging.getLogger("tunebridge.worker")


class _Heartbeat(threading.Thread):
    def __init__(self, *, engine: Engine, job_id: str, owner: str, lease_s: float):
        super().__init__(daemon=True)
        self.engine, self.job_id, self.owner, self.lease_s = engine, job_id, owner, lease_s
        self.progress: dict[str, Any] | None = None
        self._logged: dict[str, Any] | None = None
        self.cancel = threading.Event()
        self.done = threading.Event()

    def beat(self) -> None:
        progress = self.progress
        if jobs.heartbeat(engine=self.engine, job_id=self.job_id, owner=self.owner, lease_s=self.lease_s,
                          progress=progress, new_progress=progress is not self._logged):
            self.cancel.set()
        self._logged = progress

    def run(self) -> None:
        while not self.done.wait(min(2.0, self.lease_s / 3)):
            self.beat()


class _Stopped(Exception):
    """An eval job stopped between batches (cancel, or worker shutdown)."""


def run_job(job: dict[str, Any], *, engine: Engine, settings: Settings, owner: str, lease_s: float,
            shutdown: threading.Event) -> str:
    run_dir = settings.data_dir / "jobs" / job["id"]
    heart = _Heartbeat(engine=engine, job_id=job["id"], owner=owner, lease_s=lease_s)
    heart.start()
    try:
        if job["kind"] == "eval":
            return _run_eval(job, engine=engine, settings=settings, owner=owner, run_dir=run_dir, heart=heart,
                             shutdown=shutdown)
        return _run_train(job, engine=engine, settings=settings, owner=owner, run_dir=run_dir, heart=heart,
                          shutdown=shutdown)
    except _Stopped:
        status = "cancelled" if heart.cancel.is_set() else "queued"  # shutdown: run again later
        jobs.finish(engine=engine, job_id=job["id"], owner=owner, status=status)
        return status
    except Exception as exc:  # noqa: BLE001 - the job fails with the reason; the worker carries on
        log.exception("job %s failed", job["id"])
        jobs.finish(engine=engine, job_id=job["id"], owner=owner, status="failed", error=f"{type(exc).__name__}: {exc}")
        return "failed"
    finally:
        heart.done.set()


def _snapshot(engine: Engine, settings: Settings, job: dict[str, Any], run_dir: Path) -> Path:
    """The dataset's committed examples when the job first started (a resumed job replays exactly this)."""
    snapshot = run_dir / "data.jsonl"
    if not snapshot.is_file():
        run_dir.mkdir(parents=True, exist_ok=True)
        partial = run_dir / "data.jsonl.part"
        partial.write_bytes(datasets.read_committed(engine=engine, data_dir=settings.data_dir, name=job["dataset"]))
        partial.replace(snapshot)
    return snapshot


def _run_train(job: dict[str, Any], *, engine: Engine, settings: Settings, owner: str, run_dir: Path,
               heart: _Heartbeat, shutdown: threading.Event) -> str:
    from backend.training.config import TrainConfig
    from backend.training.trainer import train

    summary_file = run_dir / "summary.json"
    stop = lambda: heart.cancel.is_set() or shutdown.is_set()  # noqa: E731
    if (run_dir / "config.json").is_file():
        done = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
        if done.get("status") == "succeeded":  # finished before the previous worker could record it
            return _record(engine, settings, job, owner, done)
        result = train(None, resume_dir=run_dir, progress_bar=False, should_stop=stop,
                       on_progress=lambda p: setattr(heart, "progress", p))
    else:
        snapshot = _snapshot(engine, settings, job, run_dir)
        params = dict(job["params"])
        schema = jobs.check_schema(params.pop("schema", None))  # a name or an inline object, never a path
        if schema is not None:
            (run_dir / "schema.json").write_text(json.dumps(schema))
            params["schema"] = str(run_dir / "schema.json")
        config = TrainConfig.from_dict({"model": settings.default_base_model, "threads": settings.worker_threads,
                                        **params, "data": [str(snapshot)], "output_dir": str(run_dir.parent),
                                        "run_name": job["id"]})
        result = train(config, progress_bar=False, should_stop=stop, on_progress=lambda p: setattr(heart, "progress", p))
    heart.done.set()
    heart.beat()  # the last progress; also reads a cancel asked for while the run was finishing
    if heart.cancel.is_set():  # cancel means cancel: a run that finished all the same registers nothing
        jobs.finish(engine=engine, job_id=job["id"], owner=owner, status="cancelled",
                    result={"steps": result.summary.get("steps")})
        return "cancelled"
    if result.status == "cancelled":
        jobs.finish(engine=engine, job_id=job["id"], owner=owner, status="queued")  # shutdown: resume later
        return "queued"
    return _record(engine, settings, job, owner, result.summary)


def _run_eval(job: dict[str, Any], *, engine: Engine, settings: Settings, owner: str, run_dir: Path,
              heart: _Heartbeat, shutdown: threading.Event) -> str:
    from backend.services.evaluations import run_eval_job

    def progress(p: dict[str, Any]) -> None:
        heart.progress = p
        if heart.cancel.is_set() or shutdown.is_set():
            raise _Stopped

    snapshot = _snapshot(engine, settings, job, run_dir)
    result = run_eval_job(job, engine=engine, run_dir=run_dir, data=snapshot, threads=settings.worker_threads,
                          default_base=settings.default_base_model, on_progress=progress)
    promotion = result.get("promotion")
    if settings.vllm_url and promotion and promotion["promote"] and promotion["candidate"] != promotion["incumbent"]:
        # the alias moved: serve the new version from vLLM too (a failed push is recorded, the promotion stands)
        from backend.services.vllm_push import push_after_promotion

        result["vllm"] = push_after_promotion(settings, engine=engine, promotion=promotion)
    heart.done.set()
    heart.beat()
    jobs.finish(engine=engine, job_id=job["id"], owner=owner, status="succeeded", result=result)
    return "succeeded"


def _record(engine: Engine, settings: Settings, job: dict[str, Any], owner: str, summary: dict[str, Any]) -> str:
    keep = ("status", "run_dir", "adapter_dir", "steps", "total_steps", "tokens_per_s", "train_time_s",
            "final_loss", "val_loss", "runtime", "stopped_early")
    status = summary["status"]
    result: dict[str, Any] = {k: summary.get(k) for k in keep}
    for key in ("run_dir", "adapter_dir"):  # shown relative to the data folder: no server path in responses
        if result.get(key):
            result[key] = os.path.relpath(result[key], settings.data_dir.resolve())
    if status == "succeeded":
        version = adapters.register(engine=engine, data_dir=settings.data_dir, name=job["adapter_name"],
                                    job_id=job["id"], dataset=job["dataset"], run_dir=Path(summary["run_dir"]),
                                    summary=summary)
        result["adapter"] = version["id"]
        if job.get("follow_up"):  # eval-gated promotion of the new version
            options = dict(job["follow_up"])
            follow = jobs.create_job(engine=engine, kind="eval", dataset=options.pop("dataset"), params={
                "adapters": [version["id"]], "include_base": False, "promote": options})
            result["promotion_job"] = follow["id"]
    jobs.finish(engine=engine, job_id=job["id"], owner=owner, status=status, result=result)
    return status


def run_worker(settings: Settings, *, poll_s: float = 0.5, max_jobs: int | None = None,
               parent_pid: int | None = None) -> None:
    """Poll for jobs until SIGTERM/SIGINT (or `max_jobs` jobs are done, or the parent process
    `parent_pid` — the `tunebridge serve` that started this worker — is gone)."""
    lease_s = settings.lease_s
    engine = make_engine(settings.db_url)
    migrate(engine)
    owner = f"{socket.gethostname()}:{os.getpid()}"
    cores.claim("worker", fixed=settings.worker_threads)
    shutdown = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: shutdown.set())
    if parent_pid is not None:
        threading.Thread(target=_watch_parent, args=(parent_pid, shutdown), daemon=True).start()
    log.info("worker %s polling %s", owner, make_url(settings.db_url).render_as_string(hide_password=True))
    workers.join(engine=engine, owner=owner)
    alive = threading.Thread(target=_announce, args=(engine, owner, min(5.0, lease_s / 3), shutdown), daemon=True)
    alive.start()
    try:
        _poll(engine, settings, owner=owner, lease_s=lease_s, poll_s=poll_s, max_jobs=max_jobs, shutdown=shutdown)
    finally:
        shutdown.set()
        alive.join(timeout=10)
        workers.leave(engine=engine, owner=owner)
        engine.dispose()


def _announce(engine: Engine, owner: str, every_s: float, shutdown: threading.Event) -> None:
    while not shutdown.wait(every_s):
        try:
            workers.beat(engine=engine, owner=owner)
        except Exception:  # noqa: BLE001 - a database hiccup; the next beat tries again
            log.exception("worker heartbeat")


def _poll(engine: Engine, settings: Settings, *, owner: str, lease_s: float, poll_s: float, max_jobs: int | None,
          shutdown: threading.Event) -> None:
    done = 0
    while not shutdown.is_set() and (max_jobs is None or done < max_jobs):
        _deliver_callbacks(engine, settings)
        job = jobs.claim_next(engine=engine, owner=owner, lease_s=lease_s)
        if job is None:
            shutdown.wait(poll_s)
            continue
        log.info("job %s (%s on %s): attempt %d", job["id"], job["kind"], job["dataset"], job["attempts"])
        status = run_job(job, engine=engine, settings=settings, owner=owner, lease_s=lease_s, shutdown=shutdown)
        log.info("job %s: %s", job["id"], status)
        if job["kind"] == "train" and status != "queued":
            _retrigger(engine, settings, job["dataset"], ended=job["id"])
        done += 1
    _deliver_callbacks(engine, settings)


def _retrigger(engine: Engine, settings: Settings, dataset: str, *, ended: str) -> None:
    """Deliveries that arrived while the dataset's job ran may have passed the threshold: check again."""
    try:
        if webhooks.fed_by_webhook(engine=engine, dataset=dataset):
            job_id = webhooks.maybe_train(engine=engine, dataset=dataset, threshold=settings.train_threshold,
                                          trigger={"after_job": ended})
            if job_id:
                log.info("dataset %s passed its threshold while job %s ran: queued job %s", dataset, ended, job_id)
    except Exception:  # noqa: BLE001 - the next delivery checks again; the worker carries on
        log.exception("threshold check of dataset %s", dataset)


def _deliver_callbacks(engine: Engine, settings: Settings) -> None:
    try:
        callbacks.deliver_pending(engine=engine, secret=settings.signing_secret)
    except Exception:  # noqa: BLE001 - a broken receiver never stops the worker; the error is on the job
        log.exception("callback delivery")


def _watch_parent(parent_pid: int, shutdown: threading.Event) -> None:
    while not shutdown.wait(1.0):
        if os.getppid() != parent_pid:  # orphaned: the server died without stopping us
            log.warning("server process %d is gone; stopping", parent_pid)
            shutdown.set()


def worker_main(settings: Settings, parent_pid: int | None = None) -> None:
    """Entry point of worker processes (`tunebridge worker`, or started by `tunebridge serve`)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    run_worker(settings, parent_pid=parent_pid)

