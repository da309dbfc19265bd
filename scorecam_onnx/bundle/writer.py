"""Writing a bundle: cut an ONNX classifier at a tensor, probe the graphs, write the folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from ..errors import BundleError
from ..fileio import sha256, staged_folder, write_text_atomic
from ..runners.ort import build_session
from . import graphs
from .bundle import TAIL_NAME, WEIGHTS_NAME, Bundle
from .manifest import MANIFEST_NAME, ActivationSpec, InputSpec, Manifest, OutputSpec
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
    activation: str,
    output: str | None = None,
    preprocessing: Preprocessing | None = None,
    layer: str | None = None,
    labels: list[str] | None = None,
    source: dict[str, str] | None = None,
    force: bool = False,
    tokens: tuple[int, int, int] | None = None,
    activation_layout: str | None = None,
    prefix_hint: int | None = None,
) -> Bundle:
    """Cut `model` at the tensor `activation` and write a bundle folder.

    The two graphs share one external weights file, so the weights are stored once. Both get a
    symbolic batch axis and are run once in ONNX Runtime before the bundle is published
    (written under a temporary name, then renamed).

    Args:
        model: a classifier graph with one image input, weights loaded.
        out_dir: the bundle folder to create.
        activation: the target tensor: N×K×h×w, N×h×w×K (NHWC), or N×L×K tokens.
        output: the class-score output; default the graph's only output.
        preprocessing: how images become inputs; the size defaults to the graph's input size.
        layer: a readable name for the target layer (default: the tensor name).
        labels: one class name per output class.
        source: provenance (framework, model, version).
        force: replace an existing `out_dir`.
        tokens: (P, gh, gw) for a token tensor: P leading tokens, then a gh×gw grid;
            default: inferred from L and the input size when only one reading fits.
        activation_layout: "NCHW" or "NHWC" for a 4-D target; default: the input's layout.
        prefix_hint: P as the model states it (a class token: 1), to settle the inference.
    """
    prep = preprocessing or Preprocessing()
    out = Path(out_dir)
    if out.exists() and not force:
        raise BundleError(f"{out}: already exists (use --force to replace it)")
    image_input = graphs.single_input(model)
    output = output or graphs.only_output(model)
    graphs.check_tensor(model, activation, output)
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
        features = graphs.extract(saved, [image_input.name], [activation])
        graphs.free_batch_axis(features, [image_input.name, activation])
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

        act_layout = activation_layout or prep.layout
        probed = _probe(staging, image_input.name, activation, output, (height, width),
                        prep.layout, act_layout, tail_missing is None)
        act_shape, classes, tail_error, length = probed
        prefix = 0
        if length is not None:
            act_layout = "NLC"
            prefix, gh, gw = (check_grid(length, tokens) if tokens else
                              infer_grid(length, (height, width), prefix_hint))
            act_shape = (act_shape[0], gh, gw)
        elif tokens:
            raise BundleError(f"--tokens is for a token tensor (N×L×C); {activation!r} is 4-D")
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
            output=OutputSpec(output, classes, kind=output_kind(model, output)),
            layer=layer or activation,
            weights=WEIGHTS_NAME if has_weights else None,
            labels="labels.txt" if labels is not None else None,
            source=dict(source or {}),
            checksums={name: sha256(staging / name) for name in names},
            tail=TAIL_NAME if tail_missing is None else None,
            tail_missing=tail_missing,
        )
        write_text_atomic(staging / MANIFEST_NAME, manifest.dumps())
    return Bundle.load(out)


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


def _probe(
    folder: Path, input_name: str, activation: str, output: str, size: tuple[int, int],
    layout: str, act_layout: str, has_tail: bool,
) -> tuple[tuple[int, int, int], int, str | None, int | None]:
    """Run the graphs on a batch of two; return (K, h, w), the number of classes, why the
    tail graph cannot be used (None when tail(features(x)) matches model(x)), and L for a
    token tensor (N×L×K; then h and w are placeholders)."""
    shape = (2, 3, *size) if layout == "NCHW" else (2, *size, 3)
    probe = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    try:
        features, _ = build_session(folder / "features.onnx", "cpu")
        model, _ = build_session(folder / "model.onnx", "cpu")
        (acts,) = features.run([activation], {input_name: probe})
        (scores,) = model.run([output], {input_name: probe})
    except Exception as exc:  # noqa: BLE001 - report ONNX Runtime's own words
        raise BundleError(f"the cut graphs do not run in ONNX Runtime: {exc}") from None
    tail_error = _check_tail(folder, activation, output, acts, scores) if has_tail else None
    if acts.ndim not in (3, 4) or acts.shape[0] != 2:
        raise BundleError(f"tensor {activation!r} has shape {acts.shape}, expected N×K×h×w, "
                          "N×h×w×K or N×L×K tokens")
    if scores.ndim != 2 or scores.shape[0] != 2:
        raise BundleError(f"output {output!r} has shape {scores.shape}, expected N×C")
    if acts.ndim == 3:
        return (int(acts.shape[2]), 0, 0), int(scores.shape[1]), tail_error, int(acts.shape[1])
    k, h, w = acts.shape[1:] if act_layout == "NCHW" else (acts.shape[3], *acts.shape[1:3])
    if h * w <= 1:
        raise BundleError(f"tensor {activation!r} has a spatial size of {h}×{w}: a saliency map "
                          "needs more (pick a layer before the global pooling)")
    return (int(k), int(h), int(w)), int(scores.shape[1]), tail_error, None


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
