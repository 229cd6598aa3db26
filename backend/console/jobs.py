"""Jobs: the list with progress and ETA, a job's page with its live curves and events, a new train
job, cancel and resume. Everything through `backend.services.jobs`, as `/v1/jobs` does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, StreamingResponse

from backend.api.deps import EngineDep, SettingsDep
from backend.api.routes.jobs import ARTIFACTS, _follow
from backend.console.auth import PREFIX, Data, Page, same_origin
from backend.console.render import back, page
from backend.errors import NotFound, TunebridgeError
from backend.services import datasets
from backend.services import jobs as service

router = APIRouter(prefix=PREFIX)


@router.get("", dependencies=[Page])
@router.get("/jobs", dependencies=[Page])
def jobs_page(request: Request, engine: EngineDep) -> HTMLResponse:
    names = [d["name"] for d in datasets.list_datasets(engine=engine)]
    return page(request, "jobs.html", jobs=service.list_jobs(engine=engine), datasets=names)


@router.post("/jobs", dependencies=[Page])
def create(
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    dataset: Annotated[str, Form()],
    hyperparameters: Annotated[str, Form()] = "{}",
    adapter_name: Annotated[str, Form()] = "",
    gate_alias: Annotated[str, Form()] = "",
    gate_dataset: Annotated[str, Form()] = "",
) -> RedirectResponse:
    same_origin(request)
    try:
        options = json.loads(hyperparameters or "{}")
        if not isinstance(options, dict):
            raise ValueError(f"a JSON object is expected, got {type(options).__name__}")
    except ValueError as exc:
        return back(f"{PREFIX}/jobs", error=f"training options: not a JSON object ({exc})")
    promote = {"alias": gate_alias.strip(), "dataset": gate_dataset.strip()} if gate_alias.strip() else None
    try:
        job = service.create_job(
            engine=engine,
            kind="train",
            dataset=dataset,
            params=service.job_params(kind="train", hyperparameters=options, options={}, job_keys={}),
            adapter_name=adapter_name.strip() or None,
            promote=promote,
            models=service.ServerModels.of(settings.default_base_model, settings.allowed_model_dirs),
        )
    except TunebridgeError as exc:
        return back(f"{PREFIX}/jobs", error=str(exc))
    return back(f"{PREFIX}/jobs/{job['id']}", notice="job queued")


@router.get("/jobs/{job_id}", dependencies=[Page])
def job_page(job_id: str, request: Request, engine: EngineDep, settings: SettingsDep) -> HTMLResponse:
    try:
        job = service.get_job(engine=engine, job_id=job_id)
    except NotFound as exc:
        return page(request, "missing.html", status=404, what=str(exc))
    events = service.list_events(engine=engine, job_id=job_id)
    folder = settings.data_dir / "jobs" / job_id
    return page(
        request,
        "job.html",
        job=job,
        events=[e for e in events if e["type"] != "progress"],
        last_seq=events[-1]["seq"] if events else 0,
        points=curve_points(folder / "metrics.jsonl", events),
        artifacts=[name for name in ARTIFACTS if (folder / name).is_file()],
        report=(folder / "report.md").read_text() if (folder / "report.md").is_file() else None,
        ended=job["status"] in service.ENDED,
    )


def curve_points(metrics: Path, events: list[dict[str, Any]]) -> list[list[Any]]:
    """[step, loss, tokens/s] per logged step: the run's metrics.jsonl (every `log_every` steps), then
    the progress events past its end (a heartbeat's worth each); the page adds to them as the job runs."""
    records = []
    if metrics.is_file():
        for line in metrics.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:  # a line being written
                continue
    records += [e["data"] for e in events if e["type"] == "progress"]
    out: list[list[Any]] = []
    for r in records:
        if isinstance(r, dict) and isinstance(r.get("step"), int) and (not out or r["step"] > out[-1][0]):
            out.append([r["step"], r.get("loss"), r.get("tokens_per_s")])
    return out


@router.post("/jobs/{job_id}/cancel", dependencies=[Page])
def cancel(job_id: str, request: Request, engine: EngineDep) -> RedirectResponse:
    same_origin(request)
    return _act(job_id, lambda: service.request_cancel(engine=engine, job_id=job_id), "cancel requested")


@router.post("/jobs/{job_id}/resume", dependencies=[Page])
def resume(job_id: str, request: Request, engine: EngineDep) -> RedirectResponse:
    same_origin(request)
    return _act(job_id, lambda: service.resume_job(engine=engine, job_id=job_id), "queued again")


def _act(job_id: str, action, done: str) -> RedirectResponse:
    try:
        action()
    except TunebridgeError as exc:
        return back(f"{PREFIX}/jobs/{job_id}", error=str(exc))
    return back(f"{PREFIX}/jobs/{job_id}", notice=done)


@router.get("/data/jobs/{job_id}", dependencies=[Data])
def job_data(job_id: str, engine: EngineDep) -> dict[str, Any]:
    return service.get_job(engine=engine, job_id=job_id)


@router.get("/data/jobs/{job_id}/events", dependencies=[Data])
def job_events(job_id: str, engine: EngineDep, after: int = 0) -> StreamingResponse:
    """The job's events after `after` as server-sent events, until it ends (the API's stream)."""
    service.get_job(engine=engine, job_id=job_id)
    return StreamingResponse(
        _follow(engine, job_id, max(0, after)),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get("/data/jobs/{job_id}/artifacts/{name}", dependencies=[Data])
def artifact(job_id: str, name: str, engine: EngineDep, settings: SettingsDep) -> FileResponse:
    service.get_job(engine=engine, job_id=job_id)
    path = settings.data_dir / "jobs" / job_id / name
    if name not in ARTIFACTS or not path.is_file():
        raise NotFound(f"job {job_id} has no {name!r}; jobs write {sorted(ARTIFACTS)}")
    return FileResponse(path, media_type=ARTIFACTS[name])
