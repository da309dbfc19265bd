"""A bundle's graphs as runners: forwards in the manifest's layouts, with the
graphs' shapes checked against the manifest when they are opened."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from .bundle import Bundle
from .bundle.manifest import ActivationSpec, DecoderSpec
from .cam.engine import Pipelined, sigmoid
from .cam.graph_masks import DeviceMasks, ServedMasks
from .detection import Detections, decode
from .errors import BundleError
from .metrics import softmax
from .options import no_layer
from .runners.ort import Runner


@runtime_checkable
class Submits(Protocol):
    """A runner that keeps batches in flight (a served model's): `submit` returns a wait."""

    in_flight: int

    def submit(
        self, names: list[str], feed: dict[str, NDArray[np.float32]]
    ) -> Callable[[], list[NDArray[np.float32]]]: ...


class Forwards:
    """A bundle's features, model and tail graphs as runners: forwards in the engine's layouts.

    Every array in and out is in the engine's layouts (images N×C×H×W, C the input's
    channels; activations K×h×w); the conversions to the graphs' own layouts (NHWC inputs
    or stages, tokens) happen here.
    Built by `scorecam_onnx.runtime.open_forwards` from one `Runtime`.

    Attributes:
        bundle: the bundle.
        features, model, tail: the runners of its graphs (features and tail may be None).
        batch_size: masked inputs per model call when a call gives none.
        maps_scorer: scores low-resolution maps with the masking inside a graph (masks built
            by ONNX Runtime on the device, or sent to served masked scorers), or None.
        model_url: the served model the full-model forwards go to, if any.
    """

    def __init__(
        self,
        bundle: Bundle,
        features: Runner | None,
        model: Runner,
        tail: Runner | None,
        batch_size: int,
        maps_scorer: DeviceMasks | ServedMasks | None = None,
        model_url: str | None = None,
    ) -> None:
        self.bundle = bundle
        self.features, self.model, self.tail = features, model, tail
        self.batch_size = batch_size
        self.maps_scorer = maps_scorer
        self.model_url = model_url
        m = bundle.manifest
        self.input = m.input
        self._nhwc_input = m.input.layout == "NHWC"
        self._nhwc_acts = m.activation is not None and m.activation.layout == "NHWC"
        self._tokens = m.activation is not None and m.activation.layout == "NLC"
        self.decoder = m.decoder
        # torchvision detectors take one 3×H×W image per call (no batch axis)
        dims = model.shapes("input").get(m.input.name) or ()
        self._unbatched = len(dims) == 3
        # a detector exported with its batch axis fixed at 1 (ultralytics' default) or with
        # none runs one input per call
        self._single = m.decoder is not None and (
            self._unbatched or (len(dims) == 4 and dims[0] == 1)
        )
        self.check_shapes()

    @property
    def _activation(self) -> ActivationSpec:
        """The deepest layer's activation (a bundle without one has no features graph)."""
        activation = self.bundle.manifest.activation
        if activation is None:
            raise BundleError(no_layer(self.bundle.path))
        return activation

    @property
    def _decoder(self) -> DecoderSpec:
        if self.decoder is None:
            raise BundleError(f"{self.bundle.path}: not a detector (its manifest has no decoder)")
        return self.decoder

    @property
    def provider(self) -> str:
        """The execution provider of the full-model forwards ("remote" for a served one)."""
        return self.model.provider

    def warm_up(self) -> None:
        """Run every session once, at the shapes explaining uses, so that cuDNN's algorithm
        search is paid here and not on the first image."""
        m = self.bundle.manifest
        zeros = np.zeros((1, m.input.channels, m.input.height, m.input.width), np.float32)
        if self.features is not None:
            self.activations(zeros)
        if self.decoder is not None:
            self.detections(zeros, 1.0)
            return
        self.scores(zeros)
        if self.maps_scorer is not None and m.activation is not None:
            maps = np.zeros((self.batch_size, m.activation.height, m.activation.width), np.float32)
            for align in (False, True):
                scorer = self.maps_scorer.bind(zeros, align)
                if scorer is not None:  # a served convention may have no scorer
                    scorer(maps)

    def check_shapes(self) -> None:
        """Fail early when a graph's fixed dimensions contradict the manifest."""
        m = self.bundle.manifest
        image = (m.input.channels, m.input.height, m.input.width)
        image = image[1:] + image[:1] if self._nhwc_input else image
        if self.decoder is not None:
            self._check_detector(image)
            return
        checks: list[tuple[Runner, str, str, tuple[int, ...]]] = [
            (self.model, "input", m.input.name, image),
            (self.model, "output", m.output.name, self.output_shape),
        ]
        if self.features is not None:
            checks.append((self.features, "input", m.input.name, image))
            for _, a in m.targets:
                act: tuple[int, ...] = (a.channels, a.height, a.width)
                act = act[1:] + act[:1] if a.layout == "NHWC" else act
                act = (a.tokens, a.channels) if a.layout == "NLC" else act
                checks.append((self.features, "output", a.name, act))
        for runner, kind, name, want in checks:
            shape = runner.shapes(kind).get(name)
            if shape is None:
                raise BundleError(f"{runner.path}: no {kind} named {name!r} (manifest)")
            datatype = runner.datatype(kind, name)
            if datatype != "FP32":
                raise BundleError(
                    f"{runner.path}: {kind} {name!r} is {datatype}, the bundle needs FP32"
                )
            fixed = [(g, w) for g, w in zip(shape[1:], want, strict=False) if isinstance(g, int)]
            if len(shape) != len(want) + 1 or any(g != w for g, w in fixed):
                got = "×".join(str(d) for d in shape)
                said = "×".join(str(d) for d in ("N", *want))
                raise BundleError(
                    f"{runner.path}: {kind} {name!r} has shape {got}, but the manifest says {said}"
                )

    def _check_detector(self, image: tuple[int, ...]) -> None:
        """A detector's graph has the manifest's input and the decoder's outputs."""
        m = self.bundle.manifest
        shape = self.model.shapes("input").get(m.input.name)
        if shape is None:
            raise BundleError(f"{self.model.path}: no input named {m.input.name!r} (manifest)")
        fixed = [(g, w) for g, w in zip(shape[-3:], image, strict=False) if isinstance(g, int)]
        if any(g != w for g, w in fixed):
            raise BundleError(
                f"{self.model.path}: input {m.input.name!r} has shape "
                f"{'×'.join(map(str, shape))}, the manifest says "
                f"{'×'.join(map(str, image))}"
            )
        missing = [n for n in self._decoder.outputs if n not in self.model.shapes("output")]
        if missing:
            raise BundleError(f"{self.model.path}: no output named {missing[0]!r} (manifest)")

    def detections(self, batch: NDArray[np.float32], threshold: float) -> list[Detections]:
        """Each input's detections above `threshold` (boxes in input pixels, best first); an
        input whose outputs are not all finite gets none and is marked so."""
        spec = self._decoder
        size = (self.input.height, self.input.width)
        classes = self.bundle.manifest.output.classes
        found: list[Detections] = []
        for part in self._calls(batch):
            outputs = self.raw_outputs(part)
            decoded = decode(spec, outputs, classes, threshold, size)
            if len(decoded) != part.shape[0]:
                raise BundleError(
                    f"the detector returned {len(decoded)} images' outputs for "
                    f"{part.shape[0]} inputs"
                )
            finite = _finite_rows(outputs, part.shape[0], self._unbatched)
            found += [d if ok else d.nonfinite() for d, ok in zip(decoded, finite, strict=True)]
        return found

    def _calls(self, batch: NDArray[np.float32]) -> list[NDArray[np.float32]]:
        """A batch as `raw_outputs` takes it: whole, or an input at a time for a graph with
        no batch axis (its outputs are not joined)."""
        return [batch[i : i + 1] for i in range(batch.shape[0])] if self._unbatched else [batch]

    def raw_outputs(self, batch: NDArray[np.float32]) -> list[NDArray]:
        """A detector's outputs for a batch, undecoded (in the decoder's order): one call, or
        one per input for a graph that takes one (joined along the batch axis; a graph with
        no batch axis takes a single input)."""
        names = list(self._decoder.outputs)
        if not self._single:
            return self.model.run(names, self._model_feed(batch))
        if self._unbatched:
            if batch.shape[0] != 1:
                raise ValueError(
                    "this detector takes one image per call (its graph has no batch axis)"
                )
            return self.model.run(names, self._image_feed(batch))
        parts = [
            self.model.run(names, self._model_feed(batch[i : i + 1])) for i in range(batch.shape[0])
        ]
        return [np.concatenate([p[j] for p in parts]) for j in range(len(names))]

    def forward(self, batch: NDArray[np.float32]) -> None:
        """Run the full model on a batch and drop its outputs (the cost of a forward, as
        benchmarks count it): a detector's outputs are left undecoded."""
        if self.decoder is None:
            self.scores(batch)
            return
        for part in self._calls(batch):
            self.raw_outputs(part)

    @property
    def detector(self) -> bool:
        """Whether the model is an object detector (its outputs decoded into boxes)."""
        return self.decoder is not None

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
        if not isinstance(self.model, Submits):
            return self.scores
        return Pipelined(self.scores, self._submit_scores, self.model.in_flight)

    def _submit_scores(self, batch: NDArray[np.float32]) -> Callable[[], NDArray[np.float32]]:
        assert isinstance(self.model, Submits)
        wait = self.model.submit([self.bundle.manifest.output.name], self._model_feed(batch))
        return lambda: self._checked(wait()[0], batch.shape[0])

    def _model_feed(self, batch: NDArray[np.float32]) -> dict[str, NDArray[np.float32]]:
        feed = batch.transpose(0, 2, 3, 1) if self._nhwc_input else batch
        return {self.input.name: np.ascontiguousarray(feed)}

    def _checked(
        self, out: NDArray[np.float32], n: int, graph: str = "the model"
    ) -> NDArray[np.float32]:
        want = (n, *self.output_shape)
        if out.shape != want:
            raise BundleError(f"{graph} returned shape {out.shape}, expected {want} (manifest)")
        return out

    @property
    def output_shape(self) -> tuple[int, ...]:
        """One input's output: (C,) class scores, or (C, H, W) per-pixel scores."""
        o = self.bundle.manifest.output
        return (o.classes, o.height, o.width) if o.segmentation else (o.columns,)

    def tail_scores(
        self, activations: NDArray[np.float32], prefix: NDArray[np.float32] | None = None
    ) -> NDArray[np.float32]:
        """Model outputs (N×C) for a batch of N×K×h×w activations, through the tail graph.

        For token activations, `prefix` (P×K) gives the leading tokens (class, register…)
        that precede the h·w patch tokens; it is required when P > 0.
        """
        if self.tail is None:
            raise BundleError(
                f"{self.bundle.path}: this bundle has no tail graph "
                f"({self.bundle.manifest.tail_missing})"
            )
        feed = (
            activations.transpose(0, 2, 3, 1) if self._nhwc_acts or self._tokens else (activations)
        )
        if self._tokens:
            feed = self._as_tokens(feed, prefix)
        (out,) = self.tail.run(
            [self.bundle.manifest.output.name],
            {self._activation.name: np.ascontiguousarray(feed)},
        )
        return self._checked(out, activations.shape[0], "the tail graph")

    def probabilities(self, batch: NDArray[np.float32]) -> NDArray[np.float64]:
        """Class probabilities (N×C) for a batch of preprocessed NCHW inputs; for a
        segmentation model, each class's mean per-pixel probability (its expected share of
        the image)."""
        out = self.scores(batch)
        kind = self.bundle.manifest.output.score_kind
        if out.ndim == 4:
            n, c = out.shape[:2]
            pixels = out.reshape(n, c, -1).transpose(0, 2, 1).reshape(-1, c)
            return to_probabilities(pixels, kind).reshape(n, -1, c).mean(axis=1)
        return to_probabilities(out, kind)

    def activations(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        """The target layer's activations (K×h×w) for one preprocessed NCHW input."""
        return self.as_maps(self.raw_activations(x))

    def raw_activations(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        """The features graph's raw output for one input (1×K×h×w, 1×h×w×K or 1×L×K)."""
        if self.features is None or self.bundle.manifest.activation is None:
            raise BundleError(no_layer(self.bundle.path))
        (acts,) = self.features.run([self.bundle.manifest.activation.name], self._image_feed(x))
        return acts[None] if self._unbatched and acts.ndim == 3 else acts

    def layer_activations(
        self, x: NDArray[np.float32], layers: list[str] | None = None
    ) -> list[tuple[str, NDArray[np.float32], NDArray[np.float32] | None]]:
        """(layer, K×h×w maps, leading tokens or None) of every target layer, or of the named
        ones, from one features forward."""
        targets = self.bundle.manifest.targets
        if self.features is None or not targets:
            raise BundleError(no_layer(self.bundle.path))
        chosen = [(name, a) for name, a in targets if layers is None or name in layers]
        raws = self.features.run([a.name for _, a in chosen], self._image_feed(x))
        raws = [raw[None] if self._unbatched and raw.ndim == 3 else raw for raw in raws]
        return [
            (name, self.as_maps(raw, a), raw[0, : a.prefix] if a.layout == "NLC" else None)
            for (name, a), raw in zip(chosen, raws, strict=True)
        ]

    def _image_feed(self, x: NDArray[np.float32]) -> dict[str, NDArray[np.float32]]:
        """One input as the graphs take it (NHWC, or a single 3×H×W image)."""
        feed = x.transpose(0, 2, 3, 1) if self._nhwc_input else x
        return {self.input.name: np.ascontiguousarray(feed[0] if self._unbatched else feed)}

    def prefix(self, raw: NDArray[np.float32]) -> NDArray[np.float32] | None:
        """The leading tokens (P×K) of a token activation, else None."""
        return raw[0, : self._activation.prefix] if self._tokens else None

    def _as_tokens(
        self, maps_nhwc: NDArray[np.float32], prefix: NDArray[np.float32] | None
    ) -> NDArray[np.float32]:
        """N×h×w×K maps back into N×L×K tokens, with the image's leading tokens first."""
        a = self._activation
        n = maps_nhwc.shape[0]
        patches = maps_nhwc.reshape(n, a.height * a.width, a.channels)
        if a.prefix == 0:
            return patches
        if prefix is None or prefix.shape != (a.prefix, a.channels):
            raise ValueError(f"token activations need their {a.prefix} leading tokens")
        lead = np.broadcast_to(prefix.astype(np.float32), (n, a.prefix, a.channels))
        return np.concatenate([lead, patches], axis=1)

    def as_maps(
        self, acts: NDArray[np.float32], spec: ActivationSpec | None = None
    ) -> NDArray[np.float32]:
        """K×h×w maps from the features graph's raw output (of the deepest layer, or the
        layer `spec` describes)."""
        a = spec or self._activation
        if a.layout == "NLC":
            if acts.ndim != 3 or acts.shape[1:] != (a.tokens, a.channels):
                raise BundleError(
                    f"the features graph returned shape {acts.shape}, the "
                    f"manifest says N×{a.tokens}×{a.channels} tokens"
                )
            grid = acts[0, a.prefix :].reshape(a.height, a.width, a.channels)
            return np.ascontiguousarray(grid.transpose(2, 0, 1), dtype=np.float32)
        if acts.ndim != 4:
            raise BundleError(f"the features graph returned shape {acts.shape}, expected 4-D")
        acts = acts[0].transpose(2, 0, 1) if a.layout == "NHWC" else acts[0]
        if acts.shape != (a.channels, a.height, a.width):
            raise BundleError(
                f"the features graph returned {acts.shape[0]}×{acts.shape[1]}×"
                f"{acts.shape[2]} activations, the manifest says "
                f"{a.channels}×{a.height}×{a.width}"
            )
        return np.ascontiguousarray(acts, dtype=np.float32)


def _finite_rows(outputs: list[NDArray], images: int, unbatched: bool) -> list[bool]:
    """Per input, whether all its floating outputs are finite."""
    rows = np.ones(images, bool)
    for out in outputs:
        if np.issubdtype(out.dtype, np.floating):
            values = out.reshape(1, -1) if unbatched else out.reshape(out.shape[0], -1)
            rows &= np.isfinite(values).all(axis=1)
    return rows.tolist()


def to_probabilities(out: NDArray[np.floating], kind: str) -> NDArray[np.float64]:
    """N×C class probabilities from model outputs (`kind` as `OutputSpec.score_kind`: a
    softmax over exclusive classes, a sigmoid per independent label, a binary head's
    [1 − p, p]); non-finite logits count as −∞ (never NaN)."""
    values = np.asarray(out, dtype=np.float64)
    head, _, form = kind.rpartition("-")
    if form == "probabilities":
        probabilities = np.nan_to_num(values, nan=0.0, posinf=1.0, neginf=0.0)
    elif head:
        probabilities = sigmoid(np.nan_to_num(values, nan=-np.inf))
    else:
        return softmax(np.where(np.isfinite(values), values, -np.inf))
    if head == "binary":
        return np.concatenate([1.0 - probabilities[:, :1], probabilities[:, :1]], axis=1)
    return probabilities
