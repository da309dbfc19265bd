"""An INT8 copy of a detector bundle: its model graph quantised (QDQ), and its fidelity
report measured on the float32 model's best detection, as the plain similarity of
`test_box_targets` computes it."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import SAMPLES
from test_box_targets import plain_detections, plain_drise

from scorecam_onnx import Explainer, ScoreCam, TopK
from scorecam_onnx.bundle.detector import write_detector_bundle
from scorecam_onnx.bundle.graphs import load_model
from scorecam_onnx.quantize import quantize_bundle


def test_an_int8_detector_bundle_and_its_report(detectors, tmp_path):
    path = detectors["yolov8"]
    write_detector_bundle(load_model(path), path, tmp_path / "f32", ["features"])
    images = [SAMPLES / "chelsea.png", SAMPLES / "coffee.png"]
    report = quantize_bundle(tmp_path / "f32", tmp_path / "i8", "int8", calibrate=images)
    ops = {n.op_type for n in onnx.load(str(tmp_path / "i8" / "model.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert json.loads((tmp_path / "i8" / "manifest.json").read_text())["decoder"]["kind"] == (
        "yolov8"
    )
    floating = Explainer(tmp_path / "f32")
    session = ort.InferenceSession(str(tmp_path / "f32" / "model.onnx"))
    full, masked = [], []
    for image in images:
        rgb, x = floating.preprocess(image)
        best = plain_detections(session, x)[0]
        [exp] = floating.explain(rgb, TopK(1), ScoreCam())
        full.append(plain_drise(best, plain_detections(session, x)))
        masked.append(
            plain_drise(best, plain_detections(session, x * exp.saliency_input[None, None]))
        )
    drop = np.mean([max(0.0, f - m) / f for f, m in zip(full, masked, strict=True)]) * 100
    assert report["average_drop"]["float32"] == pytest.approx(drop, abs=1e-4)
    converted = Explainer(tmp_path / "i8")
    assert converted.explain(SAMPLES / "coffee.png", TopK(1))[0].box is not None
    assert [r["top1_float32"] for r in report["images"]] == [
        int(floating.detect(i)[0].class_id) for i in images
    ]
