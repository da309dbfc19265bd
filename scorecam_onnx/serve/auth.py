"""Who may call the service: API keys sent as `Authorization: Bearer KEY`.

Keys come from the command line, a file (one per line, re-read on SIGHUP) or the
environment variable SCORECAM_API_KEYS (comma-separated). They are compared in constant time
and never logged or echoed. Orchestrators' health probes stay open, and so do the pages a
browser opens by address (the page, which asks for a key before it calls the API, and the
API docs with their schema, whose Authorize button takes one): they hold no data.
"""

from __future__ import annotations

import hmac
import json
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ENVIRONMENT = "SCORECAM_API_KEYS"
HEALTH = ("/v2/health/live", "/v2/health/ready")
PAGES = ("/", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json")
DOCS_ASSETS = "/docs-assets"
# gRPC methods left open like the HTTP health routes.
GRPC_HEALTH = ("ServerLive", "ServerReady")


class ApiKeys:
    """The accepted keys (thread-safe: `reload` may run while requests are checked).

    Args:
        keys: keys given directly.
        file: a file of keys, one per line (blank lines and lines starting with # ignored).
        environment: also read SCORECAM_API_KEYS.
        protect_health: require a key on the health routes too.
    """

    def __init__(
        self,
        keys: Iterable[str] = (),
        file: str | Path | None = None,
        environment: bool = True,
        protect_health: bool = False,
    ) -> None:
        self._given = [k.strip() for k in keys if k.strip()]
        if environment:
            self._given += [
                k.strip() for k in os.environ.get(ENVIRONMENT, "").split(",") if k.strip()
            ]
        self.file = Path(file) if file else None
        self.protect_health = protect_health
        self._lock = threading.Lock()
        self._keys: tuple[bytes, ...] = ()
        self.reload()

    def reload(self) -> None:
        """Read the key file again (SIGHUP); the keys given directly stay."""
        keys = list(self._given)
        if self.file is not None:
            try:
                lines = self.file.read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise OSError(
                    f"{self.file}: cannot read the API key file: {exc.strerror}"
                ) from None
            keys += [
                line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")
            ]
        with self._lock:
            self._keys = tuple(k.encode("utf-8") for k in dict.fromkeys(keys))

    @property
    def active(self) -> bool:
        """Whether any key is configured (without one, every request is let through)."""
        return bool(self._keys)

    def accepts(self, authorization: str | bytes | None) -> bool:
        """Whether an Authorization header value carries one of the keys."""
        if authorization is None:
            return False
        value = (
            authorization.encode("latin-1") if isinstance(authorization, str) else (authorization)
        )
        scheme, _, token = value.strip().partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        token = token.strip()
        with self._lock:
            keys = self._keys
        found = False
        for key in keys:  # every key compared: no early exit
            found |= hmac.compare_digest(token, key)
        return found

    def open_path(self, path: str) -> bool:
        return (
            path in PAGES
            or path.startswith(DOCS_ASSETS + "/")
            or (path in HEALTH and not self.protect_health)
        )


class BearerAuth:
    """ASGI middleware: 401 with `WWW-Authenticate: Bearer` for an HTTP request without an
    accepted key (CORS preflights pass, so that browsers can ask)."""

    def __init__(self, app: Any, keys: ApiKeys) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if (
            scope["type"] != "http"
            or not self.keys.active
            or self.keys.open_path(scope["path"])
            or scope["method"] == "OPTIONS"
        ):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if self.keys.accepts(headers.get(b"authorization")):
            await self.app(scope, receive, send)
            return
        missing = b"authorization" not in headers
        message = (
            "this server needs an API key: send 'Authorization: Bearer KEY'"
            if missing
            else "the API key is not accepted"
        )
        body = json.dumps({"error": message}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b'Bearer realm="scorecam-onnx"'),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def grpc_interceptor(keys: ApiKeys) -> Any:
    """A grpc.aio server interceptor: UNAUTHENTICATED for a call without an accepted key in
    its `authorization` metadata (ServerLive and ServerReady stay open like the health
    routes)."""
    import grpc

    async def refuse(request: Any, context: Any) -> Any:
        await context.abort(
            grpc.StatusCode.UNAUTHENTICATED,
            "this server needs an API key: send the metadata 'authorization: Bearer KEY'",
        )

    class Interceptor(grpc.aio.ServerInterceptor):
        async def intercept_service(self, continuation: Any, details: Any) -> Any:
            method = details.method.rsplit("/", 1)[-1]
            if not keys.active or (method in GRPC_HEALTH and not keys.protect_health):
                return await continuation(details)
            metadata = dict(details.invocation_metadata or ())
            if keys.accepts(metadata.get("authorization")):
                return await continuation(details)
            return grpc.unary_unary_rpc_method_handler(refuse)

    return Interceptor()
