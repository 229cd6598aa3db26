"""Read a request body with a size cap, so an oversized upload is refused before it fills memory."""

from __future__ import annotations

from fastapi import HTTPException, Request, status


def check_declared_length(request: Request, *, limit_bytes: int, required: bool = False) -> None:
    """Refuse a body whose Content-Length is over the limit (or missing, where `required`)."""
    declared = request.headers.get("content-length", "")
    if not declared.isdigit():
        if required:
            raise HTTPException(status.HTTP_411_LENGTH_REQUIRED, "this upload needs a Content-Length header")
        return
    if int(declared) > limit_bytes:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"body of {int(declared)} bytes exceeds the limit of {limit_bytes} bytes "
            "(TUNEBRIDGE_MAX_BODY_MB); split the upload",
        )


async def read_capped(request: Request, *, limit_bytes: int) -> bytes:
    check_declared_length(request, limit_bytes=limit_bytes)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit_bytes:
            raise HTTPException(
                status.HTTP_413_CONTENT_TOO_LARGE,
                f"body exceeds the limit of {limit_bytes} bytes (TUNEBRIDGE_MAX_BODY_MB); split the upload",
            )
        chunks.append(chunk)
    return b"".join(chunks)


class BodyLimit:
    """ASGI middleware: every request body over `limit_bytes` is refused with 413 (declared or streamed)."""

    def __init__(self, app, *, limit_bytes: int, routes: dict[tuple[str, str], tuple[int, str]] | None = None):
        """`routes`: (method, path) → (limit in bytes, its setting) for uploads with a limit of their own."""
        self.app, self.limit, self.routes = app, limit_bytes, routes or {}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit, setting = self.routes.get(
            (scope["method"], scope["path"].rstrip("/")), (self.limit, "TUNEBRIDGE_MAX_BODY_MB")
        )
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            return await self._refuse(
                scope,
                receive,
                send,
                f"body of {int(declared)} bytes exceeds the limit of {limit} bytes ({setting}); split the upload",
            )
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise HTTPException(
                        status.HTTP_413_CONTENT_TOO_LARGE, f"body exceeds the limit of {limit} bytes ({setting})"
                    )
            return message

        return await self.app(scope, counted, send)

    @staticmethod
    async def _refuse(scope, receive, send, message: str) -> None:
        from starlette.requests import Request

        from backend.api.errors import error_response

        response = error_response(Request(scope), 413, message)
        await response(scope, receive, send)
