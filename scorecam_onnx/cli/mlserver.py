"""`scorecam-onnx mlserver`: the folder Seldon MLServer explains images from."""

from __future__ import annotations

import re
from pathlib import Path

import click

from ..cam.engine import PRESETS
from ..methods import METHODS
from .triton import _model_name


@click.command()
@click.argument("bundle_dir", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    required=True,
    help="The folder to write (`mlserver start OUT` serves it).",
)
@click.option(
    "--name",
    callback=_model_name,
    help="The explainer's model name; the bundle's model is NAME-classifier. "
    "Default: the bundle folder's name.",
)
@click.option(
    "--infer-uri",
    metavar="URL",
    help="Send the full-model forwards to this served model (http(s):// or "
    "grpc(s)://HOST:PORT/v2/models/NAME) instead of running them in process.",
)
@click.option(
    "--parallel-workers",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="MLServer's inference worker processes (0: in its main process).",
)
@click.option("--http-port", type=click.IntRange(1, 65535), default=8080, show_default=True)
@click.option("--grpc-port", type=click.IntRange(1, 65535), default=8081, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--method",
    type=click.Choice(list(METHODS)),
    default=None,
    help="Default method of requests that name none. Default: scorecam.",
)
@click.option(
    "--preset",
    type=click.Choice(list(PRESETS)),
    default=None,
    help="Default preset of requests that name none.",
)
@click.option("--force", is_flag=True, help="Replace the folder if it exists.")
def mlserver(
    bundle_dir,
    out,
    name,
    infer_uri,
    parallel_workers,
    http_port,
    grpc_port,
    host,
    method,
    preset,
    force,
) -> None:
    """Write a folder in which Seldon MLServer explains images with BUNDLE_DIR: NAME answers
    the V2 requests of the service's explanation model, NAME-classifier serves the bundle's
    model as a tensor model. Start it with `mlserver start OUT` (the 'mlserver' extra)."""
    from ..mlserver import write_mlserver

    model_name = name or re.sub(r"[^A-Za-z0-9_.-]", "-", Path(bundle_dir).resolve().name)
    defaults = {k: v for k, v in (("method", method), ("preset", preset)) if v}
    written = write_mlserver(
        bundle_dir,
        out,
        model_name,
        infer_uri,
        parallel_workers,
        host,
        http_port,
        grpc_port,
        defaults,
        force,
    )
    click.echo(
        f"wrote {written}: models {model_name}, {model_name}-classifier; start it with "
        f"`mlserver start {written}`"
    )
