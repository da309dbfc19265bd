"""The explanation service as a Ray Serve deployment (extra ``ray``): the same FastAPI app,
built on each replica (explainers hold ONNX Runtime sessions, which are not shipped between
processes)."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..runtime import Runtime

RAY_MISSING = "Ray is not installed: install scorecam-onnx with the 'ray' extra"


def build_app(models: Mapping[str, str], limits: Any, runtime: Runtime) -> Any:
    """The service app for bundle paths; runs on a replica. Every explainer gets `runtime`
    (its image limit the service's)."""
    from ..explainer import Explainer
    from ..quiet import stderr_stream
    from .app import create_app

    chosen = replace(runtime, max_pixels=limits.max_pixels)
    explainers = {name: Explainer(path, chosen) for name, path in models.items()}
    return create_app(explainers, limits, access_log=stderr_stream())


def import_ray() -> Any:
    """Ray, or an ImportError saying which extra installs it."""
    try:
        import ray
    except ImportError:
        raise ImportError(RAY_MISSING) from None
    return ray


def deployment(
    models: Mapping[str, str | Path],
    *,
    num_replicas: int | None = 1,
    autoscaling_config: Mapping[str, Any] | None = None,
    ray_actor_options: Mapping[str, Any] | None = None,
    limits: Any = None,
    runtime: Runtime | None = None,
    name: str = "scorecam",
) -> Any:
    """The explanation service as a Ray Serve application (bind it, then `serve.run` it).

    Args:
        models: model name → bundle folder, reachable from every replica.
        num_replicas: fixed replica count; give `autoscaling_config` instead to scale.
        ray_actor_options: per-replica resources, e.g. ``{"num_cpus": 2, "num_gpus": 1}``.
        limits: `scorecam_onnx.serve.Limits` for every replica.
        runtime: every replica's explainers' `Runtime`.
    """
    import_ray()
    from ray import serve

    from .app import Limits

    paths = {k: str(v) for k, v in models.items()}
    chosen = limits or Limits()
    settings = runtime or Runtime()

    def builder() -> Any:  # a plain function: Ray Serve calls it on each replica
        return build_app(paths, chosen, settings)

    options: dict[str, Any] = {"name": name, "ray_actor_options": dict(ray_actor_options or {})}
    if autoscaling_config is not None:
        options["autoscaling_config"] = dict(autoscaling_config)
    else:
        options["num_replicas"] = num_replicas
    ingress: Any = serve.deployment(serve.ingress(builder)(), **options)
    return ingress.bind()


def run_on_ray(
    models: Mapping[str, str | Path],
    limits: Any,
    *,
    address: str = "local",
    host: str = "127.0.0.1",
    port: int = 8080,
    replicas: int = 1,
    runtime: Runtime | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve `models` on Ray Serve until SIGTERM or Ctrl-C, then shut the application down.

    Args:
        address: a Ray cluster's address, or "local" to start one on this machine.
        replicas: replicas of the service, each with its own explainers.
    """
    ray = import_ray()
    from ray import serve

    started = not ray.is_initialized()
    if started:
        ray.init(
            address=None if address == "local" else address,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.ERROR,
        )
    logging.getLogger("ray.serve").setLevel(logging.WARNING)
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        serve.start(http_options={"host": host, "port": port})
        serve.run(
            deployment(models, num_replicas=replicas, limits=limits, runtime=runtime),
            name="scorecam",
            route_prefix="/",
        )
        if on_ready is not None:
            on_ready(f"http://{host}:{port}/")
        stop.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        serve.shutdown()
        if started:
            ray.shutdown()
