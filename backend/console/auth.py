"""Who may use the console: the holder of an API key (`tunebridge keys create`).

The key is entered once on the login page and kept in an HttpOnly, SameSite=Strict session cookie
(no expiry: it ends with the browser session), verified against the stored keys on every request —
a revoked key ends its sessions at once. Pages without a valid key redirect to the login page; data
calls answer 401. Forms that change state also need a same-origin `Origin` (or `Referer`) header:
SameSite=Strict keeps the cookie off cross-site requests, and the origin check refuses the rest.
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit

from fastapi import Depends, HTTPException, Request, status

from backend.api.deps import EngineDep
from backend.storage.keys import verify_key

COOKIE = "tunebridge_console"
PREFIX = "/console"


def key_of(request: Request, engine) -> str | None:
    key = request.cookies.get(COOKIE, "")
    return key if key and verify_key(engine=engine, key=key) else None


def page_user(request: Request, engine: EngineDep) -> None:
    """Pages: without a valid key, off to the login page (and back here after it)."""
    if key_of(request, engine) is None:
        back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise HTTPException(
            status.HTTP_303_SEE_OTHER, "log in first", headers={"Location": f"{PREFIX}/login?next={quote(back)}"}
        )


def data_user(request: Request, engine: EngineDep) -> None:
    """Data calls (JSON, event streams, files): 401 without a valid key."""
    if key_of(request, engine) is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "console: log in with an API key at /console/login")


def same_origin(request: Request) -> None:
    """A state-changing form must come from a console page of this server."""
    own = f"{request.url.scheme}://{request.headers.get('host', '')}"
    origin = request.headers.get("origin") or _origin_of(request.headers.get("referer", ""))
    if origin != own:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"console forms are accepted from {own} only (got origin {origin or 'none'})",
        )


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a console path of this server, never another site."""
    if target and target.startswith(PREFIX) and not target.startswith("//") and "\\" not in target:
        return target
    return PREFIX


Page = Depends(page_user)
Data = Depends(data_user)
Form = Depends(same_origin)
