"""How much work the service accepts, whatever transport carries its requests."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..images import DEFAULT_MAX_PIXELS
from .params import ExplainParams


@dataclass(frozen=True)
class Limits:
    """How much work the service accepts.

    Past a limit a request is refused at once with a status that says why, so that memory
    and time never grow with the load.

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
