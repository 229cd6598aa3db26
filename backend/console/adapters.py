"""Adapters: versions with their base model, data hash and metrics; aliases with their promotion
history and the gate's numbers; two versions' field F1 side by side; promote and roll back. Through
`backend.services.adapters`, as `/v1/adapters` does."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from backend.api.deps import EngineDep
from backend.console.auth import PREFIX, Page, same_origin
from backend.console.queries import alias_histories, eval_scores
from backend.console.render import back, page
from backend.errors import TunebridgeError
from backend.services import adapters as service

router = APIRouter(prefix=f"{PREFIX}/adapters", dependencies=[Page])


@router.get("")
def adapters_page(request: Request, engine: EngineDep) -> HTMLResponse:
    entries = service.list_adapters(engine=engine)
    return page(request, "adapters.html", adapters=entries, histories=alias_histories(engine=engine, entries=entries))


@router.get("/compare")
def compare(request: Request, engine: EngineDep, a: str = "", b: str = "") -> HTMLResponse:
    """Field F1 of two versions, each from the newest eval job that scored it."""
    sides = []
    for ref in (a, b):
        try:
            record = service.resolve(engine=engine, ref=ref)
        except TunebridgeError as exc:
            return page(request, "missing.html", status=404, what=str(exc))
        sides.append({"record": record, "scores": eval_scores(engine=engine, version_id=record["id"])})
    fields = sorted({f for side in sides if side["scores"] for f in side["scores"]["fields"]})
    return page(request, "compare.html", sides=sides, fields=fields)


@router.post("/{name}/aliases")
def promote(
    name: str,
    request: Request,
    engine: EngineDep,
    alias: Annotated[str, Form()],
    version: Annotated[int, Form()],
    reason: Annotated[str, Form()] = "",
) -> RedirectResponse:
    same_origin(request)
    try:
        service.set_alias(engine=engine, name=name, alias=alias.strip(), version=version, reason=reason or None)
    except TunebridgeError as exc:
        return back(f"{PREFIX}/adapters", error=str(exc))
    return back(f"{PREFIX}/adapters", notice=f"{name}@{alias.strip()} now points at version {version}")


@router.post("/{name}/aliases/{alias}/rollback")
def rollback(name: str, alias: str, request: Request, engine: EngineDep) -> RedirectResponse:
    same_origin(request)
    try:
        state = service.rollback_alias(engine=engine, name=name, alias=alias)
    except TunebridgeError as exc:
        return back(f"{PREFIX}/adapters", error=str(exc))
    return back(f"{PREFIX}/adapters", notice=f"{name}@{alias} rolled back to version {state['version']}")
