"""Score-CAM against independent oracles, on a tiny hand-built graph and the default bundle."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from builders import tiny_forward, tiny_weights
from oracles import ORACLES, correlation

from scorecam_onnx import Explainer, ExplainOptions, Runtime, TopK
from scorecam_onnx import ScoreCam as ScoreCamMethod
from scorecam_onnx.cam.engine import ScoreCam, form_cam, get_preset

PRESETS = list(ORACLES)


def _tiny_image(seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(8, 8, 3), dtype=np.uint8)


@pytest.fixture
def tiny_explainer(tiny_bundle) -> Explainer:
    return Explainer(tiny_bundle, Runtime(provider="cpu"))


@pytest.mark.parametrize("preset", PRESETS)
def test_tiny_graph_matches_oracle(tiny_explainer, preset):
    image = _tiny_image()
    weights = tiny_weights()
    _, x = tiny_explainer.preprocess(image)
    acts, logits = tiny_forward(x.astype(np.float64), weights)
    target = int(np.argmax(logits[0]))
    want = ORACLES[preset](
        x,
        acts[0].astype(np.float32),
        lambda batch: tiny_forward(batch.astype(np.float64), weights)[1],
        target,
    )
    res = tiny_explainer.explain_one(image, method=ScoreCamMethod(preset=preset))
    assert res.class_id == target
    assert correlation(res.saliency_input, want) >= 0.9999
    assert np.abs(res.saliency_input - want).max() <= 1e-4


@pytest.mark.parametrize("preset", PRESETS)
def test_constant_channels_are_skipped_or_shared(tiny_explainer, preset):
    image = _tiny_image()
    _, x = tiny_explainer.preprocess(image)
    acts, _ = tiny_forward(x.astype(np.float64), tiny_weights())
    flat = acts[0].reshape(acts.shape[1], -1)
    varying = len(
        {tuple(np.round((r - r.min()) / (r.max() - r.min()), 6)) for r in flat if r.max() > r.min()}
    )
    assert varying < acts.shape[1], "the tiny model has constant channels by construction"
    res = tiny_explainer.explain_one(image, method=ScoreCamMethod(preset=preset))
    shared_zero = 0 if preset == "paper" else 1
    assert res.forwards == 1 + varying + shared_zero
    if preset == "paper":
        constant = flat.max(axis=1) == flat.min(axis=1)
        assert np.all(res.weights[constant] == 0)


@pytest.mark.parametrize("preset", PRESETS)
def test_batch_size_does_not_change_the_map(tiny_explainer, preset):
    image = _tiny_image(5)
    maps = [
        tiny_explainer.explain_one(
            image, None, ScoreCamMethod(preset=preset), ExplainOptions(batch_size=b)
        ).saliency
        for b in (1, 2, 7, 64)
    ]
    for other in maps[1:]:
        np.testing.assert_allclose(other, maps[0], atol=1e-6)


@pytest.mark.parametrize("preset", PRESETS)
def test_identical_masks_run_once(preset):
    """Channels that are increasing affine images of another share its forward."""
    rng = np.random.default_rng(4)
    base = rng.random((2, 3, 3)).astype(np.float32)
    onehot = np.zeros((3, 3), np.float32)
    onehot[1, 2] = 1.0
    acts = np.stack(
        [
            base[0],
            2.0 * base[0] + 5.0,
            base[1],
            onehot,
            7.0 * onehot,
            np.full((3, 3), 2.0, np.float32),
        ]
    )
    x = rng.normal(size=(1, 3, 12, 12)).astype(np.float32)
    w = rng.normal(size=(4, 3 * 12 * 12))
    calls = []

    def model(batch):
        calls.append(len(batch))
        return batch.reshape(len(batch), -1).astype(np.float64) @ w.T

    clean = model(x)[0]
    calls.clear()
    res = ScoreCam(preset, batch_size=2).score(x, acts, model, [1], clean)
    distinct = 3 + (preset != "paper")  # base0, base1, one-hot (+ the constant channel)
    assert sum(calls) == res.forwards == res.masks == distinct
    want = ORACLES[preset](x, acts, model, 1)
    cam, _ = ScoreCam(preset).cam(acts, ScoreCam(preset).weights(res.values[:, 0]), (12, 12))
    assert correlation(cam, want) >= 0.9999
    assert np.abs(cam - want).max() <= 1e-4


def test_top_k_reuses_the_same_forwards(tiny_explainer):
    image = _tiny_image(7)
    single = tiny_explainer.explain_one(image)
    several = tiny_explainer.explain(image, TopK(3))
    assert isinstance(several, list) and len(several) == 3
    assert several[0].class_id == single.class_id
    assert all(r.forwards == single.forwards for r in several)
    for r in several:
        alone = tiny_explainer.explain_one(image, r.class_id)
        np.testing.assert_allclose(r.saliency, alone.saliency, atol=1e-6)
    listed = tiny_explainer.explain(image, [several[2].class_id, several[0].class_id])
    assert [r.class_id for r in listed] == [several[2].class_id, several[0].class_id]


def test_uniform_image_gives_a_flagged_zero_map(tiny_explainer):
    image = np.full((8, 8, 3), 120, np.uint8)  # every activation channel is constant
    for preset in PRESETS:
        res = tiny_explainer.explain_one(image, method=ScoreCamMethod(preset=preset))
        assert res.degenerate
        assert not np.isnan(res.saliency).any()
        assert np.all(res.saliency == 0)


def test_all_negative_weighted_sum_is_zero_not_nan():
    acts = -np.ones((2, 3, 3), np.float32)
    acts[0, 1, 1] = -2.0
    for preset in PRESETS:
        cam, degenerate = form_cam(
            acts, np.array([0.5, 0.5], np.float32), (6, 6), get_preset(preset)
        )
        assert degenerate and np.all(cam == 0)


def test_paper_weights_are_class_probabilities():
    """Hand check: a model that returns fixed logits gives every channel softmax(logits)[c]."""
    logits = np.array([1.0, 2.0, 0.5], np.float32)
    acts = np.random.default_rng(0).normal(size=(4, 2, 2)).astype(np.float32)
    engine = ScoreCam("paper", batch_size=3)
    scores = engine.score(
        np.ones((1, 3, 4, 4), np.float32),
        acts,
        lambda b: np.tile(logits, (b.shape[0], 1)),
        [1],
        logits,
    )
    p = np.exp(logits) / np.exp(logits).sum()
    np.testing.assert_allclose(scores.values[:, 0], p[1], rtol=1e-6)
    assert scores.forwards == 4


@pytest.fixture(scope="module")
def default_inputs(default_explainer, chelsea):
    _, x = default_explainer.preprocess(chelsea)
    session = ort.InferenceSession(
        str(default_explainer.bundle.model_path), providers=["CPUExecutionProvider"]
    )
    features = ort.InferenceSession(
        str(default_explainer.bundle.features_path), providers=["CPUExecutionProvider"]
    )
    acts = features.run(["activations"], {"input": x})[0][0]

    def model(batch):
        return session.run(["logits"], {"input": batch.astype(np.float32)})[0]

    return x, acts, model


@pytest.mark.parametrize("preset", PRESETS)
def test_default_bundle_matches_oracle(default_explainer, default_inputs, chelsea, preset):
    x, acts, model = default_inputs
    res = default_explainer.explain_one(chelsea, method=ScoreCamMethod(preset=preset))
    assert res.class_id == 285
    want = ORACLES[preset](x, acts, model, 285)
    assert correlation(res.saliency_input, want) >= 0.9999
    assert np.abs(res.saliency_input - want).max() <= 1e-4
    assert res.saliency.shape == (300, 451)


def test_default_bundle_batch_sizes_agree(default_explainer, chelsea):
    maps = [
        default_explainer.explain_one(
            chelsea, None, "faster-scorecam", ExplainOptions(batch_size=b)
        ).saliency
        for b in (1, 7, 64)
    ]
    for other in maps[1:]:
        np.testing.assert_allclose(other, maps[0], atol=1e-5)
