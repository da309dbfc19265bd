"""What one served model computes for a request: predictions, explanations, V2 outputs.

Everything here is blocking (the service runs it in its work pool's threads, Triton in a
model instance); the `Ticket` passed in is checked between images and at every batch of
masked forwards.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from ..attribution import classes_of_head
from ..bundle.manifest import InputSpec
from ..errors import BundleError, ImageError
from ..explainer import AUGMENTATIONS, Detection, Explainer, Explanation
from ..images import DEFAULT_MAX_PIXELS
from ..methods import Method
from ..pictures import Picture, model_input, read_picture
from ..render import encode_png, overlay_png
from ..targets import TopK
from .errors import ApiError
from .params import ExplainParams
from .ticket import Ticket

TOP = 5  # classes listed in a prediction
PICTURE_SIDE = 1024  # the longer side of a picture shown for a file a browser cannot show
# V2 outputs: a classifier's (or segmentation model's), and an object detector's (per image,
# one row per explained detection: its box in the image's pixels, class, score and map).
OUTPUTS = ("probabilities", "class_id", "score", "saliency", "boxes")
CLASSIFIER_OUTPUTS = OUTPUTS[:4]
DETECTOR_OUTPUTS = ("boxes", "class_id", "score", "saliency")


@dataclass
class Decoded:
    """Images of one request, decoded and preprocessed."""

    pictures: list[Picture]
    inputs: NDArray[np.float32]  # N×C×H×W


class ModelService:
    """One named model of the service: an `Explainer` and the payloads built from it."""

    def __init__(
        self, name: str, explainer: Explainer, max_pixels: int = DEFAULT_MAX_PIXELS
    ) -> None:
        self.name = name
        self.explainer = explainer
        self.max_pixels = max_pixels

    @property
    def classes(self) -> int:
        return self.explainer.classes

    @property
    def detector(self) -> bool:
        """Whether the model is an object detector."""
        return self.explainer.forwards.detector

    @property
    def outputs(self) -> tuple[str, ...]:
        """The V2 outputs this model gives (all of them when a request names none)."""
        return DETECTOR_OUTPUTS if self.detector else CLASSIFIER_OUTPUTS

    def metadata(self) -> dict[str, object]:
        """OIP V2 model metadata (-1 for variable dimensions)."""
        spec = self.explainer.bundle.manifest.input
        shapes = {
            "probabilities": ("FP32", [-1, self.classes]),
            "boxes": ("FP32", [-1, -1, 4]),
            "class_id": ("INT64", [-1, -1]),
            "score": ("FP32", [-1, -1]),
            "saliency": ("FP32", [-1, -1, spec.height, spec.width]),
        }
        return {
            "name": self.name,
            "versions": ["1"],
            "platform": "onnxruntime_scorecam",
            "inputs": [{"name": "image", "datatype": "BYTES", "shape": [-1]}],
            "outputs": [
                {"name": name, "datatype": shapes[name][0], "shape": shapes[name][1]}
                for name in self.outputs
            ],
        }

    def check_outputs(self, wanted: Sequence[str]) -> None:
        """Refuse (400) an output this model does not give."""
        other = [name for name in wanted if name not in self.outputs]
        if other:
            raise ApiError(
                400,
                f"model {self.name!r} has no output {other[0]!r}; its outputs "
                f"are {', '.join(self.outputs)}",
            )

    # Work --------------------------------------------------------------------------------
    def decode(
        self, images: Sequence[bytes], ticket: Ticket, frames: Sequence[int] | None = None
    ) -> Decoded:
        """Decode and preprocess every image (of a multi-frame DICOM, its frame in `frames`);
        a bad one is a 400 naming its position."""
        pictures, inputs = [], []
        for index, data in enumerate(images):
            ticket.check()
            picture = self.read(data, index, frames[index] if frames else 0)
            pictures.append(picture)
            inputs.append(model_input(picture, self.spec))
        return Decoded(pictures, np.concatenate(inputs))

    def read(self, data: bytes, index: int = 0, frame: int = 0) -> Picture:
        """One image's picture; a bad one is a 400 (413 above the limits) naming its
        position."""
        try:
            return read_picture(data, self.spec, self.max_pixels, frame, f"image {index}")
        except ImageError as exc:
            status = 413 if "above the limit" in exc.reason else 400
            raise ApiError(status, str(exc)) from None

    @property
    def spec(self) -> InputSpec:
        """The model's image input."""
        return self.explainer.bundle.manifest.input

    def probabilities(self, decoded: Decoded, ticket: Ticket) -> NDArray[np.float64]:
        """N×C class probabilities, one batched forward."""
        ticket.check()
        ticket.count(decoded.inputs.shape[0])
        return self.explainer.forwards.probabilities(decoded.inputs)

    def predict(
        self, images: Sequence[bytes], ticket: Ticket, top: int = TOP
    ) -> list[dict[str, object]]:
        """A prediction P per image (no masked forward)."""
        return self.predictions(self.decode(images, ticket), ticket, top)

    def predictions(
        self,
        decoded: Decoded,
        ticket: Ticket,
        top: int = TOP,
        params: Sequence[ExplainParams] | None = None,
    ) -> list[dict[str, object]]:
        """A prediction P per decoded image: a classifier's top classes, or a detector's
        detections above the request's score threshold (one forward each)."""
        if not self.detector:
            return [self.prediction(p, top) for p in self.probabilities(decoded, ticket)]
        ticket.check()
        ticket.count(len(decoded.pictures))
        given = params or [ExplainParams()] * len(decoded.pictures)
        return [
            detections_prediction(
                self.explainer.detect(picture, p.request().options.threshold(True))
            )
            for picture, p in zip(decoded.pictures, given, strict=True)
        ]

    def prediction(self, probabilities: NDArray[np.float64], top: int = TOP) -> dict[str, object]:
        """P: the top-1 class and the `top` most likely classes with their probabilities."""
        order = TopK(min(top, self.classes)).classes(probabilities, self.classes)
        label = self.explainer.bundle.label
        return {
            "class_id": order[0],
            "label": label(order[0]),
            "score": float(probabilities[order[0]]),
            "top": [[i, label(i), float(probabilities[i])] for i in order],
        }

    def explain(
        self, images: Sequence[bytes], params: Sequence[ExplainParams], ticket: Ticket
    ) -> tuple[list[dict[str, object]], list[list[Explanation]]]:
        """Predictions and explanations (a list per image) for each image."""
        decoded = self.decode(images, ticket, [p.request().options.frame for p in params])
        predictions = self.predictions(decoded, ticket, params=params)
        found = [
            self._explain(picture, settings, ticket)
            for picture, settings in zip(decoded.pictures, params, strict=True)
        ]
        return predictions, found

    def overlay_png(
        self, image: bytes, params: ExplainParams, ticket: Ticket
    ) -> tuple[bytes, Explanation]:
        """The overlay PNG of one image's first explanation (at `params.map_size`: the
        image's size, or its longer side capped), and that explanation."""
        decoded = self.decode([image], ticket, [params.request().options.frame])
        picture = decoded.pictures[0]
        first = self._explain(picture, params, ticket)[0]
        rgb = self.explainer.display(picture)
        spec = self.explainer.bundle.manifest.input
        cap = max(spec.height, spec.width) if params.map_size == "input" else params.map_size
        box = first.box
        if isinstance(cap, int) and max(rgb.shape[:2]) > cap:
            size = capped(rgb.shape[:2], cap)
            scale = size[0] / rgb.shape[0]
            box = None if box is None else tuple(v * scale for v in box)
            rgb = np.asarray(
                cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_AREA), np.uint8
            )
        caption = "" if box is None else f"{first.label} {first.score:.2f}"
        return bytes(overlay_png(rgb, first.saliency, box=box, caption=caption)), first

    def picture_png(
        self, image: bytes, params: ExplainParams, ticket: Ticket, side: int = PICTURE_SIDE
    ) -> tuple[bytes, tuple[int, int]]:
        """The RGB PNG of an image as this model reads it (its display bands, on its range),
        its longer side capped at `side`, and the image's own (height, width)."""
        ticket.check()
        picture = self.read(image, 0, params.request().options.frame)
        rgb = self.explainer.display(picture)
        size = capped(rgb.shape[:2], side)
        if size != rgb.shape[:2]:
            rgb = np.asarray(
                cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_AREA), np.uint8
            )
        return bytes(encode_png(rgb)), (picture.shape[0], picture.shape[1])

    def _explain(
        self, picture: Picture, params: ExplainParams, ticket: Ticket
    ) -> list[Explanation]:
        ticket.check()
        request = params.request()
        try:
            self.explainer.check(request)
        except BundleError:
            raise ApiError(422, self._cannot_run(request.method)) from None
        except (ValueError, TypeError) as exc:
            raise ApiError(422, str(exc)) from None
        ticket.count(len(AUGMENTATIONS) if request.options.aug_smooth else 1)  # unmasked
        try:
            return self.explainer.run(picture, request, progress=ticket.progress)
        except (ValueError, TypeError) as exc:
            raise ApiError(422, str(exc)) from None

    def _cannot_run(self, method: Method) -> str:
        """Why this model cannot run `method` (without the bundle's path)."""
        manifest = self.explainer.bundle.manifest
        if method.needs_layer and manifest.model_only:
            return (
                f"method {method.name} needs a target layer, and model {self.name!r} is "
                f"a model-only bundle: use method {'drise' if self.detector else 'rise'}"
            )
        return (
            f"method {method.name} needs a tail graph, and model {self.name!r} has none: "
            f"{manifest.tail_missing}"
        )

    def infer(
        self, images: Sequence[bytes], params: ExplainParams, wanted: Sequence[str], ticket: Ticket
    ) -> dict[str, NDArray]:
        """The V2 outputs named in `wanted`; only saliency runs masked forwards."""
        self.check_outputs(wanted)
        decoded = self.decode(images, ticket, [params.request().options.frame] * len(images))
        if self.detector:
            return self._detector_outputs(decoded, params, wanted, ticket)
        probabilities = self.probabilities(decoded, ticket)
        result: dict[str, NDArray] = {}
        if "probabilities" in wanted:
            result["probabilities"] = probabilities.astype(np.float32)
        if not {"class_id", "score", "saliency"} & set(wanted):
            return result
        output = self.explainer.bundle.manifest.output
        request = params.request()
        target, threshold = request.target, request.options.threshold(False)
        try:
            chosen = [
                self.explainer.chosen_classes(picture, target)
                if output.segmentation
                else _top(p, classes_of_head(target, p, p, output, threshold))
                for picture, p in zip(decoded.pictures, probabilities, strict=True)
            ]
        except ValueError as exc:
            raise ApiError(422, str(exc)) from None
        # a multi-label model's labels differ in number between images: rows past an
        # image's own have class -1, score 0 and a zero map
        if "class_id" in wanted:
            result["class_id"] = padded([c for c, _ in chosen], -1, (), np.int64)
        if "score" in wanted:
            result["score"] = padded([s for _, s in chosen], 0.0, (), np.float32)
        if "saliency" in wanted:
            spec = self.explainer.bundle.manifest.input
            maps = [
                [
                    e.saliency_input
                    for e in self._explain(
                        picture, params.for_classes([int(i) for i in classes]), ticket
                    )
                ]
                for picture, (classes, _) in zip(decoded.pictures, chosen, strict=True)
            ]
            result["saliency"] = padded(maps, 0.0, (spec.height, spec.width), np.float32)
        return result

    def _detector_outputs(
        self, decoded: Decoded, params: ExplainParams, wanted: Sequence[str], ticket: Ticket
    ) -> dict[str, NDArray]:
        """A detector's V2 outputs: per image, the explained detections' boxes (in the
        image's pixels), classes, scores and maps (N×D×…; rows past an image's own
        detections are padded with class -1). Without saliency, no masked forward runs."""
        found: list[list[tuple[Any, int, float, NDArray[np.float32] | None]]]
        if "saliency" in wanted:
            found = [
                [
                    (e.box, e.class_id, e.score, e.saliency_input)
                    for e in self._explain(picture, params, ticket)
                ]
                for picture in decoded.pictures
            ]
        else:
            found = [
                [(d.box, d.class_id, d.score, None) for d in self._chosen(picture, params)]
                for picture in decoded.pictures
            ]
        spec = self.explainer.bundle.manifest.input
        fills = {
            "boxes": (0.0, (4,), np.float32),
            "class_id": (-1, (), np.int64),
            "score": (0.0, (), np.float32),
            "saliency": (0.0, (spec.height, spec.width), np.float32),
        }
        return {
            name: padded([[item[i] for item in items] for items in found], *fills[name])
            for i, name in enumerate(DETECTOR_OUTPUTS)
            if name in wanted
        }

    def _chosen(self, picture: Picture, params: ExplainParams) -> list:
        """The detections a request's target explains, from one forward (no masks)."""
        request = params.request()
        try:
            self.explainer.check(request)
            return self.explainer.chosen_detections(picture, request)
        except BundleError:
            raise ApiError(422, self._cannot_run(request.method)) from None
        except (ValueError, TypeError) as exc:
            raise ApiError(422, str(exc)) from None


def padded(
    rows: Sequence[Sequence[Any]], fill: Any, tail: tuple[int, ...], dtype: type
) -> NDArray[Any]:
    """Per image a list of values (scalars or arrays of shape `tail`) as one N×D×… array,
    D the longest list, the rows past an image's own set to `fill`."""
    array: NDArray[Any] = np.full(
        (len(rows), max((len(r) for r in rows), default=0), *tail), fill, dtype
    )
    for n, row in enumerate(rows):
        for d, value in enumerate(row):
            array[n, d] = value
    return array


def detections_prediction(found: Sequence[Detection], top: int = TOP) -> dict[str, object]:
    """P of a detector: its best detection's class, label and score (None without one),
    every detection, and as `top` the best detection of each of the first `top` classes
    found ([class_id, label, score])."""
    best = found[0] if found else None
    classes: dict[int, Detection] = {}
    for detection in found:
        classes.setdefault(detection.class_id, detection)
    return {
        "class_id": best.class_id if best else None,
        "label": best.label if best else None,
        "score": best.score if best else None,
        "top": [[d.class_id, d.label, d.score] for d in list(classes.values())[:top]],
        "detections": [d.summary() for d in found],
    }


class ClassifierService:
    """A bundle's model as an Open Inference Protocol tensor model (`NAME-classifier`): FP32
    N×C×H×W in, the model's raw outputs out (a classifier's N×C scores, a detector's
    undecoded outputs), so that this service can be the predictor of another explainer's
    remote forwards."""

    def __init__(self, base: str, explainer: Explainer) -> None:
        self.base = base  # the explanation model it belongs to
        self.name = f"{base}-classifier"
        self.explainer = explainer
        m = explainer.bundle.manifest
        self.input = m.input.name
        self.outputs = list(m.decoder.outputs) if m.decoder else [m.output.name]
        self.output = self.outputs[0]
        self.shape = (m.input.channels, m.input.height, m.input.width)

    def metadata(self) -> dict[str, object]:
        runner = self.explainer.forwards.model
        shapes = runner.shapes("output")
        outputs = [
            {
                "name": name,
                "datatype": runner.datatype("output", name),
                "shape": [d if isinstance(d, int) else -1 for d in shapes[name]],
            }
            for name in self.outputs
        ]
        return {
            "name": self.name,
            "versions": ["1"],
            "platform": "onnxruntime_onnx",
            "inputs": [{"name": self.input, "datatype": "FP32", "shape": [-1, *self.shape]}],
            "outputs": outputs,
        }

    def infer(self, batch: NDArray[np.float32], ticket: Ticket) -> dict[str, NDArray]:
        ticket.check()
        ticket.count(batch.shape[0])
        if not self.explainer.forwards.detector:
            return {self.output: self.explainer.forwards.scores(batch).astype(np.float32)}
        try:
            found = self.explainer.forwards.raw_outputs(batch)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        return dict(zip(self.outputs, found, strict=True))


def _top(probabilities: NDArray[np.float64], classes: list[int]) -> tuple[list[int], list[float]]:
    return classes, [float(probabilities[c]) for c in classes]


def capped(shape: tuple[int, ...], side: int) -> tuple[int, int]:
    """(height, width) scaled so that the longer side is at most `side` (never enlarged)."""
    h, w = shape[:2]
    scale = min(1.0, side / max(h, w))
    return max(1, round(h * scale)), max(1, round(w * scale))


def explanation_payload(exp: Explanation, map_size: str | int = "original") -> dict[str, object]:
    """E: an explanation with its map, base64 float32 LE, at the image's original size, at
    the model's input size ("input"), or with its longer side capped (an int); the
    saliency's `size` says which ("original", "input" or "capped")."""
    if map_size == "input":
        saliency, size = exp.saliency_input, "input"
    elif isinstance(map_size, int) and max(exp.saliency.shape) > map_size:
        h, w = capped(exp.saliency.shape, map_size)
        saliency = np.asarray(cv2.resize(exp.saliency, (w, h), interpolation=cv2.INTER_AREA))
        size = "capped"
    else:
        saliency, size = exp.saliency, "original"
    saliency = np.ascontiguousarray(saliency, dtype="<f4")
    return {
        **({} if exp.box is None else {"box": [round(v, 2) for v in exp.box]}),
        "class_id": exp.class_id,
        "label": exp.label,
        "score": exp.score,
        "method": exp.method,
        "preset": exp.preset,
        "forwards": exp.forwards,
        "seconds": round(exp.seconds.get("total", 0.0), 4),
        "degenerate": exp.degenerate,
        "saliency": {
            "shape": list(saliency.shape),
            "dtype": "float32",
            "size": size,
            "b64": base64.b64encode(saliency.tobytes()).decode("ascii"),
        },
    }
