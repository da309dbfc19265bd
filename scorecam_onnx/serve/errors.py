"""Every error of the HTTP routes becomes `{"error": "<one line>"}`; tracebacks go to the
log only."""

from __future__ import annotations

import traceback
from typing import TextIO

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ..protocol.errors import ApiError
from ..runners.remote import RemoteError
from .telemetry import BodyTooLarge


def reply(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """`{"error": message}` on one line."""
    return JSONResponse({"error": " ".join(message.split())}, status, headers=headers)


def install_error_handlers(app: FastAPI, stream: TextIO | None) -> None:
    """Answer every error of `app` with `reply`; unexpected ones are 500s whose traceback
    goes to `stream` (None: nowhere)."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return reply(exc.status, exc.message, exc.headers)

    @app.exception_handler(BodyTooLarge)
    async def too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
        return reply(413, str(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        message = f"no such path: {request.url.path}" if exc.status_code == 404 else str(exc.detail)
        return reply(exc.status_code, message)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return reply(422, f"{where}: {first.get('msg')}")

    @app.exception_handler(RemoteError)
    async def remote_failed(request: Request, exc: RemoteError) -> JSONResponse:
        return reply(502, str(exc))

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        if stream is not None:
            stream.write("".join(traceback.format_exception(exc)))
        return reply(500, f"internal error ({type(exc).__name__}); see the server log")
