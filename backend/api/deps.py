"""Dependencies that make route signatures read like prose: `settings: SettingsDep`, `_: Authorized`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine

from backend.inference.batcher import Batcher
from backend.settings import Settings, get_settings
from backend.storage.keys import verify_key

SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_engine(request: Request) -> Engine:
    return request.app.state.engine


EngineDep = Annotated[Engine, Depends(get_engine)]


def get_batcher(request: Request) -> Batcher:
    return request.app.state.batcher


BatcherDep = Annotated[Batcher, Depends(get_batcher)]


bearer = HTTPBearer(
    auto_error=False,
    scheme_name="apiKey",
    description="An API key from `tunebridge keys create`, sent as `Authorization: Bearer <key>`.",
)


def require_api_key(
    request: Request,
    engine: EngineDep,
    _declared: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)] = None,
) -> None:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing API key: send 'Authorization: Bearer <key>' (create one with `tunebridge keys create`)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not verify_key(engine=engine, key=key.strip()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid API key", headers={"WWW-Authenticate": "Bearer"})


Authorized = Depends(require_api_key)
