"""The routes for people and scripts: `/explain` (one image, plain answers), the page at
`/`, and the Prometheus metrics at `/metrics`."""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..methods import METHODS
from ..protocol.answers import method_name, several_classes
from ..protocol.core import ServiceCore
from ..protocol.models import ModelService, explanation_payload
from ..protocol.params import ExplainParams
from .http_io import compute, upload


def site_router(core: ServiceCore) -> APIRouter:
    """`/explain`, the page and the metrics over `core`."""
    router = APIRouter()
    html = page_html(core)

    @router.post("/explain", tags=["convenience"])
    async def explain(request: Request) -> Response:
        """One image (multipart field `image`, or the raw body) → E with the top classes, a
        list of E for several classes, or the overlay PNG with `Accept: image/png`.
        Query: model, method, preset, target (repeatable), top_k, channels, samples,
        map_size (original, input, or the longer side's cap in pixels)."""
        query = request.query_params
        service = core.model(query.get("model") or core.default_model)
        raw: dict[str, Any] = dict(query)
        if len(query.getlist("target")) > 1:
            raw["target"] = query.getlist("target")
        params = core.params(service, raw)
        image = await upload(request)
        if "image/png" in request.headers.get("accept", ""):
            return await overlay(request, core, service, image, params)
        return await explained(request, core, service, image, params)

    @router.post("/picture", tags=["convenience"])
    async def picture(request: Request) -> Response:
        """One image (multipart field `image`, or the raw body) as the model reads it: an
        RGB PNG of at most 1024 pixels a side, for files a browser cannot show (DICOM,
        TIFF, .npy, many bands); header `X-Image-Size` gives the image's own HxW.
        Query: model, frame."""
        query = request.query_params
        service = core.model(query.get("model") or core.default_model)
        params = core.params(service, dict(query))
        image = await upload(request)
        png, (height, width) = await compute(
            request, core, service, lambda t: service.picture_png(image, params, t), masked=False
        )
        return Response(png, media_type="image/png", headers={"X-Image-Size": f"{height}x{width}"})

    @router.get("/", include_in_schema=False)
    async def page() -> HTMLResponse:
        """A page to drop an image and see its maps (self-contained, works offline)."""
        return HTMLResponse(html)

    @router.get("/metrics", tags=["ops"])
    async def prometheus() -> Response:
        """Prometheus metrics."""
        return Response(generate_latest(core.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return router


def page_html(core: ServiceCore) -> str:
    """The page, with the models, the methods and the default method written in."""
    config = json.dumps(
        {
            "models": list(core.models),
            "methods": list(METHODS),
            "method": method_name(core.limits.defaults),
        }
    ).replace("</", "<\\/")
    return (
        files("scorecam_onnx.serve")
        .joinpath("page.html")
        .read_text(encoding="utf-8")
        .replace("__CONFIG__", config)
    )


async def overlay(
    request: Request, core: ServiceCore, service: ModelService, image: bytes, params: ExplainParams
) -> Response:
    """The overlay PNG of the first class, its class and forwards in headers."""
    png, first = await compute(
        request, core, service, lambda t: service.overlay_png(image, params, t)
    )
    core.counted(service, [[first]])
    return Response(
        png,
        media_type="image/png",
        headers={"X-Class-Id": str(first.class_id), "X-Forwards": str(first.forwards)},
    )


async def explained(
    request: Request, core: ServiceCore, service: ModelService, image: bytes, params: ExplainParams
) -> JSONResponse:
    """E with the top classes, or a list of E where several classes were asked for."""
    predictions, found = await compute(
        request, core, service, lambda t: service.explain([image], [params], t)
    )
    core.counted(service, found)
    payloads = [explanation_payload(e, params.map_size) for e in found[0]]
    if several_classes(params):
        return JSONResponse(payloads)
    return JSONResponse({**payloads[0], "top": predictions[0]["top"]})
