"""The Open Inference Protocol's gRPC service (ServerLive, ServerReady, ModelReady,
ServerMetadata, ModelMetadata, ModelInfer) on grpc.aio, with the stubs tritonclient ships,
over the same models, parameters, limits, queue and cancellation as the HTTP routes.

Input `image` is BYTES (encoded image files) in `raw_input_contents` (each element a 4-byte
little-endian length and its bytes) or in `contents.bytes_contents`; request parameters carry
the explanation settings; outputs come back in `raw_output_contents`. Errors are gRPC status
codes with the HTTP routes' one-line messages.
"""

from __future__ import annotations

import asyncio
import struct
from importlib.metadata import version as package_version
from typing import Any, cast

import grpc
import numpy as np
from tritonclient.grpc import service_pb2, service_pb2_grpc

from ..protocol.core import ServiceCore
from ..protocol.errors import ApiError
from ..protocol.models import OUTPUTS
from ..protocol.v2 import INPUT
from .auth import ApiKeys, grpc_interceptor

STATUS = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    499: grpc.StatusCode.CANCELLED,
    502: grpc.StatusCode.UNAVAILABLE,
    503: grpc.StatusCode.RESOURCE_EXHAUSTED,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}
_DATATYPES = {np.dtype(np.float32): "FP32", np.dtype(np.int64): "INT64"}


def _split_bytes(chunk: bytes) -> list[bytes]:
    """A BYTES tensor's elements: each a 4-byte little-endian length, then its bytes."""
    items, offset = [], 0
    while offset < len(chunk):
        if offset + 4 > len(chunk):
            raise ApiError(400, "input 'image': a BYTES element's length is cut off")
        (size,) = struct.unpack_from("<I", chunk, offset)
        offset += 4
        if offset + size > len(chunk):
            raise ApiError(400, f"input 'image': an element of {size} bytes runs past the data")
        items.append(chunk[offset : offset + size])
        offset += size
    return items


def _parameter(value: Any) -> Any:
    kind = value.WhichOneof("parameter_choice")
    return getattr(value, kind) if kind else None


def _response(request: Any, outputs: dict[str, Any]) -> Any:
    """A ModelInferResponse with `outputs` in `raw_output_contents` (little-endian)."""
    response = service_pb2.ModelInferResponse(
        model_name=request.model_name, model_version="1", id=request.id
    )
    for name, value in outputs.items():
        array = np.ascontiguousarray(value)
        response.outputs.append(
            service_pb2.ModelInferResponse.InferOutputTensor(
                name=name, datatype=_DATATYPES[array.dtype], shape=list(array.shape)
            )
        )
        response.raw_output_contents.append(array.astype(array.dtype.newbyteorder("<")).tobytes())
    return response


class InferenceServicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    """The gRPC face of a service core: its models, limits, pools and metrics, as the HTTP
    routes of `create_app` use them."""

    def __init__(self, core: ServiceCore) -> None:
        self.core = core
        self.models = core.models
        self.tensors = core.classifiers
        self.draining = False

    async def ServerLive(self, request: Any, context: Any) -> Any:
        return service_pb2.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: Any) -> Any:
        return service_pb2.ServerReadyResponse(ready=not self.draining)

    async def ModelReady(self, request: Any, context: Any) -> Any:
        known = request.name in self.models or request.name in self.tensors
        return service_pb2.ModelReadyResponse(ready=known and not self.draining)

    async def ServerMetadata(self, request: Any, context: Any) -> Any:
        return service_pb2.ServerMetadataResponse(
            name="scorecam-onnx", version=package_version("scorecam-onnx"), extensions=[]
        )

    async def ModelMetadata(self, request: Any, context: Any) -> Any:
        service = self.tensors.get(request.name) or await self._model(request.name, context)
        meta = service.metadata()

        def tensors(items: list[dict[str, Any]]) -> list[Any]:
            return [
                service_pb2.ModelMetadataResponse.TensorMetadata(
                    name=t["name"], datatype=t["datatype"], shape=t["shape"]
                )
                for t in items
            ]

        return service_pb2.ModelMetadataResponse(
            name=meta["name"],
            versions=meta["versions"],
            platform=meta["platform"],
            inputs=tensors(cast(list[dict[str, Any]], meta["inputs"])),
            outputs=tensors(cast(list[dict[str, Any]], meta["outputs"])),
        )

    async def ModelInfer(self, request: Any, context: Any) -> Any:
        try:
            if self.draining:
                raise ApiError(503, "the server is shutting down")
            if request.model_name in self.tensors:
                return await self._classifier(self.tensors[request.model_name], request)
            service = self.core.model(request.model_name)
            images = self._images(request)
            raw = {k: _parameter(v) for k, v in request.parameters.items()}
            params = self.core.params(service, raw)
            wanted = [o.name for o in request.outputs] or list(service.outputs)
            unknown = [n for n in wanted if n not in OUTPUTS]
            if unknown:
                raise ApiError(
                    400,
                    f"unknown output {unknown[0]!r}; this model has {', '.join(service.outputs)}",
                )
            gone = asyncio.Event()
            context.add_done_callback(lambda _: gone.set())
            outputs = await self.core.compute(
                service,
                lambda t: service.infer(images, params, wanted, t),
                "saliency" in wanted,
                gone.wait,
            )
        except ApiError as exc:
            code = STATUS.get(exc.status, grpc.StatusCode.INVALID_ARGUMENT)
            await context.abort(code, " ".join(exc.message.split()))
        return _response(request, {name: outputs[name] for name in wanted})

    async def _classifier(self, tensor: Any, request: Any) -> Any:
        """A tensor model's forward: FP32 N×C×H×W in `raw_input_contents`, scores out."""
        if (
            len(request.inputs) != 1
            or request.inputs[0].name != tensor.input
            or (request.inputs[0].datatype != "FP32")
            or not request.raw_input_contents
        ):
            raise ApiError(400, f"expected one FP32 input {tensor.input!r} in raw_input_contents")
        dims = list(request.inputs[0].shape)
        raw = request.raw_input_contents[0]
        if (
            len(dims) != 4
            or tuple(dims[1:]) != tensor.shape
            or dims[0] < 1
            or (len(raw) != 4 * int(np.prod(dims)))
        ):
            raise ApiError(
                400,
                f"input {tensor.input!r} must be [N, "
                f"{', '.join(map(str, tensor.shape))}] FP32 (4 bytes per "
                f"element), got {dims} in {len(raw)} bytes",
            )
        batch = np.frombuffer(raw, dtype="<f4").reshape(dims)
        outputs = await self.core.compute(
            self.models[tensor.base], lambda t: tensor.infer(batch, t), False, None
        )
        return _response(request, outputs)

    async def _model(self, name: str, context: Any) -> Any:
        try:
            return self.core.model(name)
        except ApiError as exc:
            await context.abort(STATUS[exc.status], exc.message)

    def _images(self, request: Any) -> list[bytes]:
        if len(request.inputs) != 1 or request.inputs[0].name != INPUT:
            names = ", ".join(repr(i.name) for i in request.inputs) or "none"
            raise ApiError(400, f"expected one input named {INPUT!r}, got {names}")
        spec = request.inputs[0]
        if spec.datatype != "BYTES":
            raise ApiError(400, f"input {INPUT!r} must be BYTES, got {spec.datatype}")
        if request.raw_input_contents:
            images = _split_bytes(request.raw_input_contents[0])
        else:
            images = list(spec.contents.bytes_contents)
        expected = int(np.prod(spec.shape)) if len(spec.shape) else 0
        if not images or expected != len(images):
            raise ApiError(
                400,
                f"input {INPUT!r} has shape {list(spec.shape)} but holds {len(images)} elements",
            )
        return images


async def start_grpc(
    core: ServiceCore, keys: ApiKeys, host: str, port: int, tls: tuple[bytes, bytes] | None = None
) -> tuple[Any, InferenceServicer, int]:
    """A started grpc.aio server for `core` on host:port (0: a free one), with TLS from
    (private key, certificate chain) PEM bytes when given, requiring one of `keys` when
    there are any; returns it, its servicer and the bound port."""
    limit = int(core.limits.max_body_mb * 1024 * 1024)
    server = grpc.aio.server(
        interceptors=[grpc_interceptor(keys)],
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", 1024 * 1024 * 1024),
        ],
    )
    servicer = InferenceServicer(core)
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
    address = f"{host}:{port}"
    bound = (
        server.add_secure_port(address, grpc.ssl_server_credentials([tls]))
        if tls
        else server.add_insecure_port(address)
    )
    if bound == 0:
        raise OSError(f"cannot listen on {host}:{port} for gRPC")
    await server.start()
    return server, servicer, bound
