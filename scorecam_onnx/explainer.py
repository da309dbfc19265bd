"""The public API: an `Explainer` built once per bundle, `explain()` per image."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from .attribution import PassResult, PassSettings, ProgressOverRuns, classes_of_head, run_pass
from .bundle import Bundle
from .bundle.manifest import InputSpec
from .cam.engine import Progress
from .detection import Detections
from .detectors import detection_target
from .forwards import Forwards, to_probabilities
from .images import ImageLike, boxes_to_input, boxes_to_original, to_original
from .methods import Method
from .options import DETECTION_THRESHOLD, ExplainOptions, check_request, chosen_layers
from .pictures import Picture, display, model_input, read_picture
from .request import ExplainRequest, as_request
from .runners.ort import Runner
from .runtime import Runtime, default_bundle, open_forwards
from .segmentation import output_region, segmentation_target
from .targets import Box, Boxes, Class, Region, Target, TopK, as_target

__all__ = ["Detection", "Explainer", "Explanation", "default_bundle"]


@dataclass(frozen=True)
class Detection:
    """One detection of an object detector on an image.

    Attributes:
        box: (x1, y1, x2, y2) in the original image's pixels.
        score: the detection's score.
        class_id, label: its class.
    """

    box: tuple[float, float, float, float]
    score: float
    class_id: int
    label: str

    def summary(self) -> dict[str, object]:
        """The JSON-ready detection."""
        return {
            "box": [round(v, 2) for v in self.box],
            "score": self.score,
            "class_id": self.class_id,
            "label": self.label,
        }


@dataclass(frozen=True)
class Explanation:
    """A saliency map for one class of one image.

    Attributes:
        saliency: float32 map in [0, 1] at the original image's resolution (H×W).
        saliency_input: the same map at the model's input resolution.
        class_id, label: the explained class.
        score: the model's probability (or output, for a probability model) of that class on
            the unmasked image.
        weights: float32 channel weights (K), 0 for channels that got no forward; for
            reciprocam, the h·w position scores.
        method, preset, provider, batch_size: how the map was computed.
        forwards: full-model forwards run for this image (1 unmasked + masked inputs); shared
            by every class explained in the same call.
        masks: distinct masks built.
        seconds: timings (preprocess, features, masks, forwards, total).
        degenerate: the map was all-zero or constant (returned as zeros).
        nonfinite: the model returned NaN or Inf for some input (treated as 0).
        box: a detector's explained box (x1, y1, x2, y2) in the original image's pixels;
            `class_id`, `label` and `score` are then the detection's. None for a classifier.
    """

    saliency: NDArray[np.float32]
    saliency_input: NDArray[np.float32]
    class_id: int
    label: str
    score: float
    weights: NDArray[np.float32]
    method: str
    preset: str
    provider: str
    batch_size: int
    forwards: int
    masks: int
    seconds: dict[str, float] = field(default_factory=dict)
    degenerate: bool = False
    nonfinite: bool = False
    box: tuple[float, float, float, float] | None = None

    def summary(self) -> dict[str, object]:
        """The JSON-ready metadata of this explanation (no arrays)."""
        box = {} if self.box is None else {"box": [round(v, 2) for v in self.box]}
        return {
            **box,
            "class_id": self.class_id,
            "label": self.label,
            "score": self.score,
            "method": self.method,
            "preset": self.preset,
            "provider": self.provider,
            "batch_size": self.batch_size,
            "forwards": self.forwards,
            "masks": self.masks,
            "degenerate": self.degenerate,
            "nonfinite": self.nonfinite,
            "seconds": {k: round(v, 4) for k, v in self.seconds.items()},
            "size": [int(self.saliency.shape[0]), int(self.saliency.shape[1])],
        }


class Explainer:
    """Explains a bundle's model on ONNX Runtime (or a served model).

    Create it once and reuse it; `explain` may be called from several threads at once.

    Args:
        bundle: a bundle folder (or a loaded `Bundle`), or a plain ``.onnx`` classifier (a
            model-only bundle, for RISE) or object detector (its decoder recognised, for
            D-RISE). Default: the shipped EfficientNet-Lite0.
        runtime: where and how the forwards run (`Runtime`: provider, threads, batch size,
            a served model…). Default: `Runtime()`.
        runner: send the full-model forwards to this `Runner` (for instance one over
            Triton's BLS): a classifier, or a masked scorer standing in for one.
        masked_runners: served masked scorers (one per upsampling convention).

    Example:
        >>> ex = Explainer()
        >>> [res] = ex.explain("samples/chelsea.png")
        >>> res.label, res.saliency.shape
        ('Egyptian cat', (300, 451))
    """

    def __init__(
        self,
        bundle: str | Path | Bundle | None = None,
        runtime: Runtime | None = None,
        *,
        runner: Runner | None = None,
        masked_runners: Sequence[Runner] = (),
    ) -> None:
        self.runtime = runtime or Runtime()
        self.forwards: Forwards = open_forwards(bundle, self.runtime, runner, masked_runners)
        self.bundle = self.forwards.bundle

    @property
    def classes(self) -> int:
        """Number of classes of the model."""
        return self.bundle.manifest.output.classes

    @property
    def provider(self) -> str:
        """The execution provider of the full-model forwards."""
        return self.forwards.provider

    @property
    def batch_size(self) -> int:
        """Masked inputs per model call when the options give none."""
        return self.forwards.batch_size

    @property
    def max_pixels(self) -> int:
        """Images announcing more pixels are refused before decoding."""
        return self.runtime.max_pixels

    def read(self, image: ImageLike | Picture, frame: int = 0, name: str | None = None) -> Picture:
        """The image as this model reads it: its bands matched to the input's channels, in
        their own depth (a path, encoded bytes of any format read, or an array; errors name
        it `name`, default its path)."""
        return read_picture(image, self.forwards.input, self.max_pixels, frame, name)

    def display(self, picture: Picture) -> NDArray[np.uint8]:
        """An H×W×3 RGB uint8 picture of the image to draw maps on (the manifest's display
        bands, on the range the model reads)."""
        return display(picture, self.forwards.input)

    def preprocess(
        self, image: ImageLike | Picture, frame: int = 0
    ) -> tuple[NDArray[np.uint8], NDArray[np.float32]]:
        """The image's RGB picture to draw on and its model input (1×C×H×W)."""
        picture, x = self._read_input(image, frame)
        return self.display(picture), x

    def _read_input(
        self, image: ImageLike | Picture, frame: int = 0
    ) -> tuple[Picture, NDArray[np.float32]]:
        """The image as this model reads it, and its model input."""
        picture = self.read(image, frame)
        return picture, model_input(picture, self.forwards.input)

    def check(self, request: ExplainRequest) -> None:
        """Refuse a request this bundle cannot run (`BundleError`, `ValueError`)."""
        check_request(
            self.bundle.manifest, self.bundle.path, request.method, request.target, request.options
        )

    def explain(
        self,
        image: ImageLike | Picture,
        target: Target | int | Sequence[int] | None = None,
        method: Method | str = "scorecam",
        options: ExplainOptions | None = None,
        progress: Progress | None = None,
    ) -> list[Explanation]:
        """Explain the model's output on one image: one `Explanation` per class the target
        chooses, in its order.

        Args:
            image: a path or encoded bytes (PNG, JPEG, 16-bit PNG, TIFF, .npy, DICOM…),
                an array (H×W or H×W×C), or a `Picture` from `read`.
            target: `Top1()` (default, also None), `TopK(k)`, `Class(ids)` (or an int or a
                list of ints), or for a segmentation model `Region(mask, ...)`. Every
                masked forward yields all class scores, so extra classes cost no extra
                forwards. On an object detector these choose detections (`Top1`: all of
                them, at most `options.max_detections`), and `Box`/`Boxes` give boxes; one
                `Explanation` per detection, with its `box`.
            method: a method object from `scorecam_onnx.methods` (with its settings), or a
                method's name for its defaults ("scorecam", "faster-scorecam",
                "cluster-scorecam", "sscam", "iscam", "eigencam", "reciprocam",
                "ablationcam", "rise", "drise").
            options: `ExplainOptions` (batch size, smoothing, layers and fusion).
            progress: called with (masked inputs done, total) after each batch.
        """
        return self.run(image, as_request(method, target, options), progress)

    def explain_one(
        self,
        image: ImageLike | Picture,
        class_id: int | None = None,
        method: Method | str = "scorecam",
        options: ExplainOptions | None = None,
        progress: Progress | None = None,
    ) -> Explanation:
        """The explanation of one class (default: the top-1 class) of one image."""
        return self.explain(image, class_id, method, options, progress)[0]

    def run(
        self, image: ImageLike | Picture, request: ExplainRequest, progress: Progress | None = None
    ) -> list[Explanation]:
        """`explain` for a request object (what every surface parses its settings into)."""
        self.check(request)
        started = time.perf_counter()
        picture, x = self._read_input(image, request.options.frame)
        settings = self._pass_settings(request, picture.shape)
        prepared = time.perf_counter()
        runs = ProgressOverRuns(progress)
        passes = [run_pass(self.forwards, x, request.target, settings, runs)]
        if request.options.aug_smooth:
            passes += self._augmented(x, request.target, passes[0], settings, runs)
        return self._explanations(
            picture.shape, passes, request, settings, {"preprocess": prepared - started}, started
        )

    def _pass_settings(self, request: ExplainRequest, shape: tuple[int, ...]) -> PassSettings:
        method, options = request.method, request.options
        batch = options.batch_size or method.batch_for(self.batch_size)
        target = request.target
        mask = target.mask if isinstance(target, Region) else None
        region = (
            None
            if mask is None
            else output_region(mask, shape, self.forwards.input, self.bundle.manifest.output)
        )
        return PassSettings(
            method,
            method.engine(batch),
            chosen_layers(self.bundle.manifest, method, options.layers),
            options.fusion(method),
            options.eigen_smooth,
            region,
            _given_boxes(target, shape, self.forwards.input),
            options.threshold(self.forwards.detector),
            options.max_detections,
        )

    def _augmented(
        self,
        x: NDArray[np.float32],
        target: Target,
        first: PassResult,
        settings: PassSettings,
        runs: ProgressOverRuns,
    ) -> list[PassResult]:
        """pytorch-grad-cam's test-time augmentation: (no flip, flip) × (1, 0.9, 1.1) on the
        normalised input, each map flipped back. A pass with no target explains its own
        top-1 class; top-k the unaugmented image's classes."""
        chosen = target.of if isinstance(target, Region) else target
        fixed = Class(first.classes) if isinstance(chosen, TopK) else target
        passes = []
        for flip, factor in AUGMENTATIONS[1:]:
            augmented = (x[..., ::-1] if flip else x) * np.float32(factor)
            found = run_pass(self.forwards, np.ascontiguousarray(augmented), fixed, settings, runs)
            if flip:
                found.cams = [np.ascontiguousarray(cam[:, ::-1]) for cam in found.cams]
            passes.append(found)
        return passes

    def _explanations(
        self,
        shape: tuple[int, ...],
        passes: list[PassResult],
        request: ExplainRequest,
        settings: PassSettings,
        seconds: dict[str, float],
        started: float,
    ) -> list[Explanation]:
        first = passes[0]
        seconds["features"] = sum(p.features_seconds for p in passes)
        for p in passes:
            for key, value in p.seconds.items():
                seconds[key] = seconds.get(key, 0.0) + value
        results = []
        for column, class_id in enumerate(first.classes):
            cam, degenerate = self._averaged(passes, column)
            results.append(
                Explanation(
                    saliency=to_original(cam, shape, self.forwards.input),
                    saliency_input=cam,
                    class_id=int(class_id),
                    label=self.bundle.label(int(class_id)),
                    score=first.scores[column],
                    weights=first.weights[column],
                    method=request.method.name,
                    preset=settings.engine.preset.name,
                    provider=self.provider,
                    batch_size=settings.engine.batch_size,
                    forwards=sum(1 + p.forwards for p in passes),
                    masks=sum(p.masks for p in passes),
                    degenerate=degenerate,
                    nonfinite=any(p.nonfinite or not np.isfinite(p.clean).all() for p in passes),
                    box=self._box(first, column, shape),
                )
            )
        seconds["total"] = time.perf_counter() - started
        for result in results:
            result.seconds.update(seconds)
        return results

    def _box(
        self, found: PassResult, column: int, shape: tuple[int, ...]
    ) -> tuple[float, float, float, float] | None:
        """A detector's explained box in the original image's pixels."""
        if found.detections is None:
            return None
        box = boxes_to_original(found.detections.boxes[column], shape, self.forwards.input)[0]
        return (float(box[0]), float(box[1]), float(box[2]), float(box[3]))

    def detect(
        self, image: ImageLike | Picture, score_threshold: float | None = DETECTION_THRESHOLD
    ) -> list[Detection]:
        """A detector's detections on one image above `score_threshold`, best first, in the
        image's pixels (one forward)."""
        if not self.forwards.detector:
            raise ValueError("detect is for object detectors; this bundle is not one")
        threshold = ExplainOptions(score_threshold=score_threshold).threshold(True)
        picture, x = self._read_input(image)
        return self._in_image(self.forwards.detections(x, threshold)[0], picture.shape)

    def chosen_detections(
        self, image: ImageLike | Picture, request: ExplainRequest | None = None
    ) -> list[Detection]:
        """The detections `explain` would explain for `request`'s target (one forward)."""
        request = request or ExplainRequest()
        picture, x = self._read_input(image, request.options.frame)
        found = self.forwards.detections(x, request.options.threshold(True))[0]
        chosen = detection_target(
            found,
            request.target,
            _given_boxes(request.target, picture.shape, self.forwards.input),
            request.options.max_detections,
            self.classes,
        )
        return self._in_image(chosen, picture.shape)

    def _in_image(self, found: Detections, shape: tuple[int, ...]) -> list[Detection]:
        """Detections with their boxes in the image's pixels."""
        boxes = boxes_to_original(found.boxes, shape, self.forwards.input)
        return [
            Detection(
                (float(b[0]), float(b[1]), float(b[2]), float(b[3])),
                float(score),
                int(label),
                self.bundle.label(int(label)),
            )
            for b, score, label in zip(boxes, found.scores, found.labels, strict=True)
        ]

    def _averaged(self, passes: list[PassResult], column: int) -> tuple[NDArray[np.float32], bool]:
        """A class's map: the first pass's, or the mean over the augmented passes (no
        rescaling)."""
        if len(passes) == 1:
            return passes[0].cams[column], passes[0].degenerate[column]
        cam = np.stack([p.cams[column] for p in passes]).mean(axis=0, dtype=np.float32)
        degenerate = bool(cam.max() <= 0.0 or cam.max() == cam.min())
        size = (self.forwards.input.height, self.forwards.input.width)
        return (np.zeros(size, np.float32) if degenerate else cam), degenerate

    def chosen_classes(
        self, image: ImageLike | Picture, target: Target | int | Sequence[int] | None = None
    ) -> tuple[list[int], list[float]]:
        """The classes `explain` would explain for `target` and their scores (probability;
        for a segmentation model, the mean probability over each region), from one
        forward."""
        picture, x = self._read_input(image)
        return self.classes_of(self.forwards.scores(x)[0], as_target(target), picture.shape)

    def classes_of(
        self, output: NDArray[np.floating], target: Target, shape: tuple[int, ...] | None = None
    ) -> tuple[list[int], list[float]]:
        """`chosen_classes` from the model's output for the image (C, or C×H×W), `shape`
        being the image's (for a region given at its size)."""
        manifest = self.bundle.manifest
        if manifest.output.segmentation:
            mask = target.mask if isinstance(target, Region) else None
            region = (
                None
                if mask is None
                else output_region(
                    mask,
                    shape or (manifest.output.height, manifest.output.width),
                    self.forwards.input,
                    manifest.output,
                )
            )
            seg = segmentation_target(output, manifest.output, target, region)
            return seg.classes, [seg.probability(output, i) for i in range(len(seg.classes))]
        probabilities = to_probabilities(output[None], manifest.output.score_kind)[0]
        classes = classes_of_head(
            target, output, probabilities, manifest.output, ExplainOptions().threshold(False)
        )
        return classes, [float(probabilities[c]) for c in classes]


def _given_boxes(
    target: Target, shape: tuple[int, ...], spec: InputSpec
) -> NDArray[np.float64] | None:
    """The boxes a `Box` or `Boxes` target gives, in the model input's pixels; refused
    when one lies outside the image."""
    if not isinstance(target, Box | Boxes):
        return None
    items = target.items if isinstance(target, Boxes) else (target,)
    for box in items:
        x1, y1, x2, y2 = box.corners
        if x1 < 0 or y1 < 0 or x2 > shape[1] or y2 > shape[0]:
            raise ValueError(
                f"the box {x1:g},{y1:g},{x2:g},{y2:g} lies outside the {shape[1]}×{shape[0]} image"
            )
    return boxes_to_input(np.asarray([b.corners for b in items]), shape, spec)


# pytorch-grad-cam's aug_smooth passes, in its order: (horizontal flip, factor on the input).
AUGMENTATIONS = ((False, 1.0), (False, 0.9), (False, 1.1), (True, 1.0), (True, 0.9), (True, 1.1))
