"""The one exception a request's handling raises: a status (HTTP's numbers, which the gRPC
and Triton transports map to their own codes) and a one-line message."""

from __future__ import annotations


class ApiError(Exception):
    """A request that cannot be answered as asked; becomes ``{"error": message}``.

    Args:
        status: the HTTP status (400 bad payload, 404 unknown, 413 too large, 422 bad
            parameter value, 499 client gone, 503 busy, 504 timed out).
        message: one line, shown to the client as it is.
        headers: extra response headers (``Retry-After`` for 503).
    """

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = " ".join(message.split())
        self.headers = headers or {}
