"""Adapters: the versions every successful train job registered (or an uploaded run folder), and aliases that
promote one."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Response, UploadFile, status
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field

from backend.api.deps import Authorized, EngineDep, SettingsDep
from backend.services import adapters as service

# Patterns declared for clients and checked by the service (its errors name the rule).
AdapterName = Annotated[str, PathParam(json_schema_extra={"pattern": service.NAME.pattern})]
AliasName = Annotated[str, PathParam(json_schema_extra={"pattern": service.ALIAS.pattern})]
router = APIRouter(prefix="/v1/adapters", tags=["adapters"], dependencies=[Authorized])


class AliasIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1, le=2**62, description="The version the alias should point at.")
    reason: str | None = Field(None, max_length=500, description="Why (kept in the alias history).")


@router.get("", summary="Every adapter name with its versions (newest first) and aliases")
def list_all(engine: EngineDep, settings: SettingsDep) -> list[dict[str, Any]]:
    return [
        {**entry, "versions": [_public(v, settings) for v in entry["versions"]]}
        for entry in service.list_adapters(engine=engine)
    ]


@router.get("/{ref}", summary="One version: name, name@version or name@alias")
def get(ref: str, engine: EngineDep, settings: SettingsDep) -> dict[str, Any]:
    return _public(service.resolve(engine=engine, ref=ref), settings)


def _public(record: dict[str, Any], settings) -> dict[str, Any]:
    return service.public(record, settings.data_dir)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    operation_id="import_adapter",
    summary="Import a trained run: a tar.gz or zip of its folder, registered as a new adapter (or version)",
)
async def upload(
    engine: EngineDep,
    settings: SettingsDep,
    file: Annotated[UploadFile, File(description="The run folder `tunebridge train` wrote, as .tar.gz or .zip.")],
    name: Annotated[str, Form(description="The adapter's name.", json_schema_extra={"pattern": service.NAME.pattern})],
    new_version: Annotated[
        bool, Form(description="Add a version to an existing name (else the name must be new).")
    ] = False,
    base_model: Annotated[
        str | None, Form(description="The base to serve it on, if not the run's (a model this server serves).")
    ] = None,
) -> dict[str, Any]:
    from starlette.concurrency import run_in_threadpool

    from backend.services import adapter_import

    record = await run_in_threadpool(
        adapter_import.import_archive,
        engine=engine,
        data_dir=settings.data_dir,
        archive=file.file,
        filename=file.filename or "upload",
        name=name,
        base_check=adapter_import.served_base(
            settings.default_base_model, settings.allowed_model_dirs, given=base_model or None
        ),
        limit_bytes=int(settings.max_adapter_mb * 1024 * 1024),
        new_version=new_version,
    )
    return _public(record, settings)


@router.put("/{name}/aliases/{alias}", summary="Point an alias (e.g. prod) at a version: promote")
def promote(name: AdapterName, alias: AliasName, body: AliasIn, engine: EngineDep) -> dict[str, Any]:
    return service.set_alias(engine=engine, name=name, alias=alias, version=body.version, reason=body.reason)


@router.get("/{name}/aliases/{alias}", summary="Where an alias points, and its history")
def alias(name: AdapterName, alias: AliasName, engine: EngineDep) -> dict[str, Any]:
    return service.alias_state(engine=engine, name=name, alias=alias)


@router.post("/{name}/aliases/{alias}/rollback", summary="Move an alias back to the version it had before")
def rollback(name: AdapterName, alias: AliasName, engine: EngineDep) -> dict[str, Any]:
    return service.rollback_alias(engine=engine, name=name, alias=alias)


@router.delete(
    "/{name}/versions/{version}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a version (refused while an alias or a queued/running job uses it)",
)
def delete(name: AdapterName, version: Annotated[int, PathParam(ge=1, le=2**62)], engine: EngineDep) -> Response:
    service.delete_version(engine=engine, name=name, version=version)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
