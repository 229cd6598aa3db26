"""Jobs in the database: created by the API, claimed by worker processes under a lease.

A worker holds a job while it renews the lease (heartbeats); a job whose lease ran out (its worker
was killed) is claimed again and resumes from its last checkpoint, up to MAX_ATTEMPTS, after which
it is marked failed with the reason. A job is never left "running" forever.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, text

from backend.errors import Conflict, InvalidRequest, NotFound
from backend.evaluation.config import EvalConfig
from backend.evaluation.policy import PromotionPolicy
from backend.inference.spec import ExtractionSpec
from backend.models.bundled import BUNDLED
from backend.prompts import NAMED_SCHEMAS
from backend.services.adapters import check_name as check_adapter_name
from backend.services.adapters import resolve as resolve_adapter
from backend.services.datasets import DatasetNotFoundError
from backend.storage import now_iso
from backend.training.config import TrainConfig, unknown_options

KINDS = ("train", "eval")
MAX_ATTEMPTS = 3
ENDED = ("succeeded", "failed", "cancelled")
COLUMNS = (
    "id, kind, status, dataset, params, progress, result, error, cancel_requested, attempts, created_at, "
    "updated_at, adapter_name, callback_url, callback_state, callback_attempts, callback_error, follow_up"
)


class JobNotFoundError(NotFound):
    pass


@dataclass(frozen=True)
class ServerModels:
    """What a job may name as its base model on this server: a bundled model, the service's default,
    or a folder under one of `allowed_dirs` (TUNEBRIDGE_ALLOWED_MODEL_DIRS) — never any other path."""

    default: str
    allowed_dirs: tuple[Path, ...] = ()

    @classmethod
    def of(cls, default: str, allowed_dirs: str) -> ServerModels:
        """From the settings: the default base model and TUNEBRIDGE_ALLOWED_MODEL_DIRS (':' or ',' separated)."""
        import re

        return cls(default, tuple(Path(d).resolve() for d in re.split(r"[:,]", allowed_dirs) if d.strip()))

    def check(self, model: Any, *, field: str) -> None:
        if model is None or model == self.default or (isinstance(model, str) and model in BUNDLED):
            return
        if isinstance(model, str) and model.startswith("/") and ".." not in Path(model).parts:
            if any(Path(model).is_relative_to(folder) for folder in self.allowed_dirs):
                return
        raise InvalidRequest(
            f"{field}: got {model!r}, expected a bundled model ({', '.join(sorted(BUNDLED))}) or a "
            "folder under one of TUNEBRIDGE_ALLOWED_MODEL_DIRS"
        )


def check_schema(schema: Any) -> dict[str, Any] | None:
    """A train job's extraction schema: a name (`receipt`, `invoice`) or an inline JSON Schema object,
    as the JSON Schema the worker writes for the run; a server path is never read."""
    if schema is None:
        return None
    if isinstance(schema, str) and schema in NAMED_SCHEMAS:
        return ExtractionSpec.of(schema).json_schema
    if isinstance(schema, dict):
        try:
            ExtractionSpec.of(schema)
        except (InvalidRequest, ValueError, AttributeError, TypeError) as exc:
            raise InvalidRequest(str(exc) if str(exc).startswith("schema") else f"schema: {exc}") from exc
        return schema
    raise InvalidRequest(
        f"schema: got {schema!r}, expected one of {sorted(NAMED_SCHEMAS)} or a JSON Schema object "
        "(the service reads no schema file)"
    )


def job_params(
    *, kind: str, hyperparameters: dict[str, Any], options: dict[str, Any], job_keys: Iterable[str] = ()
) -> dict[str, Any]:
    """A job's options: its `hyperparameters`, and for a train job the training `options` given beside
    the body's own keys (`job_keys`), so that a run file's keys with a `dataset` make a job's body. A
    key that is neither is refused as in a run file, with the closest one named."""
    if not options:
        return hyperparameters
    training = [f.name for f in dataclasses.fields(TrainConfig)] if kind == "train" else []
    unknown = sorted(set(options) - set(training))
    if unknown:
        message = unknown_options(unknown, known=[*job_keys, *training], what="job")
        raise InvalidRequest(message if training else f"{message}; an eval job takes its options in hyperparameters")
    twice = sorted(set(options) & set(hyperparameters))
    if twice:
        raise InvalidRequest(f"{twice}: given both in the body and in hyperparameters; give each once")
    return {**hyperparameters, **options}


def check_job_request(
    *,
    kind: str,
    params: dict[str, Any],
    adapter_name: str | None = None,
    callback_url: str | None = None,
    promote: dict[str, Any] | None = None,
    models: ServerModels | None = None,
    engine: Engine | None = None,
) -> None:
    """Every problem with a job request found now, in the caller's request, not later in a worker.
    With `models` and `engine`, what the request names is resolved against what the service owns:
    base models, and the registry's adapters."""
    if kind not in KINDS:
        raise InvalidRequest(f"kind: got {kind!r}, expected one of {list(KINDS)}")
    if not isinstance(params, dict):
        raise InvalidRequest(f"hyperparameters: got {type(params).__name__}, expected an object")
    if kind == "eval":
        config = EvalConfig.from_dict(params)
        if promote is not None:
            raise InvalidRequest("promote: for train jobs; an eval job takes promote inside its hyperparameters")
        if models is not None:
            models.check(config.model, field="hyperparameters.model")
        if engine is not None:
            for ref in config.adapters:
                try:
                    resolve_adapter(engine=engine, ref=ref)
                except NotFound as exc:
                    raise InvalidRequest(f"hyperparameters.adapters: {exc}") from exc
    else:
        reserved = sorted({"data", "output_dir", "run_name"} & set(params))
        if reserved:
            raise InvalidRequest(
                f"{reserved} are set by the service (it trains on the job's dataset, in its own folder); leave them out"
            )
        check_schema(params.get("schema"))
        options = {k: v for k, v in params.items() if k != "schema"}
        TrainConfig.from_dict({**options, "data": ["(dataset)"]})
        if models is not None:
            models.check(params.get("model"), field="hyperparameters.model")
    if promote is not None:
        options = dict(promote)
        if not isinstance(options.pop("dataset", None), str):
            raise InvalidRequest("promote.dataset: name the held-out dataset the new version is evaluated on")
        PromotionPolicy.from_dict(options)
    if adapter_name is not None:
        check_adapter_name(adapter_name)
    if callback_url is not None and not callback_url.startswith(("http://", "https://")):
        raise InvalidRequest(f"callback_url: got {callback_url!r}, expected an http:// or https:// URL")


def create_job(
    *,
    engine: Engine,
    kind: str,
    dataset: str,
    params: dict[str, Any],
    adapter_name: str | None = None,
    callback_url: str | None = None,
    promote: dict[str, Any] | None = None,
    conn: Connection | None = None,
    models: ServerModels | None = None,
) -> dict[str, Any]:
    """Queue a job. Inside `conn` (a transaction the caller holds) when given, else in its own.
    A train job with `promote` queues an eval-gated promotion of its adapter when it succeeds."""
    check_job_request(
        kind=kind,
        params=params,
        adapter_name=adapter_name,
        callback_url=callback_url,
        promote=promote,
        models=models,
        engine=engine if models is not None else None,
    )
    job_id = uuid.uuid4().hex
    with _transaction(engine, conn) as tx:
        # The first statement writes: it locks the dataset row (and SQLite's database) for the whole transaction.
        found = tx.execute(
            text(
                "UPDATE datasets SET examples_at_last_train = CASE WHEN :train THEN examples ELSE "
                "examples_at_last_train END WHERE name = :n"
            ),
            {"n": dataset, "train": kind == "train"},
        ).rowcount
        if not found:
            raise DatasetNotFoundError(f"dataset {dataset!r} does not exist; upload examples first")
        if (
            promote
            and tx.execute(text("SELECT 1 FROM datasets WHERE name = :n"), {"n": promote["dataset"]}).first() is None
        ):
            raise DatasetNotFoundError(f"promote.dataset {promote['dataset']!r} does not exist; upload it first")
        tx.execute(
            text(
                f"INSERT INTO jobs ({COLUMNS}) VALUES (:id, :kind, 'queued', :dataset, :params, NULL, NULL, "
                "NULL, 0, 0, :t, :t, :adapter, :cb, NULL, 0, NULL, :follow)"
            ),
            {
                "id": job_id,
                "kind": kind,
                "dataset": dataset,
                "params": json.dumps(params),
                "t": now_iso(),
                "adapter": (adapter_name or dataset) if kind == "train" else None,
                "cb": callback_url,
                "follow": json.dumps(promote) if promote else None,
            },
        )
        add_event(tx, job_id=job_id, type="queued", data={"kind": kind, "dataset": dataset})
    if conn is not None:
        return {"id": job_id}
    return get_job(engine=engine, job_id=job_id)


@contextmanager
def _transaction(engine: Engine, conn: Connection | None) -> Iterator[Connection]:
    if conn is not None:
        yield conn
    else:
        with engine.begin() as own:
            yield own


def add_event(conn: Connection, *, job_id: str, type: str, data: dict[str, Any]) -> None:
    """Append to the job's event log (read by `GET /v1/jobs/{id}/events`)."""
    conn.execute(
        text(
            "INSERT INTO job_events (job_id, seq, type, data, created_at) SELECT :j, COALESCE(MAX(seq), 0) + 1, "
            ":type, :data, :t FROM job_events WHERE job_id = :j"
        ),
        {"j": job_id, "type": type, "data": json.dumps(data), "t": now_iso()},
    )


def list_events(*, engine: Engine, job_id: str, after: int = 0) -> list[dict[str, Any]]:
    get_job(engine=engine, job_id=job_id)
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT seq, type, data, created_at FROM job_events WHERE job_id = :j AND seq > :a ORDER BY seq"),
            {"j": job_id, "a": after},
        ).all()
    return [{"seq": r[0], "type": r[1], "data": json.loads(r[2]), "created_at": r[3]} for r in rows]


def get_job(*, engine: Engine, job_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        row = conn.execute(text(f"SELECT {COLUMNS} FROM jobs WHERE id = :id"), {"id": job_id}).first()
    if row is None:
        raise JobNotFoundError(f"job {job_id!r} does not exist")
    job = dict(row._mapping)
    for key in ("params", "progress", "result", "follow_up"):
        job[key] = json.loads(job[key]) if job[key] else None
    job["cancel_requested"] = bool(job["cancel_requested"])
    job["callback"] = {
        "url": job.pop("callback_url"),
        "state": job.pop("callback_state"),
        "attempts": job.pop("callback_attempts"),
        "error": job.pop("callback_error"),
    }
    return job


def list_jobs(*, engine: Engine, limit: int = 100) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        ids = [r[0] for r in conn.execute(text("SELECT id FROM jobs ORDER BY created_at DESC LIMIT :n"), {"n": limit})]
    return [get_job(engine=engine, job_id=i) for i in ids]


def request_cancel(*, engine: Engine, job_id: str) -> dict[str, Any]:
    get_job(engine=engine, job_id=job_id)
    with engine.begin() as conn:
        if conn.execute(
            text(
                "UPDATE jobs SET status = 'cancelled', updated_at = :t, callback_state = CASE WHEN "
                "callback_url IS NULL THEN NULL ELSE 'pending' END, callback_next_at = 0 "
                "WHERE id = :id AND status = 'queued'"
            ),
            {"id": job_id, "t": now_iso()},
        ).rowcount:
            add_event(conn, job_id=job_id, type="cancelled", data={"while": "queued"})
        if conn.execute(
            text(
                "UPDATE jobs SET cancel_requested = 1, updated_at = :t WHERE id = :id AND "
                "status = 'running' AND cancel_requested = 0"
            ),
            {"id": job_id, "t": now_iso()},
        ).rowcount:
            add_event(conn, job_id=job_id, type="cancel_requested", data={})
    return get_job(engine=engine, job_id=job_id)


def resume_job(*, engine: Engine, job_id: str) -> dict[str, Any]:
    """Queue a cancelled or failed job again; its worker continues from the last checkpoint."""
    job = get_job(engine=engine, job_id=job_id)
    if job["status"] not in ("cancelled", "failed"):
        raise Conflict(f"job {job_id} is {job['status']}; only cancelled or failed jobs can be resumed")
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE jobs SET status = 'queued', cancel_requested = 0, error = NULL, attempts = 0, "
                "callback_state = NULL, callback_attempts = 0, callback_error = NULL, "
                "updated_at = :t WHERE id = :id"
            ),
            {"id": job_id, "t": now_iso()},
        )
        add_event(conn, job_id=job_id, type="resumed", data={"was": job["status"]})
    return get_job(engine=engine, job_id=job_id)


def claim_next(*, engine: Engine, owner: str, lease_s: float) -> dict[str, Any] | None:
    """Atomically take the oldest queued job, or a running one whose worker stopped renewing its lease."""
    now = time.time()
    with engine.begin() as conn:
        error = f"worker stopped (killed or crashed) {MAX_ATTEMPTS} times; giving up"
        given_up = (
            conn.execute(
                text(
                    "UPDATE jobs SET status = 'failed', error = :e, updated_at = :t, "
                    "callback_next_at = 0, callback_state = CASE WHEN callback_url IS NULL THEN NULL "
                    "ELSE 'pending' END WHERE status = 'running' AND lease_expires_at < :now AND "
                    "attempts >= :max RETURNING id"
                ),
                {"e": error, "t": now_iso(), "now": now, "max": MAX_ATTEMPTS},
            )
            .tuples()
            .all()
        )
        for (job_id,) in given_up:  # the first statement writes, so SQLite holds the write lock from here on
            add_event(conn, job_id=job_id, type="failed", data={"error": error})
        # PostgreSQL: rows another worker is claiming right now are skipped, not waited for (SQLite has one writer
        # at a time already). Either way the UPDATE below re-checks the status, so a job is taken exactly once.
        skip = " FOR UPDATE SKIP LOCKED" if conn.dialect.name == "postgresql" else ""
        candidates = (
            conn.execute(
                text(
                    "SELECT id FROM jobs WHERE status = 'queued' OR (status = 'running' AND "
                    f"lease_expires_at < :now) ORDER BY created_at LIMIT 5{skip}"
                ),
                {"now": now},
            )
            .tuples()
            .all()
        )
        for (job_id,) in candidates:
            taken = conn.execute(
                text(
                    "UPDATE jobs SET status = 'running', lease_owner = :o, lease_expires_at = :exp, "
                    "attempts = attempts + 1, updated_at = :t WHERE id = :id AND (status = 'queued' "
                    "OR (status = 'running' AND lease_expires_at < :now))"
                ),
                {"o": owner, "exp": now + lease_s, "t": now_iso(), "id": job_id, "now": now},
            ).rowcount
            if taken:
                attempt = conn.execute(text("SELECT attempts FROM jobs WHERE id = :id"), {"id": job_id}).scalar()
                add_event(conn, job_id=job_id, type="started", data={"worker": owner, "attempt": attempt})
                break
        else:
            return None
    return get_job(engine=engine, job_id=job_id)


def heartbeat(
    *, engine: Engine, job_id: str, owner: str, lease_s: float, progress: dict | None = None, new_progress: bool = False
) -> bool:
    """Renew the lease (and store progress; `new_progress` also logs it as an event).
    Returns True when a cancel was requested."""
    values = {"id": job_id, "o": owner, "exp": time.time() + lease_s, "t": now_iso()}
    sql = "UPDATE jobs SET lease_expires_at = :exp, updated_at = :t"
    if progress is not None:
        sql += ", progress = :p"
        values["p"] = json.dumps(progress)
    with engine.begin() as conn:
        held = conn.execute(text(sql + " WHERE id = :id AND lease_owner = :o AND status = 'running'"), values).rowcount
        if held and new_progress and progress is not None:
            add_event(conn, job_id=job_id, type="progress", data=progress)
        flag = conn.execute(text("SELECT cancel_requested FROM jobs WHERE id = :id"), {"id": job_id}).scalar()
    return bool(flag)


def finish(
    *, engine: Engine, job_id: str, owner: str, status: str, result: dict | None = None, error: str | None = None
) -> None:
    """Record how a job ended (or `queued` again, for a worker shutting down); an ended job with a
    callback_url gets its callback queued for delivery."""
    callback = "CASE WHEN callback_url IS NULL THEN NULL ELSE 'pending' END" if status in ENDED else "callback_state"
    with engine.begin() as conn:
        # A job put back by a worker shutting down was not a failed attempt: its claim is not counted.
        attempts = "attempts - 1" if status == "queued" else "attempts"
        if conn.execute(
            text(
                "UPDATE jobs SET status = :s, result = :r, error = :e, lease_owner = NULL, "
                f"lease_expires_at = NULL, updated_at = :t, callback_state = {callback}, "
                f"callback_next_at = 0, attempts = {attempts} WHERE id = :id AND lease_owner = :o"
            ),
            {
                "s": status,
                "r": json.dumps(result) if result is not None else None,
                "e": error,
                "t": now_iso(),
                "id": job_id,
                "o": owner,
            },
        ).rowcount:
            add_event(
                conn,
                job_id=job_id,
                type=status if status in ENDED else "requeued",
                data={k: v for k, v in {"result": result, "error": error}.items() if v is not None},
            )
