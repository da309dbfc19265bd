"""`scorecam-onnx triton`: a Triton model repository in which Triton explains images."""

from __future__ import annotations

import re
from pathlib import Path

import click

from ..cam.engine import PRESETS
from ..methods import METHODS


def _model_name(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    from ..errors import BundleError
    from ..triton.repository import check_model_name

    if value is not None:
        try:
            check_model_name(value)
        except BundleError as exc:
            raise click.BadParameter(f"a Triton {exc}") from None
    return value


@click.command()
@click.argument("bundle_dir", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False),
    required=True,
    help="The model repository (created, or added to).",
)
@click.option(
    "--name",
    callback=_model_name,
    help="The classifier's model name; the others are NAME-masked, "
    "NAME-masked-aligned, NAME-explain. Default: the bundle folder's name.",
)
@click.option(
    "--max-batch",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="The classifier's max_batch_size (its dynamic batcher's largest batch).",
)
@click.option(
    "--instances",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Instances of each model.",
)
@click.option(
    "--kind",
    type=click.Choice(["cpu", "gpu"]),
    default="cpu",
    show_default=True,
    help="Instance kind of each model.",
)
@click.option(
    "--backend",
    type=click.Choice(["onnxruntime", "python"]),
    default="onnxruntime",
    show_default=True,
    help="How Triton runs the classifier and masked scorers: its onnxruntime "
    "backend, or ONNX Runtime in its Python backend (for Triton builds "
    "without the onnxruntime backend).",
)
@click.option(
    "--classifier",
    "existing",
    callback=_model_name,
    metavar="EXISTING",
    help="Use this model of the repository as the classifier instead of writing "
    "one (checked against the bundle when the explainer loads).",
)
@click.option(
    "--forwards",
    type=click.Choice(["masked", "classifier"]),
    default="masked",
    show_default=True,
    help="Where the explainer's masked batches go: the masked scorers (only "
    "low-resolution maps cross) or the classifier (masked images).",
)
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
@click.option(
    "--execution-env",
    metavar="PATH",
    help="A packed Python environment for the explainer (Triton's "
    "EXECUTION_ENV_PATH), e.g. '$$TRITON_MODEL_DIRECTORY/env.tar.gz'.",
)
@click.option("--force", is_flag=True, help="Replace models of the same names.")
def triton(
    bundle_dir,
    out,
    name,
    max_batch,
    instances,
    kind,
    backend,
    existing,
    forwards,
    method,
    preset,
    execution_env,
    force,
) -> None:
    """Write a Triton model repository that explains images with BUNDLE_DIR: the classifier,
    its masked scorers, and NAME-explain, a Python-backend model (encoded images in; class
    ids, scores, saliency maps out) whose masked forwards go to them through BLS."""
    from ..triton import write_explainer

    model_name = name or re.sub(r"[^A-Za-z0-9_.-]", "-", Path(bundle_dir).resolve().name)
    written = write_explainer(
        bundle_dir,
        out,
        model_name,
        backend,
        max_batch,
        instances,
        kind,
        existing,
        forwards,
        method,
        preset,
        execution_env,
        force,
    )
    for folder in written:
        click.echo(str(folder))
    click.echo(str(Path(out) / "README.md"))
