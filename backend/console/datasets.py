"""Datasets: counts, formats, field coverage and recent webhook deliveries; a JSONL upload whose
line errors show on the page. Through `backend.services.datasets`, as `/v1/datasets` does."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse

from backend.api.deps import EngineDep, SettingsDep
from backend.console.auth import PREFIX, Page, same_origin
from backend.console.queries import field_coverage, recent_deliveries
from backend.console.render import back, page
from backend.errors import TunebridgeError
from backend.services import datasets as service
from backend.training.data import DatasetError

router = APIRouter(prefix=f"{PREFIX}/datasets", dependencies=[Page])


@router.get("")
def datasets_page(request: Request, engine: EngineDep) -> HTMLResponse:
    return page(
        request,
        "datasets.html",
        datasets=service.list_datasets(engine=engine),
        deliveries=recent_deliveries(engine=engine),
    )


@router.get("/{name}")
def dataset_page(name: str, request: Request, engine: EngineDep, settings: SettingsDep) -> HTMLResponse:
    try:
        stats = service.dataset_stats(engine=engine, data_dir=settings.data_dir, name=name)
    except TunebridgeError as exc:
        return page(request, "missing.html", status=404, what=str(exc))
    return page(
        request,
        "dataset.html",
        stats=stats,
        coverage=field_coverage(engine=engine, data_dir=settings.data_dir, name=name),
        deliveries=recent_deliveries(engine=engine, dataset=name),
    )


@router.post("", response_model=None)
async def upload(
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    name: Annotated[str, Form()],
    file: Annotated[UploadFile, File()],
) -> HTMLResponse | RedirectResponse:
    same_origin(request)
    name = name.strip()
    try:
        result = service.append_examples(
            engine=engine,
            data_dir=settings.data_dir,
            name=name,
            body=await file.read(),
            source=file.filename or "upload",
            max_bytes=int(settings.max_dataset_mb * 1024 * 1024),
        )
    except DatasetError as exc:  # each line at fault, on the page
        return page(
            request,
            "datasets.html",
            status=422,
            datasets=service.list_datasets(engine=engine),
            deliveries=recent_deliveries(engine=engine),
            error=str(exc).split("\n")[0],
            issues=exc.issues,
            upload_name=name,
        )
    except TunebridgeError as exc:
        return back(f"{PREFIX}/datasets", error=str(exc))
    return back(f"{PREFIX}/datasets/{name}", notice=f"added {result.added} examples ({result.total} in all)")
