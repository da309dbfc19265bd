"""`scorecam-onnx serve`: the explanation service on uvicorn (needs the 'serve' extra)."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import click

from ..images import DEFAULT_MAX_PIXELS
from .common import (
    key_values,
    provider_libraries,
    provider_name,
    request_of,
    resolve_model,
    runtime_from,
    setting_options,
)
from .kserve import kserve_options

DEFAULT_NAME = "efficientnet-lite0"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _models(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]):
    """NAME=BUNDLE pairs (a bare BUNDLE is named after its folder), each optionally
    BUNDLE@URL: its full-model forwards go to that served model."""
    found: dict[str, str] = {}
    for value in values:
        name, _, path = value.partition("@")[0].rpartition("=")
        if "@" in value:
            path = f"{path}@{value.partition('@')[2]}"
        bare = Path(path)
        name = name or (bare.stem if bare.suffix.lower() == ".onnx" else bare.name)
        if not name or not path:
            raise click.BadParameter(f"expected NAME=BUNDLE, got {value!r}")
        if name in found:
            raise click.BadParameter(f"model name {name!r} is given twice")
        found[name] = path
    return found


@click.command()
@click.option(
    "--model",
    "models",
    multiple=True,
    callback=_models,
    metavar="NAME=BUNDLE[@URL]",
    help=f"A bundle to serve under NAME (repeatable); @URL sends its full-model "
    f"forwards to that served model (http(s):// or grpc(s)://HOST:PORT/v2/"
    f"models/NAME). Default: the shipped bundle as {DEFAULT_NAME}.",
)
@click.option(
    "--remote-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    help="Seconds a request to a served model may take.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--grpc-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Also serve the Open Inference Protocol over gRPC on this port (0: any).",
)
@click.option(
    "--classifiers",
    is_flag=True,
    help="Also serve each bundle's classifier as the V2 tensor model NAME-classifier "
    "(FP32 images in, scores out): a predictor for other explainers.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    help="Port (0: any free port).",
)
@click.option(
    "--provider",
    default="auto",
    show_default=True,
    callback=provider_name,
    help="ONNX Runtime execution provider (see 'scorecam-onnx providers').",
)
@click.option(
    "--provider-option",
    "provider_options",
    multiple=True,
    callback=key_values,
    metavar="KEY=VALUE",
    help="An option for the provider (repeatable).",
)
@click.option(
    "--provider-library",
    "provider_libraries",
    multiple=True,
    is_eager=True,
    callback=provider_libraries,
    metavar="NAME=PATH",
    expose_value=False,
    help="Register a plugin provider library first (ONNX Runtime ≥ 1.23).",
)
@click.option(
    "--threads",
    type=click.IntRange(min=0),
    default=0,
    help="ONNX Runtime intra-op threads per model (0: one per core).",
)
@setting_options(["batch_size"])
@click.option(
    "--max-concurrency",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Requests computed at once (each already uses every core).",
)
@click.option(
    "--max-queue",
    type=click.IntRange(min=0),
    default=16,
    show_default=True,
    help="Requests waiting for a worker; beyond, 503 with Retry-After.",
)
@click.option(
    "--max-body-mb",
    type=click.FloatRange(min=0, min_open=True),
    default=20.0,
    show_default=True,
    help="Larger request bodies are refused (413) unread.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    help="Seconds before a request is abandoned (504).",
)
@click.option(
    "--max-pixels",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_PIXELS,
    show_default=True,
    help="Larger images are refused (413) before decoding.",
)
@setting_options(
    ["method", "preset"],
    {
        "method": "Method when a request names none.",
        "preset": "Preset when a request names none. Default: the method's own.",
    },
)
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Seconds accepted requests may take to finish after SIGTERM or Ctrl-C.",
)
@click.option(
    "--api-key",
    "api_keys",
    multiple=True,
    metavar="KEY",
    help="Require 'Authorization: Bearer KEY' on every route but the health probes "
    "and the page (repeatable; also $SCORECAM_API_KEYS, comma-separated).",
)
@click.option(
    "--api-key-file",
    type=click.Path(dir_okay=False, exists=True),
    help="API keys, one per line; read again on SIGHUP.",
)
@click.option(
    "--protect-health",
    is_flag=True,
    help="Require a key on /v2/health/live and /v2/health/ready too.",
)
@click.option(
    "--ssl-certfile",
    type=click.Path(dir_okay=False, exists=True),
    help="Serve HTTPS (and gRPC over TLS) with this certificate chain (PEM).",
)
@click.option(
    "--ssl-keyfile",
    type=click.Path(dir_okay=False, exists=True),
    help="The certificate's private key (PEM).",
)
@click.option(
    "--cors-origin",
    "cors_origins",
    multiple=True,
    metavar="ORIGIN",
    help="A browser origin allowed to call the API, e.g. https://app.example "
    "(repeatable). Default: none (CORS off).",
)
@click.option(
    "--keep-alive",
    type=click.FloatRange(min=0, min_open=True),
    default=5.0,
    show_default=True,
    help="Seconds an idle keep-alive connection stays open.",
)
@click.option(
    "--max-connections",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Connections served at once; beyond, new requests get 503.",
)
@click.option("--quiet", "-q", is_flag=True, help="No access log.")
@click.option(
    "--ray",
    "ray_address",
    is_flag=False,
    flag_value="local",
    default=None,
    metavar="[ADDRESS]",
    help="Serve replicas on Ray Serve (a local cluster without ADDRESS); needs the 'ray' extra.",
)
@click.option(
    "--replicas",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="With --ray: replicas of the service.",
)
@kserve_options
def serve(
    models,
    remote_timeout,
    host,
    grpc_port,
    classifiers,
    port,
    provider,
    provider_options,
    threads,
    batch_size,
    max_concurrency,
    max_queue,
    max_body_mb,
    timeout,
    max_pixels,
    method,
    preset,
    grace,
    api_keys,
    api_key_file,
    protect_health,
    ssl_certfile,
    ssl_keyfile,
    cors_origins,
    keep_alive,
    max_connections,
    quiet,
    ray_address,
    replicas,
    kserve,
) -> None:
    """Serve explanations over HTTP: KServe V1, Open Inference Protocol V2, a web page.

    Started with KServe's explainer flags (--model_name, --predictor_host, --http_port,
    --predictor_protocol v2|grpc-v2, --predictor_use_ssl), it is an InferenceService's
    explainer: the bundle is served as --model_name, its forwards go to the predictor.
    """
    try:
        from ..serve import Limits, create_app, run_server
    except ImportError as exc:
        raise click.ClickException(str(exc)) from None
    from ..explainer import Explainer, default_bundle
    from ..quiet import stderr_stream

    if bool(ssl_certfile) != bool(ssl_keyfile):
        raise click.UsageError("--ssl-certfile and --ssl-keyfile go together")
    keys = _keys(api_keys, api_key_file, protect_health)
    bundles = models or {DEFAULT_NAME: str(default_bundle())}
    if kserve.active:
        bundles = {kserve.model_name: f"{_only(bundles)}@{kserve.predictor_url()}"}
        port = kserve.http_port if kserve.http_port is not None else port
        source = click.get_current_context().get_parameter_source("host")
        host = "0.0.0.0" if source == click.core.ParameterSource.DEFAULT else host
    runtime = runtime_from(
        {
            "provider": provider,
            "provider_options": provider_options,
            "threads": threads,
            "batch_size": batch_size,
            "max_pixels": max_pixels,
            "remote_timeout": remote_timeout,
        }
    )
    limits = Limits(
        max_concurrency=max_concurrency,
        max_queue=max_queue,
        max_body_mb=max_body_mb,
        timeout=timeout,
        max_pixels=max_pixels,
        defaults=_request_defaults(method, preset, batch_size),
    )
    if ray_address is not None:
        if any("@" in spec for spec in bundles.values()):
            raise click.UsageError("BUNDLE@URL is not available with --ray")
        if keys.active or ssl_certfile or cors_origins:
            raise click.UsageError(
                "API keys, TLS and CORS are not available with --ray: put "
                "them in front of Ray Serve's proxy"
            )
        _serve_on_ray(bundles, limits, ray_address, host, port, replicas, runtime)
        return
    explainers = {}
    for name, spec in bundles.items():
        path, _, url = spec.partition("@")
        explainers[name] = Explainer(resolve_model(path), replace(runtime, model_url=url or None))
    app = create_app(
        explainers,
        limits,
        access_log=None if quiet else stderr_stream(),
        classifiers=classifiers,
        api_keys=keys,
        cors_origins=cors_origins,
    )
    if not keys.active and host not in LOOPBACK:
        click.echo(
            f"warning: listening on {host} with no API key: anyone who can reach the "
            "port can use it (--api-key)",
            err=True,
        )

    try:
        run_server(
            app,
            host,
            port,
            grace,
            _ready(explainers),
            grpc_port,
            ssl_certfile,
            ssl_keyfile,
            keep_alive,
            max_connections,
        )
    except OSError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo("stopped", err=True)


def _request_defaults(method: str, preset: str | None, batch_size: int | None):
    """The settings a request that names none gets, checked together."""
    from ..protocol import ExplainParams

    given = {"method": method, "preset": preset, "batch_size": batch_size}
    request_of(given)
    return ExplainParams({k: v for k, v in given.items() if v is not None})


def _ready(explainers: dict) -> Callable[[str], None]:
    """What is printed once the server listens: each model, where its forwards run, the
    address."""

    def ready(url: str) -> None:
        if url.startswith("grpc://"):
            click.echo(f"gRPC on {url.removeprefix('grpc://')}")
            sys.stdout.flush()
            return
        for name, explainer in explainers.items():
            served = explainer.runtime.model_url
            where = f"forwards on {served}" if served else explainer.provider
            click.echo(f"model {name}: {explainer.bundle.path} ({where})")
        click.echo(f"serving on {url}  (page: {url}, API docs: {url}docs)")
        sys.stdout.flush()

    return ready


def _keys(given: tuple[str, ...], file: str | None, protect_health: bool):
    """The API keys, read again from the file on SIGHUP (a failed read keeps the old ones)."""
    from ..serve.auth import ApiKeys

    try:
        keys = ApiKeys(given, file, environment=True, protect_health=protect_health)
    except OSError as exc:
        raise click.ClickException(str(exc)) from None

    def reload(signum: int, frame: object) -> None:
        try:
            keys.reload()
        except OSError as exc:
            click.echo(f"warning: {exc}; the previous keys stay", err=True)

    if file and hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, reload)
    return keys


def _only(bundles: dict[str, str]) -> str:
    if len(bundles) != 1:
        raise click.UsageError("as a KServe explainer, serve one bundle (--model BUNDLE)")
    return next(iter(bundles.values())).partition("@")[0]


def _serve_on_ray(
    bundles: dict[str, str], limits, address: str, host: str, port: int, replicas: int, runtime
) -> None:
    try:
        from ..serve.on_ray import import_ray, run_on_ray

        import_ray()
    except ImportError as exc:
        raise click.ClickException(str(exc)) from None
    if port == 0:
        raise click.UsageError("--ray needs a fixed --port")

    def ready(url: str) -> None:
        for name, path in bundles.items():
            click.echo(f"model {name}: {path} ({replicas} replicas on Ray Serve)")
        click.echo(f"serving on {url}  (page: {url}, API docs: {url}docs)")
        sys.stdout.flush()

    run_on_ray(
        bundles,
        limits,
        address=address,
        host=host,
        port=port,
        replicas=replicas,
        runtime=runtime,
        on_ready=ready,
    )
    click.echo("stopped", err=True)
