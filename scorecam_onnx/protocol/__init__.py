"""What a request to an explanation model means, whatever carries it (the service's HTTP and
gRPC routes, or Triton's Python backend): its settings, its errors, its cancellation, the
predictions, explanations and V2 outputs computed for it, the KServe V1 (`v1`) and Open
Inference Protocol V2 (`v2`) payloads, and the service's limits and worker pools.

`core.ServiceCore` (the models, pools, limits and metrics every transport of the service
shares) and `metrics` need prometheus_client, the ``serve`` extra: import them from their
modules."""

from .errors import ApiError
from .limits import Limits
from .models import OUTPUTS, ClassifierService, ModelService
from .params import ExplainParams, parse_params
from .ticket import Cancelled, Ticket

__all__ = [
    "OUTPUTS",
    "ApiError",
    "Cancelled",
    "ClassifierService",
    "ExplainParams",
    "Limits",
    "ModelService",
    "Ticket",
    "parse_params",
]
