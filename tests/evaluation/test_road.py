"""ROAD against a plain re-implementation from pytorch-grad-cam's definition: the noisy linear
imputation as a dense system built pixel by pixel and solved by NumPy, the percentile removal
and the probability change; seeded noise; the CLI; one line without SciPy."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import ROOT

from scorecam_onnx import Explainer, FasterScoreCam, Runtime
from scorecam_onnx.cli import main
from scorecam_onnx.evaluation import evaluate
from scorecam_onnx.evaluation.faithfulness import EvaluationPlan
from scorecam_onnx.evaluation.road import PERCENTILES, impute, road

WEIGHT = {
    (dy, dx): (1 / 12 if dy and dx else 1 / 6) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx
}


def _dense_impute(x: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Each removed pixel: (Σ over in-image neighbours w·value) / (Σ of those weights) = its
    value, removed neighbours unknown too; one dense system, solved by NumPy."""
    c, h, w = x.shape
    removed = [(i, j) for i in range(h) for j in range(w) if not keep[i, j]]
    number = {p: n for n, p in enumerate(removed)}
    a = np.zeros((len(removed), len(removed)))
    b = np.zeros((len(removed), c))
    for n, (i, j) in enumerate(removed):
        total = 0.0
        for (dy, dx), weight in WEIGHT.items():
            y, z = i + dy, j + dx
            if not (0 <= y < h and 0 <= z < w):
                continue
            total += weight
            if keep[y, z]:
                b[n] -= weight * x[:, y, z]
            else:
                a[n, number[(y, z)]] += weight
        a[n, n] = -total
    solved = np.linalg.solve(a, b)
    out = x.astype(np.float64).copy()
    for n, (i, j) in enumerate(removed):
        out[:, i, j] = solved[n]
    return out


def _oracle_road(probabilities, x, cam, c):
    before = probabilities(x)[0, c]
    result = {}
    for name, ranked in (("morf", cam), ("lerf", 1 - cam)):
        changes = []
        for p in PERCENTILES:
            keep = ranked < np.percentile(ranked, p)
            image = _dense_impute(x[0], keep).astype(np.float32)[None]
            changes.append(np.float32(probabilities(image)[0, c]) - np.float32(before))
        result[name] = float(np.mean(changes))
    return result


def test_imputation_equals_the_dense_solution():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 12, 10)).astype(np.float32)
    keep = rng.random((12, 10)) > 0.6
    keep[0, :] = False  # a removed border row: neighbours outside
    got = impute(x, keep, noise=0.0)
    want = _dense_impute(x, keep)
    assert float(np.abs(got - want).max()) <= 1e-5
    assert np.array_equal(got[:, keep], x[:, keep])


def test_noise_is_seeded_and_of_the_given_scale():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 40, 40)).astype(np.float32)
    keep = rng.random((40, 40)) > 0.5
    clean = impute(x, keep, noise=0.0)
    a = impute(x, keep, 0.01, np.random.default_rng(5))
    b = impute(x, keep, 0.01, np.random.default_rng(5))
    c = impute(x, keep, 0.01, np.random.default_rng(6))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.array_equal(a[:, keep], x[:, keep])
    assert abs(float((a - clean)[:, ~keep].std()) - 0.01) < 0.001


def test_road_on_a_model_equals_its_definition(default_explainer, chelsea):
    ex = default_explainer
    x = ex.preprocess(chelsea)[1]
    cam = ex.explain_one(chelsea, method=FasterScoreCam(channels=8)).saliency_input
    small = cv2.resize(cam, (40, 40), interpolation=cv2.INTER_AREA)
    x_small = cv2.resize(x[0].transpose(1, 2, 0), (40, 40), interpolation=cv2.INTER_AREA).transpose(
        2, 0, 1
    )[None]

    def probabilities(batch):  # the model on 56×56 inputs, resized up
        big = np.stack(
            [cv2.resize(b.transpose(1, 2, 0), (224, 224)).transpose(2, 0, 1) for b in batch]
        )
        return ex.forwards.probabilities(np.ascontiguousarray(big, dtype=np.float32))

    got = road(probabilities, np.ascontiguousarray(x_small), small, 285, noise=0.0)
    want = _oracle_road(probabilities, x_small, small, 285)
    assert got.morf == pytest.approx(want["morf"], abs=1e-4)
    assert got.lerf == pytest.approx(want["lerf"], abs=1e-4)
    assert got.combined == pytest.approx((want["lerf"] - want["morf"]) / 2, abs=1e-4)
    assert got.lerf > got.morf  # a real map: removing its top hurts more


def test_evaluate_reports_road_when_asked(tiny_bundle, tmp_path):
    ex = Explainer(tiny_bundle, Runtime(provider="cpu"))
    images = [np.random.default_rng(s).integers(0, 256, (8, 8, 3), dtype=np.uint8) for s in (1, 2)]
    report = evaluate(
        ex,
        images,
        EvaluationPlan(
            methods=["scorecam"], baselines=(), metrics=["average-drop", "road"], road_noise=0.0
        ),
    )
    (row,) = report.rows
    want = []
    for image in images:
        x = ex.preprocess(image)[1]
        c = int(np.argmax(ex.forwards.probabilities(x)[0]))
        cam = ex.explain_one(image, c).saliency_input
        want.append(_oracle_road(ex.forwards.probabilities, x, cam, c))
    assert row.road_morf == pytest.approx(np.mean([w["morf"] for w in want]), abs=1e-4)
    assert row.road_lerf == pytest.approx(np.mean([w["lerf"] for w in want]), abs=1e-4)
    assert row.deletion is None and row.deletion_curve == []
    assert "ROAD MoRF ↓" in report.markdown() and "Deletion" not in report.markdown()
    folder = tmp_path / "images"
    folder.mkdir()
    for n, image in enumerate(images):
        cv2.imwrite(str(folder / f"i{n}.png"), image)
    run = CliRunner().invoke(
        main,
        [
            "evaluate",
            str(folder),
            "--model",
            str(tiny_bundle.path),
            "--methods",
            "scorecam",
            "--no-baselines",
            "--metrics",
            "insertion,road",
            "--out",
            str(tmp_path / "out"),
            "-q",
        ],
    )
    assert run.exit_code == 0, run.output
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["metrics"] == ["insertion", "road"]
    assert saved["methods"][0]["road_combined"] is not None
    again = CliRunner().invoke(
        main,
        [
            "evaluate",
            str(folder),
            "--model",
            str(tiny_bundle.path),
            "--methods",
            "scorecam",
            "--no-baselines",
            "--metrics",
            "road",
            "--out",
            str(tmp_path / "out2"),
            "-q",
        ],
    )
    assert again.exit_code == 0, again.output
    same = json.loads((tmp_path / "out2" / "report.json").read_text())["methods"][0]
    assert same["road_combined"] == saved["methods"][0]["road_combined"]  # seeded noise


def test_without_scipy_road_is_one_line(tiny_bundle, tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.full((8, 8, 3), 90, np.uint8))
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text("import sys\nsys.modules['scipy'] = None\n")
    env = {"PYTHONPATH": str(blocker), "PATH": "/usr/bin:/bin"}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "scorecam_onnx",
            "evaluate",
            str(tmp_path / "a.png"),
            "--model",
            str(tiny_bundle.path),
            "--metrics",
            "road",
            "-q",
            "--out",
            str(tmp_path / "out"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [
        "Error: ROAD needs SciPy: pip install 'scorecam-onnx[metrics]'"
    ]
