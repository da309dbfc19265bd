"""aug_smooth and eigen_smooth against pytorch-grad-cam's definitions, re-implemented in the
oracles (ttach's six passes; `get_2d_projection`), on the tiny graph and the shipped bundle."""

from __future__ import annotations

import numpy as np
import pytest
from builders import tiny_forward, tiny_weights
from oracles import aug_smoothed, correlation, grad_cam_style

from scorecam_onnx import Explainer, ExplainOptions, Runtime, ScoreCam

GRADCAM = ScoreCam(preset="pytorch-grad-cam")

WEIGHTS = tiny_weights()


def _features(batch):
    return tiny_forward(batch.astype(np.float64), WEIGHTS)[0][0].astype(np.float32)


def _model(batch):
    return tiny_forward(batch.astype(np.float64), WEIGHTS)[1]


def _image(seed):
    return np.random.default_rng(seed).integers(0, 256, size=(8, 8, 3), dtype=np.uint8)


@pytest.fixture
def tiny(tiny_bundle) -> Explainer:
    return Explainer(tiny_bundle, Runtime(provider="cpu"))


@pytest.mark.parametrize("eigen", [False, True])
@pytest.mark.parametrize("seed", [3, 11])
def test_aug_smooth_equals_pytorch_grad_cams_six_passes(tiny, seed, eigen):
    image = _image(seed)
    x = tiny.preprocess(image)[1]
    got = tiny.explain_one(
        image, None, GRADCAM, ExplainOptions(aug_smooth=True, eigen_smooth=eigen)
    )
    want = aug_smoothed(x, _features, _model, None, eigen)
    assert correlation(got.saliency_input, want) >= 0.9999
    assert float(np.abs(got.saliency_input - want).max()) <= 1e-4
    plain = tiny.explain_one(image, None, GRADCAM)
    assert got.forwards == 6 * plain.forwards
    assert got.class_id == plain.class_id
    given = tiny.explain_one(image, 2, GRADCAM, ExplainOptions(aug_smooth=True, eigen_smooth=eigen))
    want = aug_smoothed(x, _features, _model, 2, eigen)
    assert float(np.abs(given.saliency_input - want).max()) <= 1e-4


def test_aug_smooth_follows_each_pass_top_class(tiny):
    """With no target, a pass whose augmented input changes the top-1 class explains that
    class, as pytorch-grad-cam does: the mean differs from fixing the first pass's class."""
    for seed in range(200):
        image = _image(seed)
        x = tiny.preprocess(image)[1]
        tops = {
            int(np.argmax(_model((x[..., ::-1] if flip else x) * f)[0]))
            for flip in (False, True)
            for f in (1.0, 0.9, 1.1)
        }
        if len(tops) > 1:
            break
    assert len(tops) > 1, "no image changes class under the augmentations"
    got = tiny.explain_one(image, None, GRADCAM, ExplainOptions(aug_smooth=True))
    want = aug_smoothed(x, _features, _model, None)
    fixed = aug_smoothed(x, _features, _model, got.class_id)
    assert float(np.abs(got.saliency_input - want).max()) <= 1e-4
    assert float(np.abs(got.saliency_input - fixed).max()) > 1e-3


def test_eigen_smooth_equals_the_2d_projection_of_the_weighted_activations(tiny):
    image = _image(3)
    x = tiny.preprocess(image)[1]
    got = tiny.explain_one(image, None, GRADCAM, ExplainOptions(eigen_smooth=True))
    want = grad_cam_style(x, _features(x), _model, got.class_id, eigen=True)
    assert float(np.abs(got.saliency_input - want).max()) <= 1e-4
    assert got.forwards == tiny.explain_one(image, None, GRADCAM).forwards


def test_eigen_smooth_on_the_shipped_bundle(default_explainer, chelsea):
    x = default_explainer.preprocess(chelsea)[1]
    got = default_explainer.explain_one(chelsea, None, GRADCAM, ExplainOptions(eigen_smooth=True))
    acts = default_explainer.forwards.activations(x)
    want = grad_cam_style(x, acts, default_explainer.forwards.scores, 285, eigen=True)
    assert got.class_id == 285
    assert correlation(got.saliency_input, want) >= 0.9999
    assert float(np.abs(got.saliency_input - want).max()) <= 1e-4


@pytest.mark.parametrize("method", ["eigencam", "reciprocam", "rise"])
def test_eigen_smooth_is_refused_where_nothing_is_weighted(tiny, method):
    with pytest.raises(
        ValueError,
        match=f"eigen_smooth applies to methods that weigh the activations, not {method}",
    ):
        tiny.explain(_image(3), method=method, options=ExplainOptions(eigen_smooth=True))
