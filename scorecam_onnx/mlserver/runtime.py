"""MLServer runtimes (`implementation` in `model-settings.json`): `ExplainRuntime` answers V2
requests as the service's V2 explanation model does (`protocol.ModelService`), its forwards in
process or sent to the served model `parameters.extra.infer_uri`; `ClassifierRuntime` serves
the bundle's model as a tensor model. `parameters.uri` is the bundle."""

from __future__ import annotations

import asyncio
import base64
import binascii
from typing import Any

import numpy as np
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.errors import MLServerError
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri

from ..errors import ScoreCamError
from ..explainer import Explainer
from ..protocol import ApiError, Cancelled, ClassifierService, ModelService, Ticket, parse_params
from ..protocol.models import OUTPUTS
from ..request import BY_NAME
from ..runtime import Runtime

__all__ = ["ClassifierRuntime", "ExplainRuntime"]

INPUT = "image"
# Request parameters MLServer adds itself, not settings.
MLSERVER_PARAMETERS = ("headers", "content_type")


def runtime_of(extra: dict[str, Any]) -> Runtime:
    """The `Runtime` of a model's `parameters.extra`: provider, threads, infer_uri."""
    return Runtime(
        provider=str(extra.get("provider", "auto")),
        threads=int(extra.get("threads", 0)),
        model_url=extra.get("infer_uri") or None,
        remote_timeout=float(extra.get("remote_timeout", 60.0)),
    )


def mlserver_error(exc: Exception) -> MLServerError:
    """The one-line error MLServer answers: a request's own fault as 400 (gRPC
    INVALID_ARGUMENT; MLServer maps 422 to FAILED_PRECONDITION), 404 as it is, else 500."""
    if isinstance(exc, ApiError):
        status = exc.status if exc.status == 404 or exc.status >= 500 else 400
        return MLServerError(exc.message, status_code=status)
    if isinstance(exc, Cancelled):
        return MLServerError("the request timed out", status_code=504)
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return MLServerError(reason, status_code=500)


class ExplainRuntime(MLModel):
    """The explainer: BYTES `image` in, the V2 outputs asked for out (all by default)."""

    async def load(self) -> bool:
        uri = await get_model_uri(self.settings)
        extra = dict(self.settings.parameters.extra or {})
        try:
            explainer = Explainer(uri, runtime_of(extra))
        except ScoreCamError as exc:
            raise mlserver_error(exc) from None
        self.service = ModelService(self.name, explainer)
        defaults = {k: v for k, v in extra.items() if k in BY_NAME}
        self.defaults = parse_params(defaults, explainer.classes)
        self.timeout = float(extra.get("timeout", 600.0))
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        try:
            images = _images(payload)
            params = parse_params(_parameters(payload), self.service.classes, self.defaults)
            wanted = [o.name for o in payload.outputs or []] or list(self.service.outputs)
            unknown = [n for n in wanted if n not in OUTPUTS]
            if unknown:
                raise ApiError(
                    400,
                    f"unknown output {unknown[0]!r}; this model has "
                    f"{', '.join(self.service.outputs)}",
                )
            outputs = await asyncio.to_thread(
                self.service.infer, images, params, wanted, Ticket(self.timeout)
            )
        except (ApiError, Cancelled, ScoreCamError) as exc:
            raise mlserver_error(exc) from None
        return InferenceResponse(
            model_name=self.name,
            id=payload.id,
            outputs=[
                NumpyCodec.encode_output(name, np.ascontiguousarray(outputs[name]))
                for name in wanted
                if name in outputs
            ],
        )


class ClassifierRuntime(MLModel):
    """The bundle's model as a tensor model: FP32 N×C×H×W in, its outputs out."""

    async def load(self) -> bool:
        uri = await get_model_uri(self.settings)
        extra = dict(self.settings.parameters.extra or {})
        try:
            self.tensor = ClassifierService(self.name, Explainer(uri, runtime_of(extra)))
        except ScoreCamError as exc:
            raise mlserver_error(exc) from None
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        try:
            batch = _tensor(payload, self.tensor.input, self.tensor.shape)
            outputs = await asyncio.to_thread(self.tensor.infer, batch, Ticket(None))
        except (ApiError, Cancelled, ScoreCamError) as exc:
            raise mlserver_error(exc) from None
        return InferenceResponse(
            model_name=self.name,
            id=payload.id,
            outputs=[
                NumpyCodec.encode_output(name, np.ascontiguousarray(value))
                for name, value in outputs.items()
            ],
        )


def _images(payload: InferenceRequest) -> list[bytes]:
    """The encoded images of input `image`: raw bytes (gRPC) or base64 strings (REST)."""
    found = [i for i in payload.inputs if i.name == INPUT]
    if not found:
        raise ApiError(400, f"input {INPUT!r} is missing")
    data = found[0].data.root
    items = [data] if isinstance(data, str | bytes) else list(data)
    if not items:
        raise ApiError(400, f"input {INPUT!r} holds no image")
    return [_image_bytes(item, n) for n, item in enumerate(items)]


def _image_bytes(item: Any, index: int) -> bytes:
    if isinstance(item, bytes):
        return item
    if not isinstance(item, str):
        raise ApiError(400, f"image {index}: expected encoded image bytes or base64 text")
    try:
        return base64.b64decode(item, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, f"image {index}: not valid base64") from None


def _parameters(payload: InferenceRequest) -> dict[str, Any]:
    """The request's parameters, without those MLServer adds."""
    if payload.parameters is None:
        return {}
    given = payload.parameters.model_dump(exclude_none=True)
    return {k: v for k, v in given.items() if k not in MLSERVER_PARAMETERS}


def _tensor(payload: InferenceRequest, name: str, shape: tuple[int, ...]) -> np.ndarray:
    found = [i for i in payload.inputs if i.name == name]
    if not found:
        raise ApiError(400, f"input {name!r} is missing")
    try:
        batch = np.asarray(NumpyCodec.decode_input(found[0]), dtype=np.float32)
    except Exception as exc:  # noqa: BLE001 - the codec raises many kinds
        raise ApiError(400, f"input {name!r}: {exc}") from None
    if batch.ndim != 4 or tuple(batch.shape[1:]) != shape:
        raise ApiError(400, f"input {name!r} must have shape [N, {', '.join(map(str, shape))}]")
    return np.ascontiguousarray(batch)
