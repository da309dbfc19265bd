"""The explanation service (extra ``serve``): KServe V1, Open Inference Protocol V2, a web
page and Prometheus metrics over any number of bundles. The HTTP routes and the gRPC service
are transports over one `protocol.core.ServiceCore`.

>>> from scorecam_onnx import Explainer
>>> from scorecam_onnx.serve import create_app
>>> app = create_app({"efficientnet-lite0": Explainer()})   # a FastAPI (ASGI) app
"""

from __future__ import annotations

try:
    import fastapi  # noqa: F401 - checked here so that the message names the extra
    import fastapi_offline  # noqa: F401
    import prometheus_client  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        f"the service needs the 'serve' extra: pip install 'scorecam-onnx[serve]' ({exc})"
    ) from exc

from ..protocol import ApiError, ExplainParams, Limits
from .app import create_app
from .run import run_server

__all__ = ["ApiError", "ExplainParams", "Limits", "create_app", "run_server"]
