"""A bundle's graphs as ONNX Runtime sessions: forwards in the manifest's layouts, with the
graphs' shapes checked against the manifest when they are opened."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from .bundle import Bundle, open_bundle
from .bundle.manifest import ActivationSpec
from .cam.engine import Pipelined
from .cam.fused import IMAGE, DeviceMasks, ServedMasks
from .errors import BundleError
from .metrics import softmax
from .runners.ort import ACCELERATORS, OrtRunner, Runner

# Masked inputs per model call when none is given: on the CPU provider the per-image time is
# flat from 2 to 16 and rises beyond; on CUDA larger batches keep the device busy.
DEFAULT_BATCH = {"cpu": 8, "cuda": 64, "remote": 64}
# Maps per request to a served masked scorer: each request carries the image once, so larger
# batches keep its share of the bytes small (256: under 1 % of sending masked images).
MASKED_BATCH = 256


def default_bundle() -> Path:
    """The EfficientNet-Lite0 bundle shipped with the package."""
    from importlib.resources import files

    return Path(str(files("scorecam_onnx_models") / "efficientnet-lite0"))


class Classifier:
    """A bundle's features, model and tail graphs opened on one execution provider.

    Every array in and out is in the engine's layouts (images N×3×H×W, activations K×h×w);
    the conversions to the graphs' own layouts (NHWC inputs or stages, tokens) happen here.

    Args:
        bundle: a bundle folder (or a loaded `Bundle`), or a plain ``.onnx`` classifier (a
            model-only bundle, ImageNet preprocessing assumed with a warning: `open_model`
            takes other settings); default: the shipped EfficientNet-Lite0.
        provider: "auto" (CUDA when it really starts, else CPU), or any execution provider
            of this ONNX Runtime build by short name ("cpu", "cuda", "openvino", "tensorrt",
            "dml", "coreml", "qnn"…) or full name.
        provider_options: options for that provider (e.g. {"device_type": "GPU"}).
        batch_size: masked inputs per model call; default per provider (8 on CPU, 64 on CUDA).
        threads: ONNX Runtime intra-op threads (0: one per physical core).
        device_masks: build masked inputs inside ONNX Runtime (only low-resolution maps are
            sent, only scores come back). Default: on for CUDA, off for CPU.
        model_url: send the full-model forwards (the unmasked one and every masked batch) to
            this model served over the Open Inference Protocol, `http(s)://` or
            `grpc(s)://HOST:PORT/v2/models/NAME[/versions/V]` (extra ``remote``); the
            features and tail graphs still run here.
        remote_timeout: seconds a remote request may take.
        in_flight: batches kept on a served model at once (the next is built meanwhile).
        runner: send the full-model forwards to this `Runner` instead (for instance one
            over Triton's BLS): a classifier, or a masked scorer standing in for one.
        masked_runners: served masked scorers (one per upsampling convention) that score
            the low-resolution maps of their convention, so that only maps cross to them.
    """

    def __init__(
        self,
        bundle: str | Path | Bundle | None = None,
        provider: str = "auto",
        batch_size: int | None = None,
        threads: int = 0,
        device_masks: bool | None = None,
        provider_options: dict[str, str] | None = None,
        model_url: str | None = None,
        remote_timeout: float = 60.0,
        in_flight: int = 2,
        runner: Runner | None = None,
        masked_runners: Sequence[Runner] = (),
    ) -> None:
        if model_url and runner is not None:
            raise ValueError("give either model_url or runner, not both")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.bundle = open_bundle(bundle if bundle is not None else default_bundle())
        m = self.bundle.manifest
        options = provider_options
        self.model: Runner
        if model_url:
            from .runners.remote import RemoteRunner

            runner = RemoteRunner(model_url, remote_timeout, in_flight)
        features = self.bundle.features_path
        self.features = OrtRunner(features, provider, threads, options) if features else None
        if self.features is None and runner is None:
            self.model = OrtRunner(self.bundle.model_path, provider, threads, options)
        chosen = self.features.provider if self.features else (
            provider if runner is not None else self.model.provider)
        maps_size = (m.activation.height, m.activation.width) if m.activation else (0, 0)
        if m.output.segmentation and masked_runners:
            raise BundleError("masked scorers score class outputs; this bundle is a "
                              "segmentation model")
        if m.model_only and (masked_runners or (runner and IMAGE in runner.shapes("input"))):
            raise BundleError("masked scorers score a layer's maps; a model-only bundle has "
                              "no layer")
        if runner is not None:
            self.model = runner
            if IMAGE in runner.shapes("input"):       # a served masked scorer
                self.model = ServedMasks([runner], m.input.name, m.output.name, maps_size)
        elif self.features is not None:
            self.model = OrtRunner(self.bundle.model_path, chosen, threads, options)
        if masked_runners and m.input.layout == "NHWC":
            raise BundleError("masked scorers build NCHW images; this bundle's input is NHWC")
        served = ServedMasks(masked_runners, m.input.name, m.output.name,
                             maps_size) if masked_runners else None
        tail = self.bundle.tail_path
        self.tail = OrtRunner(tail, chosen, threads, options) if tail else None
        self.provider = self.model.provider
        self.model_url = model_url
        if served is None and isinstance(self.model, ServedMasks):
            served = self.model
        if batch_size is None and served is not None:
            batch_size = MASKED_BATCH
        self.batch_size = batch_size or DEFAULT_BATCH.get(
            self.provider, DEFAULT_BATCH["cuda" if self.provider in ACCELERATORS else "cpu"])
        self._input = m.input
        self._nhwc_input = m.input.layout == "NHWC"
        self._nhwc_acts = m.activation is not None and m.activation.layout == "NHWC"
        self._tokens = m.activation is not None and m.activation.layout == "NLC"
        self._check_shapes()
        self._device: DeviceMasks | ServedMasks | None = served
        if device_masks is None:
            device_masks = self.provider == "cuda"
        if device_masks and not (self._nhwc_input or self._nhwc_acts or runner or served
                                 or m.model_only or m.output.segmentation):
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
        if self.features is not None:
            self.activations(zeros)
        self.scores(zeros)
        if self._device is not None and m.activation is not None:
            maps = np.zeros((self.batch_size, m.activation.height, m.activation.width),
                            np.float32)
            for align in (False, True):
                self._device.bind(zeros, align)(maps)

    def _check_shapes(self) -> None:
        """Fail early when a graph's fixed dimensions contradict the manifest."""
        m = self.bundle.manifest
        image = (3, m.input.height, m.input.width)
        image = image[1:] + image[:1] if self._nhwc_input else image
        checks: list[tuple[Runner, str, str, tuple[int, ...]]] = [
            (self.model, "input", m.input.name, image),
            (self.model, "output", m.output.name, self.output_shape),
        ]
        if self.features is not None:
            checks.append((self.features, "input", m.input.name, image))
            for _, a in m.targets:
                act = (a.channels, a.height, a.width)
                act = act[1:] + act[:1] if a.layout == "NHWC" else act
                act = (a.tokens, a.channels) if a.layout == "NLC" else act
                checks.append((self.features, "output", a.name, act))
        for runner, kind, name, want in checks:
            shape = runner.shapes(kind).get(name)
            if shape is None:
                raise BundleError(f"{runner.path}: no {kind} named {name!r} (manifest)")
            datatype = runner.datatype(kind, name)
            if datatype != "FP32":
                raise BundleError(f"{runner.path}: {kind} {name!r} is {datatype}, the bundle "
                                  "needs FP32")
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
        (out,) = self.model.run([self.bundle.manifest.output.name], self._model_feed(batch))
        return self._checked(out, batch.shape[0])

    def batch_scorer(self) -> Callable[[NDArray[np.float32]], NDArray[np.float32]]:
        """`scores`, or for a served model the same with `submit` and `in_flight`, so that
        the engine keeps several batches on the server at once."""
        if not hasattr(self.model, "submit"):
            return self.scores
        return Pipelined(self.scores, self._submit_scores, self.model.in_flight)

    def _submit_scores(self, batch: NDArray[np.float32]
                       ) -> Callable[[], NDArray[np.float32]]:
        wait = self.model.submit([self.bundle.manifest.output.name], self._model_feed(batch))
        return lambda: self._checked(wait()[0], batch.shape[0])

    def _model_feed(self, batch: NDArray[np.float32]) -> dict[str, NDArray[np.float32]]:
        feed = batch.transpose(0, 2, 3, 1) if self._nhwc_input else batch
        return {self._input.name: np.ascontiguousarray(feed)}

    def _checked(self, out: NDArray[np.float32], n: int, graph: str = "the model"
                 ) -> NDArray[np.float32]:
        want = (n, *self.output_shape)
        if out.shape != want:
            raise BundleError(f"{graph} returned shape {out.shape}, expected {want} (manifest)")
        return out

    @property
    def output_shape(self) -> tuple[int, ...]:
        """One input's output: (C,) class scores, or (C, H, W) per-pixel scores."""
        o = self.bundle.manifest.output
        return (o.classes, o.height, o.width) if o.segmentation else (o.classes,)

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
        return self._checked(out, activations.shape[0], "the tail graph")

    def probabilities(self, batch: NDArray[np.float32]) -> NDArray[np.float64]:
        """Class probabilities (N×C) for a batch of preprocessed NCHW inputs; for a
        segmentation model, each class's mean per-pixel probability (its expected share of
        the image)."""
        out = self.scores(batch)
        kind = self.bundle.manifest.output.kind
        if out.ndim == 4:
            n, c = out.shape[:2]
            pixels = out.reshape(n, c, -1).transpose(0, 2, 1).reshape(-1, c)
            return to_probabilities(pixels, kind).reshape(n, -1, c).mean(axis=1)
        return to_probabilities(out, kind)

    def activations(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        """The target layer's activations (K×h×w) for one preprocessed NCHW input."""
        return self._as_maps(self.raw_activations(x))

    def raw_activations(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        """The features graph's raw output for one input (1×K×h×w, 1×h×w×K or 1×L×K)."""
        if self.features is None or self.bundle.manifest.activation is None:
            raise BundleError(no_layer(self.bundle.path))
        feed = x.transpose(0, 2, 3, 1) if self._nhwc_input else x
        (acts,) = self.features.run([self.bundle.manifest.activation.name],
                                    {self._input.name: np.ascontiguousarray(feed)})
        return acts

    def layer_activations(self, x: NDArray[np.float32], layers: list[str] | None = None
                          ) -> list[tuple[str, NDArray[np.float32], NDArray[np.float32] | None]]:
        """(layer, K×h×w maps, leading tokens or None) of every target layer, or of the named
        ones, from one features forward."""
        targets = self.bundle.manifest.targets
        if self.features is None or not targets:
            raise BundleError(no_layer(self.bundle.path))
        chosen = [(name, a) for name, a in targets if layers is None or name in layers]
        feed = x.transpose(0, 2, 3, 1) if self._nhwc_input else x
        raws = self.features.run([a.name for _, a in chosen],
                                 {self._input.name: np.ascontiguousarray(feed)})
        return [(name, self._as_maps(raw, a), raw[0, :a.prefix] if a.layout == "NLC" else None)
                for (name, a), raw in zip(chosen, raws, strict=True)]

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

    def _as_maps(self, acts: NDArray[np.float32],
                 spec: ActivationSpec | None = None) -> NDArray[np.float32]:
        """K×h×w maps from the features graph's raw output (of the deepest layer, or the
        layer `spec` describes)."""
        a = spec or self.bundle.manifest.activation
        if a.layout == "NLC":
            if acts.ndim != 3 or acts.shape[1:] != (a.tokens, a.channels):
                raise BundleError(f"the features graph returned shape {acts.shape}, the "
                                  f"manifest says N×{a.tokens}×{a.channels} tokens")
            grid = acts[0, a.prefix:].reshape(a.height, a.width, a.channels)
            return np.ascontiguousarray(grid.transpose(2, 0, 1), dtype=np.float32)
        if acts.ndim != 4:
            raise BundleError(f"the features graph returned shape {acts.shape}, expected 4-D")
        acts = acts[0].transpose(2, 0, 1) if a.layout == "NHWC" else acts[0]
        if acts.shape != (a.channels, a.height, a.width):
            raise BundleError(f"the features graph returned {acts.shape[0]}×{acts.shape[1]}×"
                              f"{acts.shape[2]} activations, the manifest says "
                              f"{a.channels}×{a.height}×{a.width}")
        return np.ascontiguousarray(acts, dtype=np.float32)


def no_layer(path: Path, method: str | None = None) -> str:
    """Why a method that needs a target layer cannot run on a model-only bundle."""
    who = f"{method} needs" if method else "this needs"
    return (f"{who} a target layer, and {path} is a model-only bundle: cut the model with "
            "`scorecam-onnx split MODEL.onnx --layer TENSOR --out DIR` (`scorecam-onnx layers "
            "MODEL.onnx` lists the tensors), or use --method rise")


def to_probabilities(out: NDArray[np.floating], kind: str) -> NDArray[np.float64]:
    """N×C class probabilities from model outputs; non-finite logits count as −∞ (never NaN)."""
    values = np.asarray(out, dtype=np.float64)
    if kind == "probabilities":
        return np.nan_to_num(values, nan=0.0, posinf=1.0, neginf=0.0)
    return softmax(np.where(np.isfinite(values), values, -np.inf))
