"""Documents: a file (or text) through the agents' graph — extract, validate, decide — and the
review of the ones held for a person. What an n8n workflow calls with one HTTP node."""

from __future__ import annotations

import threading
from typing import Annotated, Any, Literal, get_args

from fastapi import APIRouter, HTTPException, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import UploadFile

from agents.models import BatcherModel
from backend.api.body import read_capped
from backend.api.deps import Authorized, BatcherDep, EngineDep, SettingsDep
from backend.services import inference
from backend.services.documents import Documents

router = APIRouter(prefix="/v1/documents", tags=["documents"], dependencies=[Authorized])
DocType = Literal["invoice", "receipt", "bank_statement", "kyc"]


class DocumentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, description="The document's text (or upload a file as multipart `file`).")
    filename: str = Field("document.txt", description="Kept with the record (.txt or .md).")
    type: DocType | None = Field(None, description="Skip classification.")
    adapter: str | None = Field(None, description="name, name@version or name@alias; default: the base model.")
    model: str | None = None
    corrections_dataset: str | None = Field(
        None, description="Where review corrections go (`<name>-<type>`); default TUNEBRIDGE_CORRECTIONS_DATASET."
    )


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fields: dict[str, Any] = Field(
        default_factory=dict,
        description="Corrections by field or path (`total`, `vendor.name`, `line_items[1].amount`).",
    )
    decision: Literal["approve", "review", "reject"] | None = Field(
        None, description="Default: the rules on the corrected record."
    )
    note: str | None = None
    reviewer: str | None = None
    corrections_dataset: str | None = None


_CREATE = threading.Lock()


def documents_of(request: Request, settings, engine) -> Documents:
    """The process's one Documents (made on first use: the agents' store and policy)."""
    state = request.app.state
    with _CREATE:
        if getattr(state, "documents", None) is None:
            state.documents = Documents(
                data_dir=settings.data_dir,
                engine=engine,
                threshold=settings.train_threshold,
                policy=settings.policy_file,
            )
    return state.documents


@router.post("", summary="Extract, validate and decide one document (multipart `file`, or JSON `text`)")
async def create(request: Request, engine: EngineDep, settings: SettingsDep, batcher: BatcherDep) -> dict[str, Any]:
    limit = int(settings.max_body_mb * 1024 * 1024)
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form()
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "multipart: a `file` part is required")
        options = {k: v for k, v in form.items() if k != "file" and isinstance(v, str) and v}
        unknown = set(options) - {"type", "adapter", "model", "corrections_dataset"}
        if unknown:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"multipart: unknown fields {sorted(unknown)}")
        if options.get("type") and options["type"] not in get_args(DocType):
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                f"type: got {options['type']!r}, expected one of {list(get_args(DocType))}",
            )
        name, content = upload.filename or "document", await upload.read()
    else:
        try:
            body = DocumentIn.model_validate_json(await read_capped(request, limit_bytes=limit))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"invalid request: {problems}") from exc
        options = body.model_dump(exclude={"text", "filename"}, exclude_none=True)
        name, content = body.filename, body.text.encode()
    documents = documents_of(request, settings, engine)
    target, _ = inference.resolve_target(
        engine=engine,
        default_base=settings.default_base_model,
        model=options.get("model"),
        adapter=options.get("adapter"),
    )
    model = BatcherModel(batcher, target, limit=settings.max_new_tokens)
    path = documents.save_upload(name, content)
    return await _in_thread(
        documents.run,
        path,
        model=model,
        doc_type=options.get("type"),
        dataset=options.get("corrections_dataset") or settings.corrections_dataset,
    )


@router.get(
    "",
    summary="Documents, optionally by status (pending_review, done, reviewed); order=value: most informative first",
)
def list_documents(
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    status_: str | None = None,
    status_alias: Annotated[str | None, Query(alias="status", description="The same as `status_`.")] = None,
    order: Annotated[
        Literal["value"] | None,
        Query(description="value: the documents whose labels would teach the model most first; default: oldest first"),
    ] = None,
) -> list[dict[str, Any]]:
    if status_ and status_alias and status_ != status_alias:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"status: got {status_alias!r} and status_ {status_!r}; give one"
        )
    return documents_of(request, settings, engine).list(
        status_ or status_alias, order=order, corrections_dataset=settings.corrections_dataset
    )


@router.get("/{doc_id}", summary="One document's record (fields, confidence, grounding, decision, review)")
def get_document(doc_id: str, request: Request, engine: EngineDep, settings: SettingsDep) -> dict[str, Any]:
    return documents_of(request, settings, engine).get(doc_id)


@router.post("/{doc_id}/review", summary="Finish a review: corrections and/or a decision")
def review(doc_id: str, body: ReviewIn, request: Request, engine: EngineDep, settings: SettingsDep) -> dict[str, Any]:
    answer = body.model_dump(exclude={"corrections_dataset"})
    return documents_of(request, settings, engine).review(
        doc_id, answer, dataset=body.corrections_dataset or settings.corrections_dataset
    )


async def _in_thread(fn, *args, **kwargs):
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(fn, *args, **kwargs)
