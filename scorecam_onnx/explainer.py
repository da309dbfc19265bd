"""The public API: an `Explainer` built once per bundle, `explain()` per image."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import overload

import numpy as np
from numpy.typing import NDArray

from .bundle import Bundle
from .engine import Progress, ScoreCam
from .errors import BundleError
from .fused import DeviceMasks
from .images import DEFAULT_MAX_PIXELS, ImageLike, load_image, preprocess, to_original
from .methods import TAIL_METHODS, make_method
from .metrics import softmax
from .runtime import ACCELERATORS, OrtRunner

# Masked inputs per model call when none is given: on the CPU provider the per-image time is
# flat from 2 to 16 and rises beyond; on CUDA larger batches keep the device busy.
DEFAULT_BATCH = {"cpu": 8, "cuda": 64}
# Activations per tail-graph call for reciprocam and ablationcam when none is given: a tail
# forward is cheap (a pooling and a linear layer at a head), so the per-call cost dominates.
DEFAULT_TAIL_BATCH = 64


def default_bundle() -> Path:
    """The EfficientNet-Lite0 bundle shipped with the package."""
    from importlib.resources import files

    return Path(str(files("scorecam_onnx_models") / "efficientnet-lite0"))


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


class Explainer:
    """Explains a bundle's classifier with Score-CAM on ONNX Runtime.

    Create it once and reuse it; `explain` may be called from several threads at once.

    Args:
        bundle: a bundle folder (or a loaded `Bundle`); default: the shipped EfficientNet-Lite0.
        provider: "auto" (CUDA when it really starts, else CPU), or any execution provider
            of this ONNX Runtime build by short name ("cpu", "cuda", "openvino", "tensorrt",
            "dml", "coreml", "qnn"…) or full name.
        provider_options: options for that provider (e.g. {"device_type": "GPU"}).
        batch_size: masked inputs per model call; default per provider (8 on CPU, 64 on CUDA).
        threads: ONNX Runtime intra-op threads (0: one per physical core).
        max_pixels: images announcing more pixels are refused before decoding.
        device_masks: build masked inputs inside ONNX Runtime (only low-resolution maps are
            sent, only scores come back). Default: on for CUDA, off for CPU.

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
    ) -> None:
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.bundle = bundle if isinstance(bundle, Bundle) else Bundle.load(
            bundle if bundle is not None else default_bundle())
        m = self.bundle.manifest
        options = provider_options
        self.features = OrtRunner(self.bundle.features_path, provider, threads, options)
        chosen = self.features.provider
        self.model = OrtRunner(self.bundle.model_path, chosen, threads, options)
        tail = self.bundle.tail_path
        self.tail = OrtRunner(tail, chosen, threads, options) if tail else None
        self.provider = self.model.provider
        self.batch_size = batch_size or DEFAULT_BATCH.get(
            self.provider, DEFAULT_BATCH["cuda" if self.provider in ACCELERATORS else "cpu"])
        self.max_pixels = max_pixels
        self._input = m.input
        self._nhwc_input = m.input.layout == "NHWC"
        self._nhwc_acts = m.activation.layout == "NHWC"
        self._tokens = m.activation.layout == "NLC"
        self._check_shapes()
        self._device: DeviceMasks | None = None
        if device_masks is None:
            device_masks = self.provider == "cuda"
        if device_masks and not (self._nhwc_input or self._nhwc_acts):
            cuda = self.provider == "cuda"
            self._device = DeviceMasks(
                self.bundle.model_path, m.input.name, m.output.name,
                (m.input.height, m.input.width), self.provider, threads,
                pad_to=self.batch_size if cuda else 0)
        if self.provider == "cuda":
            self._warm_up()

    def _warm_up(self) -> None:
        """Run every session once, at the shapes explaining uses, so that cuDNN's algorithm
        search is paid here and not on the first image."""
        m = self.bundle.manifest
        zeros = np.zeros((1, 3, m.input.height, m.input.width), np.float32)
        self.activations(zeros)
        self.scores(zeros)
        if self._device is not None:
            maps = np.zeros((self.batch_size, m.activation.height, m.activation.width),
                            np.float32)
            for align in (False, True):
                self._device.bind(zeros, align)(maps)

    def _check_shapes(self) -> None:
        """Fail early when a graph's fixed dimensions contradict the manifest."""
        m = self.bundle.manifest
        image = (3, m.input.height, m.input.width)
        image = image[1:] + image[:1] if self._nhwc_input else image
        a = m.activation
        act = (a.channels, a.height, a.width)
        act = act[1:] + act[:1] if self._nhwc_acts else act
        act = (a.tokens, a.channels) if self._tokens else act
        checks = [
            (self.features, "input", m.input.name, image),
            (self.model, "input", m.input.name, image),
            (self.features, "output", m.activation.name, act),
            (self.model, "output", m.output.name, (m.output.classes,)),
        ]
        for runner, kind, name, want in checks:
            values = runner.session.get_inputs() if kind == "input" else (
                runner.session.get_outputs())
            shape = next((v.shape for v in values if v.name == name), None)
            if shape is None:
                raise BundleError(f"{runner.path}: no {kind} named {name!r} (manifest)")
            fixed = [(g, w) for g, w in zip(shape[1:], want, strict=False) if isinstance(g, int)]
            if len(shape) != len(want) + 1 or any(g != w for g, w in fixed):
                got = "×".join(str(d) for d in shape)
                said = "×".join(str(d) for d in ("N", *want))
                raise BundleError(
                    f"{runner.path}: {kind} {name!r} has shape {got}, but the manifest says {said}")

    @property
    def classes(self) -> int:
        """Number of classes of the model."""
        return self.bundle.manifest.output.classes

    def scores(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        """Model outputs (N×C) for a batch of preprocessed NCHW inputs."""
        feed = batch.transpose(0, 2, 3, 1) if self._nhwc_input else batch
        (out,) = self.model.run([self.bundle.manifest.output.name],
                                {self._input.name: np.ascontiguousarray(feed)})
        if out.shape != (batch.shape[0], self.classes):
            raise BundleError(f"the model returned shape {out.shape}, expected "
                              f"{(batch.shape[0], self.classes)} (manifest)")
        return out

    def tail_scores(self, activations: NDArray[np.float32],
                    prefix: NDArray[np.float32] | None = None) -> NDArray[np.float32]:
        """Model outputs (N×C) for a batch of N×K×h×w activations, through the tail graph.

        For token activations, `prefix` (P×K) gives the leading tokens (class, register…)
        that precede the h·w patch tokens; it is required when P > 0.
        """
        if self.tail is None:
            raise BundleError(f"{self.bundle.path}: this bundle has no tail graph "
                              f"({self.bundle.manifest.tail_missing})")
        feed = activations.transpose(0, 2, 3, 1) if self._nhwc_acts or self._tokens else (
            activations)
        if self._tokens:
            feed = self._as_tokens(feed, prefix)
        (out,) = self.tail.run([self.bundle.manifest.output.name],
                               {self.bundle.manifest.activation.name:
                                np.ascontiguousarray(feed)})
        if out.shape != (activations.shape[0], self.classes):
            raise BundleError(f"the tail graph returned shape {out.shape}, expected "
                              f"{(activations.shape[0], self.classes)} (manifest)")
        return out

    def probabilities(self, batch: NDArray[np.float32]) -> NDArray[np.float64]:
        """Class probabilities (N×C) for a batch of preprocessed NCHW inputs."""
        return to_probabilities(self.scores(batch), self.bundle.manifest.output.kind)

    def activations(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        """The target layer's activations (K×h×w) for one preprocessed NCHW input."""
        return self._as_maps(self.raw_activations(x))

    def raw_activations(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        """The features graph's raw output for one input (1×K×h×w, 1×h×w×K or 1×L×K)."""
        feed = x.transpose(0, 2, 3, 1) if self._nhwc_input else x
        (acts,) = self.features.run([self.bundle.manifest.activation.name],
                                    {self._input.name: np.ascontiguousarray(feed)})
        return acts

    def _prefix(self, raw: NDArray[np.float32]) -> NDArray[np.float32] | None:
        """The leading tokens (P×K) of a token activation, else None."""
        return raw[0, :self.bundle.manifest.activation.prefix] if self._tokens else None

    def _as_tokens(self, maps_nhwc: NDArray[np.float32],
                   prefix: NDArray[np.float32] | None) -> NDArray[np.float32]:
        """N×h×w×K maps back into N×L×K tokens, with the image's leading tokens first."""
        a = self.bundle.manifest.activation
        n = maps_nhwc.shape[0]
        patches = maps_nhwc.reshape(n, a.height * a.width, a.channels)
        if a.prefix == 0:
            return patches
        if prefix is None or prefix.shape != (a.prefix, a.channels):
            raise ValueError(f"token activations need their {a.prefix} leading tokens")
        lead = np.broadcast_to(prefix.astype(np.float32), (n, a.prefix, a.channels))
        return np.concatenate([lead, patches], axis=1)

    def _as_maps(self, acts: NDArray[np.float32]) -> NDArray[np.float32]:
        """K×h×w maps from the features graph's raw output."""
        a = self.bundle.manifest.activation
        if self._tokens:
            if acts.ndim != 3 or acts.shape[1:] != (a.tokens, a.channels):
                raise BundleError(f"the features graph returned shape {acts.shape}, the "
                                  f"manifest says N×{a.tokens}×{a.channels} tokens")
            grid = acts[0, a.prefix:].reshape(a.height, a.width, a.channels)
            return np.ascontiguousarray(grid.transpose(2, 0, 1), dtype=np.float32)
        if acts.ndim != 4:
            raise BundleError(f"the features graph returned shape {acts.shape}, expected 4-D")
        acts = acts[0].transpose(2, 0, 1) if self._nhwc_acts else acts[0]
        if acts.shape != (a.channels, a.height, a.width):
            raise BundleError(f"the features graph returned {acts.shape[0]}×{acts.shape[1]}×"
                              f"{acts.shape[2]} activations, the manifest says "
                              f"{a.channels}×{a.height}×{a.width}")
        return np.ascontiguousarray(acts, dtype=np.float32)

    def preprocess(self, image: ImageLike) -> tuple[NDArray[np.uint8], NDArray[np.float32]]:
        """The RGB image and its model input (1×3×H×W)."""
        rgb = load_image(image, self.max_pixels)
        return rgb, preprocess(rgb, self._input)

    @overload
    def explain(self, image: ImageLike, target: int | None = None, *, top_k: None = None,
                preset: str | None = None, method: str = "scorecam", channels: int = 64,
                samples: int | None = None, batch_size: int | None = None,
                progress: Progress | None = None, gaussian: bool = False
                ) -> Explanation: ...

    @overload
    def explain(self, image: ImageLike, target: Sequence[int], *, top_k: None = None,
                preset: str | None = None, method: str = "scorecam", channels: int = 64,
                samples: int | None = None, batch_size: int | None = None,
                progress: Progress | None = None, gaussian: bool = False
                ) -> list[Explanation]: ...

    @overload
    def explain(self, image: ImageLike, target: None = None, *, top_k: int,
                preset: str | None = None, method: str = "scorecam", channels: int = 64,
                samples: int | None = None, batch_size: int | None = None,
                progress: Progress | None = None, gaussian: bool = False
                ) -> list[Explanation]: ...

    def explain(self, image, target=None, *, top_k=None, preset=None, method="scorecam",
                channels=64, samples=None, batch_size=None, progress=None, gaussian=False):
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
            method: "scorecam", "faster-scorecam", "sscam", "iscam", "eigencam", or the
                tail-graph methods "reciprocam" and "ablationcam" (bundles with a tail).
            channels: channels kept by "faster-scorecam". Default: 64.
            samples: noisy (SS-CAM, default 35) or scaled (IS-CAM, default 10) copies per mask.
            batch_size: masked inputs per model call. Default: the explainer's (64 for the
                tail-graph methods).
            progress: called with (masked inputs done, total) after each batch.
            gaussian: ReciproCAM's 3×3 Gaussian variant.

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
        if engine.uses_tail and self.tail is None:
            raise BundleError(
                f"{method} needs the bundle's tail graph (activations → output), and "
                f"{self.bundle.path} has none: {self.bundle.manifest.tail_missing}")
        results = self._explain(image, target, top_k, engine, progress)
        single = top_k is None and (target is None or isinstance(target, int | np.integer))
        return results[0] if single else results

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
                 engine: ScoreCam, progress: Progress | None) -> list[Explanation]:
        started = time.perf_counter()
        rgb, x = self.preprocess(image)
        prepared = time.perf_counter()
        raw = self.raw_activations(x)
        acts = self._as_maps(raw)
        prefix = self._prefix(raw)

        def tail(batch: NDArray[np.float32]) -> NDArray[np.float32]:
            return self.tail_scores(batch, prefix)

        # Tail-graph methods take the unperturbed output from the tail as well: one features
        # forward and cheap tail forwards, never a second full-model forward.
        clean = (tail(acts[None]) if engine.uses_tail else self.scores(x))[0]
        featured = time.perf_counter()
        targets = self.targets(clean, target, top_k)
        maps_model = None
        if self._device is not None and engine.uses_masks and engine.perturbs_linearly:
            maps_model = self._device.bind(x, engine.preset.align_corners)
        scores = engine.score(x, acts, tail if engine.uses_tail else self.scores,
                              targets, clean, self.bundle.manifest.output.kind, progress,
                              maps_model)
        size = (self._input.height, self._input.width)
        probabilities = to_probabilities(clean[None], self.bundle.manifest.output.kind)[0]
        results = []
        for column, class_id in enumerate(targets):
            weights = engine.weights(scores.values[:, column])
            cam, degenerate = engine.cam(acts, weights, size)
            results.append(Explanation(
                saliency=to_original(cam, rgb.shape, self._input),
                saliency_input=cam,
                class_id=int(class_id),
                label=self.bundle.label(int(class_id)),
                score=float(probabilities[class_id]),
                weights=weights,
                method=engine.name,
                preset=engine.preset.name,
                provider=self.provider,
                batch_size=engine.batch_size,
                forwards=1 + scores.forwards,
                masks=scores.masks,
                degenerate=degenerate,
                nonfinite=scores.nonfinite or not np.isfinite(clean).all(),
                seconds={},
            ))
        finished = time.perf_counter()
        seconds = {"preprocess": prepared - started, "features": featured - prepared,
                   **scores.seconds, "total": finished - started}
        for result in results:
            result.seconds.update(seconds)
        return results

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


def to_probabilities(out: NDArray[np.floating], kind: str) -> NDArray[np.float64]:
    """N×C class probabilities from model outputs; non-finite logits count as −∞ (never NaN)."""
    values = np.asarray(out, dtype=np.float64)
    if kind == "probabilities":
        return np.nan_to_num(values, nan=0.0, posinf=1.0, neginf=0.0)
    return softmax(np.where(np.isfinite(values), values, -np.inf))
