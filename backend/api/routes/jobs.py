"""Jobs: start a training job on a dataset, follow its progress, cancel it."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, ConfigDict, Field

from backend.api.deps import Authorized, EngineDep
from backend.services import jobs as service

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], dependencies=[Authorized])


class JobIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["train"] = Field(description="What to run.")
    dataset: str = Field(description="Name of an uploaded dataset.")
    hyperparameters: dict[str, Any] = Field(default_factory=dict,
                                            description="TrainConfig options (`tunebridge train --help`), e.g. "
                                                        "{\"epochs\": 3, \"model\": \"smollm2-135m\"}.")


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


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=JobOut)
def create(job: JobIn, engine: EngineDep) -> dict[str, Any]:
    try:
        return service.create_job(engine=engine, kind=job.kind, dataset=job.dataset, params=job.hyperparameters)
    except ValueError as exc:  # an invalid training option (a missing dataset is a 404, mapped in main.py)
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc


@router.get("", response_model=list[JobOut])
def list_all(engine: EngineDep) -> list[dict[str, Any]]:
    return service.list_jobs(engine=engine)


@router.get("/{job_id}", response_model=JobOut)
def get(job_id: str, engine: EngineDep) -> dict[str, Any]:
    return service.get_job(engine=engine, job_id=job_id)


@router.post("/{job_id}/cancel", response_model=JobOut)
def cancel(job_id: str, engine: EngineDep) -> dict[str, Any]:
    return service.request_cancel(engine=engine, job_id=job_id)


@router.post("/{job_id}/resume", response_model=JobOut)
def resume(job_id: str, engine: EngineDep) -> dict[str, Any]:
    return service.resume_job(engine=engine, job_id=job_id)
