"""Writing a bundle: cut an ONNX classifier at a tensor, probe the graphs, write the folder.

`write_bundle` runs named steps: plan (check the arguments against the graph and settle
everything before a file is written), cut (save the model, features and tail graphs), probe
(run them once in ONNX Runtime), describe (the layers, labels, checksums: the manifest).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..errors import BundleError
from ..fileio import sha256, staged_folder, write_text_atomic
from ..runners.ort import build_session
from . import graphs
from .bundle import TAIL_NAME, WEIGHTS_NAME, Bundle
from .manifest import (
    HEADS,
    MANIFEST_NAME,
    ActivationSpec,
    ImageConvention,
    InputSpec,
    LayerSpec,
    Manifest,
    OutputSpec,
)
from .tokens import check_grid, infer_grid

# Tensors below this size stay inside the graphs (shapes and small constants).
EXTERNAL_THRESHOLD = 1024
MODEL_NAME = "model.onnx"
FEATURES_NAME = "features.onnx"
LABELS_NAME = "labels.txt"


@dataclass(frozen=True)
class Preprocessing(ImageConvention):
    """Input settings given by the user when a bundle is written: the image convention (by
    keyword), and a size that defaults to the graph's input size."""

    height: int | None = None
    width: int | None = None


def write_bundle(
    model: onnx.ModelProto,
    out_dir: str | Path,
    activation: str | Sequence[str],
    output: str | None = None,
    preprocessing: Preprocessing | None = None,
    layer: str | Sequence[str] | None = None,
    labels: list[str] | None = None,
    source: dict[str, str] | None = None,
    force: bool = False,
    tokens: tuple[int, int, int] | None = None,
    activation_layout: str | None = None,
    prefix_hint: int | None = None,
    background: int | None = None,
    head: str | None = None,
) -> Bundle:
    """Cut `model` at the tensor `activation` and write a bundle folder.

    The two graphs share one external weights file, so the weights are stored once. Both get a
    symbolic batch axis and are run once in ONNX Runtime before the bundle is published
    (written under a temporary name, then renamed).

    Args:
        model: a classifier graph with one image input, weights loaded.
        out_dir: the bundle folder to create.
        activation: the target tensor: N×K×h×w, N×h×w×K (NHWC), or N×L×K tokens; or several
            (a multi-layer bundle: one features output each; the deepest, the one computed
            from all the others, is where the tail graph is cut).
        output: the class-score output; default the graph's only output.
        preprocessing: how images become inputs; the size defaults to the graph's input size.
        layer: a readable name for the target layer (default: the tensor name); one per
            tensor when there are several.
        labels: one class name per output class.
        source: provenance (framework, model, version).
        force: replace an existing `out_dir`.
        tokens: (P, gh, gw) for a token tensor: P leading tokens, then a gh×gw grid;
            default: inferred from L and the input size when only one reading fits.
        activation_layout: "NCHW" or "NHWC" for a 4-D target; default: the input's layout.
        prefix_hint: P as the model states it (a class token: 1), to settle the inference.
        background: for a segmentation model (output N×C×H×W), the class never chosen as
            the one to explain.
        head: what the scores mean, "softmax", "multi-label" or "binary"; default: read off
            the graph (a trailing Sigmoid: multi-label; one output column: binary).
    """
    out = Path(out_dir)
    if out.exists() and not force:
        raise BundleError(f"{out}: already exists (use --force to replace it)")
    plan = _plan(
        model,
        preprocessing or Preprocessing(),
        activation,
        layer,
        output,
        tokens=tokens,
        activation_layout=activation_layout,
        prefix_hint=prefix_hint,
        background=background,
        labels=labels,
        source=source,
        head=head,
    )
    with staged_folder(out) as staging:
        staging.mkdir(parents=True)
        bypassed = _cut(model, plan, staging)
        probed = _probe(staging, plan, has_tail=bypassed is None)
        manifest = _describe(staging, plan, probed, bypassed)
        write_text_atomic(staging / MANIFEST_NAME, manifest.dumps())
    return Bundle.load(out)


# --- plan: the arguments checked against the graph, before anything is written


@dataclass(frozen=True)
class _Plan:
    """What `write_bundle` cuts and how it describes it, settled before a file is written."""

    input: str  # the image input
    output: str  # the class-score output
    kind: str  # its kind: 'logits' or 'probabilities'
    tensors: tuple[str, ...]  # the target tensors, the deepest first
    names: tuple[str, ...]  # their layer names, in the same order
    size: tuple[int, int]  # the input's height and width
    prep: Preprocessing  # with the input's channels
    maps_layout: str  # the layout of 4-D target tensors
    tokens: tuple[int, int, int] | None
    prefix_hint: int | None
    background: int | None
    labels: tuple[str, ...] | None
    source: dict[str, str]
    head: str | None = None  # given, else read off the graph and the probe
    sigmoid: bool = False  # the output is a Sigmoid's

    @property
    def deepest(self) -> str:
        """The tensor computed from all the others: the tail graph is cut there."""
        return self.tensors[0]


def _plan(
    model: onnx.ModelProto,
    prep: Preprocessing,
    activation: str | Sequence[str],
    layer: str | Sequence[str] | None,
    output: str | None,
    *,
    tokens: tuple[int, int, int] | None,
    activation_layout: str | None,
    prefix_hint: int | None,
    background: int | None,
    labels: list[str] | None,
    source: dict[str, str] | None,
    head: str | None = None,
) -> _Plan:
    """Check the arguments against the graph and settle what is cut and described."""
    image_input = graphs.single_input(model)
    output = output or graphs.only_output(model)
    tensors, names = _targets(model, output, activation, layer, tokens)
    return _Plan(
        input=image_input.name,
        output=output,
        kind=output_kind(model, output),
        tensors=tensors,
        names=names,
        size=_input_size(image_input, prep),
        prep=Preprocessing(
            height=prep.height,
            width=prep.width,
            **prep.for_channels(input_channels(image_input, prep)),
        ),
        maps_layout=activation_layout or prep.layout,
        tokens=tokens,
        prefix_hint=prefix_hint,
        background=background,
        labels=None if labels is None else tuple(labels),
        source=dict(source or {}),
        head=_given_head(head),
        sigmoid=producer_op(model, output) == "Sigmoid",
    )


def _targets(
    model: onnx.ModelProto,
    output: str,
    activation: str | Sequence[str],
    layer: str | Sequence[str] | None,
    tokens: tuple[int, int, int] | None,
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The target tensors and their layer names, checked, the deepest first."""
    tensors = [activation] if isinstance(activation, str) else list(activation)
    names = tensors if layer is None else [layer] if isinstance(layer, str) else list(layer)
    if len(names) != len(tensors):
        raise BundleError(f"{len(names)} layer names for {len(tensors)} target tensors")
    if not tensors or len(set(tensors)) != len(tensors):
        raise BundleError("give each target tensor once")
    if len(tensors) > 1 and tokens:
        raise BundleError("--tokens is for a single token layer")
    for tensor in tensors:
        graphs.check_tensor(model, tensor, output)
    first = tensors.index(graphs.deepest(model, tensors))
    order = [first, *(i for i in range(len(tensors)) if i != first)]
    return tuple(tensors[i] for i in order), tuple(names[i] for i in order)


def _input_size(image_input: onnx.ValueInfoProto, prep: Preprocessing) -> tuple[int, int]:
    shape = graphs.dims(image_input)
    if len(shape) != 4:
        raise BundleError(f"input {image_input.name!r} must be 4-D, has shape {shape}")
    h, w = (shape[2], shape[3]) if prep.layout == "NCHW" else (shape[1], shape[2])
    height = prep.height or (h if isinstance(h, int) else None)
    width = prep.width or (w if isinstance(w, int) else None)
    if height is None or width is None:
        raise BundleError(f"input {image_input.name!r} has no fixed size: give --input-size")
    for given, fixed in ((height, h), (width, w)):
        if isinstance(fixed, int) and given != fixed:
            raise BundleError(f"--input-size {height}x{width} differs from the graph's {h}x{w}")
    return height, width


def input_channels(image_input: onnx.ValueInfoProto, prep: ImageConvention) -> int:
    """The image input's channels: the graph's (axis 1 in NCHW, 3 in NHWC), or the
    convention's when the graph leaves it open."""
    shape = graphs.dims(image_input)
    if len(shape) != 4:
        raise BundleError(f"input {image_input.name!r} must be 4-D, has shape {shape}")
    channels = shape[1] if prep.layout == "NCHW" else shape[3]
    last = shape[3]
    if prep.layout == "NCHW" and isinstance(last, int) and last <= 4 < _or_more(channels):
        raise BundleError(
            f"input {image_input.name!r} of shape {shape} reads as {channels} channels of "
            f"{shape[2]}×{last} in NCHW layout: give --layout NHWC for channels last"
        )
    return channels if isinstance(channels, int) else prep.channels


def _or_more(dim: Any) -> int:
    """A fixed dimension, or a large number for an open one."""
    return dim if isinstance(dim, int) else 1 << 30


# --- cut: the graphs, saved and checked


def _cut(model: onnx.ModelProto, plan: _Plan, folder: Path) -> str | None:
    """Save the model, features and (when the cut is clean) tail graphs in `folder`, and
    check each; why there is no tail graph, or None when there is one."""
    save_model_graph(model, plan.input, plan.output, folder / MODEL_NAME)
    # Cut the other graphs from the saved one, so their weights point into the same file.
    saved = onnx.load(str(folder / MODEL_NAME), load_external_data=False)
    features = graphs.extract(saved, [plan.input], list(plan.tensors))
    graphs.free_batch_axis(features, [plan.input, *plan.tensors])
    onnx.save_model(features, str(folder / FEATURES_NAME))
    bypassed = graphs.bypass(saved, plan.input, plan.deepest, plan.output)
    if bypassed is None:
        tail = graphs.extract(saved, [plan.deepest], [plan.output])
        graphs.rebase_batch_reads(tail, plan.input, plan.deepest)
        graphs.free_batch_axis(tail, [plan.deepest, plan.output])
        onnx.save_model(tail, str(folder / TAIL_NAME))
    for name in _graph_files(has_tail=bypassed is None):
        onnx.checker.check_model(str(folder / name))
    return bypassed


def save_model_graph(model: onnx.ModelProto, input_name: str, output: str, path: Path) -> None:
    """Save the graph from the image input to `output`, with a symbolic batch axis and its
    weights in the external file `WEIGHTS_NAME` beside it."""
    full = graphs.extract(model, [input_name], [output])
    graphs.free_batch_axis(full, [input_name, output])
    onnx.save_model(
        full,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=WEIGHTS_NAME,
        size_threshold=EXTERNAL_THRESHOLD,
        convert_attribute=False,
    )


def _graph_files(has_tail: bool) -> list[str]:
    """The graph files of a bundle, in the manifest's order."""
    return [FEATURES_NAME, MODEL_NAME, *([TAIL_NAME] if has_tail else [])]


# --- probe: one run of the graphs in ONNX Runtime


@dataclass(frozen=True)
class _Probed:
    """What one run of the cut graphs showed: per tensor ((K, h, w), L for tokens or None),
    the number of classes, and why the tail cannot be used (None when it can)."""

    shapes: list[tuple[tuple[int, int, int], int | None]]
    classes: int
    tail_error: str | None
    # (H, W) of a segmentation output (N×C×H×W); (0, 0) for class scores (N×C).
    output_size: tuple[int, int] = (0, 0)


def _probe(folder: Path, plan: _Plan, has_tail: bool) -> _Probed:
    """Run the graphs on a batch of two: the shape of each target tensor (for a token
    tensor N×L×K, h and w are placeholders and L is given), the classes, and whether
    tail(features(x)) matches model(x) at the first (deepest) tensor."""
    channels = plan.prep.channels
    shape = (2, channels, *plan.size) if plan.prep.layout == "NCHW" else (2, *plan.size, channels)
    probe = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    try:
        features, _ = build_session(folder / FEATURES_NAME, "cpu")
        model, _ = build_session(folder / MODEL_NAME, "cpu")
        outputs = features.run(list(plan.tensors), {plan.input: probe})
        (scores,) = model.run([plan.output], {plan.input: probe})
    except Exception as exc:  # noqa: BLE001 - report ONNX Runtime's own words
        raise BundleError(f"the cut graphs do not run in ONNX Runtime: {exc}") from None
    tail_error = (
        _check_tail(folder, plan.deepest, plan.output, outputs[0], scores) if has_tail else None
    )
    if scores.ndim not in (2, 4) or scores.shape[0] != 2:
        raise BundleError(
            f"output {plan.output!r} has shape {scores.shape}, expected N×C "
            "class scores or N×C×H×W per-pixel scores"
        )
    found = [
        _tensor_shape(tensor, acts, plan.maps_layout)
        for tensor, acts in zip(plan.tensors, outputs, strict=True)
    ]
    size = (int(scores.shape[2]), int(scores.shape[3])) if scores.ndim == 4 else (0, 0)
    return _Probed(found, int(scores.shape[1]), tail_error, size)


def _tensor_shape(
    tensor: str,
    acts: np.ndarray,
    layout: str,
) -> tuple[tuple[int, int, int], int | None]:
    """((K, h, w), None) of a 4-D activation in `layout`; ((K, 0, 0), L) of N×L×K tokens."""
    if acts.ndim not in (3, 4) or acts.shape[0] != 2:
        raise BundleError(
            f"tensor {tensor!r} has shape {acts.shape}, expected N×K×h×w, N×h×w×K or N×L×K tokens"
        )
    if acts.ndim == 3:
        return (int(acts.shape[2]), 0, 0), int(acts.shape[1])
    k, h, w = acts.shape[1:] if layout == "NCHW" else (acts.shape[3], *acts.shape[1:3])
    if h * w <= 1:
        raise BundleError(
            f"tensor {tensor!r} has a spatial size of {h}×{w}: a saliency "
            "map needs more (pick a layer before the global pooling)"
        )
    return (int(k), int(h), int(w)), None


# --- describe: the manifest of what was written and probed


def _describe(folder: Path, plan: _Plan, probed: _Probed, bypassed: str | None) -> Manifest:
    """The manifest: the layers as probed, the tail graph (deleted when the probe found it
    wrong), the labels (written here), the checksums of every file."""
    if plan.background is not None and probed.output_size == (0, 0):
        raise BundleError("a background class is for segmentation models (N×C×H×W outputs)")
    layers = _layers(plan, probed)
    tail_missing = bypassed
    if probed.tail_error is not None:
        (folder / TAIL_NAME).unlink()
        tail_missing = probed.tail_error
    head, classes = output_head(
        plan.head, plan.sigmoid, probed.classes, probed.output_size != (0, 0)
    )
    labels = _write_labels(folder, plan.labels, classes)
    output = OutputSpec(
        plan.output,
        classes,
        kind=plan.kind,
        height=probed.output_size[0],
        width=probed.output_size[1],
        background=_background(plan.background, probed.classes),
        head=head,
    )
    has_weights = (folder / WEIGHTS_NAME).is_file()
    files = _graph_files(has_tail=tail_missing is None) + ([WEIGHTS_NAME] if has_weights else [])
    return Manifest(
        input=_input_spec(plan),
        output=output,
        layers=layers,
        weights=WEIGHTS_NAME if has_weights else None,
        labels=labels,
        source=plan.source,
        checksums={name: sha256(folder / name) for name in files},
        tail=TAIL_NAME if tail_missing is None else None,
        tail_missing=tail_missing,
    )


def _layers(plan: _Plan, probed: _Probed) -> tuple[LayerSpec, ...]:
    """Each target layer with its activation as probed; the user's `tokens` read the first."""
    (_, deepest_length), *_ = probed.shapes
    if deepest_length is None and plan.tokens:
        raise BundleError(f"--tokens is for a token tensor (N×L×C); {plan.deepest!r} is 4-D")
    return tuple(
        LayerSpec(
            name, _activation_spec(plan, tensor, shape, length, plan.tokens if n == 0 else None)
        )
        for n, (tensor, name, (shape, length)) in enumerate(
            zip(plan.tensors, plan.names, probed.shapes, strict=True)
        )
    )


def _activation_spec(
    plan: _Plan,
    tensor: str,
    shape: tuple[int, int, int],
    length: int | None,
    tokens: tuple[int, int, int] | None,
) -> ActivationSpec:
    """A feature map in the plan's layout, or L tokens read as P leading ones then a grid
    (the user's `tokens`, else the one reading that fits the input size)."""
    if length is None:
        return ActivationSpec(tensor, *shape, layout=plan.maps_layout)
    prefix, gh, gw = (
        check_grid(length, tokens) if tokens else infer_grid(length, plan.size, plan.prefix_hint)
    )
    return ActivationSpec(tensor, shape[0], gh, gw, layout="NLC", prefix=prefix)


def _write_labels(folder: Path, labels: tuple[str, ...] | None, classes: int) -> str | None:
    """Write one label a line, when given; the file's name, or None."""
    if labels is None:
        return None
    if len(labels) != classes:
        raise BundleError(f"{len(labels)} labels given for a model with {classes} classes")
    write_text_atomic(folder / LABELS_NAME, "\n".join(labels) + "\n")
    return LABELS_NAME


def _input_spec(plan: _Plan) -> InputSpec:
    """The input as written: the plan's input name and size, in the user's convention."""
    return InputSpec(
        name=plan.input, height=plan.size[0], width=plan.size[1], **plan.prep.convention()
    )


def _background(background: int | None, classes: int) -> int | None:
    if background is not None and not 0 <= background < classes:
        raise BundleError(f"background class {background} is not below {classes}")
    return background


def _check_tail(
    folder: Path, activation: str, output: str, acts: np.ndarray, scores: np.ndarray
) -> str | None:
    """None when the tail graph runs and reproduces the model's outputs (relative 1e-4)."""
    try:
        tail, _ = build_session(folder / TAIL_NAME, "cpu")
        (again,) = tail.run([output], {activation: acts})
    except Exception as exc:  # noqa: BLE001 - report ONNX Runtime's own words
        return f"the tail graph does not run in ONNX Runtime: {str(exc).splitlines()[0]}"
    scale = max(float(np.abs(scores).max()), 1e-6)
    if again.shape != scores.shape or float(np.abs(again - scores).max()) > 1e-4 * scale:
        return "the tail graph does not reproduce the model's outputs"
    return None


def producer_op(model: onnx.ModelProto, output: str) -> str | None:
    """The type of the node that produces `output` (None for a graph input)."""
    for node in model.graph.node:
        if output in node.output:
            return node.op_type
    return None


def output_kind(model: onnx.ModelProto, output: str) -> str:
    """'probabilities' when the output is produced by a Softmax or Sigmoid node, else
    'logits'."""
    return "probabilities" if producer_op(model, output) in ("Softmax", "Sigmoid") else "logits"


def _given_head(head: str | None) -> str | None:
    if head is not None and head not in HEADS:
        raise BundleError(f"unknown head {head!r}: choose one of {', '.join(HEADS)}")
    return head


def output_head(
    given: str | None, sigmoid: bool, columns: int, segmentation: bool = False
) -> tuple[str, int]:
    """The head and the classes of an output of `columns` scores: the one given, checked,
    else one column → binary, a Sigmoid's → multi-label, else softmax."""
    head = given or (
        "softmax"
        if segmentation
        else "binary"
        if columns == 1
        else "multi-label"
        if sigmoid
        else "softmax"
    )
    if segmentation and head != "softmax":
        raise BundleError("a segmentation output's head is softmax")
    if (head == "binary") != (columns == 1):
        raise BundleError(
            f"a binary head has one output column; this output has {columns}"
            if head == "binary"
            else f"a {head} head needs several output columns; this output has one "
            "(a binary model: --head binary)"
        )
    return head, 2 if head == "binary" else columns
