"""The ASGI application: KServe V1, Open Inference Protocol V2, `/explain`, the page, metrics.

`create_app` takes explainers by model name, so the app runs alone (`scorecam-onnx serve`),
mounted in another FastAPI app, or behind Ray Serve.
"""

from __future__ import annotations

import base64
import binascii
import json
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version as package_version
from importlib.resources import files
from pathlib import Path
from typing import Any, TextIO, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException

from ..cam.methods import METHODS
from ..explainer import Explainer
from ..images import DEFAULT_MAX_PIXELS
from ..protocol.errors import ApiError
from ..protocol.models import OUTPUTS, ClassifierService, ModelService, explanation_payload
from ..protocol.params import ExplainParams, parse_params
from ..protocol.ticket import Ticket
from ..runners.remote import RemoteError
from .auth import DOCS_ASSETS, ApiKeys, BearerAuth
from .pool import WorkPool
from .telemetry import AccessLog, BodyLimit, BodyTooLarge, Metrics
from .v2 import HEADER, encode_response, json_object, parse_request, parse_tensor_request

T = TypeVar("T")


@dataclass(frozen=True)
class Limits:
    """How much work the service accepts (SPEC §5).

    Attributes:
        max_concurrency: explanations computed at once (each already uses every core
            through ONNX Runtime's threads); predictions have as many workers of their own.
        max_queue: requests waiting for a worker, per pool; beyond, 503 with Retry-After.
        max_body_mb: request bodies above this are refused (413) before they are read.
        timeout: seconds before a request is abandoned (504) at its next batch; None: never.
        max_pixels: images announcing more pixels are refused (413) before decoding.
        defaults: explanation settings used where a request names none.
    """

    max_concurrency: int = 1
    max_queue: int = 16
    max_body_mb: float = 20.0
    timeout: float | None = 60.0
    max_pixels: int = DEFAULT_MAX_PIXELS
    defaults: ExplainParams = field(default_factory=ExplainParams)


def create_app(models: Mapping[str, Explainer | str | Path], limits: Limits | None = None,
               access_log: TextIO | None = None, classifiers: bool = False,
               api_keys: ApiKeys | None = None,
               cors_origins: Sequence[str] = ()) -> FastAPI:
    """The explanation service for `models` (name → `Explainer` or bundle folder).

    Args:
        models: at least one; the first is the default of `/explain` and the page.
        limits: concurrency, queue, body, time and image limits. Default: `Limits()`.
        access_log: a stream for one line per request; None: no access log.
        classifiers: also serve each bundle's classifier as the V2 tensor model
            `NAME-classifier` (FP32 N×3×H×W → scores), for other explainers' forwards.
        api_keys: require one of these keys as `Authorization: Bearer KEY` (see
            `serve.auth`); None or no keys: open.
        cors_origins: browser origins allowed to call the API (CORS); none: CORS off.

    Example:
        >>> app = create_app({"efficientnet-lite0": Explainer()})
        >>> # uvicorn.run(app, port=8080)
    """
    if not models:
        raise ValueError("create_app needs at least one model")
    limits = limits or Limits()
    served = {name: ModelService(name, m if isinstance(m, Explainer) else Explainer(m),
                                 limits.max_pixels) for name, m in models.items()}
    tensors = {t.name: t for t in (ClassifierService(name, s.explainer)
                                   for name, s in served.items())} if classifiers else {}
    # Predictions (one forward per image) have a pool of their own, so that they never wait
    # behind explanations that take seconds.
    pool = WorkPool(limits.max_concurrency, limits.max_queue)
    quick = WorkPool(limits.max_concurrency, limits.max_queue)
    metrics = Metrics()
    metrics.running.set_function(lambda: pool.running + quick.running)
    metrics.waiting.set_function(lambda: pool.waiting + quick.waiting)
    # the API docs (/docs, /redoc) with their scripts from this server, not from a CDN
    app = FastAPIOffline(title="scorecam-onnx", version=package_version("scorecam-onnx"),
                         description="Score-CAM explanations over KServe V1 and Open "
                                     "Inference Protocol V2.", static_url=DOCS_ASSETS,
                         swagger_ui_parameters={"validatorUrl": None})
    app.state.api_keys = api_keys or ApiKeys(environment=False)
    if app.state.api_keys.active:
        _bearer_in_schema(app)
    app.state.pools = (pool, quick)
    app.state.metrics = metrics
    app.state.models = served
    app.state.classifiers = tensors
    _errors(app, access_log)

    def model(name: str) -> ModelService:
        if name not in served:
            raise ApiError(404, f"unknown model {name!r}; this server has "
                                f"{', '.join(served)}")
        return served[name]

    async def run(service: ModelService, work: Callable[[Ticket], T], masked: bool,
                  gone: Callable[[], Any] | None, ticket: Ticket) -> T:
        """Run `work` in the explanation pool (or the prediction pool when it runs no
        masked forward), cancelled when the client goes or the timeout passes."""
        try:
            return await (pool if masked else quick).run(work, ticket, gone)
        except ApiError as exc:
            if exc.status in (499, 504):
                metrics.cancelled.labels("client gone" if exc.status == 499 else "timeout").inc()
            raise

    def ticket(service: ModelService) -> Ticket:
        return Ticket(limits.timeout, metrics.forwards.labels(service.name).inc)

    async def compute(request: Request, service: ModelService, work: Callable[[Ticket], T],
                      masked: bool = True) -> T:
        request.state.model = service.name
        issued = ticket(service)
        try:
            return await run(service, work, masked, lambda: _client_gone(request), issued)
        finally:
            request.state.forwards = issued.forwards

    # What the gRPC service shares with these routes.
    app.state.limits = limits
    app.state.model = model
    app.state.compute = lambda service, work, masked, gone: run(
        service, work, masked, gone, ticket(service))

    def counted(service: ModelService, found: list[list[Any]]) -> None:
        for per_image in found:
            for exp in per_image:
                metrics.explanations.labels(service.name, exp.method).inc()

    # KServe V1 -----------------------------------------------------------------------------
    @app.get("/v1/models", tags=["KServe V1"])
    async def v1_models() -> dict[str, list[str]]:
        """The served models."""
        return {"models": list(served)}

    @app.get("/v1/models/{name}", tags=["KServe V1"])
    async def v1_model(name: str) -> dict[str, object]:
        """Whether a model is ready."""
        return {"name": model(name).name, "ready": True}

    @app.post("/v1/models/{name}:predict", tags=["KServe V1"])
    async def v1_predict(name: str, request: Request) -> dict[str, object]:
        """Predictions: `{"instances": [{"b64": ...}, ...]}` → `{"predictions": [P, ...]}`."""
        service = model(name)
        images, _ = _v1_instances(await _json(request))
        found = await compute(request, service, lambda t: service.predict(images, t),
                              masked=False)
        return {"predictions": found}

    @app.post("/v1/models/{name}:explain", tags=["KServe V1"])
    async def v1_explain(name: str, request: Request) -> dict[str, object]:
        """Explanations: instances plus `parameters` → predictions and explanations."""
        service = model(name)
        payload = await _json(request)
        images, overrides = _v1_instances(payload)
        base = parse_params(_object(payload.get("parameters"), "parameters"), service.classes,
                            limits.defaults)
        params = [base.with_target(o.get("target"), o.get("top_k"), service.classes)
                  for o in overrides]
        predictions, found = await compute(request, service,
                                           lambda t: service.explain(images, params, t))
        counted(service, found)
        explanations = [
            [explanation_payload(e, p.map_size) for e in per_image] if p.top_k is not None
            or isinstance(p.target, list) else explanation_payload(per_image[0], p.map_size)
            for p, per_image in zip(params, found, strict=True)]
        return {"predictions": predictions, "explanations": explanations}

    # Open Inference Protocol V2 --------------------------------------------------------------
    @app.get("/v2", tags=["OIP V2"])
    async def v2_server() -> dict[str, object]:
        """Server metadata."""
        return {"name": "scorecam-onnx", "version": package_version("scorecam-onnx"),
                "extensions": ["binary_tensor_data"]}

    @app.get("/v2/health/live", tags=["OIP V2"])
    async def v2_live() -> dict[str, bool]:
        return {"live": True}

    @app.get("/v2/health/ready", tags=["OIP V2"])
    async def v2_ready() -> dict[str, bool]:
        return {"ready": True}

    @app.get("/v2/models/{name}/ready", tags=["OIP V2"])
    @app.get("/v2/models/{name}/versions/{version}/ready", tags=["OIP V2"])
    async def v2_model_ready(name: str, version: str | None = None) -> dict[str, object]:
        return {"name": name if name in tensors else model(name).name, "ready": True}

    @app.get("/v2/models/{name}", tags=["OIP V2"])
    @app.get("/v2/models/{name}/versions/{version}", tags=["OIP V2"])
    async def v2_model(name: str, version: str | None = None) -> dict[str, object]:
        """Model metadata: the `image` input and the four outputs."""
        return tensors[name].metadata() if name in tensors else model(name).metadata()

    @app.post("/v2/models/{name}/infer", tags=["OIP V2"])
    @app.post("/v2/models/{name}/versions/{version}/infer", tags=["OIP V2"])
    async def v2_infer(name: str, request: Request, version: str | None = None) -> Response:
        """Inference: `image` (BYTES [N]) → probabilities, class_id, score, saliency; only
        the outputs named are computed. JSON (base64 strings) or binary tensor data."""
        if name in tensors:
            return await classifier_infer(tensors[name], request)
        service = model(name)
        body = await request.body()
        infer = parse_request(body, request.headers.get(HEADER), OUTPUTS)
        params = parse_params(infer.parameters, service.classes, limits.defaults)
        wanted = infer.outputs or list(OUTPUTS)
        outputs = await compute(request, service,
                                lambda t: service.infer(infer.images, params, wanted, t),
                                masked="saliency" in wanted)
        if "saliency" in outputs:
            metrics.explanations.labels(service.name, params.method).inc(
                int(outputs["saliency"].shape[0] * outputs["saliency"].shape[1]))
        content, headers = encode_response(service.name, infer, outputs)
        return Response(content, headers=headers)

    async def classifier_infer(tensor: ClassifierService, request: Request) -> Response:
        batch, infer = parse_tensor_request(await request.body(), request.headers.get(HEADER),
                                            tensor.input, tensor.shape, (tensor.output,))
        request.state.model = tensor.name
        issued = ticket(served[tensor.base])
        try:
            outputs = await quick.run(lambda t: tensor.infer(batch, t), issued,
                                      lambda: _client_gone(request))
        finally:
            request.state.forwards = issued.forwards
        content, headers = encode_response(tensor.name, infer, outputs)
        return Response(content, headers=headers)

    # For people and scripts ------------------------------------------------------------------
    @app.post("/explain", tags=["convenience"])
    async def explain(request: Request) -> Response:
        """One image (multipart field `image`, or the raw body) → E with the top classes, a
        list of E for several classes, or the overlay PNG with `Accept: image/png`.
        Query: model, method, preset, target (repeatable), top_k, channels, samples,
        map_size (original, input, or the longer side's cap in pixels)."""
        query = request.query_params
        service = model(query.get("model") or next(iter(served)))
        raw = dict(query)
        if len(query.getlist("target")) > 1:
            raw["target"] = query.getlist("target")
        params = parse_params(raw, service.classes, limits.defaults)
        image = await _upload(request)
        if "image/png" in request.headers.get("accept", ""):
            png, first = await compute(request, service,
                                       lambda t: service.overlay_png(image, params, t))
            counted(service, [[first]])
            return Response(png, media_type="image/png",
                            headers={"X-Class-Id": str(first.class_id),
                                     "X-Forwards": str(first.forwards)})
        predictions, found = await compute(request, service,
                                           lambda t: service.explain([image], [params], t))
        counted(service, found)
        payloads = [explanation_payload(e, params.map_size) for e in found[0]]
        if params.top_k is not None or isinstance(params.target, list):
            return JSONResponse(payloads)
        return JSONResponse({**payloads[0], "top": predictions[0]["top"]})

    config = json.dumps({"models": list(served), "methods": list(METHODS),
                         "method": limits.defaults.method}).replace("</", "<\\/")
    html = files("scorecam_onnx.serve").joinpath("page.html").read_text(
        encoding="utf-8").replace("__CONFIG__", config)

    @app.get("/", include_in_schema=False)
    async def page() -> HTMLResponse:
        """A page to drop an image and see its maps (self-contained, works offline)."""
        return HTMLResponse(html)

    @app.get("/metrics", tags=["ops"])
    async def prometheus() -> Response:
        """Prometheus metrics."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(BodyLimit, limit=int(limits.max_body_mb * 1024 * 1024))
    app.add_middleware(BearerAuth, keys=app.state.api_keys)
    if cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins),
                           allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type",
                                          "Inference-Header-Content-Length"],
                           expose_headers=["Inference-Header-Content-Length", "X-Class-Id",
                                           "X-Forwards"])
    app.add_middleware(AccessLog, metrics=metrics, stream=access_log)
    return app


def _bearer_in_schema(app: FastAPI) -> None:
    """Declare bearer authentication in the OpenAPI schema (the docs' Authorize button)."""
    plain = app.openapi

    def with_bearer() -> dict[str, Any]:
        schema = plain()
        schema.setdefault("components", {})["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"}}
        schema["security"] = [{"bearer": []}]
        return schema

    app.openapi = with_bearer  # type: ignore[method-assign]


def _errors(app: FastAPI, stream: TextIO | None) -> None:
    """Every error becomes `{"error": "<one line>"}`; tracebacks go to the log only."""

    def reply(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse({"error": " ".join(message.split())}, status, headers=headers)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return reply(exc.status, exc.message, exc.headers)

    @app.exception_handler(BodyTooLarge)
    async def too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
        return reply(413, str(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        message = f"no such path: {request.url.path}" if exc.status_code == 404 else str(
            exc.detail)
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


async def _client_gone(request: Request) -> None:
    """Returns once the client has disconnected (the body has been read by then)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def _json(request: Request) -> dict[str, Any]:
    return json_object(await request.body())


def _object(value: Any, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ApiError(400, f"'{name}' must be an object")
    return value


def _v1_instances(payload: dict[str, Any]) -> tuple[list[bytes], list[dict[str, Any]]]:
    """Encoded images and per-instance settings (target, top_k) of a V1 request."""
    instances = payload.get("instances", payload.get("inputs"))
    if not isinstance(instances, list) or not instances:
        raise ApiError(400, "'instances' must be a non-empty list")
    images, overrides = [], []
    for n, item in enumerate(instances):
        if isinstance(item, dict) and "image" in item:
            image, extra = item["image"], {k: item.get(k) for k in ("target", "top_k")}
        else:
            image, extra = item, {}
        if not isinstance(image, dict) or not isinstance(image.get("b64"), str):
            raise ApiError(400, f"instance {n}: expected {{\"b64\": \"<base64 image file>\"}}")
        try:
            images.append(base64.b64decode(image["b64"], validate=True))
        except (binascii.Error, ValueError):
            raise ApiError(400, f"instance {n}: 'b64' is not valid base64") from None
        overrides.append(extra)
    return images, overrides


async def _upload(request: Request) -> bytes:
    """The image of a multipart upload (field `image`, or the first file) or the raw body."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form()
        upload = form.get("image")
        if upload is None or isinstance(upload, str):
            upload = next((v for v in form.values() if not isinstance(v, str)), None)
        if upload is None:
            raise ApiError(400, "the form has no image file (field 'image')")
        return await upload.read()
    return await request.body()
