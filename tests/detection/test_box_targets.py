"""Detections as targets: D-RISE and Score-CAM on boxes against plain re-implementations
from their definitions (one masked image at a time, ONNX Runtime sessions of the graphs
themselves, a decoder and similarities written as loops), with the same masks."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from conftest import SAMPLES
from oracles import grad_cam_style, paper
from test_decoders import corners, greedy, iou

from scorecam_onnx import (
    Box,
    DRise,
    EigenCam,
    Explainer,
    ExplainOptions,
    FasterScoreCam,
    ScoreCam,
    TopK,
)
from scorecam_onnx.bundle.detector import write_detector_bundle
from scorecam_onnx.bundle.graphs import load_model
from scorecam_onnx.cam.rise import rise_mask
from scorecam_onnx.detection import Detections, box_score, drise_similarity
from scorecam_onnx.images import boxes_to_original

THRESHOLD = 0.25


def test_the_similarities_by_hand():
    target = Detections(
        np.array([[0.0, 0, 10, 10]]),
        np.array([0.9]),
        np.array([0]),
        np.array([[1.0, 0.0]]),
        np.array([1.0]),
    )
    found = Detections(
        np.array([[5.0, 0, 15, 10], [0, 0, 10, 8]]),
        np.array([0.4, 0.7]),
        np.array([1, 0]),
        np.array([[0.6, 0.8], [0.0, 1.0]]),
        np.array([0.5, 1.0]),
    )
    # IoU 50/150 = 1/3, cosine 0.6, objectness 0.5 → 0.1; IoU 0.8, cosine 0 → 0
    assert drise_similarity(target, found) == pytest.approx([0.1])
    # the best-overlapping box (IoU 0.8 > 0.5, same label): 0.8 + 0.7
    assert box_score(target, found) == pytest.approx([1.5])
    assert box_score(target, found.take([0])) == pytest.approx([0.0])  # IoU 1/3 ≤ 0.5
    none = found.take([])
    assert drise_similarity(target, none) == [0.0] and box_score(target, none) == [0.0]


def plain_detections(session, x: np.ndarray) -> list[tuple]:
    """A YOLOv8 head's detections as ultralytics post-processes them, with each anchor's
    class scores kept: (box, score, label, class vector)."""
    (out,) = session.run(None, {"images": x.astype(np.float32)})
    rows = []
    for anchor in out[0].T:
        label = int(np.argmax(anchor[4:]))
        if anchor[4 + label] > THRESHOLD:
            rows.append(
                (
                    corners(*anchor[:4]),
                    float(anchor[4 + label]),
                    label,
                    anchor[4:].astype(np.float64),
                )
            )
    return greedy(rows, 0.7)


def plain_drise(target: tuple, found: list[tuple]) -> float:
    best = 0.0
    for box, _, _, vector in found:
        cosine = float(target[3] @ vector / np.linalg.norm(target[3]) / np.linalg.norm(vector))
        best = max(best, iou(target[0], box) * cosine * 1.0)
    return best


def plain_box_score(target: tuple, found: list[tuple]) -> float:
    if not found:
        return 0.0
    overlaps = [iou(target[0], f[0]) for f in found]
    best = int(np.argmax(overlaps))
    return (
        overlaps[best] + found[best][1]
        if (overlaps[best] > 0.5 and found[best][2] == target[2])
        else 0.0
    )


def test_drise_matches_its_definition_and_every_detection_shares_the_forwards(detectors):
    ex = Explainer(detectors["yolov8"])
    session = ort.InferenceSession(str(detectors["yolov8"]))
    rgb, x = ex.preprocess(SAMPLES / "chelsea.png")
    targets = plain_detections(session, x)[:3]
    got = ex.explain(rgb, TopK(3), DRise(samples=40), ExplainOptions(batch_size=6))
    size = x.shape[2:]
    total = [np.zeros(size) for _ in targets]
    for i in range(40):
        mask = rise_mask(i, size, 16, 0.5, 0)
        found = plain_detections(session, x * mask)
        for t, target in enumerate(targets):
            total[t] += plain_drise(target, found) * mask
    assert [e.forwards for e in got] == [41, 41, 41]
    for exp, target, saliency in zip(got, targets, total, strict=True):
        want = (saliency - saliency.min()) / (saliency.max() - saliency.min())
        assert float(np.abs(exp.saliency_input - want).max()) <= 1e-5
        assert exp.class_id == target[2] and exp.score == pytest.approx(target[1])
        np.testing.assert_allclose(
            exp.box,
            boxes_to_original(np.array(target[0]), rgb.shape, ex.forwards.input)[0],
            atol=1e-3,
        )


@pytest.fixture(scope="module")
def detector_bundle(detectors, tmp_path_factory):
    path = detectors["yolov8"]
    return write_detector_bundle(
        load_model(path), path, tmp_path_factory.mktemp("b") / "b", ["features"]
    ).path


def test_scorecam_on_boxes_matches_a_loop_over_the_channels(detector_bundle):
    """The paper's preset scores each masked input by D-RISE's similarity (given to the
    paper's oracle as logits [log s, log(1 − s)], whose softmax is s); pytorch-grad-cam's
    preset by its FasterRCNNBoxScoreTarget score, taken raw as that library does."""
    ex = Explainer(detector_bundle)
    model = ort.InferenceSession(str(detector_bundle / "model.onnx"))
    features = ort.InferenceSession(str(detector_bundle / "features.onnx"))
    rgb, x = ex.preprocess(SAMPLES / "coffee.png")
    (acts,) = features.run(["features"], {"images": x})
    targets = plain_detections(model, x)[:2]

    def similarities(score):
        def run(batch):
            found = [plain_detections(model, image[None]) for image in batch]
            return np.array([[score(t, f) for t in targets] for f in found])

        return run

    def as_logits(batch):
        s = np.clip(similarities(plain_drise)(batch), 0.0, 1.0)
        with np.errstate(divide="ignore"):
            return np.stack(
                [np.log(s[:, 0]), np.log1p(-s[:, 0]), np.log(s[:, 1]), np.log1p(-s[:, 1])], axis=1
            )

    for t, exp in enumerate(ex.explain(rgb, TopK(2), ScoreCam())):
        pair = lambda b, t=t: as_logits(b)[:, 2 * t : 2 * t + 2]  # noqa: E731
        want = paper(x, acts[0], pair, 0)
        assert exp.forwards == 13 and float(np.abs(exp.saliency_input - want).max()) <= 1e-5
    for t, exp in enumerate(ex.explain(rgb, TopK(2), ScoreCam(preset="pytorch-grad-cam"))):
        want = grad_cam_style(x, acts[0], similarities(plain_box_score), t)
        assert float(np.abs(exp.saliency_input - want).max()) <= 1e-5


def test_given_boxes_and_the_cheaper_relatives(detector_bundle):
    ex = Explainer(detector_bundle)
    [best] = ex.detect(SAMPLES / "coffee.png")[:1]
    [given] = ex.explain(SAMPLES / "coffee.png", Box(*best.box), ScoreCam())
    [found] = ex.explain(SAMPLES / "coffee.png", TopK(1), ScoreCam())
    # a box given without its class takes the class vector of the detection it overlaps
    assert given.class_id == found.class_id and given.score == pytest.approx(found.score)
    assert float(np.abs(given.saliency_input - found.saliency_input).max()) <= 1e-4
    [other] = ex.explain(
        SAMPLES / "coffee.png", Box(*best.box, class_id=1 - min(best.class_id, 1)), ScoreCam()
    )
    assert other.class_id != best.class_id
    eigen = ex.explain(SAMPLES / "coffee.png", TopK(2), EigenCam())
    assert [e.forwards for e in eigen] == [1, 1]  # no masked forward; class-agnostic
    assert np.array_equal(eigen[0].saliency, eigen[1].saliency)
    faster = ex.explain(SAMPLES / "coffee.png", TopK(2), FasterScoreCam(channels=4))
    assert [e.forwards for e in faster] == [5, 5]


def test_evaluate_scores_a_detector_by_its_best_detection(detector_bundle):
    """Average Drop and the deletion curve of a detector's map: the best detection's D-RISE
    similarity with the detections of the image times the map, and of the image with its
    most salient pixels zeroed, both computed here from the graph itself."""
    from scorecam_onnx.evaluation.faithfulness import EvaluationPlan, evaluate

    ex = Explainer(detector_bundle)
    model = ort.InferenceSession(str(detector_bundle / "model.onnx"))
    rgb, x = ex.preprocess(SAMPLES / "coffee.png")
    best = plain_detections(model, x)[0]
    plan = EvaluationPlan(["scorecam"], (), ("deletion",), step_fraction=0.25)
    [row] = evaluate(ex, [SAMPLES / "coffee.png"], plan).rows
    [exp] = ex.explain(rgb, TopK(1), ScoreCam())
    assert (exp.box, exp.class_id) == (ex.detect(rgb)[0].box, best[2])
    score = lambda image: plain_drise(best, plain_detections(model, image))  # noqa: E731
    clean, masked = score(x), score(x * exp.saliency_input[None, None])
    assert row.average_drop == pytest.approx(max(0.0, clean - masked) / clean * 100, abs=1e-4)
    order = np.argsort(-exp.saliency_input.ravel(), kind="stable")
    curve = []
    for step in range(5):
        keep = np.ones(64 * 64, np.float32)
        keep[order[: round(step * 0.25 * 64 * 64)]] = 0.0
        curve.append(score(x * keep.reshape(64, 64)))
    np.testing.assert_allclose(row.deletion_curve, curve, atol=1e-5)
