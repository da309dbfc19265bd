"""The benchmark's bookkeeping, and memory bounded by the batch size (not by the channels)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from builders import many_channels_model
from click.testing import CliRunner

from scorecam_onnx import Explainer, ExplainOptions, Runtime, ScoreCam, write_bundle
from scorecam_onnx.cli import main
from scorecam_onnx.evaluation.bench import bench, floor_seconds, format_report, peak_numpy_mib


def test_bench_report_on_the_tiny_bundle(tiny_bundle):
    explainer = Explainer(tiny_bundle, Runtime(provider="cpu", batch_size=2))
    image = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    report = bench(explainer, image, presets=["paper", "torchcam"], repeats=2, sweep=(1, 4))
    assert [p.preset for p in report.presets] == ["paper", "torchcam"]
    for p in report.presets:
        expected = explainer.explain_one(image, method=ScoreCam(preset=p.preset))
        assert p.forwards == expected.forwards and p.masks_run == expected.masks
        assert p.channels == 5 and p.overhead > 0 and p.floor.median > 0
        assert p.scorecam.low <= p.scorecam.median <= p.scorecam.high
    assert set(report.sweep) == {1, 4} and report.best_batch in (1, 4)
    assert 0 < report.import_seconds < 30
    assert set(report.tail) == {
        "model forward",
        "reciprocam",
        "reciprocam --gaussian",
        "ablationcam",
    }
    assert (
        report.tail["reciprocam"]["forwards"]
        == 1 + 4 * 4
        == explainer.explain_one(image, method="reciprocam").forwards
    )
    assert (
        report.tail["ablationcam"]["forwards"]
        == explainer.explain_one(image, method="ablationcam").forwards
    )
    paper = report.presets[0].scorecam.median
    for name in ("reciprocam", "ablationcam"):
        t = report.tail[name]
        assert t["speedup"] == paper / t["seconds"] and t["per_forward"] > 0
    text = format_report(report)
    assert "overhead" in text and "<- best" in text and "tail-graph methods" in text


def test_floor_runs_the_requested_forwards(tiny_bundle):
    explainer = Explainer(tiny_bundle, Runtime(provider="cpu"))
    calls = []
    real = explainer.forwards.scores
    explainer.forwards.scores = lambda batch: calls.append(len(batch)) or real(batch)
    floor_seconds(explainer, 11, 4)
    assert calls == [4, 4, 3]


def test_memory_grows_with_the_batch_not_the_channels(tmp_path):
    bundle = write_bundle(many_channels_model(2048, 32), tmp_path / "wide", "feat")
    explainer = Explainer(bundle, Runtime(provider="cpu"))
    image = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    all_masked_mib = 2048 * 3 * 32 * 32 * 4 / 2**20  # 24 MiB if built at once
    peaks = {
        b: peak_numpy_mib(
            lambda b=b: explainer.explain(image, options=ExplainOptions(batch_size=b))
        )
        for b in (4, 64)
    }
    per_input = 3 * 32 * 32 * 4 / 2**20
    assert peaks[4] < all_masked_mib / 8
    assert peaks[64] < all_masked_mib / 8
    assert peaks[64] >= 64 * per_input  # the batch buffer is what it holds


def test_bench_command_json(tiny_bundle, tmp_path):
    import cv2

    image = tmp_path / "a.png"
    cv2.imwrite(str(image), np.random.default_rng(3).integers(0, 256, (8, 8, 3), np.uint8))
    result = CliRunner().invoke(
        main,
        [
            "bench",
            str(image),
            "--model",
            str(tiny_bundle.path),
            "--presets",
            "paper",
            "--repeat",
            "1",
            "--no-sweep",
            "--json",
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["presets"][0]["preset"] == "paper" and data["sweep"] == {}
    bad = CliRunner().invoke(main, ["bench", str(image), "--presets", "other"])
    assert bad.exit_code == 2 and "unknown preset other" in bad.output


def test_rss_peak_sees_a_temporary_allocation():
    """In a process of its own: in the test process, memory that earlier tests' threads give
    back while the block is allocated would hide its rise."""
    script = (
        "import numpy as np\n"
        "from scorecam_onnx.evaluation.bench import peak_rss_growth_mib\n"
        "def allocate():\n"
        "    block = np.ones(50 * 2**20 // 8)     # 50 MiB, touched, then freed\n"
        "    block.sum()\n"
        "print(peak_rss_growth_mib(allocate))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    growth = float(out)
    assert 40 <= growth < 200
