"""A detector on every surface: the command line (overlays with boxes, a JSON of the
detections, one line per bad input while the others go on) and the service over real HTTP
(V2 boxes, classes, scores and maps per detection; V1 predictions and explanations), each
equal to the Python API in process."""

from __future__ import annotations

import base64
import json

import cv2
import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from conftest import SAMPLES
from serving import Server

from scorecam_onnx import Box, DRise, Explainer, ExplainOptions
from scorecam_onnx.cli import main

CHELSEA, COFFEE = SAMPLES / "chelsea.png", SAMPLES / "coffee.png"


def run(*args: str):
    return CliRunner().invoke(main, [*args, "--provider", "cpu", "-q"])


def test_explain_writes_each_detection_with_its_box(detectors, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    out = tmp_path / "out"
    result = run(
        "explain",
        str(CHELSEA),
        str(broken),
        str(COFFEE),
        "--model",
        str(detectors["yolov8"]),
        "--method",
        "drise",
        "--samples",
        "30",
        "--max-detections",
        "2",
        "--out",
        str(out),
    )
    assert result.exit_code == 1 and "broken.png" in result.output
    ex = Explainer(detectors["yolov8"])
    want = ex.explain(CHELSEA, None, DRise(samples=30), ExplainOptions(max_detections=2))
    summary = json.loads((out / "chelsea.json").read_text())
    assert [d["box"] for d in summary["detections"]] == [[round(v, 2) for v in e.box] for e in want]
    for i, exp in enumerate(want):
        assert np.array_equal(np.load(out / f"chelsea.d{i}.npy"), exp.saliency)
        overlay = cv2.imread(str(out / f"chelsea.d{i}.png"))[..., ::-1]
        x1, y1, _, y2 = (round(v) for v in exp.box)
        assert (overlay[y1 + 1 : y2, x1] == 255).all()  # the box's white left edge
    assert (out / "coffee.d1.json").is_file()


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--box", "0,0,999,10"], "the box 0,0,999,10 lies outside the 451×300 image"),
        (["--class", "1"], "no detection of class 1 above the score threshold"),
        (["--score-threshold", "0.99"], "no detection above the score threshold"),
        (["--class", "7"], "class id 7 is out of range (0 to 2)"),
    ],
)
def test_a_bad_target_fails_that_image_in_one_line(detectors, tmp_path, args, reason):
    result = run(
        "explain",
        str(CHELSEA),
        "--model",
        str(detectors["yolov8"]),
        "--method",
        "drise",
        "--samples",
        "4",
        "--out",
        str(tmp_path),
        *args,
    )
    assert result.exit_code == 1 and f"chelsea.png: {reason}" in result.output
    assert "Traceback" not in result.output


def test_what_a_detector_cannot_run_is_refused_before_any_image(detectors, tmp_path):
    missing = str(tmp_path / "missing.png")
    result = run("explain", missing, "--model", str(detectors["yolov8"]), "--method", "reciprocam")
    assert result.exit_code == 2 and "reciprocam does not explain object detectors" in (
        result.output
    )
    result = run("explain", missing, "--model", str(detectors["yolov8"]))
    assert result.exit_code == 1 and "or use --method drise" in result.output
    result = run(
        "explain",
        missing,
        "--model",
        str(detectors["yolov8"]),
        "--method",
        "drise",
        "--box",
        "0,0,5,5,3",
    )
    assert result.exit_code == 2 and "class id 3 is out of range" in result.output


def test_a_graph_that_fits_no_layout_is_one_line(tmp_path):
    inp = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 3, 8, 8])
    outs = [onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in ("a", "b")]
    nodes = [
        onnx.helper.make_node("ReduceMean", ["x"], ["a"], axes=[2, 3], keepdims=0),
        onnx.helper.make_node("ReduceMax", ["x"], ["b"], axes=[2, 3], keepdims=0),
    ]
    graph = onnx.helper.make_graph(nodes, "g", [inp], outs)
    path = tmp_path / "odd.onnx"
    onnx.save(
        onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 13)]), str(path)
    )
    result = run("explain", str(CHELSEA), "--model", str(path), "--method", "drise")
    assert result.exit_code == 1 and "fit no known layout: choose one with --decoder" in (
        result.output
    )
    assert len(result.output.strip().splitlines()) == 1


def test_split_writes_a_detector_bundle_with_its_layer(detectors, tmp_path):
    out = tmp_path / "bundle"
    result = CliRunner().invoke(
        main, ["split", str(detectors["yolov5"]), "--layer", "features", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "a yolov5 detector, layer features (12×16×16), 3 classes" in result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["decoder"] == {"kind": "yolov5", "outputs": ["output0"], "iou": 0.45}
    assert manifest["input"]["resize"] == "letterbox"
    described = CliRunner().invoke(main, ["info", str(out)]).output
    assert "output0: a yolov5 detector, 3 classes, NMS at IoU 0.45" in described
    listed = CliRunner().invoke(main, ["layers", str(detectors["torchvision"])]).output
    assert "features " in listed and "several outputs" not in listed
    result = run(
        "explain",
        str(COFFEE),
        "--model",
        str(out),
        "--method",
        "scorecam",
        "--top-k",
        "1",
        "--out",
        str(tmp_path / "o"),
    )
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def server(detectors):
    srv = Server("--model", f"yolo={detectors['yolov8']}", "--classifiers")
    yield srv
    srv.stop()


def test_the_service_answers_boxes_and_maps_per_detection(server, detectors):
    local = Explainer(detectors["yolov8"])
    data = COFFEE.read_bytes()
    body = {
        "parameters": {"method": "drise", "samples": 20, "max_detections": 3},
        "inputs": [
            {
                "name": "image",
                "datatype": "BYTES",
                "shape": [1],
                "data": [base64.b64encode(data).decode()],
            }
        ],
    }
    reply = server.client.post("/v2/models/yolo/infer", json=body)
    assert reply.status_code == 200, reply.text
    out = {o["name"]: o for o in reply.json()["outputs"]}
    assert set(out) == {"boxes", "class_id", "score", "saliency"}
    want = local.explain(data, None, DRise(samples=20), ExplainOptions(max_detections=3))
    boxes = np.asarray(out["boxes"]["data"], np.float32).reshape(out["boxes"]["shape"])
    np.testing.assert_allclose(boxes[0], [e.box for e in want], rtol=1e-5)
    assert out["class_id"]["data"] == [e.class_id for e in want]
    saliency = np.asarray(out["saliency"]["data"], np.float32).reshape(1, 3, 64, 64)
    for t, exp in enumerate(want):
        assert saliency[0, t].tobytes() == exp.saliency_input.tobytes()
    meta = server.client.get("/v2/models/yolo").json()
    assert [o["name"] for o in meta["outputs"]] == ["boxes", "class_id", "score", "saliency"]
    asked = {**body, "outputs": [{"name": "probabilities"}]}
    refused = server.client.post("/v2/models/yolo/infer", json=asked)
    assert refused.status_code == 400 and "no output 'probabilities'" in refused.text
    v1 = server.client.post(
        "/v1/models/yolo:explain",
        json={
            "instances": [{"b64": base64.b64encode(data).decode()}],
            "parameters": {"method": "drise", "samples": 20, "box": list(want[0].box)},
        },
    )
    assert v1.status_code == 200, v1.text
    payload = v1.json()
    assert payload["predictions"][0]["detections"][0]["box"] == [round(v, 2) for v in want[0].box]
    [given] = local.explain(data, Box(*want[0].box), DRise(samples=20))
    explained = payload["explanations"][0]  # one box given: one explanation
    assert explained["box"] == [round(v, 2) for v in given.box]
    assert explained["class_id"] == given.class_id
    every = server.client.post(
        "/v1/models/yolo:explain",
        json={
            "instances": [{"b64": base64.b64encode(data).decode()}],
            "parameters": {"method": "drise", "samples": 20, "max_detections": 3},
        },
    ).json()
    assert [e["box"] for e in every["explanations"][0]] == [
        [round(v, 2) for v in e.box] for e in want
    ]


def test_forwards_sent_to_a_served_detector_give_the_same_maps(server, detectors):
    """`serve --classifiers` serves the detector's raw outputs as a V2 tensor model; an
    explainer whose forwards go there decodes them as it does in process."""
    from scorecam_onnx import Runtime

    local = Explainer(detectors["yolov8"])
    remote = Explainer(
        detectors["yolov8"],
        Runtime(provider="cpu", model_url=f"{server.url.rstrip('/')}/v2/models/yolo-classifier"),
    )
    assert remote.provider == "remote"
    got = remote.explain(CHELSEA, None, DRise(samples=16), ExplainOptions(max_detections=2))
    want = local.explain(CHELSEA, None, DRise(samples=16), ExplainOptions(max_detections=2))
    assert [g.box for g in got] == [w.box for w in want]
    for g, w in zip(got, want, strict=True):
        assert float(np.abs(g.saliency - w.saliency).max()) <= 1e-5


def test_decoder_flag_forces_a_plain_detectors_layout(detectors, tmp_path):
    args = [
        "explain",
        str(CHELSEA),
        "--model",
        str(detectors["yolov8"]),
        "--method",
        "drise",
        "--samples",
        "4",
        "--out",
        str(tmp_path),
    ]
    assert run(*args, "--decoder", "yolov8").exit_code == 0
    refused = run(*args, "--decoder", "detr")
    assert refused.exit_code == 1 and "output0 1×7×256) fit no known layout" in refused.output
    bundle = run("explain", str(CHELSEA), "--decoder", "yolov8", "--out", str(tmp_path))
    assert bundle.exit_code == 2 and "--decoder: only for a plain .onnx model" in bundle.output
