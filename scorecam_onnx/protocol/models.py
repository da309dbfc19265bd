"""What one served model computes for a request: predictions, explanations, V2 outputs.

Everything here is blocking (the service runs it in its work pool's threads, Triton in a
model instance); the `Ticket` passed in is checked between images and at every batch of
masked forwards.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from ..errors import BundleError, ImageError
from ..explainer import AUGMENTATIONS, Explainer, Explanation
from ..images import DEFAULT_MAX_PIXELS, decode_image
from ..methods import Method
from ..render import overlay_png
from ..targets import TopK
from .errors import ApiError
from .params import ExplainParams
from .ticket import Ticket

TOP = 5   # classes listed in a prediction
OUTPUTS = ("probabilities", "class_id", "score", "saliency")


@dataclass
class Decoded:
    """Images of one request, decoded and preprocessed."""

    rgb: list[NDArray[np.uint8]]
    inputs: NDArray[np.float32]          # N×3×H×W


class ModelService:
    """One named model of the service: an `Explainer` and the payloads built from it."""

    def __init__(self, name: str, explainer: Explainer,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self.name = name
        self.explainer = explainer
        self.max_pixels = max_pixels

    @property
    def classes(self) -> int:
        return self.explainer.classes

    def metadata(self) -> dict[str, object]:
        """OIP V2 model metadata (-1 for variable dimensions)."""
        spec = self.explainer.bundle.manifest.input
        c = self.classes
        return {
            "name": self.name, "versions": ["1"], "platform": "onnxruntime_scorecam",
            "inputs": [{"name": "image", "datatype": "BYTES", "shape": [-1]}],
            "outputs": [
                {"name": "probabilities", "datatype": "FP32", "shape": [-1, c]},
                {"name": "class_id", "datatype": "INT64", "shape": [-1, -1]},
                {"name": "score", "datatype": "FP32", "shape": [-1, -1]},
                {"name": "saliency", "datatype": "FP32",
                 "shape": [-1, -1, spec.height, spec.width]},
            ],
        }

    # Work --------------------------------------------------------------------------------
    def decode(self, images: Sequence[bytes], ticket: Ticket) -> Decoded:
        """Decode and preprocess every image; a bad one is a 400 naming its position."""
        rgb, inputs = [], []
        for index, data in enumerate(images):
            ticket.check()
            try:
                image = decode_image(data, f"image {index}", self.max_pixels)
            except ImageError as exc:
                status = 413 if "above the limit" in exc.reason else 400
                raise ApiError(status, str(exc)) from None
            rgb.append(image)
            inputs.append(self.explainer.preprocess(image)[1])
        return Decoded(rgb, np.concatenate(inputs))

    def probabilities(self, decoded: Decoded, ticket: Ticket) -> NDArray[np.float64]:
        """N×C class probabilities, one batched forward."""
        ticket.check()
        ticket.count(decoded.inputs.shape[0])
        return self.explainer.forwards.probabilities(decoded.inputs)

    def predict(self, images: Sequence[bytes], ticket: Ticket,
                top: int = TOP) -> list[dict[str, object]]:
        """A prediction P per image (no masked forward)."""
        decoded = self.decode(images, ticket)
        return [self.prediction(p, top) for p in self.probabilities(decoded, ticket)]

    def prediction(self, probabilities: NDArray[np.float64], top: int = TOP) -> dict[str, object]:
        """P: the top-1 class and the `top` most likely classes with their probabilities."""
        order = TopK(min(top, self.classes)).classes(probabilities, self.classes)
        label = self.explainer.bundle.label
        return {"class_id": order[0], "label": label(order[0]),
                "score": float(probabilities[order[0]]),
                "top": [[i, label(i), float(probabilities[i])] for i in order]}

    def explain(self, images: Sequence[bytes], params: Sequence[ExplainParams],
                ticket: Ticket) -> tuple[list[dict[str, object]], list[list[Explanation]]]:
        """Predictions and explanations (a list per image) for each image."""
        decoded = self.decode(images, ticket)
        predictions = [self.prediction(p) for p in self.probabilities(decoded, ticket)]
        found = [self._explain(rgb, settings, ticket)
                 for rgb, settings in zip(decoded.rgb, params, strict=True)]
        return predictions, found

    def overlay_png(self, image: bytes, params: ExplainParams,
                    ticket: Ticket) -> tuple[bytes, Explanation]:
        """The overlay PNG of one image's first explanation (at `params.map_size`: the
        image's size, or its longer side capped), and that explanation."""
        decoded = self.decode([image], ticket)
        rgb = decoded.rgb[0]
        first = self._explain(rgb, params, ticket)[0]
        spec = self.explainer.bundle.manifest.input
        cap = max(spec.height, spec.width) if params.map_size == "input" else params.map_size
        if isinstance(cap, int) and max(rgb.shape[:2]) > cap:
            size = capped(rgb.shape[:2], cap)
            rgb = cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_AREA)
        return bytes(overlay_png(rgb, first.saliency)), first

    def _explain(self, rgb: NDArray[np.uint8], params: ExplainParams,
                 ticket: Ticket) -> list[Explanation]:
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
            return self.explainer.run(rgb, request, progress=ticket.progress)
        except (ValueError, TypeError) as exc:
            raise ApiError(422, str(exc)) from None

    def _cannot_run(self, method: Method) -> str:
        """Why this model cannot run `method` (without the bundle's path)."""
        manifest = self.explainer.bundle.manifest
        if method.needs_layer and manifest.model_only:
            return (f"method {method.name} needs a target layer, and model {self.name!r} is "
                    "a model-only bundle: use method rise")
        return (f"method {method.name} needs a tail graph, and model {self.name!r} has none: "
                f"{manifest.tail_missing}")

    def infer(self, images: Sequence[bytes], params: ExplainParams, wanted: Sequence[str],
              ticket: Ticket) -> dict[str, NDArray]:
        """The V2 outputs named in `wanted`; only saliency runs masked forwards."""
        decoded = self.decode(images, ticket)
        probabilities = self.probabilities(decoded, ticket)
        result: dict[str, NDArray] = {}
        if "probabilities" in wanted:
            result["probabilities"] = probabilities.astype(np.float32)
        if not {"class_id", "score", "saliency"} & set(wanted):
            return result
        segmentation = self.explainer.bundle.manifest.output.segmentation
        target = params.request().target
        try:
            chosen = [self.explainer.chosen_classes(rgb, target) if segmentation else
                      _top(p, target.classes(p, self.classes))
                      for rgb, p in zip(decoded.rgb, probabilities, strict=True)]
        except ValueError as exc:
            raise ApiError(422, str(exc)) from None
        ids = np.array([c for c, _ in chosen], dtype=np.int64)
        scores = np.array([s for _, s in chosen], dtype=np.float32)
        if "class_id" in wanted:
            result["class_id"] = ids
        if "score" in wanted:
            result["score"] = scores
        if "saliency" in wanted:
            maps = []
            for rgb, row in zip(decoded.rgb, ids, strict=True):
                per_class = params.for_classes([int(i) for i in row])
                maps.append([e.saliency_input for e in self._explain(rgb, per_class, ticket)])
            result["saliency"] = np.asarray(maps, dtype=np.float32)
        return result


class ClassifierService:
    """A bundle's classifier as an Open Inference Protocol tensor model (`NAME-classifier`):
    FP32 N×3×H×W in, the model's N×C scores out, so that this service can be the predictor of
    another explainer's remote forwards."""

    def __init__(self, base: str, explainer: Explainer) -> None:
        self.base = base                     # the explanation model it belongs to
        self.name = f"{base}-classifier"
        self.explainer = explainer
        m = explainer.bundle.manifest
        self.input, self.output = m.input.name, m.output.name
        self.shape = (3, m.input.height, m.input.width)

    def metadata(self) -> dict[str, object]:
        return {
            "name": self.name, "versions": ["1"], "platform": "onnxruntime_onnx",
            "inputs": [{"name": self.input, "datatype": "FP32", "shape": [-1, *self.shape]}],
            "outputs": [{"name": self.output, "datatype": "FP32",
                         "shape": [-1, *self.explainer.forwards.output_shape]}],
        }

    def infer(self, batch: NDArray[np.float32], ticket: Ticket) -> dict[str, NDArray]:
        ticket.check()
        ticket.count(batch.shape[0])
        return {self.output: self.explainer.forwards.scores(batch).astype(np.float32)}


def _top(probabilities: NDArray[np.float64], classes: list[int]
         ) -> tuple[list[int], list[float]]:
    return classes, [float(probabilities[c]) for c in classes]


def capped(shape: tuple[int, ...], side: int) -> tuple[int, int]:
    """(height, width) scaled so that the longer side is at most `side` (never enlarged)."""
    h, w = shape[:2]
    scale = min(1.0, side / max(h, w))
    return max(1, round(h * scale)), max(1, round(w * scale))


def explanation_payload(exp: Explanation, map_size: str | int = "original"
                        ) -> dict[str, object]:
    """E: an explanation with its map, base64 float32 LE, at the image's original size, at
    the model's input size ("input"), or with its longer side capped (an int); the
    saliency's `size` says which ("original", "input" or "capped")."""
    if map_size == "input":
        saliency, size = exp.saliency_input, "input"
    elif isinstance(map_size, int) and max(exp.saliency.shape) > map_size:
        h, w = capped(exp.saliency.shape, map_size)
        saliency = cv2.resize(exp.saliency, (w, h), interpolation=cv2.INTER_AREA)
        size = "capped"
    else:
        saliency, size = exp.saliency, "original"
    saliency = np.ascontiguousarray(saliency, dtype="<f4")
    return {
        "class_id": exp.class_id, "label": exp.label, "score": exp.score,
        "method": exp.method, "preset": exp.preset, "forwards": exp.forwards,
        "seconds": round(exp.seconds.get("total", 0.0), 4),
        "degenerate": exp.degenerate,
        "saliency": {"shape": list(saliency.shape), "dtype": "float32", "size": size,
                     "b64": base64.b64encode(saliency.tobytes()).decode("ascii")},
    }
