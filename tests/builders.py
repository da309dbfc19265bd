"""Tiny ONNX classifiers built with onnx.helper, and a NumPy copy of their forward pass."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SIZE = 8  # input H = W
CLASSES = 4


def _classifier(
    name: str, nodes: list, input_shape: list, output_shape: list, initializers: list
) -> onnx.ModelProto:
    """A graph 'input' → 'logits' at opset 17, IR version 8 (readable by older runtimes)."""
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, output_shape)],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def tiny_weights(seed: int = 0, bands: int = 3) -> dict[str, np.ndarray]:
    """Weights of the tiny CNN (input of `bands` channels): 5 channels, of which #3 is
    constant 0.5 and #4 all zero."""
    rng = np.random.default_rng(seed)
    w1 = rng.normal(size=(5, bands)).astype(np.float32)
    b1 = rng.normal(scale=0.1, size=5).astype(np.float32)
    w1[3], b1[3] = 0.0, 0.5  # constant channel
    w1[4], b1[4] = 0.0, -1.0  # all-zero channel after the ReLU
    w2 = rng.normal(size=(CLASSES, 5)).astype(np.float32)
    b2 = rng.normal(scale=0.1, size=CLASSES).astype(np.float32)
    return {"w1": w1, "b1": b1, "w2": w2, "b2": b2}


def tiny_forward(x: np.ndarray, w: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(activations N×5×4×4, logits N×C) of the tiny CNN, computed in NumPy."""
    conv = np.einsum("kc,nchw->nkhw", w["w1"], x) + w["b1"][None, :, None, None]
    relu = np.maximum(conv, 0.0)
    n, k, h, wd = relu.shape
    acts = relu.reshape(n, k, h // 2, 2, wd // 2, 2).mean(axis=(3, 5))
    pooled = acts.mean(axis=(2, 3))
    return acts, pooled @ w["w2"].T + w["b2"]


def tiny_model(
    seed: int = 0, batch: int | str = "N", softmax: bool = False, bands: int = 3
) -> onnx.ModelProto:
    """input (N×bands×8×8) → Conv1x1 → Relu → AveragePool 2 → 'feat' → GAP → Flatten →
    Gemm."""
    w = tiny_weights(seed, bands)
    inits = [
        numpy_helper.from_array(w["w1"].reshape(5, bands, 1, 1), "w1"),
        numpy_helper.from_array(w["b1"], "b1"),
        numpy_helper.from_array(w["w2"], "w2"),
        numpy_helper.from_array(w["b2"], "b2"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["conv"]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("AveragePool", ["relu"], ["feat"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["feat"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"]),
        helper.make_node(
            "Gemm", ["flat", "w2", "b2"], ["scores" if softmax else "logits"], transB=1
        ),
    ]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["scores"], ["logits"], axis=1))
    model = _classifier("tiny", nodes, [batch, bands, SIZE, SIZE], [batch, CLASSES], inits)
    onnx.checker.check_model(model)
    return model


def save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


def wide_model(seed: int = 0) -> onnx.ModelProto:
    """A CNN whose weights are big enough to be stored externally (3×3 conv, 32 ch, 100 classes)."""
    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array(rng.normal(size=(32, 3, 3, 3)).astype(np.float32), "conv_w"),
        numpy_helper.from_array(rng.normal(size=(100, 32)).astype(np.float32), "fc_w"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "conv_w"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["feat"]),
        helper.make_node("GlobalAveragePool", ["feat"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc_w"], ["logits"], transB=1),
    ]
    return _classifier("wide", nodes, ["N", 3, SIZE, SIZE], ["N", 100], inits)


def quadrant_model() -> onnx.ModelProto:
    """Two classes that see only the top-left quadrant of channel 0.

    s = mean of x[0, 0, :4, :4]; logits = (s, −s), so p_0 = sigmoid(2s).
    """
    kernel = np.zeros((1, 3, SIZE, SIZE), np.float32)
    kernel[0, 0, :4, :4] = 1.0 / 16
    nodes = [
        helper.make_node("Conv", ["input", "kernel"], ["s"]),
        helper.make_node("Flatten", ["s"], ["flat"]),
        helper.make_node("Gemm", ["flat", "w"], ["logits"], transB=1),
    ]
    inits = [
        numpy_helper.from_array(kernel, "kernel"),
        numpy_helper.from_array(np.array([[1.0], [-1.0]], np.float32), "w"),
    ]
    return _classifier("quadrant", nodes, ["N", 3, SIZE, SIZE], ["N", 2], inits)


def many_channels_model(channels: int = 2048, size: int = 32) -> onnx.ModelProto:
    """A 1×1 convolution with stride 8 into `channels` maps of (size/8)², then a linear head."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(size=(channels, 3, 1, 1)).astype(np.float32), "cw"),
        numpy_helper.from_array(rng.normal(size=(10, channels)).astype(np.float32), "fw"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "cw"], ["conv"], strides=[8, 8]),
        helper.make_node("Relu", ["conv"], ["feat"]),
        helper.make_node("GlobalAveragePool", ["feat"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fw"], ["logits"], transB=1),
    ]
    return _classifier("many", nodes, ["N", 3, size, size], ["N", 10], inits)


def nonfinite_model(kind: str) -> onnx.ModelProto:
    """The tiny CNN with a poisoned output.

    kind "nan": every logit is NaN. kind "log": logits + log(mean(input)), which is −∞ for
    an all-zero input (the shared zero mask) and finite for a bright image.
    """
    model = tiny_model()
    graph = model.graph
    graph.node[-1].output[0] = "clean_logits"
    if kind == "nan":
        graph.initializer.append(numpy_helper.from_array(np.zeros(1, np.float32), "zero"))
        graph.node.extend(
            [
                helper.make_node("Mul", ["clean_logits", "zero"], ["zeros"]),
                helper.make_node("Div", ["zeros", "zero"], ["logits"]),
            ]
        )
    else:
        graph.node.extend(
            [
                helper.make_node("ReduceMean", ["input"], ["mean4"], axes=[1, 2, 3], keepdims=1),
                helper.make_node("Flatten", ["mean4"], ["mean"]),
                helper.make_node("Log", ["mean"], ["log"]),
                helper.make_node("Add", ["clean_logits", "log"], ["logits"]),
            ]
        )
    return model


def set_key(data: dict, dotted: str, value: object) -> dict:
    """Set (or, with value KeyError, delete) a nested key given as 'a.b.c'; returns data."""
    *parents, last = dotted.split(".")
    target = data
    for key in parents:
        target = target[key]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return data


def palette_png() -> bytes:
    """A 2×1 palette PNG (colour type 3) written by hand: a red and a blue pixel."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 1, 8, 3, 0, 0, 0))
    png += chunk(b"PLTE", bytes([255, 0, 0, 0, 0, 255]))
    return png + chunk(b"IDAT", zlib.compress(b"\x00\x00\x01")) + chunk(b"IEND", b"")


def nhwc_model() -> onnx.ModelProto:
    """The tiny CNN with NHWC input and an NHWC activation tensor 'feat_nhwc' (N×4×4×5)."""
    model = tiny_model()
    graph = model.graph
    for node in graph.node:
        node.input[:] = [
            "input_nchw"
            if i == "input"
            else "feat_back"
            if i == "feat" and node.op_type == "GlobalAveragePool"
            else i
            for i in node.input
        ]
    graph.node.insert(
        0, helper.make_node("Transpose", ["input"], ["input_nchw"], perm=[0, 3, 1, 2])
    )
    graph.node.extend(
        [
            helper.make_node("Transpose", ["feat"], ["feat_nhwc"], perm=[0, 2, 3, 1]),
            helper.make_node("Transpose", ["feat_nhwc"], ["feat_back"], perm=[0, 3, 1, 2]),
        ]
    )
    graph.input[0].CopyFrom(
        helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", SIZE, SIZE, 3])
    )
    # Keep the nodes in topological order: the head after the transposes.
    head = [n for n in graph.node if n.op_type in ("GlobalAveragePool", "Flatten", "Gemm")]
    rest = [n for n in graph.node if n not in head]
    del graph.node[:]
    graph.node.extend([*rest, *head])
    onnx.checker.check_model(model)
    return model


def skip_model() -> onnx.ModelProto:
    """The tiny CNN plus a path around 'feat': logits += W3 · GAP(input) (no clean tail)."""
    model = tiny_model()
    graph = model.graph
    gemm = next(n for n in graph.node if n.op_type == "Gemm")
    gemm.output[0] = "head"
    w3 = np.random.default_rng(5).normal(size=(CLASSES, 3)).astype(np.float32)
    graph.initializer.append(numpy_helper.from_array(w3, "w3"))
    graph.node.extend(
        [
            helper.make_node("GlobalAveragePool", ["input"], ["input_gap"], name="skip_pool"),
            helper.make_node("Flatten", ["input_gap"], ["input_flat"]),
            helper.make_node("Gemm", ["input_flat", "w3"], ["skip"], transB=1),
            helper.make_node("Add", ["head", "skip"], ["logits"]),
        ]
    )
    onnx.checker.check_model(model)
    return model


def token_model(size: int = 8, patch: int = 2, dim: int = 6, classes: int = 3) -> onnx.ModelProto:
    """A ViT-like graph: patch convolution → N×L×dim tokens ('tokens': a class token, then
    the (size/patch)² patches) → LayerNormalization → mean over tokens → linear head."""
    rng = np.random.default_rng(9)
    inits = [
        numpy_helper.from_array(rng.normal(size=(dim, 3, patch, patch)).astype(np.float32), "pw"),
        numpy_helper.from_array(np.array([0, dim, -1], np.int64), "flat_shape"),
        numpy_helper.from_array(rng.normal(size=(1, 1, dim)).astype(np.float32), "cls"),
        numpy_helper.from_array(np.array([1, dim], np.int64), "lead_tail"),
        numpy_helper.from_array(np.array([0], np.int64), "zero"),
        numpy_helper.from_array(np.array([1], np.int64), "one"),
        numpy_helper.from_array(np.ones(dim, np.float32), "gamma"),
        numpy_helper.from_array(np.zeros(dim, np.float32), "beta"),
        numpy_helper.from_array(rng.normal(size=(classes, dim)).astype(np.float32), "hw"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "pw"], ["grid"], strides=[patch, patch]),
        helper.make_node("Reshape", ["grid", "flat_shape"], ["flat"]),
        helper.make_node("Transpose", ["flat"], ["patches"], perm=[0, 2, 1]),
        helper.make_node("Shape", ["patches"], ["pshape"]),
        helper.make_node("Slice", ["pshape", "zero", "one"], ["batch"]),
        helper.make_node("Concat", ["batch", "lead_tail"], ["lead_shape"], axis=0),
        helper.make_node("Expand", ["cls", "lead_shape"], ["lead"]),
        helper.make_node("Concat", ["lead", "patches"], ["tokens"], axis=1),
        helper.make_node("LayerNormalization", ["tokens", "gamma", "beta"], ["normed"], axis=-1),
        helper.make_node("ReduceMean", ["normed"], ["pooled"], axes=[1], keepdims=0),
        helper.make_node("Gemm", ["pooled", "hw"], ["logits"], transB=1),
    ]
    model = _classifier("tokens", nodes, ["N", 3, size, size], ["N", classes], inits)
    onnx.checker.check_model(model)
    return model


def batch_read_model(full_shape: bool = False) -> onnx.ModelProto:
    """The tiny CNN whose head flattens with a batch size read off the input, as exporters
    write it: Shape(input, start=0, end=1) (or, with `full_shape`, the whole shape, sliced)."""
    model = tiny_model()
    graph = model.graph
    flatten = next(n for n in graph.node if n.op_type == "Flatten")
    graph.node.remove(flatten)
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array([-1], np.int64), "minus_one"),
            numpy_helper.from_array(np.array([0], np.int64), "at0"),
            numpy_helper.from_array(np.array([1], np.int64), "at1"),
        ]
    )
    if full_shape:
        reads = [
            helper.make_node("Shape", ["input"], ["whole"], name="read_shape"),
            helper.make_node("Slice", ["whole", "at0", "at1"], ["n"]),
        ]
    else:
        reads = [helper.make_node("Shape", ["input"], ["n"], name="read_batch", start=0, end=1)]
    nodes = [
        *reads,
        helper.make_node("Concat", ["n", "minus_one"], ["flat_shape"], axis=0),
        helper.make_node("Reshape", ["gap", "flat_shape"], ["flat"]),
    ]
    gemm = next(i for i, n in enumerate(graph.node) if n.op_type == "Gemm")
    for offset, node in enumerate(nodes):
        graph.node.insert(gemm + offset, node)
    onnx.checker.check_model(model)
    return model


def webp_bomb(width: int = 16000, height: int = 16000) -> bytes:
    """A lossless WebP of a few dozen bytes whose header announces width×height pixels (a
    16×16 image with its VP8L size fields rewritten): a decoder would allocate it all."""
    ok, encoded = cv2.imencode(
        ".webp", np.zeros((16, 16, 3), np.uint8), [cv2.IMWRITE_WEBP_QUALITY, 101]
    )
    assert ok
    data = bytearray(encoded.tobytes())
    at = data.index(b"VP8L") + 8  # the chunk's signature byte, then 14+14 bits
    assert data[at] == 0x2F
    fields = int.from_bytes(data[at + 1 : at + 5], "little") & ~((1 << 28) - 1)
    fields |= (width - 1) | ((height - 1) << 14)
    data[at + 1 : at + 5] = fields.to_bytes(4, "little")
    return bytes(data)


def segmentation_weights(seed: int = 0, classes: int = 3) -> dict[str, np.ndarray]:
    """Weights of the tiny segmentation net: 5 feature channels, `classes` per-pixel scores."""
    rng = np.random.default_rng(seed)
    return {
        "w1": rng.normal(size=(5, 3)).astype(np.float32),
        "b1": rng.normal(scale=0.1, size=5).astype(np.float32),
        "w2": rng.normal(size=(classes, 5)).astype(np.float32),
        "b2": rng.normal(scale=0.1, size=classes).astype(np.float32),
    }


def segmentation_forward(x: np.ndarray, w: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(features N×5×4×4, per-pixel scores N×C×8×8) of the tiny segmentation net, in NumPy:
    each 4×4 score cell repeated over 2×2 output pixels (nearest upsampling)."""
    conv = np.einsum("kc,nchw->nkhw", w["w1"], x.astype(np.float64)) + w["b1"][None, :, None, None]
    n = x.shape[0]
    feat = np.maximum(conv, 0.0).reshape(n, 5, SIZE // 2, 2, SIZE // 2, 2).mean(axis=(3, 5))
    head = np.einsum("ck,nkhw->nchw", w["w2"], feat) + w["b2"][None, :, None, None]
    return feat, head.repeat(2, axis=2).repeat(2, axis=3)


def segmentation_model(seed: int = 0, classes: int = 3) -> onnx.ModelProto:
    """input (N×3×8×8) → Conv1x1 → Relu → AveragePool 2 → 'feat' → Conv1x1 → Resize ×2
    (nearest) → 'logits' (N×C×8×8)."""
    w = segmentation_weights(seed, classes)
    inits = [
        numpy_helper.from_array(w["w1"].reshape(5, 3, 1, 1), "w1"),
        numpy_helper.from_array(w["b1"], "b1"),
        numpy_helper.from_array(w["w2"].reshape(classes, 5, 1, 1), "w2"),
        numpy_helper.from_array(w["b2"], "b2"),
        numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["conv"]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("AveragePool", ["relu"], ["feat"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["feat", "w2", "b2"], ["head"]),
        helper.make_node("Resize", ["head", "", "scales"], ["logits"], mode="nearest"),
    ]
    model = _classifier(
        "segmentation", nodes, ["N", 3, SIZE, SIZE], ["N", classes, SIZE, SIZE], inits
    )
    onnx.checker.check_model(model)
    return model


def head_weights(columns: int, seed: int = 0) -> dict[str, np.ndarray]:
    """The tiny CNN's weights with a head of `columns` scores (a binary head: 1)."""
    w = tiny_weights(seed)
    rng = np.random.default_rng(seed + 100)
    w["w2"] = rng.normal(scale=3.0, size=(columns, 5)).astype(np.float32)
    w["b2"] = rng.normal(scale=0.5, size=columns).astype(np.float32)
    return w


def head_model(columns: int, sigmoid: bool = False, seed: int = 0) -> onnx.ModelProto:
    """The tiny CNN with `columns` output scores, as logits or through a Sigmoid."""
    w = head_weights(columns, seed)
    inits = [
        numpy_helper.from_array(w["w1"].reshape(5, 3, 1, 1), "w1"),
        numpy_helper.from_array(w["b1"], "b1"),
        numpy_helper.from_array(w["w2"], "w2"),
        numpy_helper.from_array(w["b2"], "b2"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["conv"]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("AveragePool", ["relu"], ["feat"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["feat"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"]),
        helper.make_node(
            "Gemm", ["flat", "w2", "b2"], ["scores" if sigmoid else "logits"], transB=1
        ),
    ]
    if sigmoid:
        nodes.append(helper.make_node("Sigmoid", ["scores"], ["logits"]))
    model = _classifier("heads", nodes, ["N", 3, SIZE, SIZE], ["N", columns], inits)
    onnx.checker.check_model(model)
    return model
