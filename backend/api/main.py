"""Assemble the FastAPI app: storage opened and migrated once at start-up, routers included."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from backend import console, cores
from backend.api.body import BodyLimit
from backend.api.docs import add_offline_docs
from backend.api.errors import ERROR_RESPONSES, allowed_methods, error_response
from backend.api.routes import adapters, datasets, documents, health, inference, jobs, models, webhooks
from backend.errors import TunebridgeError
from backend.inference.batcher import Batcher
from backend.inference.pool import ModelPool
from backend.services.datasets import repair_datasets
from backend.settings import Settings, get_settings
from backend.storage.engine import make_engine
from backend.storage.migrations import migrate

log = logging.getLogger("tunebridge.api")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        app.state.engine = make_engine(settings.db_url)
        migrate(app.state.engine)
        repair_datasets(engine=app.state.engine, data_dir=settings.data_dir)  # logs what a crash left behind
        cores.claim("serve", fixed=settings.inference_threads).apply()
        pool = ModelPool(
            device=settings.device, max_prompt_tokens=settings.max_prompt_tokens, dtype=settings.inference_dtype
        )  # models load on first use, then stay for the process
        app.state.batcher = Batcher(
            pool,
            max_batch=settings.batch_max,
            window_s=settings.batch_window_ms / 1000,
            timeout_s=settings.request_timeout_s or None,
        )
        yield
        app.state.batcher.close()
        app.state.engine.dispose()

    app = FastAPI(
        title="tunebridge",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        summary="Fine-tune small LLMs on your labelled documents and serve them.",
    )
    add_offline_docs(app)
    app.dependency_overrides[get_settings] = lambda: settings
    app.add_middleware(
        BodyLimit,
        limit_bytes=int(settings.max_body_mb * 1024 * 1024),
        routes={("POST", "/v1/adapters"): (int(settings.max_adapter_mb * 1024 * 1024), "TUNEBRIDGE_MAX_ADAPTER_MB")},
    )
    app.include_router(health.router)
    for router in (models.router, datasets.router, jobs.router, adapters.router, inference.router, documents.router):
        app.include_router(router, responses=ERROR_RESPONSES)
    app.include_router(webhooks.router, responses={k: v for k, v in ERROR_RESPONSES.items() if k != 404})
    app.include_router(console.router)  # the web console at /console (and / redirects there)
    app.mount("/console/static", console.static_files(), name="console-static")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:  # also unknown routes, 405s
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # every method the path has (a route per method: Starlette names only one)
            headers["Allow"] = ", ".join(allowed_methods(app, request.url.path)) or headers.get("Allow", "")
        return error_response(request, exc.status_code, str(exc.detail), headers=headers)

    @app.exception_handler(TunebridgeError)
    async def known_error(request: Request, exc: TunebridgeError) -> JSONResponse:  # the error tree, mapped once
        if exc.status >= 500 and exc.status != 503:
            log.error("%s %s: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
        headers = {"Retry-After": "5"} if exc.status == 503 else None
        return error_response(request, exc.status, str(exc), headers=headers)

    @app.exception_handler(RecursionError)
    async def too_deep(request: Request, _exc: RecursionError) -> JSONResponse:
        return error_response(request, 422, "the request body is nested too deeply to read")

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [{"where": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]} for e in exc.errors()]
        return error_response(request, 422, "invalid request", details=problems)

    return app
