"""Write a Triton model repository that serves a bundle's classifier (`model.onnx`): with
Triton's onnxruntime backend, or with ONNX Runtime inside its Python backend (for Triton
builds without the onnxruntime backend, such as PyPI's nvidia-pytriton)."""

from __future__ import annotations

import shutil
from importlib.resources import files
from pathlib import Path

import onnx

from ..bundle import Bundle
from ..cam.fused import IMAGE, maps_input, masked_scorer_graph
from ..errors import BundleError
from ..fileio import staged_folder

BACKENDS = ("onnxruntime", "python")
KINDS = {"cpu": "KIND_CPU", "gpu": "KIND_GPU"}


def classifier_config(bundle: Bundle, name: str, backend: str = "python", max_batch: int = 64,
                      instances: int = 1, kind: str = "cpu") -> str:
    """The classifier's config.pbtxt: inputs and outputs from the manifest (without the batch
    dimension, which `max_batch_size` adds), dynamic batching, an instance group."""
    if backend not in BACKENDS:
        raise BundleError(f"backend {backend!r}: choose from {', '.join(BACKENDS)}")
    if kind not in KINDS:
        raise BundleError(f"kind {kind!r}: choose from {', '.join(KINDS)}")
    if max_batch < 1 or instances < 1:
        raise BundleError("max batch and instances must be at least 1")
    m = bundle.manifest
    dims = (3, m.input.height, m.input.width) if m.input.layout == "NCHW" else (
        m.input.height, m.input.width, 3)
    return "\n".join([
        f'name: "{name}"',
        f'backend: "{backend}"',
        f"max_batch_size: {max_batch}",
        "input [",
        f'  {{ name: "{m.input.name}" data_type: TYPE_FP32 dims: [ {_list(dims)} ] }}',
        "]",
        "output [",
        f'  {{ name: "{m.output.name}" data_type: TYPE_FP32 dims: [ {m.output.classes} ] }}',
        "]",
        "dynamic_batching { }",
        f"instance_group [ {{ count: {instances} kind: {KINDS[kind]} }} ]",
        "",
    ])


def masked_config(bundle: Bundle, name: str, align_corners: bool, instances: int = 1,
                  kind: str = "cpu") -> str:
    """A masked scorer's config.pbtxt: one image (1×3×H×W) and a batch of h×w maps per
    request (no batching across requests: each request has its own image)."""
    m = bundle.manifest
    return "\n".join([
        f'name: "{name}"',
        'backend: "python"',
        "max_batch_size: 0",
        "input [",
        f'  {{ name: "{IMAGE}" data_type: TYPE_FP32 dims: [ 1, 3, {m.input.height}, '
        f"{m.input.width} ] }},",
        f'  {{ name: "{maps_input(align_corners)}" data_type: TYPE_FP32 dims: [ -1, '
        f"{m.activation.height}, {m.activation.width} ] }}",
        "]",
        "output [",
        f'  {{ name: "{m.output.name}" data_type: TYPE_FP32 dims: [ -1, {m.output.classes} ] }}',
        "]",
        f"instance_group [ {{ count: {instances} kind: {KINDS[kind]} }} ]",
        "",
    ])


def _list(values: tuple[int, ...]) -> str:
    return ", ".join(str(v) for v in values)


def write_repository(bundle: Bundle | str | Path, out: str | Path, name: str = "classifier",
                     backend: str = "python", max_batch: int = 64, instances: int = 1,
                     kind: str = "cpu", force: bool = False, masked: bool = False) -> Path:
    """Write (or, with `force`, replace) `out/name/`: config.pbtxt and version 1 holding
    model.onnx with its weights, plus model.py for the Python backend. With `masked`, also
    the masked scorers `name-masked` (half-pixel upsampling: the paper's and torch-cam's
    presets) and `name-masked-aligned` (align corners: pytorch-grad-cam's), run in the
    Python backend. Returns the classifier's folder."""
    bundle = bundle if isinstance(bundle, Bundle) else Bundle.load(Path(bundle))
    target = Path(out) / name
    if target.exists() and not force:
        raise BundleError(f"{target} exists (use force to replace it)")
    config = classifier_config(bundle, name, backend, max_batch, instances, kind)
    Path(out).mkdir(parents=True, exist_ok=True)
    if masked:
        for align, suffix in ((False, "masked"), (True, "masked-aligned")):
            _write_masked(bundle, Path(out) / f"{name}-{suffix}", align, instances, kind)
    with staged_folder(target) as staging:
        version = staging / "1"
        version.mkdir(parents=True)
        shutil.copyfile(bundle.model_path, version / "model.onnx")
        weights = bundle.manifest.weights
        if weights:
            shutil.copyfile(bundle.path / weights, version / weights)
        if backend == "python":
            source = files("scorecam_onnx.triton").joinpath("onnx_model.py").read_text()
            (version / "model.py").write_text(source, encoding="utf-8")
        (staging / "config.pbtxt").write_text(config, encoding="utf-8")
    return target


def _write_masked(bundle: Bundle, target: Path, align: bool, instances: int, kind: str) -> None:
    m = bundle.manifest
    graph = masked_scorer_graph(onnx.load(str(bundle.model_path)), m.input.name,
                                (m.input.height, m.input.width), align)
    with staged_folder(target) as staging:
        version = staging / "1"
        version.mkdir(parents=True)
        onnx.save(graph, str(version / "model.onnx"), save_as_external_data=True,
                  all_tensors_to_one_file=True, location="weights.bin", size_threshold=1024)
        source = files("scorecam_onnx.triton").joinpath("onnx_model.py").read_text()
        (version / "model.py").write_text(source, encoding="utf-8")
        (staging / "config.pbtxt").write_text(
            masked_config(bundle, target.name, align, instances, kind), encoding="utf-8")
