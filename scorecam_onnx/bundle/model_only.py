"""Model-only bundles: a classifier with no target layer, for the black-box methods (RISE).

Either a plain ``.onnx`` file opened as it is (`open_model`), its preprocessing given or
assumed, or a folder written by `write_model_bundle` (``split --no-layer``) that keeps the
preprocessing in a manifest.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx

from ..errors import BundleError
from ..fileio import sha256, staged_folder, write_text_atomic
from ..runners.ort import build_session
from . import graphs
from .bundle import WEIGHTS_NAME, Bundle
from .detector import is_detector, open_detector
from .manifest import MANIFEST_NAME, InputSpec, Manifest, OutputSpec
from .writer import (
    Preprocessing,
    input_channels,
    output_head,
    output_kind,
    producer_op,
    save_model_graph,
)

NO_LAYER = "a model-only bundle has no target layer"
# The input size assumed when neither the graph nor the user fixes one.
DEFAULT_SIZE = 224


def graph_layout(model: onnx.ModelProto) -> str:
    """The image input's layout as its shape says: NHWC when the last axis alone can hold
    the channels (at most 4, and axis 1 more or open); otherwise NCHW (give `--layout NHWC`
    for a channels-last input of more bands)."""
    shape = graphs.dims(graphs.single_input(model))
    if len(shape) != 4 or not isinstance(shape[3], int) or shape[3] > 4:
        return "NCHW"
    first = shape[1]
    return "NHWC" if not isinstance(first, int) or first > 4 else "NCHW"


def graph_size(model: onnx.ModelProto, layout: str) -> tuple[int, int] | None:
    """The input's fixed height and width, or None when the graph leaves them open."""
    shape = graphs.dims(graphs.single_input(model))
    if len(shape) != 4:
        raise BundleError(
            f"input {graphs.single_input(model).name!r} must be 4-D, has shape {shape}"
        )
    h, w = (shape[2], shape[3]) if layout == "NCHW" else (shape[1], shape[2])
    return (h, w) if isinstance(h, int) and isinstance(w, int) else None


KEEP_HINT = (
    "set them with --input-size, --mean, --std, --layout, --resize, or keep them "
    "with split --no-layer"
)


def assumed_line(
    path: Path | str, prep: Preprocessing, assumed: list[str], hint: str = KEEP_HINT
) -> str:
    """The one line saying which preprocessing settings were assumed for a plain model."""
    values = {
        "input size": f"{prep.height}×{prep.width}",
        "mean": ",".join(f"{v:g}" for v in prep.mean),
        "std": ",".join(f"{v:g}" for v in prep.std),
        "layout": prep.layout,
        "resize": prep.resize,
    }
    said = ", ".join(f"{name} {values[name]}" for name in assumed)
    return f"{path}: assumed {said} (defaults); {hint}"


def open_model(
    path: str | Path,
    preprocessing: Preprocessing | None = None,
    output: str | None = None,
    labels: list[str] | None = None,
    quiet: bool = False,
    decoder: str | None = None,
    head: str | None = None,
) -> Bundle:
    """A plain ONNX classifier or detector as a model-only bundle, read in place (nothing is
    written).

    With no `preprocessing`, ImageNet's is assumed (the size from the graph when it is fixed,
    else 224; the layout from the input's shape) and a warning says so unless `quiet`. A
    detector (several outputs, or one 3-D output, or a `decoder` given) gets its decoder and
    its exporter's preprocessing (`detector.open_detector`). `head` says what a classifier's
    scores mean (default: read off the graph, see `writer.output_head`).
    """
    path = Path(path)
    model = graphs.load_model(path, load_weights=False)
    if decoder is not None or (output is None and is_detector(model)):
        return open_detector(path, model, preprocessing, decoder, labels, quiet)
    image_input = graphs.single_input(model)
    output = output or graphs.only_output(model)
    batch = graphs.dims(image_input)[:1]
    if batch and isinstance(batch[0], int):
        raise BundleError(
            f"{path}: the input's batch axis is fixed at {batch[0]}; write a "
            f"model-only bundle with `scorecam-onnx split {path.name} --no-layer "
            "--out DIR`, which frees it"
        )
    if preprocessing is None:
        prep, assumed = preprocessing_for(model)
    else:
        prep, assumed = complete(model, preprocessing), []
    if assumed and not quiet:
        warnings.warn(assumed_line(path, prep, assumed), stacklevel=2)
    columns = _classes(model, output) or _probe(path, image_input.name, output, prep)
    head, classes = output_head(head, producer_op(model, output) == "Sigmoid", columns)
    if labels is not None and len(labels) != classes:
        raise BundleError(f"{len(labels)} labels given for a model with {classes} classes")
    manifest = _manifest(
        image_input.name,
        prep,
        OutputSpec(output, classes, kind=output_kind(model, output), head=head),
        path.name,
        weights=None,
        labels=None,
        source={"framework": "onnx", "model": path.name},
    )
    return Bundle(path.parent, manifest, tuple(labels) if labels is not None else None, plain=True)


def preprocessing_for(
    model: onnx.ModelProto,
    input_size: tuple[int, int] | None = None,
    mean: tuple[float, float, float] | None = None,
    std: tuple[float, float, float] | None = None,
    layout: str | None = None,
    resize: str | None = None,
) -> tuple[Preprocessing, list[str]]:
    """The preprocessing of a plain model from the settings given, and the names of those
    assumed: ImageNet's mean and std, stretch resizing, the size from the graph when it is
    fixed (else 224), the layout from the input's shape."""
    base = Preprocessing(layout=layout or graph_layout(model))
    prep = replace(base, mean=mean or base.mean, std=std or base.std, resize=resize or base.resize)
    if input_size is not None:
        prep = replace(prep, height=input_size[0], width=input_size[1])
    prep = complete(model, prep)
    given = {
        "input size": input_size is not None or graph_size(model, prep.layout) is not None,
        "mean": mean is not None,
        "std": std is not None,
        "resize": resize is not None,
    }
    return prep, [name for name, known in given.items() if not known]


def complete(model: onnx.ModelProto, prep: Preprocessing) -> Preprocessing:
    """`prep` with its size from the graph (224 when the graph leaves it open), checked
    against the graph's fixed size, and the graph's channels."""
    channels = input_channels(graphs.single_input(model), prep)
    prep = Preprocessing(height=prep.height, width=prep.width, **prep.for_channels(channels))
    fixed = graph_size(model, prep.layout)
    if prep.height is None or prep.width is None:
        height, width = fixed or (DEFAULT_SIZE, DEFAULT_SIZE)
        return replace(prep, height=height, width=width)
    if fixed is not None and (prep.height, prep.width) != fixed:
        raise BundleError(
            f"input size {prep.height}x{prep.width} differs from the graph's {fixed[0]}x{fixed[1]}"
        )
    return prep


def write_model_bundle(
    model: onnx.ModelProto,
    out_dir: str | Path,
    output: str | None = None,
    preprocessing: Preprocessing | None = None,
    labels: list[str] | None = None,
    source: dict[str, str] | None = None,
    force: bool = False,
    head: str | None = None,
) -> Bundle:
    """Write a model-only bundle folder: the classifier with a free batch axis, its
    preprocessing and labels in a manifest, checksums. `model` has its weights loaded."""
    out = Path(out_dir)
    if out.exists() and not force:
        raise BundleError(f"{out}: already exists (use --force to replace it)")
    image_input = graphs.single_input(model)
    output = output or graphs.only_output(model)
    prep = complete(model, preprocessing or Preprocessing(layout=graph_layout(model)))
    with staged_folder(out) as staging:
        staging.mkdir(parents=True)
        save_model_graph(model, image_input.name, output, staging / "model.onnx")
        onnx.checker.check_model(str(staging / "model.onnx"))
        columns = _probe(staging / "model.onnx", image_input.name, output, prep, batch=2)
        head, classes = output_head(head, producer_op(model, output) == "Sigmoid", columns)
        if labels is not None and len(labels) != classes:
            raise BundleError(f"{len(labels)} labels given for a model with {classes} classes")
        if labels is not None:
            write_text_atomic(staging / "labels.txt", "\n".join(labels) + "\n")
        has_weights = (staging / WEIGHTS_NAME).is_file()
        names = ["model.onnx"] + ([WEIGHTS_NAME] if has_weights else [])
        manifest = _manifest(
            image_input.name,
            prep,
            OutputSpec(output, classes, kind=output_kind(model, output), head=head),
            "model.onnx",
            weights=WEIGHTS_NAME if has_weights else None,
            labels="labels.txt" if labels is not None else None,
            source=dict(source or {}),
            checksums={name: sha256(staging / name) for name in names},
        )
        write_text_atomic(staging / MANIFEST_NAME, manifest.dumps())
    return Bundle.load(out)


def _manifest(
    input_name: str,
    prep: Preprocessing,
    output: OutputSpec,
    model: str,
    weights: str | None,
    labels: str | None,
    source: dict[str, str],
    checksums: dict[str, str] | None = None,
) -> Manifest:
    assert prep.height is not None and prep.width is not None
    return Manifest(
        input=InputSpec(
            name=input_name,
            height=prep.height,
            width=prep.width,
            **prep.convention(),
        ),
        output=output,
        layers=(),
        features=None,
        model=model,
        weights=weights,
        labels=labels,
        source=source,
        checksums=checksums or {},
        tail=None,
        tail_missing=NO_LAYER,
    )


def _classes(model: onnx.ModelProto, output: str) -> int | None:
    """C from the output's declared N×C shape, when it is fixed."""
    for value in model.graph.output:
        if value.name == output:
            shape = graphs.dims(value)
            if len(shape) == 2 and isinstance(shape[1], int):
                return shape[1]
    return None


def _probe(path: Path, input_name: str, output: str, prep: Preprocessing, batch: int = 1) -> int:
    """Run the model once on noise; C from its N×C output."""
    assert prep.height is not None and prep.width is not None
    size = (prep.height, prep.width)
    channels = prep.channels
    shape = (batch, channels, *size) if prep.layout == "NCHW" else (batch, *size, channels)
    probe = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    try:
        session, _ = build_session(path, "cpu")
        (scores,) = session.run([output], {input_name: probe})
    except Exception as exc:  # noqa: BLE001 - report ONNX Runtime's own words
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BundleError(f"{path}: the model does not run in ONNX Runtime: {first}") from None
    if scores.ndim != 2 or scores.shape[0] != batch:
        raise BundleError(f"output {output!r} has shape {scores.shape}, expected N×C")
    return int(scores.shape[1])


def open_bundle(source: str | Path | Bundle) -> Bundle:
    """A loaded bundle, a bundle folder, or a plain ``.onnx`` classifier (`open_model`, its
    preprocessing assumed with a warning)."""
    if isinstance(source, Bundle):
        return source
    path = Path(source)
    if path.is_file() and path.suffix.lower() == ".onnx":
        return open_model(path, quiet=False)
    return Bundle.load(path)
