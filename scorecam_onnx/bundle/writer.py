"""Writing a bundle: cut an ONNX classifier at a tensor, probe the graphs, write the folder."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from ..errors import BundleError
from ..fileio import sha256, staged_folder, write_text_atomic
from ..runners.ort import build_session
from . import graphs
from .bundle import TAIL_NAME, WEIGHTS_NAME, Bundle
from .manifest import MANIFEST_NAME, ActivationSpec, InputSpec, LayerSpec, Manifest, OutputSpec
from .tokens import check_grid, infer_grid

# Tensors below this size stay inside the graphs (shapes and small constants).
EXTERNAL_THRESHOLD = 1024


@dataclass(frozen=True)
class Preprocessing:
    """Input settings given by the user when a bundle is written (size taken from the graph)."""

    height: int | None = None
    width: int | None = None
    layout: str = "NCHW"
    color: str = "RGB"
    scale: float = 1.0 / 255.0
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    interpolation: str = "area"
    resize: str = "stretch"
    crop_fraction: float = 1.0


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
    """
    prep = preprocessing or Preprocessing()
    out = Path(out_dir)
    if out.exists() and not force:
        raise BundleError(f"{out}: already exists (use --force to replace it)")
    image_input = graphs.single_input(model)
    output = output or graphs.only_output(model)
    tensors = [activation] if isinstance(activation, str) else list(activation)
    layer_names = (tensors if layer is None else [layer] if isinstance(layer, str)
                   else list(layer))
    if len(layer_names) != len(tensors):
        raise BundleError(f"{len(layer_names)} layer names for {len(tensors)} target tensors")
    if not tensors or len(set(tensors)) != len(tensors):
        raise BundleError("give each target tensor once")
    if len(tensors) > 1 and tokens:
        raise BundleError("--tokens is for a single token layer")
    for tensor in tensors:
        graphs.check_tensor(model, tensor, output)
    deepest = graphs.deepest(model, tensors)
    order = [tensors.index(deepest), *(i for i in range(len(tensors)) if tensors[i] != deepest)]
    tensors, layer_names = [tensors[i] for i in order], [layer_names[i] for i in order]
    activation = tensors[0]
    height, width = _input_size(image_input, prep)

    with staged_folder(out) as staging:
        staging.mkdir(parents=True)
        full = graphs.extract(model, [image_input.name], [output])
        graphs.free_batch_axis(full, [image_input.name, output])
        onnx.save_model(
            full,
            str(staging / "model.onnx"),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=WEIGHTS_NAME,
            size_threshold=EXTERNAL_THRESHOLD,
            convert_attribute=False,
        )
        # Cut the features graph from the saved one, so its weights point into the same file.
        saved = onnx.load(str(staging / "model.onnx"), load_external_data=False)
        features = graphs.extract(saved, [image_input.name], tensors)
        graphs.free_batch_axis(features, [image_input.name, *tensors])
        onnx.save_model(features, str(staging / "features.onnx"))
        tail_missing = graphs.bypass(saved, image_input.name, activation, output)
        if tail_missing is None:
            tail = graphs.extract(saved, [activation], [output])
            graphs.rebase_batch_reads(tail, image_input.name, activation)
            graphs.free_batch_axis(tail, [activation, output])
            onnx.save_model(tail, str(staging / TAIL_NAME))
        graphs_written = ["features.onnx", "model.onnx"] + (
            [TAIL_NAME] if tail_missing is None else [])
        for name in graphs_written:
            onnx.checker.check_model(str(staging / name))

        act_layout = maps_layout = activation_layout or prep.layout
        probed = _probe(staging, image_input.name, tensors, output, (height, width),
                        prep.layout, act_layout, tail_missing is None)
        (act_shape, length), *others = probed.shapes
        classes, tail_error = probed.classes, probed.tail_error
        if background is not None and probed.output_size == (0, 0):
            raise BundleError("a background class is for segmentation models (N×C×H×W "
                              "outputs)")
        prefix = 0
        if length is not None:
            act_layout = "NLC"
            prefix, gh, gw = (check_grid(length, tokens) if tokens else
                              infer_grid(length, (height, width), prefix_hint))
            act_shape = (act_shape[0], gh, gw)
        elif tokens:
            raise BundleError(f"--tokens is for a token tensor (N×L×C); {activation!r} is 4-D")
        more = []
        for tensor, name, (shape, tokens_length) in zip(tensors[1:], layer_names[1:], others,
                                                        strict=True):
            if tokens_length is None:
                spec = ActivationSpec(tensor, *shape, layout=maps_layout)
            else:
                p, gh, gw = infer_grid(tokens_length, (height, width), prefix_hint)
                spec = ActivationSpec(tensor, shape[0], gh, gw, layout="NLC", prefix=p)
            more.append(LayerSpec(name, spec))
        if tail_error is not None:
            (staging / TAIL_NAME).unlink()
            graphs_written.remove(TAIL_NAME)
            tail_missing = tail_error
        if labels is not None and len(labels) != classes:
            raise BundleError(f"{len(labels)} labels given for a model with {classes} classes")
        if labels is not None:
            write_text_atomic(staging / "labels.txt", "\n".join(labels) + "\n")
        has_weights = (staging / WEIGHTS_NAME).is_file()
        names = graphs_written + ([WEIGHTS_NAME] if has_weights else [])
        manifest = Manifest(
            input=InputSpec(
                name=image_input.name, height=height, width=width, layout=prep.layout,
                color=prep.color, scale=prep.scale, mean=prep.mean, std=prep.std,
                resize=prep.resize, interpolation=prep.interpolation,
                crop_fraction=prep.crop_fraction,
            ),
            activation=ActivationSpec(activation, *act_shape, layout=act_layout,
                                      prefix=prefix),
            output=OutputSpec(output, classes, kind=output_kind(model, output),
                              height=probed.output_size[0], width=probed.output_size[1],
                              background=_background(background, classes)),
            layer=layer_names[0],
            weights=WEIGHTS_NAME if has_weights else None,
            labels="labels.txt" if labels is not None else None,
            source=dict(source or {}),
            checksums={name: sha256(staging / name) for name in names},
            tail=TAIL_NAME if tail_missing is None else None,
            tail_missing=tail_missing,
            more_layers=tuple(more),
        )
        write_text_atomic(staging / MANIFEST_NAME, manifest.dumps())
    return Bundle.load(out)


def _background(background: int | None, classes: int) -> int | None:
    if background is not None and not 0 <= background < classes:
        raise BundleError(f"background class {background} is not below {classes}")
    return background


def _input_size(image_input: onnx.ValueInfoProto, prep: Preprocessing) -> tuple[int, int]:
    shape = graphs.dims(image_input)
    if len(shape) != 4:
        raise BundleError(f"input {image_input.name!r} must be 4-D, has shape {shape}")
    h, w = (shape[2], shape[3]) if prep.layout == "NCHW" else (shape[1], shape[2])
    channels = shape[1] if prep.layout == "NCHW" else shape[3]
    if isinstance(channels, int) and channels != 3:
        raise BundleError(
            f"input {image_input.name!r} has {channels} channels in {prep.layout} layout; "
            "an RGB image input needs 3 (check --layout)"
        )
    height = prep.height or (h if isinstance(h, int) else None)
    width = prep.width or (w if isinstance(w, int) else None)
    if height is None or width is None:
        raise BundleError(f"input {image_input.name!r} has no fixed size: give --input-size")
    for given, fixed in ((height, h), (width, w)):
        if isinstance(fixed, int) and given != fixed:
            raise BundleError(f"--input-size {height}x{width} differs from the graph's {h}x{w}")
    return height, width


@dataclass(frozen=True)
class _Probed:
    """What one run of the cut graphs showed: per tensor ((K, h, w), L for tokens or None),
    the number of classes, and why the tail cannot be used (None when it can)."""

    shapes: list[tuple[tuple[int, int, int], int | None]]
    classes: int
    tail_error: str | None
    # (H, W) of a segmentation output (N×C×H×W); (0, 0) for class scores (N×C).
    output_size: tuple[int, int] = (0, 0)


def _probe(
    folder: Path, input_name: str, tensors: list[str], output: str, size: tuple[int, int],
    layout: str, act_layout: str, has_tail: bool,
) -> _Probed:
    """Run the graphs on a batch of two: the shape of each target tensor (for a token
    tensor N×L×K, h and w are placeholders and L is given), the classes, and whether
    tail(features(x)) matches model(x) at the first (deepest) tensor."""
    shape = (2, 3, *size) if layout == "NCHW" else (2, *size, 3)
    probe = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    try:
        features, _ = build_session(folder / "features.onnx", "cpu")
        model, _ = build_session(folder / "model.onnx", "cpu")
        outputs = features.run(tensors, {input_name: probe})
        (scores,) = model.run([output], {input_name: probe})
    except Exception as exc:  # noqa: BLE001 - report ONNX Runtime's own words
        raise BundleError(f"the cut graphs do not run in ONNX Runtime: {exc}") from None
    tail_error = _check_tail(folder, tensors[0], output, outputs[0], scores) if has_tail else None
    if scores.ndim not in (2, 4) or scores.shape[0] != 2:
        raise BundleError(f"output {output!r} has shape {scores.shape}, expected N×C class "
                          "scores or N×C×H×W per-pixel scores")
    found = []
    for tensor, acts in zip(tensors, outputs, strict=True):
        if acts.ndim not in (3, 4) or acts.shape[0] != 2:
            raise BundleError(f"tensor {tensor!r} has shape {acts.shape}, expected N×K×h×w, "
                              "N×h×w×K or N×L×K tokens")
        if acts.ndim == 3:
            found.append(((int(acts.shape[2]), 0, 0), int(acts.shape[1])))
            continue
        k, h, w = acts.shape[1:] if act_layout == "NCHW" else (acts.shape[3], *acts.shape[1:3])
        if h * w <= 1:
            raise BundleError(f"tensor {tensor!r} has a spatial size of {h}×{w}: a saliency "
                              "map needs more (pick a layer before the global pooling)")
        found.append(((int(k), int(h), int(w)), None))
    size = (int(scores.shape[2]), int(scores.shape[3])) if scores.ndim == 4 else (0, 0)
    return _Probed(found, int(scores.shape[1]), tail_error, size)


def _check_tail(folder: Path, activation: str, output: str, acts: np.ndarray,
                scores: np.ndarray) -> str | None:
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


def output_kind(model: onnx.ModelProto, output: str) -> str:
    """'probabilities' when the output is produced by a Softmax node, else 'logits'."""
    for node in model.graph.node:
        if output in node.output:
            return "probabilities" if node.op_type == "Softmax" else "logits"
    return "logits"
