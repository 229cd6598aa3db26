"""Read a request body with a size cap, so an oversized upload is refused before it fills memory."""

from __future__ import annotations

from fastapi import HTTPException, Request, status


async def read_capped(request: Request, *, limit_bytes: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit_bytes:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE,
                            f"body of {int(declared)} bytes exceeds the limit of {limit_bytes} bytes "
                            "(TUNEBRIDGE_MAX_BODY_MB); split the upload")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit_bytes:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE,
                                f"body exceeds the limit of {limit_bytes} bytes (TUNEBRIDGE_MAX_BODY_MB); split the upload")
        chunks.append(chunk)
    return b"".join(chunks)
