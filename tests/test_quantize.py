"""INT8 and FP16 bundles: written, explained through every method, and their fidelity report
checked against numbers recomputed here."""

from __future__ import annotations

import json

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from conftest import DEFAULT_BUNDLE, SAMPLES

from scorecam_onnx import Bundle, Explainer, Runtime, method_from
from scorecam_onnx.cli import main
from scorecam_onnx.methods import METHODS

RNG = np.random.default_rng(41)


def _images(folder, count):
    folder.mkdir()
    for i in range(count):
        cv2.imwrite(str(folder / f"c{i}.png"), RNG.integers(0, 256, (8, 8, 3), np.uint8))
    return folder


@pytest.fixture(scope="module")
def int8_default(tmp_path_factory):
    root = tmp_path_factory.mktemp("q")
    flipped = root / "flipped.png"
    cv2.imwrite(str(flipped), cv2.imread(str(SAMPLES / "chelsea.png"))[:, ::-1])
    result = CliRunner().invoke(
        main,
        [
            "quantize",
            str(DEFAULT_BUNDLE),
            "--out",
            str(root / "int8"),
            "--int8",
            "--calibrate",
            str(SAMPLES),
            "--check",
            str(flipped),
            "--method",
            "faster-scorecam",
        ],
    )
    assert result.exit_code == 0, result.output
    return root / "int8", flipped, result.output


def test_int8_report_matches_an_independent_computation(int8_default):
    path, flipped, output = int8_default
    report = json.loads((path / "fidelity.json").read_text())
    images = [SAMPLES / "chelsea.png", SAMPLES / "coffee.png", flipped]
    assert [r["image"] for r in report["images"]] == [str(p) for p in images]
    assert [r["role"] for r in report["images"]] == ["calibration", "calibration", "check"]
    floating = Explainer(DEFAULT_BUNDLE, Runtime(provider="cpu"))
    sessions = {
        name: ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
        for name, folder in (("float32", DEFAULT_BUNDLE), ("int8", path))
    }
    converted = Explainer(path, Runtime(provider="cpu"))
    correlations = []
    for row, image in zip(report["images"], images, strict=True):
        x = floating.preprocess(image)[1]
        tops = {name: int(np.argmax(s.run(None, {"input": x})[0])) for name, s in sessions.items()}
        assert (row["top1_float32"], row["top1_int8"]) == (tops["float32"], tops["int8"])
        a = floating.explain_one(image, tops["float32"], "faster-scorecam").saliency
        b = converted.explain_one(image, tops["float32"], "faster-scorecam").saliency
        correlations.append(float(np.corrcoef(a.ravel(), b.ravel())[0, 1]))
    np.testing.assert_allclose(
        [r["correlation"] for r in report["images"]], correlations, rtol=1e-6
    )
    assert report["correlation_worst"] == pytest.approx(min(correlations))
    assert report["top1_agreement"] == pytest.approx(
        np.mean([r["top1_float32"] == r["top1_int8"] for r in report["images"]])
    )
    sizes = [
        sum(f.stat().st_size for f in folder.iterdir() if f.is_file() and f.name != "fidelity.json")
        for folder in (DEFAULT_BUNDLE, path)
    ]
    assert report["size_ratio"] == pytest.approx(sizes[1] / sizes[0])
    assert report["note"] == "calibrated on 2 images; 16 or more are advised"
    assert "top-1 agreement" in output and "map correlation" in output


def test_int8_bundle_records_itself_and_explains_with_every_method(int8_default):
    path, _, _ = int8_default
    bundle = Bundle.load(path)  # checksums verified
    assert bundle.manifest.source["precision"] == "int8"
    assert bundle.manifest.source["calibration_images"] == "2"
    graph = onnx.load(str(path / "model.onnx"), load_external_data=False)
    assert any(n.op_type == "QuantizeLinear" for n in graph.graph.node)
    explainer = Explainer(bundle, Runtime(provider="cpu"))
    for method in (name for name, cls in METHODS.items() if not cls.detectors_only):
        res = explainer.explain_one(
            SAMPLES / "coffee.png", method=method_from(method, samples=2, channels=8)
        )
        assert res.saliency.shape == (400, 600) and np.isfinite(res.saliency).all()
    info = CliRunner().invoke(main, ["info", str(path)])
    assert "fidelity int8: top-1 agreement" in info.output
    again = CliRunner().invoke(
        main, ["quantize", str(path), "--out", str(path.parent / "x"), "--fp16"]
    )
    assert again.exit_code == 1 and "is already an int8 bundle" in again.output


def test_converting_every_graph_drops_the_shared_weights(tmp_path, tiny_bundle):
    images = _images(tmp_path / "cal", 3)
    result = CliRunner().invoke(
        main,
        [
            "quantize",
            str(tiny_bundle.path),
            "--out",
            str(tmp_path / "q"),
            "--int8",
            "--calibrate",
            str(images),
            "--graphs",
            "model,features,tail",
        ],
    )
    assert result.exit_code == 0, result.output
    bundle = Bundle.load(tmp_path / "q")
    assert bundle.manifest.weights is None or not (tmp_path / "q" / "weights.bin").exists()
    assert Explainer(bundle, Runtime(provider="cpu")).explain_one(
        np.zeros((8, 8, 3), np.uint8) + 50, method="reciprocam"
    ).saliency.shape == (8, 8)


def test_fp16_bundle_keeps_float32_inputs_and_outputs(tmp_path, tiny_bundle):
    images = _images(tmp_path / "chk", 2)
    result = CliRunner().invoke(
        main,
        [
            "quantize",
            str(tiny_bundle.path),
            "--out",
            str(tmp_path / "h"),
            "--fp16",
            "--check",
            str(images),
        ],
    )
    assert result.exit_code == 0, result.output
    graph = onnx.load(str(tmp_path / "h" / "model.onnx"))
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in graph.graph.initializer)
    assert graph.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert graph.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    report = json.loads((tmp_path / "h" / "fidelity.json").read_text())
    assert report["mode"] == "fp16" and len(report["images"]) == 2
    assert report["correlation_worst"] > 0.99


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--int8"], 2, "--int8 needs --calibrate PATH"),
        ([], 2, "choose --int8 or --fp16"),
        (["--int8", "--calibrate", "BAD"], 1, "calibration image: not an image OpenCV can decode"),
        (["--int8", "--calibrate", "missing.png"], 1, "--calibrate: missing.png: no such file"),
        (["--fp16", "--graphs", "head"], 1, "graphs must be among model, features, tail"),
    ],
)
def test_bad_quantize_requests(tmp_path, tiny_bundle, args, code, message):
    bad = tmp_path / "bad.png"
    bad.write_text("not a picture")
    args = [
        str(bad) if a == "BAD" else str(tmp_path / a) if a == "missing.png" else a for a in args
    ]
    result = CliRunner().invoke(
        main, ["quantize", str(tiny_bundle.path), "--out", str(tmp_path / "o"), *args]
    )
    assert result.exit_code == code, result.output
    assert message in result.output.replace(str(tmp_path) + "/", "")
    assert not (tmp_path / "o").exists()


def test_fp16_without_images_writes_the_bundle_and_says_nothing_was_measured(tmp_path, tiny_bundle):
    out = tmp_path / "half"
    result = CliRunner().invoke(
        main, ["quantize", str(tiny_bundle.path), "--out", str(out), "--fp16"]
    )
    assert result.exit_code == 0, result.output
    assert "no image measured" in result.output and "Traceback" not in result.output
    assert Bundle.load(out).manifest.model == "model.onnx"
