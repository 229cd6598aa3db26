"""Error bodies, one place: `{"error": "message"}` on tunebridge's own routes, and OpenAI's shape
(`{"error": {"message", "type", "param", "code"}}`) on the OpenAI-compatible ones, so the openai SDK
and LangChain show the message instead of a bare status code."""

from __future__ import annotations

import re
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

OPENAI_ROUTES = ("/v1/chat/", "/v1/models")
_CODES = {401: "invalid_api_key", 404: "model_not_found", 409: "conflict", 413: "payload_too_large"}
_PARAM = re.compile(r"^([A-Za-z_][\w.\[\]]*): ")


def error_response(
    request: Request,
    status: int,
    message: str,
    *,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    if not request.url.path.startswith(OPENAI_ROUTES):
        body: dict[str, Any] = {"error": message}
        if details is not None:
            body["details"] = details
        return JSONResponse(body, status_code=status, headers=headers)
    param = None
    if details:  # pydantic's: where (body.messages.0.role) and problem; a model check's problem names its field
        problems = [
            (d["where"].removeprefix("body").lstrip("."), d["problem"].removeprefix("Value error, ")) for d in details
        ]
        message = "; ".join(f"{where}: {problem}" if where else problem for where, problem in problems)
        param = problems[0][0] or None
    if param is None and (found := _PARAM.match(message)):
        param = found.group(1)
    kind = "server_error" if status >= 500 else "authentication_error" if status == 401 else "invalid_request_error"
    code = _CODES.get(status)
    return JSONResponse(
        {"error": {"message": message, "type": kind, "param": param, "code": code}}, status_code=status, headers=headers
    )


class ErrorOut(BaseModel):
    error: str
    details: list[dict[str, Any]] | None = None


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIErrorOut(BaseModel):
    error: OpenAIErrorDetail


_WHY = {
    400: "The body is not valid JSON",
    503: "Not answered within TUNEBRIDGE_REQUEST_TIMEOUT_S",
    401: "Missing or invalid API key",
    404: "Not found",
    409: "Conflicts with the current state",
    413: "Body or dataset too large",
    422: "Invalid request: the message names the field and what was expected",
}
# Declared on every /v1 route, so generated clients know the error bodies.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": why} for code, why in _WHY.items()
}
OPENAI_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": OpenAIErrorOut, "description": why} for code, why in _WHY.items()
}


def allowed_methods(app: Any, path: str) -> list[str]:
    """The methods the API documents for a concrete path (for a 405's Allow header)."""
    found: set[str] = set()
    for template, operations in app.openapi()["paths"].items():
        if re.fullmatch(re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)), path):
            found |= {method.upper() for method in operations}
    return sorted(found)
