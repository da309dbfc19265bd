"""What the HTTP routes share: reading a request's body, JSON or upload, noticing that its
client has gone, and running its work through the service core."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import Request

from ..protocol.core import ServiceCore
from ..protocol.errors import ApiError
from ..protocol.models import ModelService
from ..protocol.ticket import Ticket
from ..protocol.v2 import json_object

T = TypeVar("T")


async def client_gone(request: Request) -> None:
    """Returns once the client has disconnected (the body has been read by then)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def body_json(request: Request) -> dict[str, Any]:
    """The request body's JSON object, or a 400 saying what is wrong with it."""
    return json_object(await request.body())


async def upload(request: Request) -> bytes:
    """The image of a multipart upload (field `image`, or the first file) or the raw body."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form()
        file = form.get("image")
        if file is None or isinstance(file, str):
            file = next((v for v in form.values() if not isinstance(v, str)), None)
        if file is None:
            raise ApiError(400, "the form has no image file (field 'image')")
        return await file.read()
    return await request.body()


async def compute(
    request: Request,
    core: ServiceCore,
    service: ModelService,
    work: Callable[[Ticket], T],
    masked: bool = True,
) -> T:
    """Run `work` for `service` in the core's pools (the prediction pool when it runs no
    masked forward), cancelled when the client goes; the access log gets the model and the
    forwards run."""
    request.state.model = service.name
    issued = core.ticket(service)
    try:
        return await core.run(work, issued, masked, lambda: client_gone(request))
    finally:
        request.state.forwards = issued.forwards
