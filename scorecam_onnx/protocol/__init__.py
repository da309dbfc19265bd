"""What a request to an explanation model means, whatever carries it (the service's HTTP and
gRPC routes, or Triton's Python backend): its settings, its errors, its cancellation, and
the predictions, explanations and V2 outputs computed for it."""

from .errors import ApiError
from .models import OUTPUTS, ClassifierService, ModelService
from .params import ExplainParams, parse_params
from .ticket import Cancelled, Ticket

__all__ = ["OUTPUTS", "ApiError", "Cancelled", "ClassifierService", "ExplainParams",
           "ModelService", "Ticket", "parse_params"]
