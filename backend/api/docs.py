"""`/docs` (Swagger UI) and `/redoc` served with their scripts from this server, not from a CDN, so
they work offline and behind firewalls; the OpenAPI document declares the bearer key, so Swagger's
"Authorize" button and generated clients send it."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.staticfiles import StaticFiles

STATIC = "/docs-static"


def add_offline_docs(app: FastAPI) -> None:
    import fastapi_offline

    openapi_url = app.openapi_url
    assert openapi_url is not None, "the docs pages show the app's OpenAPI schema"
    app.mount(STATIC, StaticFiles(directory=Path(fastapi_offline.__file__).parent / "static"), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    def swagger():
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} — API",
            swagger_js_url=f"{STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{STATIC}/swagger-ui.css",
            swagger_favicon_url=f"{STATIC}/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc():
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} — API",
            redoc_js_url=f"{STATIC}/redoc.standalone.js",
            redoc_favicon_url=f"{STATIC}/favicon.png",
        )
