"""A bundle with some of its layers' parameters randomised, for the model-parameter
randomisation test (Adebayo et al. 2018).

A parameterised layer is a convolution, a Gemm or a MatMul whose weights are stored in the
graph; its weights (and bias) are re-drawn from a seeded normal with the original tensor's
standard deviation (the layer's weights' for a constant bias). The bundle's graphs share
their weights by name, so the same new values go into the full model, the features graph and
the tail graph, which stay consistent with each other. The randomised copy is written to a
new folder with its weights inside the graphs; the bundle itself is never touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import numpy_helper

from ..bundle import Bundle
from ..bundle.manifest import MANIFEST_NAME
from ..errors import BundleError
from ..fileio import sha256, write_text_atomic

PARAMETERISED = ("Conv", "ConvTranspose", "Gemm", "MatMul")
# Protocol buffers cannot hold more: a larger model keeps its weights outside its graphs.
MAX_EMBEDDED_BYTES = 1_800_000_000


@dataclass(frozen=True)
class Layer:
    """A parameterised layer: its name and the stored tensors (weights first) it uses."""

    name: str
    tensors: tuple[str, ...]


class RandomisableBundle:
    """A bundle's graphs held in memory, to write copies with layers randomised.

    Args:
        bundle: the bundle (or a plain model's) whose layers are randomised.
        seed: the seed of every draw (each layer's draw depends only on it and the layer).
    """

    def __init__(self, bundle: Bundle, seed: int = 0) -> None:
        self.bundle, self.seed = bundle, seed
        paths = {"model": bundle.model_path}
        if bundle.features_path is not None:
            paths["features"] = bundle.features_path
        if bundle.tail_path is not None:
            paths["tail"] = bundle.tail_path
        self.graphs = {role: onnx.load(str(path)) for role, path in paths.items()}
        self.files = {role: path.name for role, path in paths.items()}
        model = self.graphs["model"]
        self.weights = {
            i.name: numpy_helper.to_array(i)
            for i in model.graph.initializer
            if i.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
        }
        if sum(w.nbytes for w in self.weights.values()) > MAX_EMBEDDED_BYTES:
            raise BundleError(f"{bundle.path}: too large to randomise in memory (over 1.8 GB)")
        self.layers = parameterised_layers(model, set(self.weights))
        if not self.layers:
            raise BundleError(
                f"{bundle.path}: no parameterised layer (convolution, Gemm or MatMul with "
                "stored float weights) to randomise; an INT8 bundle stores its weights "
                "quantised: check its float32 bundle"
            )

    def randomised(self, layers: Sequence[Layer]) -> dict[str, NDArray[np.floating]]:
        """New values of the tensors of `layers`, by name."""
        found: dict[str, NDArray[np.floating]] = {}
        for layer in layers:
            index = self.layers.index(layer)
            rng = np.random.default_rng([self.seed, index])
            weights = self.weights[layer.tensors[0]]
            for name in layer.tensors:
                original = self.weights[name]
                scale = float(original.std()) or float(weights.std()) or 1e-2
                drawn = rng.normal(0.0, scale, original.shape)
                found[name] = drawn.astype(original.dtype)
        return found

    def write(self, layers: Sequence[Layer], folder: Path) -> Bundle:
        """A bundle in `folder` (which must not exist) with `layers` randomised."""
        values = self.randomised(layers)
        folder.mkdir(parents=True)
        checksums = {}
        for role, graph in self.graphs.items():
            copy = onnx.ModelProto()
            copy.CopyFrom(graph)
            for index, tensor in enumerate(copy.graph.initializer):
                if tensor.name in values:  # in this graph's own precision (FP16 bundles)
                    dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)
                    value = values[tensor.name].astype(dtype)
                    copy.graph.initializer[index].CopyFrom(
                        numpy_helper.from_array(value, tensor.name)
                    )
            target = folder / self.files[role]
            onnx.save_model(copy, str(target))
            checksums[target.name] = sha256(target)
        manifest = replace(
            self.bundle.manifest,
            model=self.files["model"],
            weights=None,
            labels=None,
            checksums=checksums,
        )
        write_text_atomic(folder / MANIFEST_NAME, manifest.dumps())
        loaded = Bundle.load(folder)
        return replace(loaded, labels=self.bundle.labels)


def parameterised_layers(model: onnx.ModelProto, stored: set[str]) -> list[Layer]:
    """The graph's parameterised layers, from the output towards the input (the reverse of
    the graph's topological order); a tensor shared by several nodes belongs to the last."""
    found: list[Layer] = []
    seen: set[str] = set()
    for node in reversed(model.graph.node):
        if node.op_type not in PARAMETERISED or len(node.input) < 2:
            continue
        if node.input[1] not in stored or node.input[1] in seen:
            continue
        tensors = tuple(i for i in node.input[1:] if i in stored and i not in seen)
        seen.update(tensors)
        found.append(Layer(node.name or tensors[0], tensors))
    return found
