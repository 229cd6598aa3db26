"""Adapters: the versions every successful train job registered, and aliases that promote one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Response, status
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
    """A version as clients see it: its folder relative to the service's data folder, not a server path."""
    path = Path(record["path"])
    try:
        shown = str(path.relative_to(settings.data_dir.resolve()))
    except ValueError:
        shown = path.name
    return {**record, "path": shown}


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
