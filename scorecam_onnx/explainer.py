"""The public API: an `Explainer` built once per bundle, `explain()` per image."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import overload

import numpy as np
from numpy.typing import NDArray

from .bundle import Bundle
from .cam.engine import TORCHCAM, Progress, ScoreCam, ScoreFn, Scores
from .cam.fusion import DEFAULT_FUSION, FUSIONS, fuse, largest_grid
from .cam.methods import TAIL_METHODS, make_method
from .classifier import Classifier, default_bundle, no_layer, to_probabilities
from .errors import BundleError
from .images import DEFAULT_MAX_PIXELS, ImageLike, load_image, preprocess, to_original
from .runners.ort import Runner
from .segmentation import SegmentationTarget, choose_classes, output_region

# Activations per tail-graph call for reciprocam and ablationcam when none is given: a tail
# forward is cheap (a pooling and a linear layer at a head), so the per-call cost dominates.
DEFAULT_TAIL_BATCH = 64

__all__ = ["Explainer", "Explanation", "default_bundle"]


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

    def summary(self) -> dict[str, object]:
        """The JSON-ready metadata of this explanation (no arrays)."""
        return {
            "class_id": self.class_id, "label": self.label, "score": self.score,
            "method": self.method, "preset": self.preset, "provider": self.provider,
            "batch_size": self.batch_size, "forwards": self.forwards, "masks": self.masks,
            "degenerate": self.degenerate, "nonfinite": self.nonfinite,
            "seconds": {k: round(v, 4) for k, v in self.seconds.items()},
            "size": [int(self.saliency.shape[0]), int(self.saliency.shape[1])],
        }


class Explainer(Classifier):
    """Explains a bundle's classifier with Score-CAM on ONNX Runtime.

    Create it once and reuse it; `explain` may be called from several threads at once. The
    forwards and the graphs' checks are `Classifier`'s; this class orchestrates a method's
    forwards for one image and forms the maps.

    Args:
        bundle, provider, provider_options, batch_size, threads, device_masks, model_url,
            remote_timeout, in_flight, runner, masked_runners: as for `Classifier`: a bundle
            folder (default: the shipped EfficientNet-Lite0), any execution provider of this
            ONNX Runtime ("auto": CUDA when it starts, else CPU), a served model (or any
            `Runner`) for the full-model forwards, served masked scorers.
        max_pixels: images announcing more pixels are refused before decoding.

    Example:
        >>> ex = Explainer()
        >>> res = ex.explain("samples/chelsea.png")
        >>> res.label, res.saliency.shape
        ('Egyptian cat', (300, 451))
    """

    def __init__(
        self,
        bundle: str | Path | Bundle | None = None,
        provider: str = "auto",
        batch_size: int | None = None,
        threads: int = 0,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        device_masks: bool | None = None,
        provider_options: dict[str, str] | None = None,
        model_url: str | None = None,
        remote_timeout: float = 60.0,
        in_flight: int = 2,
        runner: Runner | None = None,
        masked_runners: Sequence[Runner] = (),
    ) -> None:
        super().__init__(bundle, provider, batch_size, threads, device_masks, provider_options,
                         model_url, remote_timeout, in_flight, runner, masked_runners)
        self.max_pixels = max_pixels

    def preprocess(self, image: ImageLike) -> tuple[NDArray[np.uint8], NDArray[np.float32]]:
        """The RGB image and its model input (1×3×H×W)."""
        rgb = load_image(image, self.max_pixels)
        return rgb, preprocess(rgb, self._input)

    @overload
    def explain(self, image: ImageLike, target: int | None = None, *, top_k: None = None,
                preset: str | None = None, method: str = "scorecam", channels: int = 64,
                samples: int | None = None, batch_size: int | None = None,
                progress: Progress | None = None, gaussian: bool = False,
                aug_smooth: bool = False, eigen_smooth: bool = False,
                layers: Sequence[str] | None = None, fuse: str | None = None,
                region: NDArray | None = None, background: int | None = None) -> Explanation: ...

    @overload
    def explain(self, image: ImageLike, target: Sequence[int], *, top_k: None = None,
                preset: str | None = None, method: str = "scorecam", channels: int = 64,
                samples: int | None = None, batch_size: int | None = None,
                progress: Progress | None = None, gaussian: bool = False,
                aug_smooth: bool = False, eigen_smooth: bool = False,
                layers: Sequence[str] | None = None, fuse: str | None = None,
                region: NDArray | None = None, background: int | None = None
                ) -> list[Explanation]: ...

    @overload
    def explain(self, image: ImageLike, target: None = None, *, top_k: int,
                preset: str | None = None, method: str = "scorecam", channels: int = 64,
                samples: int | None = None, batch_size: int | None = None,
                progress: Progress | None = None, gaussian: bool = False,
                aug_smooth: bool = False, eigen_smooth: bool = False,
                layers: Sequence[str] | None = None, fuse: str | None = None,
                region: NDArray | None = None, background: int | None = None
                ) -> list[Explanation]: ...

    def explain(self, image, target=None, *, top_k=None, preset=None, method="scorecam",
                channels=64, samples=None, batch_size=None, progress=None, gaussian=False,
                aug_smooth=False, eigen_smooth=False, layers=None, fuse=None, region=None,
                background=None):
        """Explain the model's prediction for one image.

        Args:
            image: a path, encoded image bytes, or an H×W×3 uint8 RGB array.
            target: a class id (one `Explanation`), a list of ids (a list, same order), or
                None for the top-1 class.
            top_k: explain the k most likely classes instead (a list, most likely first).
                Every masked forward yields all class scores, so extra classes cost no
                extra forwards.
            preset: "paper", "pytorch-grad-cam" or "torchcam" (SPEC §2.1). Default: the
                method's own ("paper" for Score-CAM, "torchcam" for SS-CAM and IS-CAM).
            method: "scorecam", "faster-scorecam", "cluster-scorecam", "sscam", "iscam",
                "eigencam", the tail-graph methods "reciprocam" and "ablationcam" (bundles
                with a tail), or the black-box "rise" (every bundle, model-only ones too).
            channels: channels kept by "faster-scorecam", clusters of "cluster-scorecam".
                Default: 64.
            samples: noisy (SS-CAM, default 35) or scaled (IS-CAM, default 10) copies per
                mask; RISE's random masks (default 4000).
            batch_size: masked inputs per model call. Default: the explainer's (64 for the
                tail-graph methods).
            progress: called with (masked inputs done, total) after each batch.
            gaussian: ReciproCAM's 3×3 Gaussian variant.
            aug_smooth: pytorch-grad-cam's test-time augmentation: the map averaged over
                six passes (horizontal flip × the normalised input times 0.9, 1 and 1.1),
                each flipped back; six times the forwards. With no target, each pass
                explains its own top-1 class.
            eigen_smooth: the map is the first principal component of the weighted
                activations instead of their sum (pytorch-grad-cam's `get_2d_projection`),
                for the methods that weigh activations (not eigencam, reciprocam, rise).
            layers: of a multi-layer bundle, the target layers to explain at (names as
                `bundle.manifest.targets` lists them). Default: all of them; the tail-graph
                methods use the deepest, where the tail graph starts.
            fuse: how several layers' maps become one: "mean" (pytorch-grad-cam's) or "max"
                (torch-cam's). Default: the preset's peer's ("mean" for the paper).
            region: for a segmentation model, the pixels each class is scored over (an H×W
                mask, non-zero inside, at the image's or the output's size): a masked
                input's score is the sum of the class's output over them (pytorch-grad-cam's
                `SemanticSegmentationTarget`). Default: the pixels whose argmax is the class.
                With no target, the class covering most pixels is explained.
            background: for a segmentation model, a class never chosen when no target is
                given. Default: the manifest's.

        Returns:
            An `Explanation` when `target` is an int or None and `top_k` is None; otherwise a
            list of them.
        """
        if target is not None and top_k is not None:
            raise ValueError("give either target or top_k, not both")
        if batch_size is None:
            batch_size = max(self.batch_size, DEFAULT_TAIL_BATCH) if (
                method in TAIL_METHODS) else self.batch_size
        engine = make_method(method, preset, batch_size, channels, samples, gaussian)
        if engine.needs_layer and self.features is None:
            raise BundleError(no_layer(self.bundle.path, method))
        if eigen_smooth and not engine.weighs_activations:
            raise ValueError(f"eigen_smooth applies to methods that weigh the activations, "
                             f"not {method}")
        how = _How(eigen_smooth, self._chosen_layers(layers, engine, method),
                   fuse or DEFAULT_FUSION[engine.preset.name], region,
                   self._background(background))
        if how.fuse not in FUSIONS:
            raise ValueError(f"unknown fuse {fuse!r}: choose mean or max")
        if self.bundle.manifest.output.segmentation and (engine.uses_tail or aug_smooth):
            raise ValueError(f"{'aug_smooth' if aug_smooth else method} is for classifiers; "
                             "this bundle is a segmentation model")
        if region is not None and not self.bundle.manifest.output.segmentation:
            raise ValueError("region is for segmentation models; this bundle is a classifier")
        if engine.uses_tail and self.tail is None:
            raise BundleError(
                f"{method} needs the bundle's tail graph (activations → output), and "
                f"{self.bundle.path} has none: {self.bundle.manifest.tail_missing}")
        results = self._explain(image, target, top_k, engine, progress, aug_smooth, how)
        single = top_k is None and (target is None or isinstance(target, int | np.integer))
        return results[0] if single else results

    def segmentation_classes(self, image: ImageLike, target: int | Sequence[int] | None = None,
                             top_k: int | None = None, region: NDArray | None = None,
                             background: int | None = None) -> tuple[list[int], list[float]]:
        """For a segmentation model, the classes `explain` would explain and their scores
        (mean probability over each region), from one forward."""
        rgb, x = self.preprocess(image)
        full = self.scores(x)[0]
        at_output = None if region is None else output_region(
            region, rgb.shape, self._input, self.bundle.manifest.output)
        seg = self._segmentation_target(full, target, top_k, at_output,
                                        self._background(background))
        return seg.classes, [seg.probability(full, i) for i in range(len(seg.classes))]

    def _segmentation_target(self, full: NDArray[np.floating],
                             target: int | Sequence[int] | None, top_k: int | None,
                             region: NDArray[np.bool_] | None,
                             background: int | None) -> SegmentationTarget:
        """The classes to explain on a segmentation output (C×H×W) and their regions (at
        the output's size; None: the argmax pixels)."""
        classes = choose_classes(full, target, top_k, background) or (
            self.targets(np.zeros(self.classes), target))
        return SegmentationTarget(full, self.bundle.manifest.output, classes,
                                  [region] * len(classes))

    def _background(self, background: int | None) -> int | None:
        output = self.bundle.manifest.output
        if background is None:
            return output.background
        if not output.segmentation or not 0 <= background < output.classes:
            raise ValueError(f"background must be a class id of a segmentation model (below "
                             f"{output.classes})")
        return background

    def _chosen_layers(self, layers: Sequence[str] | None, engine: ScoreCam,
                       method: str) -> list[str] | None:
        """The layers to explain at, checked (None: all of them)."""
        names = [name for name, _ in self.bundle.manifest.targets]
        if layers is not None:
            unknown = [name for name in layers if name not in names]
            if unknown or not layers:
                raise ValueError(f"unknown layer {', '.join(unknown) or '(none)'}: this "
                                 f"bundle's layers are {', '.join(names)}")
        if engine.uses_tail and len(names) > 1:
            if layers is not None and list(layers) != names[:1]:
                raise ValueError(f"{method} perturbs the layer its tail graph starts from, "
                                 f"the deepest: {names[0]}")
            return names[:1]
        return None if layers is None else [n for n in names if n in layers]

    def explain_list(self, image: ImageLike, classes: Sequence[int] | None = None,
                     top_k: int | None = None, **options: object) -> list[Explanation]:
        """`explain` that always returns a list: the given classes, the `top_k` most likely,
        or the top-1 class. `options` are those of `explain`."""
        if classes:
            return self.explain(image, list(classes), **options)
        if top_k is not None:
            return self.explain(image, top_k=top_k, **options)
        return [self.explain(image, **options)]

    def _explain(self, image: ImageLike, target: int | Sequence[int] | None, top_k: int | None,
                 engine: ScoreCam, progress: Progress | None, aug_smooth: bool,
                 how: _How) -> list[Explanation]:
        started = time.perf_counter()
        rgb, x = self.preprocess(image)
        if how.region is not None:
            how = replace(how, region=output_region(how.region, rgb.shape, self._input,
                                                    self.bundle.manifest.output))
        prepared = time.perf_counter()
        running = _Running(progress)
        first = self._pass(x, target, top_k, engine, running, how)
        passes = [first]
        if aug_smooth:
            # pytorch-grad-cam's test-time augmentation: (no flip, flip) × (1, 0.9, 1.1) on the
            # normalised input, each map flipped back, the six averaged with no rescaling. A
            # pass with no target explains its own top-1 class; top_k the unaugmented image's.
            fixed = target if target is not None else (first.targets if top_k else None)
            for flip, factor in AUGMENTATIONS[1:]:
                augmented = (x[..., ::-1] if flip else x) * np.float32(factor)
                found = self._pass(np.ascontiguousarray(augmented), fixed, None, engine,
                                   running, how)
                if flip:
                    found.cams = [np.ascontiguousarray(cam[:, ::-1]) for cam in found.cams]
                passes.append(found)
        size = (self._input.height, self._input.width)
        forwards = sum(1 + p.forwards for p in passes)
        results = []
        for column, class_id in enumerate(first.targets):
            cam, degenerate = first.cams[column], first.degenerate[column]
            if aug_smooth:
                cam = np.mean(np.stack([p.cams[column] for p in passes]), axis=0,
                              dtype=np.float32)
                degenerate = bool(cam.max() <= 0.0 or cam.max() == cam.min())
                cam = np.zeros(size, np.float32) if degenerate else cam
            results.append(Explanation(
                saliency=to_original(cam, rgb.shape, self._input),
                saliency_input=cam,
                class_id=int(class_id),
                label=self.bundle.label(int(class_id)),
                score=first.scores[column],
                weights=first.weights[column],
                method=engine.name,
                preset=engine.preset.name,
                provider=self.provider,
                batch_size=engine.batch_size,
                forwards=forwards,
                masks=sum(p.masks for p in passes),
                degenerate=degenerate,
                nonfinite=any(p.nonfinite or not np.isfinite(p.clean).all() for p in passes),
                seconds={},
            ))
        finished = time.perf_counter()
        seconds = {"preprocess": prepared - started,
                   "features": sum(p.features_seconds for p in passes)}
        for p in passes:
            for key, value in p.seconds.items():
                seconds[key] = seconds.get(key, 0.0) + value
        seconds["total"] = finished - started
        for result in results:
            result.seconds.update(seconds)
        return results

    def _pass(self, x: NDArray[np.float32], target: int | Sequence[int] | None,
              top_k: int | None, engine: ScoreCam, running: _Running, how: _How) -> _Pass:
        """One input's maps for its targets: the features forward, the method's forwards at
        each chosen layer, the layers' maps fused."""
        started = time.perf_counter()
        if not engine.needs_layer:          # a black-box method: no features forward
            layers = [("", np.zeros((0, 1, 1), np.float32), None)]
        elif how.layers is None and len(self.bundle.manifest.targets) == 1:
            raw = self.raw_activations(x)
            layers = [(self.bundle.manifest.layer or "", self._as_maps(raw), self._prefix(raw))]
        else:
            layers = self.layer_activations(x, how.layers)
        prefix = layers[0][2]

        def tail(batch: NDArray[np.float32]) -> NDArray[np.float32]:
            return self.tail_scores(batch, prefix)

        output = self.bundle.manifest.output
        scorer: ScoreFn = tail if engine.uses_tail else self.batch_scorer()
        kind = output.kind
        if output.segmentation:
            full = self.scores(x)[0]
            seg = self._segmentation_target(full, target, top_k, how.region, how.background)
            clean = seg.reduce(full[None])[0]
            found = _Pass(seg.classes, clean, features_seconds=time.perf_counter() - started,
                          scores=[seg.probability(full, i) for i in range(len(seg.classes))])

            def scorer(batch: NDArray[np.float32]) -> NDArray[np.float64]:
                return seg.reduce(self.scores(batch))

            kind = "probabilities"          # the region sums are the scores themselves
        else:
            # Tail-graph methods take the unperturbed output from the tail as well: one
            # features forward and cheap tail forwards, never a second full-model forward.
            clean = (tail(layers[0][1][None]) if engine.uses_tail else self.scores(x))[0]
            found = _Pass(self.targets(clean, target, top_k), clean,
                          features_seconds=time.perf_counter() - started)
            probabilities = to_probabilities(clean[None], kind)[0]
            found.scores = [float(probabilities[c]) for c in found.targets]
        size = (self._input.height, self._input.width)
        grids = [acts.shape[1:] for _, acts, _ in layers]
        grid = largest_grid(grids)
        at_grid = len(layers) > 1 and how.fuse == "max" and engine.preset.name == TORCHCAM
        per_layer: list[list[tuple[NDArray[np.float32], bool]]] = [[] for _ in found.targets]
        weights: list[list[NDArray[np.float32]]] = [[] for _ in found.targets]
        primary = self.bundle.manifest.activation
        values: dict[int, NDArray[np.float64]] = {}
        for group in _shared_grids(layers, engine):
            acts = np.concatenate([layers[i][1] for i in group]) if len(group) > 1 else (
                layers[group[0]][1])
            maps_model = None
            if (self._device is not None and engine.uses_masks and engine.perturbs_linearly
                    and primary is not None and acts.shape[1:] == (primary.height,
                                                                  primary.width)):
                maps_model = self._device.bind(x, engine.preset.align_corners)
            scores = engine.score(x, acts, scorer, found.targets, clean, kind,
                                  running.part(), maps_model)
            found.add(scores)
            if len(group) == 1:                 # rows: channels, or positions (reciprocam)
                values[group[0]] = scores.values
                continue
            offset = 0
            for i in group:
                channels = layers[i][1].shape[0]
                values[i] = scores.values[offset:offset + channels]
                offset += channels
        for i, (_, acts, _) in enumerate(layers):
            for column in range(len(found.targets)):
                w = engine.weights(values[i][:, column])
                weights[column].append(w)
                per_layer[column].append(engine.cam(acts, w, grid if at_grid else size,
                                                    how.eigen, len(layers) > 1))
        for column in range(len(found.targets)):
            cam, degenerate = fuse(per_layer[column], how.fuse, grid if at_grid else None, size)
            found.cams.append(cam)
            found.degenerate.append(degenerate)
            found.weights.append(np.concatenate(weights[column]))
        return found

    def targets(self, clean: NDArray[np.floating], target: int | Sequence[int] | None = None,
                top_k: int | None = None) -> list[int]:
        """The class ids `explain` would explain, given the model's C outputs (or
        probabilities) for the image: `target` checked, the `top_k` most likely, or the
        top-1 class."""
        classes = self.classes
        if top_k is not None:
            if not 1 <= top_k <= classes:
                raise ValueError(f"top_k must be between 1 and {classes}, got {top_k}")
            order = np.argsort(-np.nan_to_num(clean.astype(np.float64), nan=-np.inf),
                               kind="stable")
            return [int(i) for i in order[:top_k]]
        if target is None:
            return [int(np.argmax(np.nan_to_num(clean, nan=-np.inf)))]
        ids = [target] if isinstance(target, int | np.integer) else list(target)
        if not ids:
            raise ValueError("target list is empty")
        for class_id in ids:
            if isinstance(class_id, bool) or not isinstance(class_id, int | np.integer):
                raise TypeError(f"class ids must be integers, got {class_id!r}")
            if not 0 <= class_id < classes:
                raise ValueError(f"class id {class_id} is out of range (0 to {classes - 1})")
        return [int(i) for i in ids]


# pytorch-grad-cam's aug_smooth passes, in its order: (horizontal flip, factor on the input).
AUGMENTATIONS = ((False, 1.0), (False, 0.9), (False, 1.1), (True, 1.0), (True, 0.9),
                 (True, 1.1))


@dataclass(frozen=True)
class _How:
    """Settings of every pass: eigen smoothing, the layers to explain, how to fuse them."""

    eigen: bool = False
    layers: list[str] | None = None
    fuse: str = "mean"
    region: NDArray[np.bool_] | None = None       # at the output's size (segmentation)
    background: int | None = None


@dataclass
class _Pass:
    """What one (possibly augmented) input gave: its targets, clean output and maps, and
    the forwards of every layer."""

    targets: list[int]
    clean: NDArray[np.float32]
    features_seconds: float
    scores: list[float] = field(default_factory=list)    # each target's probability
    forwards: int = 0
    masks: int = 0
    nonfinite: bool = False
    seconds: dict[str, float] = field(default_factory=dict)
    weights: list[NDArray[np.float32]] = field(default_factory=list)
    cams: list[NDArray[np.float32]] = field(default_factory=list)
    degenerate: list[bool] = field(default_factory=list)

    def add(self, scores: Scores) -> None:
        """Count one layer's forwards."""
        self.forwards += scores.forwards
        self.masks += scores.masks
        self.nonfinite = self.nonfinite or scores.nonfinite
        for key, value in scores.seconds.items():
            self.seconds[key] = self.seconds.get(key, 0.0) + value


def _shared_grids(layers: list[tuple[str, NDArray[np.float32], NDArray[np.float32] | None]],
                  engine: ScoreCam) -> list[list[int]]:
    """The layers scored together: for exact Score-CAM, whose channels are scored each on
    its own, layers of one grid share their forwards (identical masks run once); for the
    other methods (which choose, cluster or draw noise per channel), each layer alone."""
    if type(engine) is not ScoreCam:
        return [[i] for i in range(len(layers))]
    grids: dict[tuple[int, ...], list[int]] = {}
    for i, (_, acts, _) in enumerate(layers):
        grids.setdefault(acts.shape[1:], []).append(i)
    return list(grids.values())


class _Running:
    """Progress over runs (layers, passes) one after another, each of its own size: the
    masked inputs done and the total of the runs so far."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress
        self.offset = 0

    def part(self) -> Progress | None:
        """The progress callback of the next run."""
        progress = self.progress
        if progress is None:
            return None
        base = self.offset

        def report(done: int, total: int) -> None:
            self.offset = base + total
            progress(base + done, base + total)

        return report
