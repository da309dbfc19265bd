"""How to explain, beyond the method and the target: one frozen options type, and the one
function that checks a request (method, target, options) against a bundle."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .bundle.manifest import Manifest
from .cam.fusion import DEFAULT_FUSION, FUSIONS
from .errors import BundleError
from .methods import Method
from .targets import Box, Boxes, Region, Target

__all__ = ["ExplainOptions", "check_request", "no_layer"]

# The largest batch a served request may ask for.
MAX_BATCH = 1024
# A detector's detections: those counted (ultralytics' predict default) and those explained.
DETECTION_THRESHOLD = 0.25  # a detection counts above it (ultralytics' predict default)
LABEL_THRESHOLD = 0.5  # a multi-label model's label is present above it
DEFAULT_MAX_DETECTIONS = 10
MAX_DETECTIONS = 20  # detections per served request (each is a full-size map)


def _setting(flag: str, kind: str, help: str, default: Any = None, **checks: Any) -> dict[str, Any]:
    """A field's description as a setting of every surface (see `request.SETTINGS`)."""
    return {"setting": {"flag": flag, "kind": kind, "help": help, "default": default, **checks}}


@dataclass(frozen=True, kw_only=True)
class ExplainOptions:
    """Settings of an explanation that are neither the method's nor the target's.

    Args:
        batch_size: masked inputs per model call. Default: the explainer's (at least 64 for
            the tail-graph methods).
        aug_smooth: pytorch-grad-cam's test-time augmentation: the map averaged over six
            passes (horizontal flip × the normalised input times 0.9, 1 and 1.1), each
            flipped back; six times the forwards. With no target, each pass explains its own
            top-1 class. Default: False.
        eigen_smooth: the map is the first principal component of the weighted activations
            instead of their sum (pytorch-grad-cam's `get_2d_projection`), for the methods
            that weigh activations. Default: False.
        layers: of a multi-layer bundle, the target layers to explain at. Default: all of
            them; the tail-graph methods use the deepest, where the tail graph starts.
        fuse: how several layers' maps become one: "mean" (pytorch-grad-cam's) or "max"
            (torch-cam's). Default: the preset's peer's ("mean" for the paper).
        score_threshold: a detector's detections count above this score, on the unmasked
            image (those explained) and on every masked one (those compared); a multi-label
            model's labels at or above it are explained when no class is given. Default: 0.25
            for a detector, 0.5 for a multi-label model.
        max_detections: a detector's detections explained at most when the target is the
            default. Default: 10.
        frame: of a multi-frame DICOM file, the frame to explain (from 0). Default: 0.
    """

    batch_size: int | None = field(
        default=None,
        metadata=_setting(
            "--batch-size",
            "int",
            "Masked inputs per model call. Default: 8 on CPU, 64 on CUDA.",
            low=1,
            ceiling=lambda values: MAX_BATCH,
        ),
    )
    aug_smooth: bool = field(
        default=False,
        metadata=_setting(
            "--aug-smooth",
            "bool",
            "Average six passes (flip × input times 0.9, 1, 1.1), as "
            "pytorch-grad-cam's aug_smooth: six times the forwards.",
            False,
        ),
    )
    eigen_smooth: bool = field(
        default=False,
        metadata=_setting(
            "--eigen-smooth",
            "bool",
            "The weighted activations' first principal component "
            "instead of their sum (pytorch-grad-cam's eigen_smooth).",
            False,
        ),
    )
    layers: tuple[str, ...] | None = field(
        default=None,
        metadata=_setting(
            "--layer",
            "names",
            "Of a multi-layer bundle, a layer to explain at (repeatable). Default: all of them.",
            repeat=True,
        ),
    )
    fuse: str | None = field(
        default=None,
        metadata=_setting(
            "--fuse",
            "choice",
            "How several layers' maps are fused. Default: the preset's (max "
            "for torchcam, mean otherwise).",
            choices=FUSIONS,
        ),
    )

    score_threshold: float | None = field(
        default=None,
        metadata=_setting(
            "--score-threshold",
            "fraction",
            "A detector: detections count above this score "
            "(explained ones, and those of every masked input), default 0.25; a multi-label "
            "model: the labels explained when no class is given, default 0.5.",
        ),
    )
    max_detections: int = field(
        default=DEFAULT_MAX_DETECTIONS,
        metadata=_setting(
            "--max-detections",
            "int",
            "A detector: the most detections explained (best "
            "first) when no box, class or top-k is given.",
            DEFAULT_MAX_DETECTIONS,
            low=1,
            ceiling=lambda values: MAX_DETECTIONS,
        ),
    )

    frame: int = field(
        default=0,
        metadata=_setting(
            "--frame",
            "int",
            "Of a multi-frame DICOM file, the frame to explain (from 0).",
            0,
            low=0,
        ),
    )

    def __post_init__(self) -> None:
        if isinstance(self.frame, bool) or not isinstance(self.frame, int) or self.frame < 0:
            raise ValueError(f"frame must be 0 or more, got {self.frame!r}")
        if self.score_threshold is not None and (
            isinstance(self.score_threshold, bool)
            or not isinstance(self.score_threshold, int | float)
            or not 0.0 <= self.score_threshold < 1.0
        ):
            raise ValueError(f"score_threshold must be in [0, 1), got {self.score_threshold!r}")
        if (
            isinstance(self.max_detections, bool)
            or not isinstance(self.max_detections, int)
            or self.max_detections < 1
        ):
            raise ValueError(f"max_detections must be at least 1, got {self.max_detections!r}")
        if self.batch_size is not None and (
            isinstance(self.batch_size, bool)
            or not isinstance(self.batch_size, int)
            or self.batch_size < 1
        ):
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size!r}")
        if self.layers is not None:
            if isinstance(self.layers, str):
                raise TypeError("layers is a sequence of layer names")
            object.__setattr__(self, "layers", tuple(self.layers))
        if self.fuse is not None and self.fuse not in FUSIONS:
            raise ValueError(f"unknown fuse {self.fuse!r}: choose mean or max")

    def merged(self, **changes: Any) -> ExplainOptions:
        """A copy with `changes` (None leaves a setting as it is), checked again."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def threshold(self, detector: bool) -> float:
        """The score threshold given, else a detector's (0.25) or a multi-label model's
        (0.5)."""
        if self.score_threshold is not None:
            return float(self.score_threshold)
        return DETECTION_THRESHOLD if detector else LABEL_THRESHOLD

    def fusion(self, method: Method) -> str:
        """The fusion used with `method`: the one given, else its preset's peer's."""
        return self.fuse or DEFAULT_FUSION[method.preset_name]


def no_layer(path: Path, method: str | None = None, detector: bool = False) -> str:
    """Why a method that needs a target layer cannot run on a model-only bundle."""
    who = f"{method} needs" if method else "this needs"
    return (
        f"{who} a target layer, and {path} is a model-only bundle: cut the model with "
        "`scorecam-onnx split MODEL.onnx --layer TENSOR --out DIR` (`scorecam-onnx layers "
        f"MODEL.onnx` lists the tensors), or use --method {'drise' if detector else 'rise'}"
    )


def check_request(
    manifest: Manifest, path: Path, method: Method, target: Target, options: ExplainOptions
) -> None:
    """Refuse what this bundle cannot run: a `BundleError` when the bundle lacks a graph the
    method needs, a `ValueError` for settings that do not fit it. Every surface calls this
    before any image."""
    _check_detector(manifest, method, target, options)
    if method.needs_layer and manifest.model_only:
        raise BundleError(no_layer(path, method.name, manifest.decoder is not None))
    if method.needs_tail and manifest.tail is None:
        raise BundleError(
            f"{method.name} needs the bundle's tail graph (activations → "
            f"output), and {path} has none: {manifest.tail_missing}"
        )
    if options.eigen_smooth and not method.weighs_activations:
        raise ValueError(
            f"eigen_smooth applies to methods that weigh the activations, not {method.name}"
        )
    _check_layers(manifest, method, options.layers)
    _check_segmentation(manifest, method, target, options)


def chosen_layers(
    manifest: Manifest, method: Method, layers: Sequence[str] | None
) -> list[str] | None:
    """The layers to explain at, in the bundle's order (None: all of them)."""
    names = [name for name, _ in manifest.targets]
    if method.needs_tail and len(names) > 1:
        return names[:1]
    return None if layers is None else [n for n in names if n in layers]


def _check_layers(manifest: Manifest, method: Method, layers: Sequence[str] | None) -> None:
    names = [name for name, _ in manifest.targets]
    if layers is not None:
        unknown = [name for name in layers if name not in names]
        if unknown or not layers:
            raise ValueError(
                f"unknown layer {', '.join(unknown) or '(none)'}: this "
                f"bundle's layers are {', '.join(names) or 'none'}"
            )
        if method.needs_tail and len(names) > 1 and list(layers) != names[:1]:
            raise ValueError(
                f"{method.name} perturbs the layer its tail graph starts from, "
                f"the deepest: {names[0]}"
            )


def _check_detector(
    manifest: Manifest, method: Method, target: Target, options: ExplainOptions
) -> None:
    if manifest.decoder is None:
        if isinstance(target, Box | Boxes) or method.detectors_only:
            what = "a box" if isinstance(target, Box | Boxes) else method.name
            raise ValueError(f"{what} is for object detectors; this bundle is not one")
        return
    if not method.on_detectors or options.aug_smooth:
        what = "aug_smooth" if options.aug_smooth else method.name
        raise ValueError(
            f"{what} does not explain object detectors (it needs a class "
            "output): use drise, scorecam (or its relatives) or eigencam"
        )
    if isinstance(target, Region):
        raise ValueError("region is for segmentation models; this bundle is a detector")
    boxes = (
        target.items
        if isinstance(target, Boxes)
        else ((target,) if isinstance(target, Box) else ())
    )
    for box in boxes:
        if box.class_id is not None and box.class_id >= manifest.output.classes:
            raise ValueError(
                f"class id {box.class_id} is out of range (0 to {manifest.output.classes - 1})"
            )


def _check_segmentation(
    manifest: Manifest, method: Method, target: Target, options: ExplainOptions
) -> None:
    output = manifest.output
    if not output.segmentation:
        if isinstance(target, Region):
            raise ValueError("region is for segmentation models; this bundle is a classifier")
        return
    if method.needs_tail or options.aug_smooth:
        raise ValueError(
            f"{'aug_smooth' if options.aug_smooth else method.name} is for "
            "classifiers; this bundle is a segmentation model"
        )
    background = target.background if isinstance(target, Region) else None
    if background is not None and not 0 <= background < output.classes:
        raise ValueError(
            f"background must be a class id of a segmentation model (below {output.classes})"
        )
