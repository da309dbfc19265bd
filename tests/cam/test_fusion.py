"""Several target layers in one bundle: per-layer Score-CAM fused as the presets' peers do
(pytorch-grad-cam's `aggregate_multi_layers`, torch-cam's `fuse_cams`), against the oracles
computed from each layer's own activations, written out in NumPy."""

from __future__ import annotations

import json

import numpy as np
import pytest
from builders import tiny_model, tiny_weights
from click.testing import CliRunner
from conftest import TINY_PREP
from oracles import correlation, grad_cam_layers, paper, torchcam_layers

from scorecam_onnx import (
    Bundle,
    Explainer,
    ExplainOptions,
    FasterScoreCam,
    Runtime,
    ScoreCam,
    write_bundle,
)
from scorecam_onnx.bundle.manifest import FORMAT_VERSION
from scorecam_onnx.cli import main

W = tiny_weights()


def _layers(x):
    """(relu 5×8×8, feat 5×4×4) of the tiny CNN, and its logits, in NumPy."""
    conv = np.einsum("kc,nchw->nkhw", W["w1"], x.astype(np.float64)) + W["b1"][None, :, None, None]
    relu = np.maximum(conv, 0.0)
    feat = relu.reshape(1, 5, 4, 2, 4, 2).mean(axis=(3, 5))
    logits = feat.mean(axis=(2, 3)) @ W["w2"].T + W["b2"]
    return relu[0].astype(np.float32), feat[0].astype(np.float32), logits


def _model(batch):
    conv = (
        np.einsum("kc,nchw->nkhw", W["w1"], batch.astype(np.float64)) + W["b1"][None, :, None, None]
    )
    feat = np.maximum(conv, 0).reshape(len(batch), 5, 4, 2, 4, 2).mean(axis=(3, 5))
    return feat.mean(axis=(2, 3)) @ W["w2"].T + W["b2"]


IMAGE = np.random.default_rng(3).integers(0, 256, size=(8, 8, 3), dtype=np.uint8)


@pytest.fixture
def multi(tmp_path) -> Bundle:
    return write_bundle(
        tiny_model(),
        tmp_path / "multi",
        ["relu", "feat"],
        preprocessing=TINY_PREP,
        labels=[f"l{i}" for i in range(4)],
    )


@pytest.fixture
def single(tmp_path) -> Bundle:
    return write_bundle(tiny_model(), tmp_path / "single", "feat", preprocessing=TINY_PREP)


def test_the_manifest_lists_the_layers_deepest_first(multi):
    m = multi.manifest
    assert [(name, (a.channels, a.height, a.width)) for name, a in m.targets] == [
        ("feat", (5, 4, 4)),
        ("relu", (5, 8, 8)),
    ]
    assert m.tail is not None  # cut at the deepest layer
    data = json.loads((multi.path / "manifest.json").read_text())
    assert data["format_version"] == FORMAT_VERSION and data["more_layers"][0]["layer"] == "relu"
    again = Bundle.load(multi.path)
    assert again.manifest == m


@pytest.mark.parametrize(
    ("preset", "oracle"), [("pytorch-grad-cam", grad_cam_layers), ("torchcam", torchcam_layers)]
)
def test_fused_maps_equal_the_peers(multi, preset, oracle):
    ex = Explainer(multi, Runtime(provider="cpu"))
    x = ex.preprocess(IMAGE)[1]
    relu, feat, logits = _layers(x)
    c = int(np.argmax(logits[0]))
    got = ex.explain_one(IMAGE, method=ScoreCam(preset=preset))
    want = oracle(x, [feat, relu], _model, c)
    assert got.class_id == c
    assert correlation(got.saliency_input, want) >= 0.9999
    assert float(np.abs(got.saliency_input - want).max()) <= 1e-4


def test_the_paper_preset_fuses_by_the_mean_and_forwards_add_up(multi, single):
    ex = Explainer(multi, Runtime(provider="cpu"))
    x = ex.preprocess(IMAGE)[1]
    relu, feat, logits = _layers(x)
    c = int(np.argmax(logits[0]))
    per_layer = [paper(x, acts, _model, c) for acts in (feat, relu)]
    mean = np.mean(per_layer, axis=0)
    want = (mean - mean.min()) / (1e-7 + mean.max() - mean.min())
    got = ex.explain_one(IMAGE)
    assert float(np.abs(got.saliency_input - want).max()) <= 1e-4
    alone = [
        ex.explain_one(IMAGE, options=ExplainOptions(layers=[name])) for name in ("feat", "relu")
    ]
    assert got.forwards == 1 + sum(a.forwards - 1 for a in alone)
    assert got.weights.shape == (10,)
    maxed = ex.explain_one(IMAGE, options=ExplainOptions(fuse="max"))
    assert float(np.abs(maxed.saliency_input - np.max(per_layer, axis=0)).max()) <= 1e-4
    one = Explainer(single, Runtime(provider="cpu")).explain_one(IMAGE)
    assert float(np.abs(alone[0].saliency_input - one.saliency_input).max()) <= 1e-6


def test_tail_methods_run_at_the_deepest_layer(multi, single):
    ex = Explainer(multi, Runtime(provider="cpu"))
    got = ex.explain_one(IMAGE, method="reciprocam")
    want = Explainer(single, Runtime(provider="cpu")).explain_one(IMAGE, method="reciprocam")
    assert float(np.abs(got.saliency - want.saliency).max()) <= 1e-6
    with pytest.raises(ValueError, match="tail graph starts from, the deepest: feat"):
        ex.explain(IMAGE, method="reciprocam", options=ExplainOptions(layers=["relu"]))
    with pytest.raises(ValueError, match="unknown layer nope: this bundle's layers are feat, relu"):
        ex.explain(IMAGE, options=ExplainOptions(layers=["nope"]))


def test_split_and_explain_with_several_layers(tmp_path, tiny_onnx):
    out = tmp_path / "m"
    run = CliRunner().invoke(
        main,
        [
            "split",
            str(tiny_onnx),
            "--layer",
            "relu",
            "--layer",
            "feat",
            "--mean",
            "0.5,0.5,0.5",
            "--std",
            "0.25,0.25,0.25",
            "--out",
            str(out),
        ],
    )
    assert run.exit_code == 0, run.output
    assert "layers feat (5×4×4); relu (5×8×8)" in run.output
    info = CliRunner().invoke(main, ["info", str(out)])
    assert "relu → relu: 5×8×8" in info.output and "feat → feat: 5×4×4" in info.output
    import cv2

    cv2.imwrite(str(tmp_path / "img.png"), IMAGE[:, :, ::-1])
    explained = CliRunner().invoke(
        main,
        [
            "explain",
            str(tmp_path / "img.png"),
            "--model",
            str(out),
            "--preset",
            "torchcam",
            "--fuse",
            "mean",
            "--out",
            str(tmp_path / "o"),
            "-q",
        ],
    )
    assert explained.exit_code == 0, explained.output
    want = Explainer(out, Runtime(provider="cpu")).explain_one(
        IMAGE, method=ScoreCam(preset="torchcam"), options=ExplainOptions(fuse="mean")
    )
    assert np.load(tmp_path / "o" / "img.npy").tobytes() == want.saliency.tobytes()


def test_progress_runs_forward_over_the_layers(multi):
    calls = []
    got = Explainer(multi, Runtime(provider="cpu")).explain_one(
        IMAGE, options=ExplainOptions(batch_size=2), progress=lambda d, t: calls.append((d, t))
    )
    done = [d for d, _ in calls]
    assert done == sorted(done) and calls[-1] == (got.forwards - 1, got.forwards - 1)


def test_evaluate_passes_the_fusion_on(multi):
    from scorecam_onnx.evaluation import evaluate
    from scorecam_onnx.evaluation.faithfulness import EvaluationPlan

    ex = Explainer(multi, Runtime(provider="cpu"))
    x = ex.preprocess(IMAGE)[1]
    c = int(np.argmax(ex.forwards.probabilities(x)[0]))
    for fuse in ("mean", "max"):
        plan = EvaluationPlan(
            methods=["scorecam"],
            baselines=(),
            metrics=["average-drop"],
            options=ExplainOptions(fuse=fuse),
        )
        (row,) = evaluate(ex, [IMAGE], plan).rows
        cam = ex.explain_one(IMAGE, c, options=ExplainOptions(fuse=fuse)).saliency_input
        kept = ex.forwards.probabilities(x * cam[None, None])[0, c]
        p = ex.forwards.probabilities(x)[0, c]
        assert row.average_drop == pytest.approx(max(0.0, p - kept) / p * 100, abs=1e-6)


def test_identical_masks_of_two_layers_run_once(tmp_path):
    """'feat2' = 2·'feat': the same normalised masks. Exact Score-CAM runs them once; the
    fused map is the single layer's; Faster Score-CAM (which chooses per layer) runs both."""
    from builders import _classifier
    from onnx import helper

    base = tiny_model()
    nodes = list(base.graph.node)
    two = helper.make_tensor("two", 1, [], [2.0])
    doubled = [helper.make_node("Mul", ["feat", "two"], ["feat2"])]
    for node in nodes:
        if node.op_type == "GlobalAveragePool":
            node.input[0] = "feat2"
    model = _classifier(
        "doubled",
        nodes[:3] + doubled + nodes[3:],
        ["N", 3, 8, 8],
        ["N", 4],
        [*base.graph.initializer, two],
    )
    bundle = write_bundle(model, tmp_path / "twice", ["feat", "feat2"], preprocessing=TINY_PREP)
    ex = Explainer(bundle, Runtime(provider="cpu"))
    got = ex.explain_one(IMAGE)
    alone = ex.explain_one(IMAGE, options=ExplainOptions(layers=["feat"]))
    assert got.forwards == alone.forwards
    assert float(np.abs(got.saliency - alone.saliency).max()) <= 1e-6
    faster = ex.explain_one(IMAGE, method=FasterScoreCam(channels=3))
    assert faster.forwards == 1 + 2 * (
        ex.explain_one(
            IMAGE, method=FasterScoreCam(channels=3), options=ExplainOptions(layers=["feat"])
        ).forwards
        - 1
    )
