"""The KServe V1 routes: `/v1/models`, `/v1/models/NAME`, `:predict` and `:explain`."""

from __future__ import annotations

from fastapi import APIRouter, Request

from ..protocol import v1
from ..protocol.core import ServiceCore
from .http_io import body_json, compute


def v1_router(core: ServiceCore) -> APIRouter:
    """The V1 routes over `core`'s models."""
    router = APIRouter(tags=["KServe V1"])

    @router.get("/v1/models")
    async def v1_models() -> dict[str, list[str]]:
        """The served models."""
        return {"models": list(core.models)}

    @router.get("/v1/models/{name}")
    async def v1_model(name: str) -> dict[str, object]:
        """Whether a model is ready."""
        return {"name": core.model(name).name, "ready": True}

    @router.post("/v1/models/{name}:predict")
    async def v1_predict(name: str, request: Request) -> dict[str, object]:
        """Predictions: `{"instances": [{"b64": ...}, ...]}` → `{"predictions": [P, ...]}`."""
        service = core.model(name)
        images, _ = v1.instances(await body_json(request))
        found = await compute(
            request, core, service, lambda t: service.predict(images, t), masked=False
        )
        return {"predictions": found}

    @router.post("/v1/models/{name}:explain")
    async def v1_explain(name: str, request: Request) -> dict[str, object]:
        """Explanations: instances plus `parameters` → predictions and explanations."""
        service = core.model(name)
        images, params = v1.parse_explain(await body_json(request), service, core.limits.defaults)
        predictions, found = await compute(
            request, core, service, lambda t: service.explain(images, params, t)
        )
        core.counted(service, found)
        return {"predictions": predictions, "explanations": v1.explanations(params, found)}

    return router
