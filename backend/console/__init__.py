"""The web console (`/console`): jobs, adapters, datasets and document review in a browser, for
people who do not build workflows. Server-rendered pages over the service layer, behind the API keys;
every asset is served from this package."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from backend.console import adapters, datasets, jobs, login, review

STATIC = Path(__file__).parent / "static"

router = APIRouter(include_in_schema=False)
for part in (login.router, jobs.router, adapters.router, datasets.router, review.router):
    router.include_router(part)


@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/console", status_code=307)


def static_files() -> StaticFiles:
    """The console's CSS and JavaScript (no CDN: the console works offline)."""
    return StaticFiles(directory=STATIC)
