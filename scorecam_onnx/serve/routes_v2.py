"""The Open Inference Protocol V2 routes: server and model metadata, health, and inference
in JSON or with the binary tensor data extension."""

from __future__ import annotations

from importlib.metadata import version as package_version

from fastapi import APIRouter, Request, Response

from ..protocol.answers import method_name
from ..protocol.core import ServiceCore
from ..protocol.models import OUTPUTS, ClassifierService, ModelService
from ..protocol.v2 import HEADER, encode_response, parse_request, parse_tensor_request
from .http_io import client_gone, compute


def v2_router(core: ServiceCore) -> APIRouter:
    """The V2 routes over `core`'s explanation models and tensor models."""
    router = APIRouter(tags=["OIP V2"])
    tensors = core.classifiers

    @router.get("/v2")
    async def v2_server() -> dict[str, object]:
        """Server metadata."""
        return {
            "name": "scorecam-onnx",
            "version": package_version("scorecam-onnx"),
            "extensions": ["binary_tensor_data"],
        }

    @router.get("/v2/health/live")
    async def v2_live() -> dict[str, bool]:
        return {"live": True}

    @router.get("/v2/health/ready")
    async def v2_ready() -> dict[str, bool]:
        return {"ready": True}

    @router.get("/v2/models/{name}/ready")
    @router.get("/v2/models/{name}/versions/{version}/ready")
    async def v2_model_ready(name: str, version: str | None = None) -> dict[str, object]:
        return {"name": name if name in tensors else core.model(name).name, "ready": True}

    @router.get("/v2/models/{name}")
    @router.get("/v2/models/{name}/versions/{version}")
    async def v2_model(name: str, version: str | None = None) -> dict[str, object]:
        """Model metadata: the `image` input and the four outputs."""
        return tensors[name].metadata() if name in tensors else core.model(name).metadata()

    @router.post("/v2/models/{name}/infer")
    @router.post("/v2/models/{name}/versions/{version}/infer")
    async def v2_infer(name: str, request: Request, version: str | None = None) -> Response:
        """Inference: `image` (BYTES [N]) → probabilities, class_id, score, saliency; only
        the outputs named are computed. JSON (base64 strings) or binary tensor data."""
        if name in tensors:
            return await classifier_infer(core, tensors[name], request)
        return await model_infer(core, core.model(name), request)

    return router


async def model_infer(core: ServiceCore, service: ModelService, request: Request) -> Response:
    """An explanation model's inference: only the outputs asked for are computed."""
    body = await request.body()
    infer = parse_request(body, request.headers.get(HEADER), OUTPUTS)
    params = core.params(service, infer.parameters)
    wanted = infer.outputs or list(service.outputs)
    outputs = await compute(
        request,
        core,
        service,
        lambda t: service.infer(infer.images, params, wanted, t),
        masked="saliency" in wanted,
    )
    if "saliency" in outputs:
        core.count_explanations(
            service,
            method_name(params),
            int(outputs["saliency"].shape[0] * outputs["saliency"].shape[1]),
        )
    content, headers = encode_response(service.name, infer, outputs)
    return Response(content, headers=headers)


async def classifier_infer(
    core: ServiceCore, tensor: ClassifierService, request: Request
) -> Response:
    """A tensor model's forward, in the prediction pool: FP32 N×C×H×W in, raw outputs out."""
    batch, infer = parse_tensor_request(
        await request.body(),
        request.headers.get(HEADER),
        tensor.input,
        tensor.shape,
        tuple(tensor.outputs),
    )
    request.state.model = tensor.name
    issued = core.ticket(core.models[tensor.base])
    try:
        outputs = await core.prediction_pool.run(
            lambda t: tensor.infer(batch, t), issued, lambda: client_gone(request)
        )
    finally:
        request.state.forwards = issued.forwards
    content, headers = encode_response(tensor.name, infer, outputs)
    return Response(content, headers=headers)
