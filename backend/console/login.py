"""Logging in and out: the API key kept in the session cookie (see `auth.py`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from backend.api.deps import EngineDep
from backend.console.auth import COOKIE, PREFIX, key_of, safe_next, same_origin
from backend.console.render import page
from backend.storage.keys import verify_key

router = APIRouter(prefix=PREFIX)


@router.get("/login")
def login_form(request: Request, engine: EngineDep, next: str | None = None) -> HTMLResponse:
    return page(request, "login.html", next=safe_next(next), logged_in=key_of(request, engine) is not None)


@router.post("/login", response_model=None)
def login(request: Request, engine: EngineDep, key: Annotated[str, Form()] = "", next: Annotated[str, Form()] = PREFIX):
    same_origin(request)
    key = key.strip()
    if not verify_key(engine=engine, key=key):
        return page(
            request,
            "login.html",
            status=401,
            next=safe_next(next),
            logged_in=False,
            error="that API key is not valid here: create one with `tunebridge keys create`",
        )
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(
        COOKIE, key, httponly=True, samesite="strict", secure=request.url.scheme == "https", path=PREFIX
    )
    return response


@router.post("/logout")
def logout(request: Request) -> RedirectResponse:
    same_origin(request)
    response = RedirectResponse(f"{PREFIX}/login", status_code=303)
    response.delete_cookie(COOKIE, path=PREFIX, httponly=True, samesite="strict")
    return response
