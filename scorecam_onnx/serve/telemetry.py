"""The access log with its request metrics, and the request-body limit (plain ASGI
middleware)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TextIO

from ..protocol.metrics import Metrics

Scope = dict[str, Any]
ASGIApp = Callable[..., Any]


def _route(scope: Scope) -> str:
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"


class AccessLog:
    """One line per request on `stream`: method, path, status, ms, model, forwards."""

    def __init__(self, app: ASGIApp, metrics: Metrics, stream: TextIO | None) -> None:
        self.app = app
        self.metrics = metrics
        self.stream = stream

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        state = scope.setdefault("state", {})
        try:
            await self.app(scope, receive, send_status)
        finally:
            seconds = time.perf_counter() - started
            route = _route(scope)
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.latency.labels(route).observe(seconds)
            if self.stream is not None:
                model = state.get("model", "-")
                forwards = state.get("forwards", "-")
                self.stream.write(
                    f"{scope['method']} {scope['path']} {status} "
                    f"{seconds * 1000:.1f}ms model={model} "
                    f"forwards={forwards}\n"
                )


class BodyLimit:
    """Refuse bodies above `limit` bytes: by Content-Length before reading a byte, and while
    reading when the length is not announced (chunked uploads)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        announced = headers.get(b"content-length")
        if announced is not None:
            try:
                length = int(announced)
            except ValueError:
                await _refuse(send, 400, "Content-Length is not a number")
                return
            if length > self.limit:
                await _refuse(
                    send, 413, f"the body has {length} bytes, above the limit of {self.limit} bytes"
                )
                return
        seen = 0

        async def counted() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        await self.app(scope, counted, send)


class BodyTooLarge(Exception):
    """A body without Content-Length grew past the limit while it was read."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the body is above the limit of {limit} bytes")


async def _refuse(send: Callable, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
