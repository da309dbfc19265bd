"""The ASGI application: KServe V1, Open Inference Protocol V2, `/explain`, the page, metrics.

`create_app` takes explainers by model name, so the app runs alone (`scorecam-onnx serve`),
mounted in another FastAPI app, or behind Ray Serve. The models, pools, limits and metrics
live in a `ServiceCore` (``app.state.core``), which the gRPC service shares.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any, TextIO

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi_offline import FastAPIOffline

from ..explainer import Explainer
from ..protocol.core import ServiceCore
from ..protocol.limits import Limits
from .auth import DOCS_ASSETS, ApiKeys, BearerAuth
from .errors import install_error_handlers
from .routes_site import site_router
from .routes_v1 import v1_router
from .routes_v2 import v2_router
from .telemetry import AccessLog, BodyLimit

__all__ = ["Limits", "create_app"]


def create_app(
    models: Mapping[str, Explainer | str | Path],
    limits: Limits | None = None,
    access_log: TextIO | None = None,
    classifiers: bool = False,
    api_keys: ApiKeys | None = None,
    cors_origins: Sequence[str] = (),
) -> FastAPI:
    """The explanation service for `models` (name → `Explainer` or bundle folder).

    Args:
        models: at least one; the first is the default of `/explain` and the page.
        limits: concurrency, queue, body, time and image limits. Default: `Limits()`.
        access_log: a stream for one line per request; None: no access log.
        classifiers: also serve each bundle's classifier as the V2 tensor model
            `NAME-classifier` (FP32 N×C×H×W → scores), for other explainers' forwards.
        api_keys: require one of these keys as `Authorization: Bearer KEY` (see
            `serve.auth`); None or no keys: open.
        cors_origins: browser origins allowed to call the API (CORS); none: CORS off.

    Example:
        >>> app = create_app({"efficientnet-lite0": Explainer()})
        >>> # uvicorn.run(app, port=8080)
    """
    if not models:
        raise ValueError("create_app needs at least one model")
    core = ServiceCore(models, limits, classifiers)
    # the API docs (/docs, /redoc) with their scripts from this server, not from a CDN
    app = FastAPIOffline(
        title="scorecam-onnx",
        version=package_version("scorecam-onnx"),
        description="Score-CAM explanations over KServe V1 and Open Inference Protocol V2.",
        static_url=DOCS_ASSETS,
        swagger_ui_parameters={"validatorUrl": None},
    )
    keys = api_keys or ApiKeys(environment=False)
    app.state.core = core
    app.state.api_keys = keys
    if keys.active:
        _bearer_in_schema(app)
    install_error_handlers(app, access_log)
    for router in (v1_router(core), v2_router(core), site_router(core)):
        app.include_router(router)
    _middleware(app, core, keys, cors_origins, access_log)
    return app


def _middleware(
    app: FastAPI,
    core: ServiceCore,
    keys: ApiKeys,
    cors_origins: Sequence[str],
    access_log: TextIO | None,
) -> None:
    """From the outside in: the access log, CORS (with origins), API keys, the body limit."""
    app.add_middleware(BodyLimit, limit=int(core.limits.max_body_mb * 1024 * 1024))
    app.add_middleware(BearerAuth, keys=keys)
    if cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Inference-Header-Content-Length"],
            expose_headers=["Inference-Header-Content-Length", "X-Class-Id", "X-Forwards"],
        )
    app.add_middleware(AccessLog, metrics=core.metrics, stream=access_log)


def _bearer_in_schema(app: FastAPI) -> None:
    """Declare bearer authentication in the OpenAPI schema (the docs' Authorize button)."""
    plain = app.openapi

    def with_bearer() -> dict[str, Any]:
        schema = plain()
        schema.setdefault("components", {})["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"}
        }
        schema["security"] = [{"bearer": []}]
        return schema

    app.openapi = with_bearer  # type: ignore[method-assign]
