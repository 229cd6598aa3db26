"""Datasets: upload or append JSONL examples, list datasets, read one dataset's statistics, and which
held documents to label next for one."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.datastructures import UploadFile

from backend.api.body import check_declared_length, read_capped
from backend.api.deps import Authorized, EngineDep, SettingsDep
from backend.api.routes.documents import documents_of
from backend.services import datasets as service
from backend.training.data import DatasetError

# The pattern is declared for clients and checked by the service (its error names the rule).
DatasetName = Annotated[str, PathParam(json_schema_extra={"pattern": service.NAME.pattern})]
router = APIRouter(prefix="/v1/datasets", tags=["datasets"], dependencies=[Authorized])


class AppendedOut(BaseModel):
    dataset: str
    added: int
    total: int
    formats: dict[str, int]


class DatasetOut(BaseModel):
    name: str
    examples: int
    created_at: str
    updated_at: str


@lru_cache(maxsize=4)
def _tokenizer(model: str):
    from backend.models import load_tokenizer, resolve_model

    return load_tokenizer(resolve_model(model))


def _checked(name: str) -> str:
    return service.check_name(name)


@router.post(
    "/{name}/examples",
    status_code=status.HTTP_201_CREATED,
    response_model=AppendedOut,
    summary="Append JSONL examples (raw JSON-lines body, or multipart with a 'file' field)",
)
async def append(name: DatasetName, request: Request, engine: EngineDep, settings: SettingsDep):
    _checked(name)
    limit = int(settings.max_body_mb * 1024 * 1024)
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        check_declared_length(request, limit_bytes=limit, required=True)  # the form parser reads it all
        form = await request.form()
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "multipart upload needs a 'file' field")
        body, source = await upload.read(), upload.filename or "upload"
    else:
        body, source = await read_capped(request, limit_bytes=limit), "request body"
    try:
        result = service.append_examples(
            engine=engine,
            data_dir=settings.data_dir,
            name=name,
            body=body,
            source=source,
            max_bytes=int(settings.max_dataset_mb * 1024 * 1024),
        )
    except DatasetError as exc:  # the lines at fault, each with its problem
        issues = [{"file": i.file, "line": i.line, "problem": i.message} for i in exc.issues]
        return JSONResponse(
            {"error": str(exc).split("\n")[0], "issues": issues}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT
        )
    return AppendedOut(**result.__dict__)


@router.get("", response_model=list[DatasetOut], summary="Every dataset: name, example count, created and updated")
def list_all(engine: EngineDep) -> list[dict[str, Any]]:
    return service.list_datasets(engine=engine)


@router.get("/{name}", summary="Counts, formats, fields and length statistics (characters and tokens)")
def stats(name: DatasetName, engine: EngineDep, settings: SettingsDep) -> dict[str, Any]:
    _checked(name)
    return service.dataset_stats(
        engine=engine, data_dir=settings.data_dir, name=name, tokenizer=_tokenizer(settings.default_base_model)
    )


class SuggestionOut(BaseModel):
    thread_id: str
    doc_id: str
    path: str
    doc_type: str | None
    status: str
    decision: str | None
    updated_at: str
    score: float
    reasons: list[str]
    signals: dict[str, float]


@router.get(
    "/{name}/suggestions",
    response_model=list[SuggestionOut],
    summary="Documents held for review whose corrections land here, most informative first, with score and reasons",
)
def suggestions(
    name: DatasetName,
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many documents.")] = 20,
) -> list[dict[str, Any]]:
    """The documents held for review whose corrections would land in this dataset: a correction goes to
    `<corrections dataset>-<document type>`, so `corrections-receipt` (or `acme-receipt`) takes the held
    receipts. Label them in this order and the model learns most per label: `score` (0 to 1, the mean of
    five signals) rises with low field confidence (calibrated where the adapter is), ranked candidates
    or repairs that disagree with the answer, values not found in the text, validator failures, and a
    sender (the document's first lines) unlike any of this dataset's examples. `reasons` name the
    signals behind the score, largest first. 404: no such dataset (a corrections dataset is made by its
    first correction; `GET /v1/documents?status=pending_review&order=value` orders without one); 422: a
    dataset name that ends in no document type."""
    _checked(name)
    return documents_of(request, settings, engine).suggestions(name, limit=limit)
