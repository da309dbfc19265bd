"""The service's Prometheus metrics: requests and their latency, forwards, explanations,
cancellations, and the work running and waiting, counted alike for every transport.

Needs prometheus_client (the ``serve`` extra), so the package's ``__init__`` does not import
this module.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    """The service's metrics, in a registry of its own (several apps may share a process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "scorecam_requests",
            "HTTP requests answered",
            ["route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "scorecam_request_seconds",
            "Time to answer a request",
            ["route"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.forwards = Counter(
            "scorecam_forwards",
            "Model forwards run (masked and unmasked)",
            ["model"],
            registry=self.registry,
        )
        self.explanations = Counter(
            "scorecam_explanations",
            "Saliency maps computed",
            ["model", "method"],
            registry=self.registry,
        )
        self.cancelled = Counter(
            "scorecam_cancelled",
            "Requests whose work was stopped",
            ["reason"],
            registry=self.registry,
        )
        self.running = Gauge("scorecam_running", "Requests being computed", registry=self.registry)
        self.waiting = Gauge(
            "scorecam_waiting", "Requests waiting for a worker", registry=self.registry
        )
