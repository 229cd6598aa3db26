"""Liveness and readiness (no API key needed)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from backend.api.deps import EngineDep, SettingsDep
from backend.services import workers

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up (no key needed)")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Ready: database and data folder reachable, a live worker holds the job queue; else 503 naming what is missing (no key needed)")
def readyz(engine: EngineDep, settings: SettingsDep) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - reported, not raised (without the URL or a path)
        checks["database"] = f"error: {type(exc).__name__}"
    store = settings.data_dir
    checks["data_dir"] = "ok" if store.is_dir() and _writable(store) else "error: the data folder is not writable"
    live = None
    if checks["database"] == "ok":
        try:
            live = workers.live(engine=engine, within_s=max(settings.lease_s, 15.0))
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            checks["workers"] = f"error: {type(exc).__name__}"
    if live is not None:
        checks["workers"] = "ok" if live else ("error: no live worker holds the job queue; jobs would wait "
                                               "(start `tunebridge worker`, or `tunebridge serve --workers N`)")
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ready" if ready else "not ready", "checks": checks, "live_workers": live},
                        status_code=200 if ready else 503)


def _writable(folder) -> bool:
    import os

    return os.access(folder, os.W_OK)
