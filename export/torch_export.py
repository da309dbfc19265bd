"""Export a PyTorch classifier and one of its layers into a scorecam-onnx bundle."""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from scorecam_onnx.bundle import Bundle, Preprocessing, write_bundle
from scorecam_onnx.errors import BundleError
from scorecam_onnx.runners.ort import build_session

from .layers import LayerChoice, first_tensor, resolve_layer
from .models import LoadedModel
from .zoos import first_line

OPSET = 18
LEGACY_OPSET = 17
TOLERANCE = 1e-4


@dataclass(frozen=True)
class ExportReport:
    """What `export_bundle` wrote and how well ONNX Runtime reproduces PyTorch."""

    bundle: Bundle
    layer: LayerChoice
    activation_diff: float
    logits_diff: float
    export_seconds: float
    verify_seconds: float
    # Every target layer, in the order given (`layer` is the deepest).
    layers: tuple[LayerChoice, ...] = ()


class _CallRecorder(nn.Module):
    """Stands in for a module and keeps the output (or the input) of each of its calls
    during one forward."""

    def __init__(self, inner: nn.Module, point: str) -> None:
        super().__init__()
        self.inner = inner
        self.point = point
        self.outputs: list[torch.Tensor] = []

    def forward(self, *args: object, **kwargs: object) -> object:
        out = self.inner(*args, **kwargs)
        kept = first_tensor(out if self.point == "output" else (*args, *kwargs.values()))
        if kept is not None:
            self.outputs.append(kept)
        return out


class _WithActivations(nn.Module):
    """Returns (the activation of each chosen call…, logits): hooks do not survive ONNX
    export."""

    def __init__(self, model: nn.Module, taps: list[tuple[_CallRecorder, int]]) -> None:
        super().__init__()
        self.model = model
        self.taps = taps
        self.recorders = nn.ModuleList(list({id(r): r for r, _ in taps}.values()))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        for recorder in self.recorders:
            recorder.outputs.clear()
        logits = logits_of(self.model(x))
        activations = [recorder.outputs[call] for recorder, call in self.taps]
        for recorder in self.recorders:
            recorder.outputs.clear()
        return (*activations, logits)


def logits_of(out: object) -> torch.Tensor:
    """The class scores of a forward: a tensor, or the `logits` of a Hugging Face
    `ModelOutput` (or any mapping with that key), or the `out` of a torchvision
    segmentation model."""
    if isinstance(out, torch.Tensor):
        return out
    logits = (
        out.get("logits", out.get("out"))
        if isinstance(out, Mapping)
        else getattr(out, "logits", None)
    )
    if isinstance(logits, torch.Tensor):
        return logits
    raise BundleError(
        f"the model's forward returned {type(out).__name__}, which is neither a "
        "tensor nor an output with logits"
    )


@contextlib.contextmanager
def _recording(model: nn.Module, choices: list[LayerChoice]):
    """Swap each chosen submodule for a recorder for the duration of the block; yield the
    (recorder, call) of each choice. Choices of one module and point share a recorder."""
    swapped: list[tuple[nn.Module, str, nn.Module]] = []
    recorders: dict[tuple[str, str], _CallRecorder] = {}
    try:
        for choice in choices:
            key = (choice.name, choice.point)
            if key in recorders:
                continue
            parent_name, _, attr = choice.name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            original = getattr(parent, attr)
            recorders[key] = _CallRecorder(original, choice.point)
            setattr(parent, attr, recorders[key])
            swapped.append((parent, attr, original))
        yield [(recorders[(c.name, c.point)], c.call) for c in choices]
    finally:
        for parent, attr, original in reversed(swapped):
            setattr(parent, attr, original)


def input_channels(model: torch.nn.Module, prep: Preprocessing) -> int:
    """The channels a PyTorch model reads: those the preprocessing gives when not 3, else
    the first 2-D convolution's input channels (3 without one)."""
    if prep.channels != 3:
        return prep.channels
    first = next((m for m in model.modules() if isinstance(m, torch.nn.Conv2d)), None)
    return int(first.in_channels) if first is not None else 3


def export_bundle(
    loaded: LoadedModel,
    out_dir: str | Path,
    layer: str | Sequence[str] | None = None,
    preprocessing: Preprocessing | None = None,
    labels: list[str] | None = None,
    force: bool = False,
    tokens: tuple[int, int, int] | None = None,
    activation_layout: str | None = None,
    notes: dict[str, str] | None = None,
    background: int | None = None,
    head: str | None = None,
) -> ExportReport:
    """Export `loaded` cut at `layer` into a bundle and check ONNX Runtime against PyTorch.

    Several layers make a multi-layer bundle (one features output each; the deepest is where
    the tail graph is cut). A layer with N×L×C token outputs becomes a token bundle:
    `tokens` (P, gh, gw), or inferred from L and the input size, helped by the number of
    leading tokens the model declares (`prefix_tokens`). `activation_layout` forces how a
    4-D layer reads ("NCHW" or "NHWC"); by default its shape against the input size
    decides. `notes` are added to the manifest's source (e.g. where each preprocessing value
    came from). `head` says what the class scores mean (default: read off the graph, see
    `scorecam_onnx.bundle.writer.output_head`).

    Raises `BundleError` when either graph differs from PyTorch by more than a relative 1e-4.
    """
    prep = preprocessing or loaded.preprocessing or Preprocessing(height=224, width=224)
    if prep.height is None or prep.width is None:
        raise BundleError("give --input-size for a PyTorch model")
    model = loaded.module.eval()
    channels = input_channels(model, prep)
    size = (channels, prep.height, prep.width)
    example = torch.randn(2, *size, generator=torch.Generator().manual_seed(0))
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            logits_of(model(example[:1]))
            given = [layer] if layer is None or isinstance(layer, str) else list(layer)
            choices = [resolve_layer(model, one, example, activation_layout) for one in given]
        except BundleError:
            raise
        except Exception as exc:  # noqa: BLE001 - the model's own forward failed
            raise BundleError(
                f"{loaded.source.get('model', 'the model')}: forward failed on a "
                f"1×{channels}×{prep.height}×{prep.width} input: {type(exc).__name__}: "
                f"{first_line(exc)}"
            ) from None
    labels_of = [c.label for c in choices]
    if len(set(labels_of)) != len(labels_of):
        raise BundleError(f"a layer is given twice: {', '.join(labels_of)}")
    tensors = ["activations"] + [f"activations_{n}" for n in range(1, len(choices))]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, _recording(model, choices) as taps:
        wrapper = _WithActivations(model, taps).eval()
        path = Path(tmp) / "exported.onnx"
        exporter = _torch_to_onnx(
            wrapper, example, path, loaded.source.get("model", "model"), tensors
        )
        graph = onnx.load(str(path))
        _drop_local_paths(graph)
        bundle = write_bundle(
            graph,
            out_dir,
            activation=tensors if len(tensors) > 1 else tensors[0],
            output="logits",
            preprocessing=prep,
            layer=labels_of if len(tensors) > 1 else labels_of[0],
            labels=labels if labels is not None else loaded.labels,
            source={**loaded.source, **(notes or {}), "exporter": exporter},
            force=force,
            tokens=tokens,
            activation_layout=choices[0].layout,
            prefix_hint=prefix_tokens(model),
            background=background,
            head=head,
        )
        exported = time.perf_counter()
        probe = torch.randn(3, *size, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            *acts, want_logits = (t.numpy() for t in wrapper(probe))
    act_diff, logit_diff = _verify(
        bundle, probe.numpy(), dict(zip(tensors, acts, strict=True)), want_logits
    )
    deepest = bundle.manifest.layer
    choice = next(c for c in choices if c.label == deepest)
    return ExportReport(
        bundle,
        choice,
        act_diff,
        logit_diff,
        exported - started,
        time.perf_counter() - exported,
        tuple(choices),
    )


def prefix_tokens(model: nn.Module) -> int | None:
    """The leading tokens a transformer declares: timm's `num_prefix_tokens`, else its
    class / distillation / register token parameters (torchvision's ViT: `class_token`)."""
    declared = getattr(model, "num_prefix_tokens", None)
    if isinstance(declared, int):
        return declared
    count, found = 0, False
    for attr in ("class_token", "cls_token", "dist_token", "register_tokens", "reg_token"):
        value = getattr(model, attr, None)
        if isinstance(value, torch.Tensor) and value.ndim == 3:
            count += int(value.shape[1])
            found = True
    return count if found else None


def _torch_to_onnx(
    wrapper: nn.Module, example: torch.Tensor, path: Path, model: str, activations: list[str]
) -> str:
    """Export with the dynamo exporter, or the TorchScript one where dynamo cannot trace.

    Both get a symbolic batch axis (the example batch is 2: a batch of 1 would be frozen).
    Returns the exporter used.
    """
    names = {"input_names": ["input"], "output_names": [*activations, "logits"]}
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)  # e.g. "torchvision is not installed. Skipping ..."
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            try:
                batch = torch.export.Dim("batch", min=1, max=65536)
                torch.onnx.export(
                    wrapper,
                    (example,),
                    str(path),
                    dynamo=True,
                    opset_version=OPSET,
                    dynamic_shapes=({0: batch},),
                    external_data=True,
                    verbose=False,
                    **names,
                )
                return "dynamo"
            except Exception as exc:  # noqa: BLE001 - fall back, and keep the first reason
                dynamo_error = exc
            axes = {name: {0: "batch"} for name in ("input", *activations, "logits")}
            try:
                torch.onnx.export(
                    wrapper,
                    (example,),
                    str(path),
                    dynamo=False,
                    opset_version=LEGACY_OPSET,
                    dynamic_axes=axes,
                    **names,
                )
                return "torchscript"
            except Exception:  # noqa: BLE001 - exporter errors are long; keep the gist
                raise BundleError(
                    f"{model}: neither ONNX exporter could trace it; dynamo: "
                    f"{first_line(dynamo_error)}"
                ) from None
    finally:
        exporter_log.setLevel(level)


def _verify(
    bundle: Bundle, probe: np.ndarray, want_acts: dict[str, np.ndarray], want_logits: np.ndarray
) -> tuple[float, float]:
    """The largest differences (activations of every layer, logits) against PyTorch."""
    m = bundle.manifest
    features, _ = build_session(bundle.features_path, "cpu")
    model, _ = build_session(bundle.model_path, "cpu")
    names = list(want_acts)
    acts = features.run(names, {m.input.name: probe})
    (logits,) = model.run([m.output.name], {m.input.name: probe})
    diffs = []
    pairs = [(got, want_acts[name], "activations") for got, name in zip(acts, names, strict=True)]
    for got, want, what in (*pairs, (logits, want_logits, "logits")):
        diff = float(np.abs(got - want).max())
        scale = max(float(np.abs(want).max()), 1e-12)
        if diff / scale > TOLERANCE:
            raise BundleError(
                f"ONNX Runtime {what} differ from PyTorch by {diff:.3g} "
                f"(relative {diff / scale:.3g} > {TOLERANCE:g})"
            )
        diffs.append(diff)
    return max(diffs[:-1]), diffs[-1]


def _drop_local_paths(graph: onnx.ModelProto) -> None:
    """Remove the exporter's per-node stack traces: they hold paths of this machine."""
    for node in graph.graph.node:
        kept = [p for p in node.metadata_props if p.key != "pkg.torch.onnx.stack_trace"]
        del node.metadata_props[:]
        node.metadata_props.extend(kept)
