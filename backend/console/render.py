"""Pages from the templates: escaped by default (a document's `<script>` shows as text), with headers
that keep the console's pages to its own scripts and styles."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from jinja2 import Undefined

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
HEADERS = {
    # Only this server's scripts, styles and images: an injected inline script would not run.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def page(request: Request, name: str, *, status: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("error", request.query_params.get("error"))
    context.setdefault("notice", request.query_params.get("notice"))
    response = templates.TemplateResponse(request, name, context, status_code=status)
    response.headers.update(HEADERS)
    return response


def back(path: str, *, error: str | None = None, notice: str | None = None) -> RedirectResponse:
    """After a form: to `path`, with what happened shown there."""
    if error is not None:
        path += f"?error={quote(error[:500])}"
    elif notice is not None:
        path += f"?notice={quote(notice[:500])}"
    return RedirectResponse(path, status_code=303)


def seconds(value: Any) -> str:
    """12.5 -> '12 s', 125 -> '2 min 5 s', None -> '–'."""
    if value is None or isinstance(value, Undefined):
        return "–"
    value = int(round(float(value)))
    if value < 60:
        return f"{value} s"
    minutes, rest = divmod(value, 60)
    return f"{minutes} min {rest} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def number(value: Any, digits: int = 3) -> str:
    if isinstance(value, Undefined):
        value = None
    if isinstance(value, bool) or value is None:
        return "–" if value is None else str(value)
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def model_name(value: Any) -> str:
    """A base model as people name it: a hub id as it is, a model folder by its name (not its server path)."""
    text = str(value or "")
    return Path(text).name if text.startswith("/") else text


templates.env.filters.update(seconds=seconds, number=number, model_name=model_name)
