"""INT8 and FP16 bundles, with their fidelity to the float32 bundle measured on images.

INT8 is ONNX Runtime's static quantization (QDQ, per-channel weights, after its
pre-processing step), calibrated on the user's images passed through the bundle's own
preprocessing. FP16 converts weights and compute with onnxconverter-common, keeping float32
inputs and outputs. Only the graphs named are converted (the full model by default: the masked
forwards run it); the others stay float32 and keep sharing the weights file.
"""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from . import metrics
from .bundle import TAIL_NAME, Bundle
from .bundle.manifest import MANIFEST_NAME
from .errors import BundleError, ImageError
from .evaluation.bench import floor_seconds
from .evaluation.faithfulness import reference_of
from .explainer import Explainer
from .fileio import sha256, staged_folder, write_text_atomic
from .methods import as_method
from .options import no_layer
from .runtime import Runtime

FIDELITY_NAME = "fidelity.json"
GRAPHS = ("model", "features", "tail")
# Calibration below this many images works, but the activation ranges are a guess.
ADVISED_CALIBRATION = 16


def quantize_bundle(
    source: str | Path,
    out: str | Path,
    mode: str,
    calibrate: Sequence[Path] = (),
    check: Sequence[Path] = (),
    graphs: Sequence[str] = ("model",),
    method: str = "scorecam",
    force: bool = False,
    on_step: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Write an INT8 or FP16 copy of a bundle and its `fidelity.json`; return the report.

    Args:
        source: the float32 bundle.
        out: the new bundle folder.
        mode: "int8" or "fp16".
        calibrate: images whose activations set the INT8 ranges (at least one; 16 or more
            advised). Also measured in the report.
        check: further images for the report only (ones the calibration did not see).
        graphs: which graphs to convert: "model", "features", "tail".
        method: the method whose maps are compared. Default: exact Score-CAM.
    """
    say = on_step or (lambda text: None)
    if mode not in ("int8", "fp16"):
        raise ValueError(f"mode must be int8 or fp16, got {mode!r}")
    unknown = [g for g in graphs if g not in GRAPHS]
    if unknown or not graphs:
        raise ValueError(f"graphs must be among {', '.join(GRAPHS)}, got {list(graphs)}")
    if mode == "int8" and not calibrate:
        raise ValueError("INT8 needs calibration images (--calibrate)")
    target = Path(out)
    if target.exists() and not force:
        raise BundleError(f"{target}: already exists (use --force to replace it)")
    floating = Explainer(source, Runtime(provider="cpu"))
    _check_convertible(floating, graphs, method)
    calibration = [_load(floating, p, "calibration") for p in calibrate]
    checks = [_load(floating, p, "check") for p in check]
    with staged_folder(target) as staging:
        shutil.copytree(floating.bundle.path, staging)
        (staging / FIDELITY_NAME).unlink(missing_ok=True)
        for graph in graphs:
            say(f"{mode}: {graph} graph")
            path = _graph_path(floating.bundle, graph)
            inputs = _graph_inputs(floating, graph, [x for _, x in calibration])
            _convert(path, staging / path.name, mode, inputs)
        _rewrite_manifest(floating.bundle, staging, mode, graphs, len(calibration))
        say("fidelity")
        converted = Explainer(staging, Runtime(provider="cpu"))
        report = fidelity(floating, converted, calibration, checks, method, mode)
        report["calibration_images"] = len(calibration)
        if mode == "int8" and len(calibration) < ADVISED_CALIBRATION:
            report["note"] = (
                f"calibrated on {len(calibration)} images; "
                f"{ADVISED_CALIBRATION} or more are advised"
            )
        write_text_atomic(staging / FIDELITY_NAME, json.dumps(report, indent=2) + "\n")
    report["bundle"] = str(target)
    return report


def _load(explainer: Explainer, path: Path, role: str) -> tuple[str, np.ndarray]:
    try:
        return str(path), explainer.preprocess(path)[1]
    except ImageError as exc:
        raise ImageError(f"{role} image: {exc.reason}", exc.source) from None


def _graph_path(bundle: Bundle, graph: str) -> Path:
    if graph == "tail":
        return bundle.path / TAIL_NAME
    if graph == "features":
        if bundle.features_path is None:
            raise BundleError(no_layer(bundle.path))
        return bundle.features_path
    return bundle.model_path


def _graph_inputs(
    explainer: Explainer, graph: str, images: list[np.ndarray]
) -> list[dict[str, np.ndarray]]:
    """Calibration feeds of a graph: preprocessed images, or activations for the tail."""
    m = explainer.bundle.manifest
    if graph == "tail":
        if m.activation is None:
            raise BundleError(no_layer(explainer.bundle.path))
        return [{m.activation.name: explainer.forwards.raw_activations(x)} for x in images]
    feed = [x.transpose(0, 2, 3, 1) if m.input.layout == "NHWC" else x for x in images]
    return [{m.input.name: np.ascontiguousarray(x)} for x in feed]


def _convert(source: Path, target: Path, mode: str, inputs: list[dict[str, np.ndarray]]) -> None:
    """Convert one graph into a self-contained file (its weights inside)."""
    with tempfile.TemporaryDirectory() as tmp:
        if mode == "fp16":
            from onnxconverter_common import float16

            model = onnx.load(str(source))
            try:
                half = float16.convert_float_to_float16(model, keep_io_types=True)
            except Exception as exc:  # noqa: BLE001 - the converter raises many kinds
                raise BundleError(f"{source.name}: FP16 conversion failed: {exc}") from None
            onnx.save(half, str(target))
            return
        from onnxruntime.quantization import (
            CalibrationDataReader,
            QuantFormat,
            QuantType,
            quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self.items = iter(inputs)

            def get_next(self) -> dict[str, np.ndarray] | None:
                return next(self.items, None)

        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared))
        quantize_static(
            str(prepared),
            str(target),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )


def _rewrite_manifest(
    bundle: Bundle, folder: Path, mode: str, graphs: Sequence[str], calibration: int
) -> None:
    """Checksums of the new files, and where the bundle came from; an unused weights file
    is dropped."""
    m = bundle.manifest
    names = [name for name in (m.features, m.model, m.tail) if name]
    uses_weights = any(_external(folder / name) for name in names)
    weights = m.weights if uses_weights else None
    if m.weights and not uses_weights:
        (folder / m.weights).unlink(missing_ok=True)
    files = names + ([weights] if weights else [])
    source = {
        **m.source,
        "precision": mode,
        "converted": ",".join(graphs),
        "converted_from": f"{bundle.path.name} ({m.checksums.get(m.model, '?')[:19]})",
    }
    if mode == "int8":
        source["calibration_images"] = str(calibration)
    manifest = replace(
        m, weights=weights, source=source, checksums={name: sha256(folder / name) for name in files}
    )
    write_text_atomic(folder / MANIFEST_NAME, manifest.dumps())


def _external(path: Path) -> bool:
    model = onnx.load(str(path), load_external_data=False)
    return any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)


def _check_convertible(floating: Explainer, graphs: Sequence[str], method: str) -> None:
    """Refuse a bundle that is converted already, or lacks a graph asked for."""
    precision = floating.bundle.manifest.source.get("precision")
    if precision:
        raise BundleError(
            f"{floating.bundle.path} is already an {precision} bundle: convert "
            "the float32 bundle it came from"
        )
    floating.bundle.require_folder("converting")
    if "features" in graphs and floating.forwards.features is None:
        raise BundleError(
            f"{floating.bundle.path} is a model-only bundle: no features graph to convert"
        )
    if floating.forwards.features is None and as_method(method).needs_layer:
        raise BundleError(
            f"{floating.bundle.path} is a model-only bundle: compare its maps with --method rise"
        )
    if "tail" in graphs and floating.forwards.tail is None:
        raise BundleError(f"{floating.bundle.path} has no tail graph to convert")


def fidelity(
    floating: Explainer,
    converted: Explainer,
    calibration: Sequence[tuple],
    check: Sequence[tuple],
    method: str,
    mode: str,
) -> dict[str, Any]:
    """How closely `converted` follows `floating` on the images (path, input) given."""
    rows = []
    drops: dict[str, list[list[float]]] = {"float32": [[], []], mode: [[], []]}
    insertion: dict[str, list[float]] = {"float32": [], mode: []}
    for role, images in (("calibration", calibration), ("check", check)):
        for path, x in images:
            maps, tops = {}, {}
            reference = reference_of(floating, x)
            for name, ex in (("float32", floating), (mode, converted)):
                tops[name] = reference_of(ex, x).top
                score = reference.scorer(ex.forwards)
                res = ex.explain(path, reference.target, method)[0]
                small = res.saliency_input
                maps[name] = res.saliency
                drops[name][0].append(float(score(x)[0, reference.column]))
                masked = score(x * small[None, None])
                drops[name][1].append(float(masked[0, reference.column]))
                curve = metrics.causal_curve(
                    score, x, small, reference.column, "insertion", 0.05, ex.batch_size
                )
                insertion[name].append(metrics.area_under_curve(curve))
            rows.append(
                {
                    "image": path,
                    "role": role,
                    "top1_float32": tops["float32"],
                    f"top1_{mode}": tops[mode],
                    "agree": tops["float32"] == tops[mode],
                    "correlation": _correlation(maps["float32"], maps[mode]),
                }
            )
    forwards = 64
    timings = {
        name: statistics.median(floor_seconds(ex, forwards, 8, seed) for seed in range(3))
        for name, ex in (("float32", floating), (mode, converted))
    }
    sizes = {
        name: sum(
            f.stat().st_size
            for f in ex.bundle.path.iterdir()
            if f.is_file() and f.name != FIDELITY_NAME
        )
        for name, ex in (("float32", floating), (mode, converted))
    }
    correlations = [r["correlation"] for r in rows]
    return {
        "mode": mode,
        "method": method,
        "images": rows,
        "top1_agreement": sum(r["agree"] for r in rows) / len(rows) if rows else None,
        "correlation_mean": float(np.mean(correlations)) if rows else None,
        "correlation_worst": float(np.min(correlations)) if rows else None,
        "average_drop": {k: metrics.average_drop(v[0], v[1]) for k, v in drops.items()},
        "insertion": {k: float(np.mean(v)) if v else None for k, v in insertion.items()},
        "forward_seconds": timings,
        "forward_ratio": timings[mode] / timings["float32"],
        "bytes": sizes,
        "size_ratio": sizes[mode] / sizes["float32"],
    }


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    if a.std() == 0 or b.std() == 0:
        return 1.0 if np.array_equal(a, b) else 0.0
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def format_fidelity(report: dict[str, Any]) -> str:
    """The report as a short table."""
    mode = report["mode"]
    lines = [f"{'image':<40} {'role':<12} {'top-1 f32':>9} {f'top-1 {mode}':>10} {'map corr.':>9}"]
    for r in report["images"]:
        lines.append(
            f"{Path(r['image']).name[:40]:<40} {r['role']:<12} "
            f"{r['top1_float32']:>9} {r[f'top1_{mode}']:>10} {r['correlation']:>9.4f}"
        )
    if not report["images"]:  # nothing measured: FP16 without --calibrate or --check
        lines = [
            "no image measured (give --check IMAGE to measure the maps)",
            f"forward time ratio {report['forward_ratio']:.2f} ({mode} ÷ float32, batch 8); "
            f"size ratio {report['size_ratio']:.2f}",
        ]
        return "\n".join(lines)
    lines += [
        "",
        f"top-1 agreement {report['top1_agreement']:.2f}; {report['method']} map correlation "
        f"mean {report['correlation_mean']:.4f}, worst {report['correlation_worst']:.4f}",
        f"Average Drop float32 {report['average_drop']['float32']:.1f}, {mode} "
        f"{report['average_drop'][mode]:.1f}; Insertion float32 "
        f"{report['insertion']['float32']:.3f}, {mode} {report['insertion'][mode]:.3f}",
        f"forward time ratio {report['forward_ratio']:.2f} ({mode} ÷ float32, batch 8); "
        f"size ratio {report['size_ratio']:.2f}",
    ]
    if report.get("note"):
        lines.append(f"note: {report['note']}")
    return "\n".join(lines)
