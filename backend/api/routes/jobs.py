"""Jobs: train or evaluate on a dataset, follow progress and events, cancel, resume, fetch reports."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from backend.api.deps import Authorized, EngineDep, SettingsDep
from backend.services import jobs as service

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], dependencies=[Authorized])


class JobIn(BaseModel):
    """A job. A train job also takes its training options beside these keys, by the keys of a run file
    (`tunebridge train --config`), e.g. {"dataset": "receipts", "epochs": 3, "lora_r": 8}: a run file
    with a dataset instead of its data, output_dir and run_name, which the service sets. Any other key
    is refused, naming the closest one."""

    model_config = ConfigDict(extra="allow")  # training options, checked in the service (`job_params`)

    kind: Literal["train", "eval"] = Field(
        "train",
        description="train: fine-tune an adapter on the dataset; eval: score the "
        "base model and adapters on it (report.md, eval.json, eval.png).",
    )
    dataset: str = Field(description="Name of an uploaded dataset.")
    hyperparameters: dict[str, Any] = Field(
        default_factory=dict,
        description="train: TrainConfig options (`tunebridge train --help`), e.g. "
        '{"epochs": 3}, or the same keys beside kind and dataset. eval: {"adapters": ["receipts@2"], '
        '"include_base": true, "limit": 0, "promote": '
        '{"alias": "prod", "min_gain": 0.0, '
        '"max_field_drop": 0.05}}.',
    )
    promote: dict[str, Any] | None = Field(
        None,
        description="train only: when the job succeeds, evaluate the new "
        'version on {"dataset": ...} against the alias\'s '
        'current version and move {"alias": "prod"} to it '
        "if it is better (min_gain, max_field_drop).",
    )
    adapter_name: str | None = Field(
        None, description="Register the trained adapter under this name (default: the dataset's name)."
    )
    callback_url: str | None = Field(
        None,
        max_length=2000,
        pattern=r"^https?://",
        description="POSTed (signed) when the job ends, e.g. an n8n Wait node's resume URL.",
    )


class JobOut(BaseModel):
    id: str
    kind: str
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    dataset: str
    params: dict[str, Any]
    progress: dict[str, Any] | None
    result: dict[str, Any] | None
    error: str | None
    cancel_requested: bool
    attempts: int
    created_at: str
    updated_at: str
    adapter_name: str | None
    callback: dict[str, Any]
    follow_up: dict[str, Any] | None


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobOut,
    summary="Queue a train or eval job (validated whole; optional callback_url and promotion policy)",
)
def create(job: JobIn, engine: EngineDep, settings: SettingsDep) -> dict[str, Any]:
    return service.create_job(
        engine=engine,
        kind=job.kind,
        dataset=job.dataset,
        params=service.job_params(
            kind=job.kind,
            hyperparameters=job.hyperparameters,
            options=job.model_extra or {},
            job_keys=JobIn.model_fields,
        ),
        adapter_name=job.adapter_name,
        callback_url=job.callback_url,
        promote=job.promote,
        models=service.ServerModels.of(settings.default_base_model, settings.allowed_model_dirs),
    )


@router.get("", response_model=list[JobOut], summary="The newest 100 jobs, newest first")
def list_all(engine: EngineDep) -> list[dict[str, Any]]:
    return service.list_jobs(engine=engine)


@router.get(
    "/{job_id}", response_model=JobOut, summary="One job: status, progress (step, total, loss, tokens/s, ETA), result"
)
def get(job_id: str, engine: EngineDep) -> dict[str, Any]:
    return service.get_job(engine=engine, job_id=job_id)


@router.post(
    "/{job_id}/cancel",
    response_model=JobOut,
    summary="Cancel a job: a queued one at once, a running one after its current step; it registers nothing",
)
def cancel(job_id: str, engine: EngineDep) -> dict[str, Any]:
    return service.request_cancel(engine=engine, job_id=job_id)


@router.post(
    "/{job_id}/resume", response_model=JobOut, summary="Queue a cancelled or failed job again, from its last checkpoint"
)
def resume(job_id: str, engine: EngineDep) -> dict[str, Any]:
    return service.resume_job(engine=engine, job_id=job_id)


@router.get(
    "/{job_id}/events",
    summary="The job's events: a JSON list, or server-sent events "
    "(Accept: text/event-stream) that follow the job until it ends",
)
def events(
    job_id: str,
    request: Request,
    engine: EngineDep,
    after: Annotated[int, Query(ge=0, le=2**62, description="Only events after this sequence number.")] = 0,
):
    found = service.list_events(engine=engine, job_id=job_id, after=after)
    if "text/event-stream" not in request.headers.get("accept", ""):
        return found
    last = request.headers.get("last-event-id", "")
    start = int(last) if last.isdigit() and len(last) <= 18 else after
    return StreamingResponse(
        _follow(engine, job_id, start),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _follow(engine, job_id: str, after: int, poll_s: float = 0.5, keepalive_s: float = 15.0):
    quiet = 0.0
    while True:
        for event in service.list_events(engine=engine, job_id=job_id, after=after):
            after = event["seq"]
            yield f"id: {event['seq']}\nevent: {event['type']}\ndata: {json.dumps(event)}\n\n"
            quiet = 0.0
        if service.get_job(engine=engine, job_id=job_id)["status"] in service.ENDED and not service.list_events(
            engine=engine, job_id=job_id, after=after
        ):
            return
        time.sleep(poll_s)
        quiet += poll_s
        if quiet >= keepalive_s:
            yield ": keep-alive\n\n"
            quiet = 0.0


ARTIFACTS = {
    "report.md": "text/markdown",
    "eval.json": "application/json",
    "eval.png": "image/png",
    "loss.png": "image/png",
    "metrics.jsonl": "application/jsonl",
    "summary.json": "application/json",
}


@router.get("/{job_id}/artifacts/{name}", summary="A file the job wrote: " + ", ".join(ARTIFACTS))
def artifact(job_id: str, name: str, engine: EngineDep, settings: SettingsDep) -> FileResponse:
    service.get_job(engine=engine, job_id=job_id)
    if name not in ARTIFACTS:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"artifact {name!r} unknown; jobs write {sorted(ARTIFACTS)}")
    path = settings.data_dir / "jobs" / job_id / name
    if not path.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job_id} has no {name} (yet)")
    return FileResponse(path, media_type=ARTIFACTS[name])
