"""Faithfulness metrics against hand computations on a model that sees one quadrant."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
from builders import quadrant_model
from click.testing import CliRunner

from scorecam_onnx import Explainer, Runtime, metrics
from scorecam_onnx.cli import main
from scorecam_onnx.evaluation.faithfulness import (
    EvaluationPlan,
    baseline_map,
    evaluate,
    plot_curves,
    write_report,
)


@pytest.fixture(scope="module")
def probabilities():
    session = ort.InferenceSession(
        quadrant_model().SerializeToString(), providers=["CPUExecutionProvider"]
    )
    return lambda batch: metrics.softmax(session.run(None, {"input": batch})[0])


def _image() -> np.ndarray:
    x = np.zeros((1, 3, 8, 8), np.float32)
    x[0, 0, :4, :4] = 1.0
    return x


def _quadrant_map(top_left: bool) -> np.ndarray:
    sal = np.zeros((8, 8), np.float32)
    ramp = np.linspace(1.0, 0.5, 16, dtype=np.float32).reshape(4, 4)  # a fixed order
    if top_left:
        sal[:4, :4] = ramp
    else:
        sal[4:, 4:] = ramp
    return sal


def sigmoid(v):
    return 1 / (1 + np.exp(-v))


def test_average_drop_and_increase_by_hand():
    assert metrics.average_drop([0.8, 0.5], [0.4, 0.6]) == pytest.approx(25.0)
    assert metrics.increase_in_confidence([0.8, 0.5], [0.4, 0.6]) == pytest.approx(50.0)


def test_area_under_curve_by_hand():
    assert metrics.area_under_curve([1.0, 0.5, 0.0]) == pytest.approx(0.5)
    assert metrics.area_under_curve([0.0, 1.0]) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        metrics.area_under_curve([1.0])


def test_deletion_curve_by_hand(probabilities):
    curve = metrics.causal_curve(
        probabilities,
        _image(),
        _quadrant_map(True),
        0,
        "deletion",
        step_fraction=1 / 64,
        batch_size=5,
    )
    deleted = np.minimum(np.arange(65), 16)
    np.testing.assert_allclose(curve, sigmoid(2 * (16 - deleted) / 16), atol=1e-6)


def test_insertion_curve_ends(probabilities):
    x = _image()
    curve = metrics.causal_curve(
        probabilities, x, _quadrant_map(True), 0, "insertion", step_fraction=1 / 64
    )
    blurred_s = metrics.blurred(x)[0, 0, :4, :4].mean()
    assert curve[0] == pytest.approx(sigmoid(2 * blurred_s), abs=1e-6)
    assert curve[16] == pytest.approx(sigmoid(2.0), abs=1e-6)  # the quadrant is restored
    assert curve[-1] == pytest.approx(sigmoid(2.0), abs=1e-6)


def test_the_right_quadrant_wins_every_metric(probabilities):
    x = _image()
    y = probabilities(x)[0, 0]
    scores = {}
    for name, top_left in (("right", True), ("wrong", False)):
        sal = _quadrant_map(top_left)
        o = probabilities(x * sal[None, None])[0, 0]
        scores[name] = {
            "drop": metrics.average_drop([y], [o]),
            "deletion": metrics.area_under_curve(
                metrics.causal_curve(probabilities, x, sal, 0, "deletion")
            ),
            "insertion": metrics.area_under_curve(
                metrics.causal_curve(probabilities, x, sal, 0, "insertion")
            ),
            "pointing": metrics.pointing_game(sal, [(0, 0, 4, 4)]),
        }
    right, wrong = scores["right"], scores["wrong"]
    assert right["drop"] < wrong["drop"]
    assert right["deletion"] < wrong["deletion"]
    assert right["insertion"] > wrong["insertion"]
    assert right["pointing"] == 1.0 and wrong["pointing"] == 0.0


def test_pointing_game_by_hand():
    sal = np.zeros((4, 4))
    sal[0, 0], sal[3, 3] = 3.0, 1.0
    assert metrics.pointing_game(sal, [(0, 0, 2, 2)]) == pytest.approx(0.75)
    assert metrics.pointing_game(np.zeros((4, 4)), [(0, 0, 2, 2)]) == 0.0


def test_baselines():
    center = baseline_map("center", (9, 9))
    assert center.argmax() == 40 and center.max() == pytest.approx(1.0)
    random = baseline_map("random", (14, 14), (7, 7), seed=1)
    assert random.shape == (14, 14) and random.min() >= 0 and random.max() <= 1
    np.testing.assert_array_equal(random, baseline_map("random", (14, 14), (7, 7), seed=1))


def test_evaluate_on_the_tiny_bundle(tiny_bundle, tmp_path):
    explainer = Explainer(tiny_bundle, Runtime(provider="cpu"))
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(2)]
    report = evaluate(
        explainer,
        images,
        EvaluationPlan(methods=["scorecam", "eigencam"], step_fraction=0.25),
        boxes=[[(0, 0, 4, 4)], None],
    )
    assert [r.method for r in report.rows] == ["scorecam", "eigencam", "random", "center"]
    for row in report.rows:
        assert len(row.deletion_curve) == 5 and 0 <= row.deletion <= 1
        assert row.pointing is not None
    assert report.rows[0].forwards > report.rows[1].forwards == 1
    table = report.markdown()
    assert table.startswith("| method | Average Drop ↓ | Increase ↑ | Deletion ↓ | Insertion ↑")
    assert plot_curves(report).shape == (320, 960, 3)
    paths = write_report(report, tmp_path)
    assert json.loads(paths[0].read_text())["methods"][0]["method"] == "scorecam"


def test_evaluate_command(tiny_bundle, tmp_path):
    import cv2

    image = tmp_path / "a.png"
    cv2.imwrite(str(image), np.random.default_rng(2).integers(0, 256, (8, 8, 3), np.uint8))
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"a.png": [[0, 0, 4, 4]]}))
    result = CliRunner().invoke(
        main,
        [
            "evaluate",
            str(image),
            "--model",
            str(tiny_bundle.path),
            "--methods",
            "scorecam,faster-scorecam",
            "--step",
            "0.25",
            "--boxes",
            str(boxes),
            "--out",
            str(tmp_path / "eval"),
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "| faster-scorecam |" in result.output and "Pointing ↑" in result.output
    assert (tmp_path / "eval" / "curves.png").is_file()
    bad = CliRunner().invoke(main, ["evaluate", str(image), "--methods", "gradcam"])
    assert bad.exit_code == 2 and "unknown method gradcam" in bad.output
