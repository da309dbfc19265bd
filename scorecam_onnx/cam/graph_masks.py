"""Masked inputs built inside ONNX Runtime: for GPUs, where copying them costs more than running.

The model graph gets a small prefix: it takes the image (1×C×H×W) and a batch of normalised
low-resolution maps (B×h×w), upsamples the maps bilinearly (ONNX Resize, the preset's
convention), multiplies them into the image and feeds the result to the classifier. Only the
maps go to the device and only the class scores come back; the image is bound once per call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper

from ..errors import BundleError
from ..runners.ort import build_session, import_onnxruntime
from .engine import Pipelined

IMAGE, MAPS = "scorecam_image", "scorecam_maps"
# The maps input's name says the upsampling convention: half-pixel centres, or align corners.
MAPS_ALIGNED = "scorecam_maps_aligned"
_PREFIX = "scorecam_mask/"


def maps_input(align_corners: bool) -> str:
    """The name of the masked scorer's maps input for an upsampling convention."""
    return MAPS_ALIGNED if align_corners else MAPS


def masked_scorer_graph(
    model: onnx.ModelProto, input_name: str, size: tuple[int, int], align_corners: bool
) -> onnx.ModelProto:
    """The classifier with a mask-building prefix; inputs IMAGE (1×C×H×W, the model's
    channels) and the maps (B×h×w, named by `maps_input`) replace its input."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 13:
        raise BundleError(f"building masks on the device needs opset 13 or later, not {opset}")
    fused = onnx.ModelProto()
    fused.CopyFrom(model)
    graph = fused.graph
    original = next(i for i in graph.input if i.name == input_name)
    elem = original.type.tensor_type.elem_type or TensorProto.FLOAT
    graph.input.remove(original)
    graph.input.extend(
        [
            helper.make_tensor_value_info(IMAGE, elem, [1, None, *size]),
            helper.make_tensor_value_info(maps_input(align_corners), elem, ["batch", None, None]),
        ]
    )
    p = _PREFIX
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array([1], np.int64), p + "axis1"),
            numpy_helper.from_array(np.array([0], np.int64), p + "zero"),
            numpy_helper.from_array(np.array([2], np.int64), p + "two"),
            numpy_helper.from_array(np.array(size, np.int64), p + "hw"),
        ]
    )
    mode = "align_corners" if align_corners else "half_pixel"
    prefix = [
        helper.make_node("Unsqueeze", [maps_input(align_corners), p + "axis1"], [p + "maps4"]),
        helper.make_node("Shape", [p + "maps4"], [p + "shape"]),
        helper.make_node("Slice", [p + "shape", p + "zero", p + "two"], [p + "nc"]),
        helper.make_node("Concat", [p + "nc", p + "hw"], [p + "sizes"], axis=0),
        helper.make_node(
            "Resize",
            [p + "maps4", "", "", p + "sizes"],
            [p + "up"],
            mode="linear",
            coordinate_transformation_mode=mode,
        ),
        helper.make_node("Mul", [IMAGE, p + "up"], [input_name]),
    ]
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend([*prefix, *nodes])
    return fused


class DeviceMasks:
    """Scores batches of low-resolution maps with masks built by ONNX Runtime.

    Args:
        model_path: the bundle's model graph (its weights are read into memory).
        input_name: the classifier's image input.
        output_name: its class-score output.
        size: model input size (H, W).
        provider: "cpu" or "cuda" (as resolved by the explainer).
        threads: intra-op threads.
        pad_to: pad every batch to this many maps (fixed shapes for the GPU); 0 to keep.
    """

    def __init__(
        self,
        model_path: Path,
        input_name: str,
        output_name: str,
        size: tuple[int, int],
        provider: str,
        threads: int = 0,
        pad_to: int = 0,
    ) -> None:
        self.model = onnx.load(str(model_path))
        self.input_name, self.output_name = input_name, output_name
        self.size, self.provider, self.threads, self.pad_to = size, provider, threads, pad_to
        self._sessions: dict[bool, Any] = {}  # ONNX Runtime sessions
        self._lock = threading.Lock()

    def session(self, align_corners: bool) -> Any:
        """The fused session for one bilinear convention (built once, on first use)."""
        with self._lock:
            if align_corners not in self._sessions:
                graph = masked_scorer_graph(self.model, self.input_name, self.size, align_corners)
                session, _ = build_session(graph.SerializeToString(), self.provider, self.threads)
                self._sessions[align_corners] = session
            return self._sessions[align_corners]

    def bind(
        self, x: NDArray[np.float32], align_corners: bool
    ) -> Callable[[NDArray[np.float32]], NDArray[np.float32]]:
        """A scoring function for maps of image `x`; the image is placed on the device once."""
        ort = import_onnxruntime()
        session = self.session(align_corners)
        device = "cuda" if self.provider == "cuda" else "cpu"
        image = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(x), device, 0)

        def score(maps: NDArray[np.float32]) -> NDArray[np.float32]:
            n = maps.shape[0]
            if self.pad_to and n < self.pad_to:
                padded = np.zeros((self.pad_to, *maps.shape[1:]), np.float32)
                padded[:n] = maps
                maps = padded
            binding = session.io_binding()
            binding.bind_ortvalue_input(IMAGE, image)
            binding.bind_cpu_input(
                maps_input(align_corners), np.ascontiguousarray(maps, dtype=np.float32)
            )
            binding.bind_output(self.output_name, "cpu")
            session.run_with_iobinding(binding)
            return binding.copy_outputs_to_cpu()[0][:n]

        return score


class ServedMasks:
    """Masked scorers served elsewhere (`Runner`s whose inputs are IMAGE and the maps), at
    most one per upsampling convention: only the image and the h×w maps cross to them.

    `run` scores full images (each as the image with one all-ones map), so that a masked
    scorer can stand in for the classifier (the unmasked forward, and methods that perturb
    at input resolution); `bind` gives the maps path for a convention that has a scorer
    (None for the other one: the engine then sends masked images to the model).

    Args:
        scorers: the served masked scorers (one or two: half-pixel and align-corners).
        input_name, output_name: the classifier's names in the manifest.
        maps_size: (h, w) of the activations.
    """

    def __init__(
        self, scorers: Sequence[Any], input_name: str, output_name: str, maps_size: tuple[int, int]
    ) -> None:
        scorers = list(scorers)
        self.by_align: dict[bool, Any] = {}
        for runner in scorers:
            inputs = runner.shapes("input")
            found = [align for align in (False, True) if maps_input(align) in inputs]
            if IMAGE not in inputs or len(found) != 1:
                raise BundleError(
                    f"{runner.path}: not a masked scorer (inputs {IMAGE} and "
                    f"{MAPS} or {MAPS_ALIGNED})"
                )
            if found[0] in self.by_align:
                raise BundleError(
                    f"{runner.path}: a second masked scorer for the same upsampling convention"
                )
            served = list(inputs[maps_input(found[0])][1:])
            if served != list(maps_size):
                raise BundleError(
                    f"{runner.path}: input {maps_input(found[0])!r} takes maps "
                    f"of {'×'.join(map(str, served))}, the bundle's activations "
                    f"are {maps_size[0]}×{maps_size[1]}"
                )
            self.by_align[found[0]] = runner
        self.runner = scorers[0]
        self.align_corners = next(iter(self.by_align))
        self.input_name, self.output_name, self.maps_size = input_name, output_name, maps_size
        self.provider, self.path = self.runner.provider, self.runner.path

    def shapes(self, kind: str) -> dict[str, list[int | str | None]]:
        """As the classifier's: the image input (N×C×H×W) and the score output."""
        if kind == "input":
            return {self.input_name: ["N", *self.runner.shapes("input")[IMAGE][1:]]}
        return self.runner.shapes("output")

    def datatype(self, kind: str, name: str) -> str:
        return self.runner.datatype(kind, IMAGE if kind == "input" else name)

    def run(self, outputs: list[str], feed: dict[str, NDArray[np.float32]]) -> list[NDArray]:
        """Scores of full images, one request each (the image times an all-ones map)."""
        images = feed[self.input_name]
        ones = np.ones((1, *self.maps_size), np.float32)
        maps = maps_input(self.align_corners)
        answers = [
            self.runner.run(outputs, {IMAGE: images[i : i + 1], maps: ones})
            for i in range(images.shape[0])
        ]
        return [np.concatenate([a[j] for a in answers]) for j in range(len(outputs))]

    def bind(self, x: NDArray[np.float32], align_corners: bool) -> Pipelined | None:
        """A scoring function for maps of image `x` (that can also `submit` batches), or
        None for a convention without a scorer."""
        runner = self.by_align.get(align_corners)
        if runner is None:
            return None
        image = np.ascontiguousarray(x, dtype=np.float32)
        maps_name = maps_input(align_corners)

        def submit(maps: NDArray[np.float32]) -> Callable[[], NDArray[np.float32]]:
            wait = runner.submit([self.output_name], {IMAGE: image, maps_name: maps})
            return lambda: wait()[0]

        return Pipelined(lambda maps: submit(maps)(), submit, runner.in_flight)
