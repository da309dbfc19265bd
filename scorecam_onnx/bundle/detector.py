"""Detector bundles: an ONNX object detector recognised by its outputs, given a decoder and
its exporter's preprocessing; opened in place (black-box methods) or written as a folder
with a features graph at a layer (layer methods).

The output layouts (`manifest.DECODERS`) are told apart by one run on noise: three outputs,
one of them integer labels → torchvision; two, one ending in 4 → DETR; one N×a×b output →
end-to-end when b is 6, else YOLOv8 when a < b, else YOLOv5.
"""

from __future__ import annotations

import ast
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..errors import BundleError
from ..fileio import sha256, staged_folder, write_text_atomic
from ..runners.ort import build_session
from . import graphs
from .bundle import WEIGHTS_NAME, Bundle
from .manifest import (
    DECODERS,
    MANIFEST_NAME,
    ActivationSpec,
    DecoderSpec,
    InputSpec,
    LayerSpec,
    Manifest,
    OutputSpec,
)
from .writer import EXTERNAL_THRESHOLD, Preprocessing

# The input size of a detector whose graph and metadata fix none (YOLO's).
DETECTOR_SIZE = 640
# NMS IoU thresholds of the raw heads, as their exporters' predict uses them.
NMS_IOU = {"yolov8": 0.7, "yolov5": 0.45}
# Classes of the layouts that report only labels, when no labels or metadata tell (COCO).
REPORTED_CLASSES = {"end2end": 80, "torchvision": 91}
YOLO_KINDS = ("yolov8", "yolov5", "end2end")
# The most boxes an end-to-end export reports (ultralytics keeps 300).
MAX_REPORTED = 1000
NO_NORMALISATION: dict[str, Any] = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}


def is_detector(model: onnx.ModelProto) -> bool:
    """Whether a graph looks like a detector: several outputs, or one 3-D output."""
    outputs = model.graph.output
    return len(outputs) > 1 or (len(outputs) == 1 and len(graphs.dims(outputs[0])) == 3)


def suggested_layer(model: onnx.ModelProto) -> str | None:
    """The last backbone stage of a detector with a feature pyramid: the tensor the first
    upsampling (Resize) reads, the coarsest map the neck starts from; None without one."""
    for node in model.graph.node:
        if node.op_type in ("Resize", "Upsample") and node.input:
            return node.input[0]
    return None


def input_dims(model: onnx.ModelProto) -> tuple[int | str | None, ...]:
    """The image input's shape (3-D for torchvision detectors, which take one image)."""
    return graphs.dims(graphs.single_input(model))


def probe(
    path: Path, model: onnx.ModelProto, size: tuple[int, int], batch: int = 1
) -> dict[str, np.ndarray]:
    """Every output of one run on noise, by name."""
    image = graphs.single_input(model)
    shape = (3, *size) if len(input_dims(model)) == 3 else (batch, 3, *size)
    noise = np.random.default_rng(0).random(shape, dtype=np.float32)
    names = [o.name for o in model.graph.output]
    try:
        session, _ = build_session(path, "cpu")
        values = session.run(names, {image.name: noise})
    except Exception as exc:  # noqa: BLE001 - report ONNX Runtime's own words
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BundleError(f"{path}: the model does not run in ONNX Runtime: {first}") from None
    return dict(zip(names, values, strict=True))


def recognise(
    outputs: dict[str, np.ndarray], kind: str | None = None
) -> tuple[DecoderSpec, int | None]:
    """The decoder of a detector's outputs (one run's, by name) and its classes (None where
    the layout does not tell); `kind` forces a layout. A `BundleError` names the outputs and
    the choices when none fits."""
    if kind is not None and kind not in DECODERS:
        raise BundleError(f"unknown decoder {kind!r}: choose one of {', '.join(DECODERS)}")
    found = _layout(outputs, kind)
    if found is None:
        shapes = ", ".join(f"{n} {'×'.join(map(str, v.shape))}" for n, v in outputs.items())
        raise BundleError(
            f"the detector's outputs ({shapes}) fit no known layout: choose "
            f"one with --decoder ({', '.join(DECODERS)})"
        )
    return found


def _layout(
    outputs: dict[str, np.ndarray], kind: str | None
) -> tuple[DecoderSpec, int | None] | None:
    names = list(outputs)
    integer = [n for n in names if np.issubdtype(outputs[n].dtype, np.integer)]
    if len(names) == 3 and kind in (None, "torchvision") and len(integer) == 1:
        boxes = [
            n
            for n in names
            if outputs[n].ndim == 2 and outputs[n].shape[-1] == 4 and n not in integer
        ]
        scores = [n for n in names if n not in integer and n not in boxes]
        if len(boxes) == 1 and len(scores) == 1:
            return DecoderSpec("torchvision", (boxes[0], integer[0], scores[0])), None
    if len(names) == 2 and kind in (None, "detr"):
        found = _detr(outputs, names, forced=kind == "detr")
        if found is not None:
            return found
    if len(names) != 1 or outputs[names[0]].ndim != 3:
        return None
    a, b = outputs[names[0]].shape[1:]
    # an end-to-end export keeps a few hundred boxes; a one-class YOLOv5 head (also 6 wide)
    # has thousands of anchors
    chosen = kind or (
        "end2end" if b == 6 and a <= MAX_REPORTED else "yolov8" if a < b else "yolov5"
    )
    classes = {"yolov8": a - 4, "yolov5": b - 5, "end2end": None}.get(chosen, 0)
    if (
        chosen not in YOLO_KINDS
        or (classes is not None and classes < 1)
        or (chosen == "end2end" and b != 6)
    ):
        return None
    return DecoderSpec(chosen, (names[0],), NMS_IOU.get(chosen, 0.7)), classes


def _detr(
    outputs: dict[str, np.ndarray], names: list[str], forced: bool
) -> tuple[DecoderSpec, int] | None:
    """DETR's logits (N×Q×(C+1)) and boxes (N×Q×4): the one output ending in 4, or of two
    that do, the one in [0, 1] (normalised boxes; forced: the second, as exporters order
    them)."""
    if not all(outputs[n].ndim == 3 for n in names):
        return None
    boxes = [n for n in names if outputs[n].shape[-1] == 4]
    if len(boxes) == 2:
        boxes = [names[1]] if forced else [n for n in boxes if _normalised(outputs[n])]
    if len(boxes) != 1:
        return None
    logits = next(n for n in names if n != boxes[0])
    if outputs[logits].shape[-1] < 2:
        return None
    return DecoderSpec("detr", (logits, boxes[0])), outputs[logits].shape[-1] - 1


def _normalised(values: np.ndarray) -> bool:
    """Whether every value lies in [0, 1] (DETR's normalised boxes, telling them from
    logits when both end in 4)."""
    return float(values.min(initial=0.0)) >= 0.0 and float(values.max(initial=0.0)) <= 1.0


def metadata_labels(model: onnx.ModelProto) -> list[str] | None:
    """Class names an exporter wrote into the graph's metadata (ultralytics' 'names')."""
    for prop in model.metadata_props:
        if prop.key == "names":
            try:
                names = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                return None
            if isinstance(names, dict) and all(isinstance(k, int) for k in names):
                return [str(names[i]) for i in sorted(names)]
    return None


def _metadata_size(model: onnx.ModelProto) -> tuple[int, int] | None:
    for prop in model.metadata_props:
        if prop.key == "imgsz":
            try:
                size = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                return None
            if isinstance(size, list | tuple) and len(size) == 2:
                return int(size[0]), int(size[1])
    return None


def overrides_of(given: dict[str, Any]) -> dict[str, Any]:
    """Preprocessing settings given by name (None: not given), an `input_size` (H, W) as
    height and width: the `overrides` of `detector_preprocessing`."""
    overrides = {k: v for k, v in given.items() if v is not None and k != "input_size"}
    if given.get("input_size") is not None:
        overrides["height"], overrides["width"] = given["input_size"]
    return overrides


def detector_preprocessing(
    model: onnx.ModelProto,
    kind: str,
    given: Preprocessing | None,
    overrides: dict[str, Any] | None = None,
) -> tuple[Preprocessing, bool]:
    """The preprocessing given, or the exporter's for the layout (YOLO: letterbox, 0–1, no
    mean or std; torchvision: stretched, 0–1; DETR: stretched, ImageNet's mean and std)
    with `overrides` (settings by name), the size from the graph, its metadata or 640; and
    whether any of it was assumed."""
    if overrides:
        base, _ = detector_preprocessing(model, kind, None)
        return detector_preprocessing(model, kind, replace(base, **overrides))
    size, fixed = probe_size(model)
    if given is not None and given.height is not None:
        if fixed and (given.height, given.width) != size:
            raise BundleError(
                f"input size {given.height}x{given.width} differs from the "
                f"graph's {size[0]}x{size[1]}"
            )
        return given, False
    if given is not None:
        return replace(given, height=size[0], width=size[1]), False
    base = Preprocessing(
        height=size[0],
        width=size[1],
        interpolation="linear",
        resize="letterbox" if kind in YOLO_KINDS else "stretch",
    )
    return (base if kind == "detr" else replace(base, **NO_NORMALISATION)), True


def open_detector(
    path: str | Path,
    model: onnx.ModelProto | None = None,
    preprocessing: Preprocessing | None = None,
    decoder: str | None = None,
    labels: list[str] | None = None,
    quiet: bool = False,
    overrides: dict[str, Any] | None = None,
) -> Bundle:
    """A plain ONNX detector as a model-only bundle, read in place (nothing is written):
    `preprocessing` in full, or its exporter's with `overrides` (settings by name)."""
    path = Path(path)
    model = model or graphs.load_model(path, load_weights=False)
    spec, classes, prep, labels = _describe(
        path, model, preprocessing, decoder, labels, quiet, overrides
    )
    manifest = _manifest(
        graphs.single_input(model).name,
        prep,
        spec,
        classes,
        path.name,
        weights=None,
        labels=None,
        layers=(),
        source={"framework": "onnx", "model": path.name},
    )
    return Bundle(path.parent, manifest, tuple(labels) if labels else None, plain=True)


def _describe(
    path: Path,
    model: onnx.ModelProto,
    preprocessing: Preprocessing | None,
    decoder: str | None,
    labels: list[str] | None,
    quiet: bool,
    overrides: dict[str, Any] | None = None,
) -> tuple[DecoderSpec, int, Preprocessing, list[str] | None]:
    """The decoder, classes, preprocessing and labels of a detector graph at `path`."""
    first, _ = probe_size(model)
    outputs = probe(path, model, first)
    spec, classes = recognise(outputs, decoder)
    prep, assumed = detector_preprocessing(model, spec.kind, preprocessing, overrides)
    labels = labels if labels is not None else metadata_labels(model)
    count = classes or (len(labels) if labels else REPORTED_CLASSES[spec.kind])
    if labels is not None and len(labels) != count:
        raise BundleError(f"{len(labels)} labels given for a detector with {count} classes")
    if assumed and not quiet:
        warnings.warn(assumed_note(path, spec.kind, prep), stacklevel=3)
    return spec, count, prep, labels


def assumed_note(path: Path | str, kind: str, prep: Preprocessing | InputSpec) -> str:
    """The one line saying which preprocessing a plain detector was given."""
    mean, std = (",".join(f"{v:g}" for v in values) for values in (prep.mean, prep.std))
    return (
        f"{path}: a detector ({kind} outputs); assumed its exporter's preprocessing "
        f"({prep.resize} to {prep.height}×{prep.width}, mean {mean}, std {std}); set it "
        "with --input-size, --mean, --std, --resize"
    )


def probe_size(model: onnx.ModelProto) -> tuple[tuple[int, int], bool]:
    """A detector's input size (its graph's fixed size, its metadata's, or 640) and whether
    the graph fixes it."""
    height, width = input_dims(model)[-2:]
    if isinstance(height, int) and isinstance(width, int):
        return (height, width), True
    return _metadata_size(model) or (DETECTOR_SIZE, DETECTOR_SIZE), False


def write_detector_bundle(
    model: onnx.ModelProto,
    path: Path,
    out_dir: str | Path,
    tensors: list[str],
    names: list[str] | None = None,
    overrides: dict[str, Any] | None = None,
    decoder: str | None = None,
    labels: list[str] | None = None,
    force: bool = False,
) -> Bundle:
    """Write a detector bundle: the whole detector, and a features graph at `tensors` (the
    deepest first) when any are given; its exporter's preprocessing with `overrides`
    (settings by name). `model` has its weights loaded."""
    out = Path(out_dir)
    if out.exists() and not force:
        raise BundleError(f"{out}: already exists (use --force to replace it)")
    spec, classes, prep, labels = _describe(path, model, None, decoder, labels, True, overrides)
    image = graphs.single_input(model).name
    dims = input_dims(model)
    # a batch axis fixed at 1 stays so (the graph may read it in its reshapes): the engine
    # then runs one input per call
    batched = len(dims) == 4 and not isinstance(dims[0], int)
    produced = {o for node in model.graph.node for o in node.output}
    missing = [t for t in tensors if t not in produced]
    if missing:
        raise BundleError(
            f"no tensor named {missing[0]!r} in the graph (`scorecam-onnx layers "
            f"{path.name}` lists them)"
        )
    with staged_folder(out) as staging:
        staging.mkdir(parents=True)
        if batched:
            graphs.free_batch_axis(model, [image, *spec.outputs])
        onnx.save_model(
            model,
            str(staging / "model.onnx"),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=WEIGHTS_NAME,
            size_threshold=EXTERNAL_THRESHOLD,
            convert_attribute=False,
        )
        layers = _cut_features(
            staging, image, tensors, names or tensors, prep, batched, len(dims) == 3
        )
        if labels:
            write_text_atomic(staging / "labels.txt", "\n".join(labels) + "\n")
        files = [
            "model.onnx",
            *(["features.onnx"] if layers else []),
            *([WEIGHTS_NAME] if (staging / WEIGHTS_NAME).is_file() else []),
        ]
        manifest = _manifest(
            image,
            prep,
            spec,
            classes,
            "model.onnx",
            weights=WEIGHTS_NAME if WEIGHTS_NAME in files else None,
            labels="labels.txt" if labels else None,
            layers=layers,
            source={"framework": "onnx", "model": path.name},
            checksums={name: sha256(staging / name) for name in files},
        )
        write_text_atomic(staging / MANIFEST_NAME, manifest.dumps())
    return Bundle.load(out)


def _cut_features(
    folder: Path,
    image: str,
    tensors: list[str],
    names: list[str],
    prep: Preprocessing,
    free_batch: bool,
    unbatched: bool,
) -> tuple[LayerSpec, ...]:
    """The features graph (input → the layers' tensors) and the layers it gives."""
    if not tensors:
        return ()
    saved = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    features = graphs.extract(saved, [image], list(tensors))
    if free_batch:
        graphs.free_batch_axis(features, [image, *tensors])
    onnx.save_model(features, str(folder / "features.onnx"))
    onnx.checker.check_model(str(folder / "features.onnx"))
    if prep.height is None or prep.width is None:
        raise BundleError("a detector's input size must be known to cut its features graph")
    size = (prep.height, prep.width)
    noise = np.zeros((3, *size) if unbatched else (1, 3, *size), np.float32)
    session, _ = build_session(folder / "features.onnx", "cpu")
    values = session.run(list(tensors), {image: noise})
    layers = []
    for tensor, name, value in zip(tensors, names, values, strict=True):
        shape = value.shape if value.ndim == 4 else (1, *value.shape)
        if len(shape) != 4 or shape[2] * shape[3] <= 1:
            raise BundleError(
                f"tensor {tensor!r} has shape {value.shape}: a detector's "
                "layer must be N×K×h×w maps"
            )
        channels, height, width = (int(d) for d in shape[1:])
        layers.append(LayerSpec(name, ActivationSpec(tensor, channels, height, width)))
    return tuple(layers)


def _manifest(
    input_name: str,
    prep: Preprocessing,
    spec: DecoderSpec,
    classes: int,
    model: str,
    weights: str | None,
    labels: str | None,
    layers: tuple[LayerSpec, ...],
    source: dict[str, str],
    checksums: dict[str, str] | None = None,
) -> Manifest:
    assert prep.height is not None and prep.width is not None
    return Manifest(
        input=InputSpec(name=input_name, height=prep.height, width=prep.width, **prep.convention()),
        output=OutputSpec(spec.outputs[0], classes, kind="probabilities"),
        layers=layers,
        features="features.onnx" if layers else None,
        model=model,
        weights=weights,
        labels=labels,
        source=source,
        checksums=checksums or {},
        tail=None,
        tail_missing="a detector has no tail graph",
        decoder=spec,
    )
