"""ONNX graph surgery: list candidate layers, cut a classifier at a tensor, free the batch axis."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import onnx
from onnx import shape_inference
from onnx.utils import Extractor

from ..errors import BundleError


@dataclass(frozen=True)
class Candidate:
    """A 4-D tensor of the graph that could serve as the target layer."""

    name: str
    shape: tuple[int | str | None, ...]
    op_type: str
    suggested: bool = False


def load_model(path: Path, load_weights: bool = True) -> onnx.ModelProto:
    """Load an ONNX model, turning every failure into a `BundleError` that names the file."""
    if not path.is_file():
        raise BundleError(f"{path}: no such ONNX file")
    try:
        return onnx.load(str(path), load_external_data=load_weights)
    except Exception as exc:  # noqa: BLE001 - protobuf raises many kinds of errors
        raise BundleError(f"{path}: not a readable ONNX model ({type(exc).__name__})") from None


def single_input(model: onnx.ModelProto) -> onnx.ValueInfoProto:
    """The graph's one real input (initializers listed as inputs are ignored)."""
    weights = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in weights]
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs) or "none"
        raise BundleError(f"a classifier graph must have one image input, found: {names}")
    return inputs[0]


def only_output(model: onnx.ModelProto) -> str:
    """The graph's single output, or a `BundleError` asking to name one."""
    outputs = [o.name for o in model.graph.output]
    if len(outputs) != 1:
        raise BundleError(
            f"the graph has several outputs ({', '.join(outputs)}): choose one with --output"
        )
    return outputs[0]


def dims(value: onnx.ValueInfoProto) -> tuple[int | str | None, ...]:
    """A tensor's shape: ints where fixed, names where symbolic, None where unknown."""
    shape = value.type.tensor_type.shape
    out: list[int | str | None] = []
    for d in shape.dim:
        if d.HasField("dim_value"):
            out.append(d.dim_value)
        elif d.HasField("dim_param"):
            out.append(d.dim_param)
        else:
            out.append(None)
    return tuple(out)


def _producers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {name: node for node in model.graph.node for name in node.output if name}


def ancestors(model: onnx.ModelProto, tensor: str) -> set[str]:
    """Names of every tensor that `tensor` is computed from (itself included)."""
    producers = _producers(model)
    seen: set[str] = set()
    todo = [tensor]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        node = producers.get(name)
        if node is not None:
            todo.extend(i for i in node.input if i)
    return seen


def deepest(model: onnx.ModelProto, tensors: list[str]) -> str:
    """The tensor computed from all the others (the last given when none is)."""
    for tensor in tensors:
        if set(tensors) <= ancestors(model, tensor):
            return tensor
    return tensors[-1]


def candidate_layers(model: onnx.ModelProto, output: str, layout: str = "NCHW") -> list[Candidate]:
    """Tensors that could be the target, in graph order: 4-D ones with a spatial size above 1,
    and token tensors (N×L×C, L > 1) that enter a LayerNormalization (a transformer's
    residual stream).

    Suggested: in a transformer (three LayerNormalizations or more feed the output), the
    input of the last block's first norm; otherwise the last 4-D tensor (usually the input
    of the global pooling).
    """
    try:
        inferred = shape_inference.infer_shapes(model)
    except Exception as exc:  # noqa: BLE001 - shape inference raises assorted errors
        raise BundleError(f"ONNX shape inference failed: {exc}") from None
    shapes = {v.name: dims(v) for v in inferred.graph.value_info}
    upstream = ancestors(model, output)
    first = 2 if layout == "NCHW" else 1  # the first spatial axis
    norms = [
        n for n in model.graph.node if n.op_type == "LayerNormalization" and n.output[0] in upstream
    ]
    normed = {n.input[0] for n in norms}
    found: list[Candidate] = []
    for node in model.graph.node:
        for name in node.output:
            shape: tuple[int | str | None, ...] | None = shapes.get(name)
            if name not in upstream or shape is None:
                continue
            maps = len(shape) == 4 and _above_one(shape[first : first + 2])
            tokens = len(shape) == 3 and name in normed and _above_one(shape[1:2])
            if maps or tokens:
                found.append(Candidate(name, shape, node.op_type))
    pick = norms[-3].input[0] if len(norms) >= 3 else None
    if pick is None or pick not in {c.name for c in found}:
        four = [c.name for c in found if len(c.shape) == 4]
        pick = four[-1] if four else None
    return [Candidate(c.name, c.shape, c.op_type, suggested=c.name == pick) for c in found]


def _above_one(dims_: tuple[int | str | None, ...]) -> bool:
    """Whether no fixed dimension among `dims_` is 1 or less (unknown ones may be anything)."""
    return not any(isinstance(d, int) and d <= 1 for d in dims_)


def suggested_layer(model: onnx.ModelProto, output: str, layout: str = "NCHW") -> str:
    """The name of the suggested target tensor, or a `BundleError` when there is none."""
    suggested = [c.name for c in candidate_layers(model, output, layout) if c.suggested]
    if not suggested:
        raise BundleError("no 4-D tensor with a spatial size above 1 feeds the output")
    return suggested[0]


def check_tensor(model: onnx.ModelProto, tensor: str, output: str) -> None:
    """Fail clearly unless `tensor` is computed by a node and feeds `output`."""
    if tensor not in _producers(model):
        known = [n for node in model.graph.node for n in node.output][-5:]
        raise BundleError(
            f"no tensor named {tensor!r} in the graph (e.g. {', '.join(known)}; "
            "list them with 'scorecam-onnx layers MODEL.onnx')"
        )
    if tensor not in ancestors(model, output):
        raise BundleError(f"tensor {tensor!r} does not feed the output {output!r}")


def bypass(model: onnx.ModelProto, source: str, tensor: str, output: str) -> str | None:
    """Why `output` does not depend on `source` only through `tensor`, or None when every
    path from `source` to `output` passes through `tensor` (the tail graph is then exact).

    The walk goes up from `output` and stops at `tensor`; reaching `source` means a path goes
    around it (a skip connection, or a shape read off the input). Reading only the batch size
    off the input (``Shape(source, start=0, end=1)``, as exporters do for a symbolic batch)
    does not count: the target has the same batch size, and `rebase_batch_reads` moves such
    reads onto it. A control-flow node on the way is refused too: its sub-graphs may read
    tensors that its inputs do not name.
    """
    producers = _producers(model)
    seen: set[str] = set()
    todo = [output]
    while todo:
        name = todo.pop()
        if name in seen or name == tensor:
            continue
        seen.add(name)
        node = producers.get(name)
        if node is None:
            continue
        label = f"{node.name or node.op_type} ({node.op_type})"
        if any(
            a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
            for a in node.attribute
        ):
            return f"control-flow node {label} lies between {tensor!r} and {output!r}"
        if source in node.input:
            if _reads_batch(node, source):
                continue
            return (
                f"a path from the input to {output!r} goes around {tensor!r} "
                f"(node {label} reads the input)"
            )
        todo.extend(i for i in node.input if i)
    return None


def _reads_batch(node: onnx.NodeProto, source: str) -> bool:
    """Whether `node` is ``Shape(source, start=0, end=1)``: it reads only the batch size."""
    if node.op_type != "Shape" or list(node.input) != [source]:
        return False
    attrs = {a.name: a.i for a in node.attribute}
    return attrs.get("start", 0) == 0 and attrs.get("end") == 1


def rebase_batch_reads(model: onnx.ModelProto, source: str, tensor: str) -> None:
    """Make the batch-size reads of `source` read `tensor` instead (both have the batch
    first): applied to a graph cut from `tensor` on, it no longer needs `source`."""
    for node in model.graph.node:
        if _reads_batch(node, source):
            node.input[0] = tensor


def free_batch_axis(model: onnx.ModelProto, names: Iterable[str]) -> None:
    """Make the first axis of the named graph inputs and outputs symbolic ('batch').

    Stale intermediate shapes are dropped; ONNX Runtime infers its own.
    """
    wanted = set(names)
    for value in [*model.graph.input, *model.graph.output]:
        if value.name in wanted and value.type.tensor_type.shape.dim:
            dim = value.type.tensor_type.shape.dim[0]
            dim.Clear()
            dim.dim_param = "batch"
    del model.graph.value_info[:]


def extract(model: onnx.ModelProto, inputs: list[str], outputs: list[str]) -> onnx.ModelProto:
    """The sub-graph from `inputs` to `outputs` (weights stay external if they were)."""
    # Shape inference is a help here, not a requirement.
    with contextlib.suppress(Exception):
        model = shape_inference.infer_shapes(model)
    graph = model.graph
    known = {v.name for v in [*graph.value_info, *graph.input, *graph.output]}
    for name in [*inputs, *outputs]:
        if name not in known:
            graph.value_info.append(
                onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
            )
    try:
        sub = Extractor(model).extract_model(inputs, outputs)
    except Exception as exc:  # noqa: BLE001
        raise BundleError(f"cannot cut the graph at {outputs}: {exc}") from None
    del sub.graph.value_info[:]
    return sub
