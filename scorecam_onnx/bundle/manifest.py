"""The bundle manifest: a versioned JSON document, validated key by key on load.

Older formats are first upgraded to the newest format's dictionary (`upgrade`), so one
reader (`Manifest.from_dict`) reads them all.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import BundleError

FORMAT = "scorecam-onnx-bundle"
FORMAT_VERSION = 5
# Versions this release reads: 1 had no tail graph and no token activations; 2 always had a
# target layer (3 allows none: a model-only bundle, for black-box methods); 4 adds detectors
# (a 'decoder') and the letterbox resize policy; 5 inputs of any number of channels and how
# raw values become inputs (a range, a window, a DICOM file's VOI LUT, display bands).
READABLE_VERSIONS = (1, 2, 3, 4, 5)
NO_TAIL_IN_V1 = "bundle format 1 predates tail graphs: export or split the model again to add one"
MANIFEST_NAME = "manifest.json"

LAYOUTS = ("NCHW", "NHWC")
# Activation layouts: channel maps, or tokens (N×L×C: `prefix` leading tokens, then the
# patch tokens of an h×w grid in row-major order).
ACTIVATION_LAYOUTS = (*LAYOUTS, "NLC")
COLORS = ("RGB", "BGR")
RESIZE_POLICIES = ("stretch", "crop", "letterbox")
# Detector output layouts a decoder reads (see `DecoderSpec`).
DECODERS = ("yolov8", "yolov5", "end2end", "torchvision", "detr")
INTERPOLATIONS = ("area", "linear", "cubic", "nearest", "lanczos")
OUTPUT_KINDS = ("logits", "probabilities")
# What a classifier's scores mean: exclusive classes (softmax), independent labels (sigmoid
# each), or one logit of a positive class (N×1 in the graph, classes 0 and 1 here).
HEADS = ("softmax", "multi-label", "binary")
# Input keys format 5 added.
INPUT_KEYS_OF_5 = ("channels", "input_range", "window", "voi_lut", "display_bands")
# Output keys of a segmentation model, which formats 1 and 2 did not have.
SEGMENTATION_KEYS = ("height", "width", "background")


@dataclass(frozen=True, kw_only=True)
class ImageConvention:
    """How an image becomes input values, shared by `InputSpec` and the writer's settings.

    The image is resized to the input size with OpenCV's `interpolation`: the whole image
    ("stretch"), scaled to cover the size and cut at the centre ("crop"), or scaled to fit
    inside it and centred on a grey canvas ("letterbox", YOLO's). A `crop_fraction` f below 1
    resizes to the size ÷ f first and cuts the centre (timm's `crop_pct`, torchvision's crop
    ÷ resize size).

    A raw value v becomes a unit value u: v over its bit depth's largest value (255, 65535;
    floats are taken as they are), or, with `input_range` (LOW, HIGH), ``(v − LOW) / (HIGH −
    LOW)`` clipped to [0, 1]; `window` (CENTER, WIDTH) is the DICOM linear window, the range
    ``CENTER − 0.5 ∓ (WIDTH − 1) / 2``; `voi_lut` applies a DICOM file's own VOI LUT or window.
    A DICOM file's rescale slope and intercept always apply first, and MONOCHROME1 is
    inverted. The input is then ``(u · 255 · scale − mean) / std`` per channel (`scale`
    1/255 gives inputs on [0, 1]). With no range or window, 8- and 16-bit pixels are
    resized as they are and scaled after; otherwise values are mapped (and clipped) at full
    resolution, then resized.

    `channels` is the input's channel count (the image's bands, in order; an RGB model's in
    `color` order); mean and std have one value per channel. Overlays are drawn on the
    `display_bands` (R, G, B band indices; default the first three, or the one band as grey).
    """

    layout: str = "NCHW"
    color: str = "RGB"
    scale: float = 1.0 / 255.0
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    resize: str = "stretch"
    interpolation: str = "area"
    crop_fraction: float = 1.0
    channels: int = 3
    input_range: tuple[float, float] | None = None
    window: tuple[float, float] | None = None
    voi_lut: bool = False
    display_bands: tuple[int, int, int] | None = None

    def convention(self) -> dict[str, Any]:
        """The convention's settings by name, to give another spec the same ones."""
        return {f.name: getattr(self, f.name) for f in fields(ImageConvention)}

    def value_range(self) -> tuple[float, float] | None:
        """The (LOW, HIGH) raw values mapped to 0 and 1, from `input_range` or `window`;
        None: from the bit depth (or the DICOM file)."""
        if self.window is not None:
            center, width = self.window
            low = center - 0.5 - (width - 1.0) / 2.0
            return low, low + width - 1.0
        return self.input_range

    def for_channels(self, channels: int) -> dict[str, Any]:
        """The convention for an input of `channels` channels: one mean and std each (one
        value is repeated; ImageNet's defaults become 0 and 1 off three channels), checked."""
        if channels < 1:
            raise BundleError(f"an image input needs at least one channel, got {channels}")
        given = {"mean": self.mean, "std": self.std}
        for key, neutral in (("mean", 0.0), ("std", 1.0)):
            values = tuple(given[key])
            default = getattr(ImageConvention(), key)
            if len(values) == 1:
                values = values * channels
            elif len(values) != channels and values == default:
                values = (neutral,) * channels
            if len(values) != channels:
                raise BundleError(f"{len(values)} {key} values for an input of {channels} channels")
            given[key] = values
        settings = {**self.convention(), **given, "channels": channels}
        check_convention(ImageConvention(**settings))
        return settings


def check_convention(c: ImageConvention) -> None:
    """Refuse settings that do not go together (a `BundleError` naming them)."""
    if len(c.mean) != c.channels or len(c.std) != c.channels:
        raise BundleError(f"'mean' and 'std' need {c.channels} values, one per channel")
    if c.color == "BGR" and c.channels != 3:
        raise BundleError("BGR colour order is for a 3-channel input")
    given = [k for k in ("input_range", "window") if getattr(c, k) is not None]
    if len(given) + c.voi_lut > 1:
        raise BundleError("give one of input_range, window and voi_lut")
    if c.input_range is not None and not c.input_range[0] < c.input_range[1]:
        raise BundleError(f"input_range needs LOW < HIGH, got {list(c.input_range)}")
    if c.window is not None and c.window[1] < 1:
        raise BundleError(f"a window's width is at least 1, got {c.window[1]:g}")
    if c.display_bands is not None and not all(0 <= b < c.channels for b in c.display_bands):
        raise BundleError(
            f"display_bands {list(c.display_bands)} must be band indices below {c.channels}"
        )


@dataclass(frozen=True)
class InputSpec(ImageConvention):
    """The model's image input: its name, its ``height × width`` size, and the convention by
    which an image becomes it (settings by keyword only)."""

    name: str
    height: int
    width: int


@dataclass(frozen=True)
class ActivationSpec:
    """The target layer's activation tensor: K channels of h × w.

    With layout "NLC" the tensor is N×L×K tokens: `prefix` leading ones (class,
    distillation, register tokens), then h·w patch tokens in row-major order.
    """

    name: str
    channels: int
    height: int
    width: int
    layout: str = "NCHW"
    prefix: int = 0

    @property
    def tokens(self) -> int:
        """L, the number of tokens of a token activation."""
        return self.prefix + self.height * self.width


@dataclass(frozen=True)
class LayerSpec:
    """A target layer: its name and its activation tensor (an output of the features graph)."""

    layer: str
    activation: ActivationSpec


@dataclass(frozen=True)
class OutputSpec:
    """The model output: C class scores (N×C), either logits or probabilities; or, for a
    segmentation model (format 3), C scores per pixel (N×C×height×width), with an optional
    background class that is never chosen as the class to explain. `head` (format 4) says
    what the scores mean: "softmax" (exclusive classes), "multi-label" (an independent
    sigmoid per label) or "binary" (one logit, N×1 in the graph; classes 0 and 1)."""

    name: str
    classes: int
    kind: str = "logits"
    height: int = 0
    width: int = 0
    background: int | None = None
    head: str = "softmax"

    @property
    def columns(self) -> int:
        """The graph's scores per input: 1 for a binary head, else the classes."""
        return 1 if self.head == "binary" else self.classes

    @property
    def score_kind(self) -> str:
        """What the engine reads the scores as: "logits" or "probabilities" for a softmax
        head, prefixed "sigmoid-" (multi-label) or "binary-"."""
        prefix = {"softmax": "", "multi-label": "sigmoid-", "binary": "binary-"}[self.head]
        return prefix + self.kind

    @property
    def segmentation(self) -> bool:
        """True for per-pixel class scores (N×C×H×W)."""
        return self.height > 0


@dataclass(frozen=True)
class DecoderSpec:
    """How a detector's outputs become detections (boxes in input pixels, scores, labels).

    Attributes:
        kind: the output layout: "yolov8" (N×(4+C)×A: cx, cy, w, h, C class scores),
            "yolov5" (N×A×(5+C): cx, cy, w, h, objectness, C class scores), "end2end"
            (N×K×6: x1, y1, x2, y2, score, class, after NMS), "torchvision" (boxes K×4,
            labels K, scores K, one image per call) or "detr" (logits N×Q×(C+1), the last
            "no object", and boxes N×Q×4 as normalised cx, cy, w, h).
        outputs: the graph's output names, in the order the layout lists them.
        iou: the IoU above which non-maximum suppression drops a box (raw YOLO heads).
    """

    kind: str
    outputs: tuple[str, ...]
    iou: float = 0.7

    def __post_init__(self) -> None:
        object.__setattr__(self, "outputs", tuple(self.outputs))


@dataclass(frozen=True)
class Manifest:
    """Everything the engine needs to know about a bundle, besides the graphs themselves.

    `layers` are the target layers, the deepest (the one computed from all the others, where
    the tail graph is cut) first; each is an output of the features graph. A model-only
    bundle has none, and no features graph: it serves the black-box methods.
    """

    input: InputSpec
    output: OutputSpec
    layers: tuple[LayerSpec, ...] = ()
    features: str | None = "features.onnx"
    model: str = "model.onnx"
    weights: str | None = "weights.bin"
    labels: str | None = "labels.txt"
    source: dict[str, str] = field(default_factory=dict)
    checksums: dict[str, str] = field(default_factory=dict)
    # The tail graph (activations → output), present when the cut is clean; otherwise why not.
    tail: str | None = None
    tail_missing: str | None = None
    # A detector's decoder (None: a classifier or a segmentation model).
    decoder: DecoderSpec | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))

    @property
    def activation(self) -> ActivationSpec | None:
        """The deepest target layer's activation tensor (None in a model-only bundle)."""
        return self.layers[0].activation if self.layers else None

    @property
    def layer(self) -> str | None:
        """The deepest target layer's name (None in a model-only bundle)."""
        return self.layers[0].layer if self.layers else None

    @property
    def targets(self) -> list[tuple[str, ActivationSpec]]:
        """Every target layer as (name, activation): the deepest first, then the others."""
        return [(spec.layer, spec.activation) for spec in self.layers]

    @property
    def model_only(self) -> bool:
        """True for a bundle with no target layer (no features graph): black-box methods."""
        return not self.layers

    def to_dict(self) -> dict[str, Any]:
        """The manifest as the JSON-ready dictionary that `from_dict` reads back: the deepest
        layer as 'layer' and 'activation' (null in a model-only bundle), the others as
        'more_layers'."""
        first = self.layers[0] if self.layers else None
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "input": _input_dict(self.input),
            "activation": asdict(first.activation) if first else None,
            "output": asdict(self.output),
            "layer": first.layer if first else None,
            "features": self.features,
            "model": self.model,
            "weights": self.weights,
            "labels": self.labels,
            "source": dict(self.source),
            "checksums": dict(self.checksums),
            "tail": self.tail,
            "tail_missing": self.tail_missing,
            "more_layers": [asdict(spec) for spec in self.layers[1:]],
            "decoder": None
            if self.decoder is None
            else {
                "kind": self.decoder.kind,
                "outputs": list(self.decoder.outputs),
                "iou": self.decoder.iou,
            },
        }

    def dumps(self) -> str:
        """The manifest as indented JSON text."""
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: Any) -> Manifest:
        """Validate a parsed manifest of any readable format; a `BundleError` names the first
        bad key."""
        root = _Reader(upgrade(data), "manifest")
        inp, out = root.child("input"), root.child("output")
        activation = _deepest_activation(root)
        input_spec, output_spec = _input(inp), _output(out)
        layer = None if activation is None else root.get("layer", str)
        manifest = cls(
            input=input_spec,
            output=output_spec,
            features=None if activation is None else root.get("features", str),
            model=root.get("model", str),
            weights=root.get("weights", str, optional=True),
            labels=root.get("labels", str, optional=True),
            source=root.string_map("source"),
            checksums=root.string_map("checksums"),
            tail=root.get("tail", str, optional=True),
            tail_missing=root.get("tail_missing", str, optional=True),
            layers=_layers(root, layer, activation),
            decoder=_decoder(root),
        )
        _check_output(manifest.output)
        return manifest

    @classmethod
    def load(cls, path: Path) -> Manifest:
        """Read and validate a manifest file."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise BundleError(f"{path}: no manifest (is this a bundle folder?)") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise BundleError(f"{path}: cannot read the manifest: {exc}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BundleError(f"{path}: the manifest is not valid JSON: {exc}") from None
        return cls.from_dict(data)


def upgrade(data: Any) -> dict[str, Any]:
    """A parsed manifest of any readable format as a dictionary of the newest format.

    Format 1 had no tail graph (`tail_missing` says so) and only channel maps (layout NCHW or
    NHWC, no leading tokens). Formats 1 and 2 always had one target layer (a null
    'activation' is an error there, not a model-only bundle) and class scores only: keys
    that later formats added ('more_layers', the output's segmentation keys) are ignored in
    them. The format's name and version are checked; `data` itself is left as it is.
    """
    root = _Reader(data, "manifest")
    fmt = root.get("format", str)
    if fmt != FORMAT:
        raise BundleError(f"manifest: 'format' is {fmt!r}, expected {FORMAT!r}")
    version = root.get("format_version", int)
    if version not in READABLE_VERSIONS:
        raise BundleError(
            f"manifest: unsupported 'format_version' {version} "
            f"(this version of scorecam-onnx reads "
            f"{', '.join(str(v) for v in READABLE_VERSIONS)})"
        )
    if version == FORMAT_VERSION:
        return dict(data)
    # Format 5 added the input's channels, ranges and display bands: three channels before.
    inp = root.child("input").data
    data = {**data, "input": {k: v for k, v in inp.items() if k not in INPUT_KEYS_OF_5}}
    if version == 4:
        return {**data, "format_version": FORMAT_VERSION}
    if version == 3:  # format 4 added detectors and the output's head
        output = root.child("output").data
        return {
            **data,
            "format_version": FORMAT_VERSION,
            "decoder": None,
            "output": {k: v for k, v in output.items() if k != "head"},
        }
    # What the older format forbids is refused here, in the order the reader checks keys.
    root.child("input")
    output = root.child("output").data
    activation = root.get("activation", dict)
    new = {
        **data,
        "format_version": FORMAT_VERSION,
        "more_layers": None,
        "decoder": None,
        "output": {k: v for k, v in output.items() if k not in (*SEGMENTATION_KEYS, "head")},
    }
    if version == 1:
        new["activation"] = {**activation, "prefix": 0}
        _activation(_Reader(new["activation"], "activation"), LAYOUTS)
        new["tail"], new["tail_missing"] = None, NO_TAIL_IN_V1
    return new


def _deepest_activation(root: _Reader) -> ActivationSpec | None:
    """The 'activation' of the deepest layer; None for a model-only bundle, which then names
    no features graph, layer or tail either."""
    if root.get("activation", dict, optional=True) is not None:
        return _activation(root.child("activation"))
    for key in ("features", "layer", "tail"):
        if root.data.get(key) is not None:
            raise BundleError(
                f"manifest: '{key}' must be null when 'activation' is null (a model-only bundle)"
            )
    return None


def _layers(
    root: _Reader, layer: str | None, activation: ActivationSpec | None
) -> tuple[LayerSpec, ...]:
    """The deepest layer, then those of 'more_layers' (null or absent: none), each tensor and
    name once. A model-only bundle has none (its 'more_layers' are checked, then ignored)."""
    found = [] if activation is None or layer is None else [LayerSpec(layer, activation)]
    if root.data.get("more_layers") is not None:
        for n, item in enumerate(root.get("more_layers", list)):
            entry = _Reader(item, f"more_layers[{n}]")
            found.append(LayerSpec(entry.get("layer", str), _activation(entry.child("activation"))))
    if len({spec.activation.name for spec in found}) != len(found) or len(
        {spec.layer for spec in found}
    ) != len(found):
        raise BundleError("manifest: a target layer or tensor is listed twice")
    return () if activation is None else tuple(found)


def _decoder(root: _Reader) -> DecoderSpec | None:
    """A detector's decoder, or None ('decoder' null or absent)."""
    if root.data.get("decoder") is None:
        return None
    entry = root.child("decoder")
    outputs = entry.get("outputs", list)
    if not outputs or not all(isinstance(name, str) for name in outputs):
        raise BundleError("manifest: 'decoder.outputs' must be a list of output names")
    iou = entry.number("iou", positive=True)
    if iou > 1:
        raise BundleError(f"manifest: 'decoder.iou' must be at most 1, got {iou}")
    return DecoderSpec(entry.choice("kind", DECODERS), tuple(outputs), iou)


def _input_dict(spec: InputSpec) -> dict[str, Any]:
    """The input as JSON: its name and size, then its convention (mean and std as lists)."""
    return {
        "name": spec.name,
        "height": spec.height,
        "width": spec.width,
        **spec.convention(),
        "mean": list(spec.mean),
        "std": list(spec.std),
        "input_range": None if spec.input_range is None else list(spec.input_range),
        "window": None if spec.window is None else list(spec.window),
        "display_bands": None if spec.display_bands is None else list(spec.display_bands),
    }


def _input(inp: _Reader) -> InputSpec:
    """The input; keys format 5 added (channels, ranges, display bands) default when absent."""
    channels = inp.positive("channels") if "channels" in inp.data else 3
    pair = inp.numbers("input_range", 2) if inp.data.get("input_range") is not None else None
    window = inp.numbers("window", 2) if inp.data.get("window") is not None else None
    bands = inp.data.get("display_bands")
    spec = InputSpec(
        name=inp.get("name", str),
        height=inp.positive("height"),
        width=inp.positive("width"),
        layout=inp.choice("layout", LAYOUTS),
        color=inp.choice("color", COLORS),
        scale=inp.number("scale", positive=True),
        mean=inp.numbers("mean", channels),
        std=inp.numbers("std", channels, positive=True),
        resize=inp.choice("resize", RESIZE_POLICIES),
        interpolation=inp.choice("interpolation", INTERPOLATIONS),
        crop_fraction=inp.fraction("crop_fraction"),
        channels=channels,
        input_range=None if pair is None else (pair[0], pair[1]),
        window=None if window is None else (window[0], window[1]),
        voi_lut=inp.get("voi_lut", bool) if "voi_lut" in inp.data else False,
        display_bands=None if bands is None else inp.band_triple("display_bands"),
    )
    try:
        check_convention(spec)
    except BundleError as exc:
        raise BundleError(f"manifest: input: {exc}") from None
    return spec


def _output(out: _Reader) -> OutputSpec:
    """The output; its height, width and background class only for a segmentation model."""
    return OutputSpec(
        name=out.get("name", str),
        classes=out.positive("classes"),
        kind=out.choice("kind", OUTPUT_KINDS),
        height=out.count("height") if "height" in out.data else 0,
        width=out.count("width") if "width" in out.data else 0,
        background=out.get("background", int, optional=True) if "background" in out.data else None,
        head=out.choice("head", HEADS) if "head" in out.data else "softmax",
    )


def _check_output(o: OutputSpec) -> None:
    if (o.height > 0) != (o.width > 0):
        raise BundleError("manifest: 'output.height' and 'output.width' go together")
    if o.head == "binary" and o.classes != 2:
        raise BundleError(f"manifest: a binary head has 2 classes, got {o.classes}")
    if o.head != "softmax" and o.height > 0:
        raise BundleError("manifest: a segmentation output's head is softmax")
    if o.background is not None and not 0 <= o.background < o.classes:
        raise BundleError(
            f"manifest: 'output.background' must be a class id below "
            f"{o.classes}, got {o.background}"
        )


def _activation(act: _Reader, layouts: tuple[str, ...] = ACTIVATION_LAYOUTS) -> ActivationSpec:
    return ActivationSpec(
        name=act.get("name", str),
        channels=act.positive("channels"),
        height=act.positive("height"),
        width=act.positive("width"),
        layout=act.choice("layout", layouts),
        prefix=act.count("prefix"),
    )


class _Reader:
    """Typed access to one JSON object, with errors that name the full key path."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise BundleError(f"{where}: expected a JSON object, got {type(data).__name__}")
        self.data = data
        self.where = where

    def _key(self, key: str) -> str:
        return key if self.where == "manifest" else f"{self.where}.{key}"

    def get(self, key: str, kind: type, optional: bool = False) -> Any:
        if key not in self.data:
            raise BundleError(f"manifest: missing key '{self._key(key)}'")
        value = self.data[key]
        if value is None and optional:
            return None
        if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
            raise BundleError(
                f"manifest: '{self._key(key)}' must be {kind.__name__}, "
                f"got {type(value).__name__} {value!r}"
            )
        return value

    def child(self, key: str) -> _Reader:
        return _Reader(self.get(key, dict), self._key(key))

    def positive(self, key: str) -> int:
        value: int = self.get(key, int)
        if value <= 0:
            raise BundleError(f"manifest: '{self._key(key)}' must be positive, got {value}")
        return value

    def count(self, key: str) -> int:
        value: int = self.get(key, int)
        if value < 0:
            raise BundleError(f"manifest: '{self._key(key)}' must be 0 or more, got {value}")
        return value

    def number(self, key: str, positive: bool = False) -> float:
        value = self.data.get(key)
        if key not in self.data:
            raise BundleError(f"manifest: missing key '{self._key(key)}'")
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise BundleError(
                f"manifest: '{self._key(key)}' must be a finite number, got {value!r}"
            )
        if positive and value <= 0:
            raise BundleError(f"manifest: '{self._key(key)}' must be positive, got {value}")
        return float(value)

    def fraction(self, key: str) -> float:
        """A number in (0, 1]; 1 when the key is absent (bundles written before it)."""
        if key not in self.data:
            return 1.0
        value = self.number(key, positive=True)
        if value > 1:
            raise BundleError(f"manifest: '{self._key(key)}' must be at most 1, got {value}")
        return value

    def numbers(self, key: str, count: int, positive: bool = False) -> tuple[float, ...]:
        value = self.get(key, list)
        ok = len(value) == count and all(
            not isinstance(v, bool)
            and isinstance(v, int | float)
            and math.isfinite(v)
            and (v > 0 or not positive)
            for v in value
        )
        if not ok:
            rule = f"{count} positive numbers" if positive else f"{count} numbers"
            raise BundleError(f"manifest: '{self._key(key)}' must be {rule}, got {value!r}")
        return tuple(float(v) for v in value)

    def band_triple(self, key: str) -> tuple[int, int, int]:
        value = self.get(key, list)
        if len(value) != 3 or not all(type(v) is int and v >= 0 for v in value):
            raise BundleError(f"manifest: '{self._key(key)}' must be three band indices")
        return (value[0], value[1], value[2])

    def choice(self, key: str, allowed: tuple[str, ...]) -> str:
        value: str = self.get(key, str)
        if value not in allowed:
            raise BundleError(
                f"manifest: '{self._key(key)}' is {value!r}, expected one of {', '.join(allowed)}"
            )
        return value

    def string_map(self, key: str) -> dict[str, str]:
        value = self.get(key, dict)
        for k, v in value.items():
            if not isinstance(v, str):
                raise BundleError(f"manifest: '{self._key(key)}.{k}' must be a string, got {v!r}")
        return dict(value)
