"""The service's core, shared by its transports (the FastAPI routes and the gRPC servicer):
the served models, the two worker pools, the limits and the metrics.

Needs prometheus_client (the ``serve`` extra), so the package's ``__init__`` does not import
this module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from ..explainer import Explainer
from .errors import ApiError
from .limits import Limits
from .metrics import Metrics
from .models import ClassifierService, ModelService
from .params import ExplainParams, parse_params
from .pool import WorkPool
from .ticket import Ticket

T = TypeVar("T")
Gone = Callable[[], Any]  # an awaitable factory that returns once the client has gone


class ServiceCore:
    """The explanation models by name, their classifiers as tensor models, and where and
    how long their work runs.

    Args:
        models: at least one, name → `Explainer` or bundle folder; the first is the default.
        limits: concurrency, queue, body, time and image limits. Default: `Limits()`.
        classifiers: also serve each bundle's classifier as the tensor model
            `NAME-classifier` (FP32 N×C×H×W → scores).

    Attributes:
        explanation_pool: runs the work that computes saliency maps (masked forwards).
        prediction_pool: runs the work of one forward per image (predictions, the tensor
            models), so that it never waits behind explanations that take seconds.
    """

    def __init__(
        self,
        models: Mapping[str, Explainer | str | Path],
        limits: Limits | None = None,
        classifiers: bool = False,
    ) -> None:
        if not models:
            raise ValueError("the service needs at least one model")
        self.limits = limits or Limits()
        self.models = {
            name: ModelService(
                name, m if isinstance(m, Explainer) else Explainer(m), self.limits.max_pixels
            )
            for name, m in models.items()
        }
        self.classifiers = (
            {
                t.name: t
                for t in (ClassifierService(name, s.explainer) for name, s in self.models.items())
            }
            if classifiers
            else {}
        )
        self.explanation_pool = WorkPool(self.limits.max_concurrency, self.limits.max_queue)
        self.prediction_pool = WorkPool(self.limits.max_concurrency, self.limits.max_queue)
        self.metrics = Metrics()
        pools = (self.explanation_pool, self.prediction_pool)
        self.metrics.running.set_function(lambda: sum(p.running for p in pools))
        self.metrics.waiting.set_function(lambda: sum(p.waiting for p in pools))

    @property
    def default_model(self) -> str:
        """The first model's name."""
        return next(iter(self.models))

    def model(self, name: str) -> ModelService:
        """The explanation model `name`, or a 404 naming the models there are."""
        if name not in self.models:
            raise ApiError(404, f"unknown model {name!r}; this server has {', '.join(self.models)}")
        return self.models[name]

    def params(self, service: ModelService, raw: Mapping[str, Any]) -> ExplainParams:
        """A request's checked settings for `service`, over the limits' defaults."""
        return parse_params(raw, service.classes, self.limits.defaults)

    def ticket(self, service: ModelService) -> Ticket:
        """A new request's cancellation state: the timeout, forwards counted for `service`."""
        return Ticket(self.limits.timeout, self.metrics.forwards.labels(service.name).inc)

    async def run(
        self,
        work: Callable[[Ticket], T],
        ticket: Ticket,
        masked: bool = True,
        gone: Gone | None = None,
    ) -> T:
        """Run `work` in the explanation pool (or the prediction pool when it runs no
        masked forward), cancelled when the client goes or the timeout passes."""
        pool = self.explanation_pool if masked else self.prediction_pool
        try:
            return await pool.run(work, ticket, gone)
        except ApiError as exc:
            if exc.status in (499, 504):
                reason = "client gone" if exc.status == 499 else "timeout"
                self.metrics.cancelled.labels(reason).inc()
            raise

    async def compute(
        self,
        service: ModelService,
        work: Callable[[Ticket], T],
        masked: bool = True,
        gone: Gone | None = None,
    ) -> T:
        """`run` with a new ticket for `service`."""
        return await self.run(work, self.ticket(service), masked, gone)

    def count_explanations(self, service: ModelService, method: str, maps: int = 1) -> None:
        """Count `maps` saliency maps computed by `method`."""
        self.metrics.explanations.labels(service.name, method).inc(maps)

    def counted(self, service: ModelService, found: Iterable[Iterable[Any]]) -> None:
        """Count the explanations of a request (a list per image)."""
        for per_image in found:
            for exp in per_image:
                self.count_explanations(service, exp.method)
