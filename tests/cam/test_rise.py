"""RISE against a plain re-implementation with the same masks: one masked image at a time,
the softmax probability of the class, Σ score·M / (N·p), min-max."""

from __future__ import annotations

import numpy as np
from oracles import rise
from test_engine import _tiny_image

from scorecam_onnx import Explainer, ExplainOptions, Rise, Runtime, TopK
from scorecam_onnx.cam.rise import rise_mask


def test_rise_masks_follow_the_paper():
    m = rise_mask(3, (224, 224), 7, 0.5, seed=1)
    assert m.shape == (224, 224) and m.min() >= 0.0 and m.max() <= 1.0
    again = rise_mask(3, (224, 224), 7, 0.5, seed=1)
    assert np.array_equal(m, again) and not np.array_equal(
        m, rise_mask(4, (224, 224), 7, 0.5, seed=1)
    )
    mean = np.mean([rise_mask(i, (224, 224), 7, 0.5, 0).mean() for i in range(200)])
    assert abs(mean - 0.5) < 0.03  # cells kept with probability p


def test_rise_matches_its_definition_at_any_batch_size(tiny_bundle):
    ex = Explainer(tiny_bundle, Runtime(provider="cpu"))
    image = _tiny_image()
    got = ex.explain_one(image, None, Rise(samples=60), ExplainOptions(batch_size=7))
    want = rise(ex, image, got.class_id, 60, 7, 0.5, 0)
    assert got.forwards == 61
    assert float(np.abs(got.saliency_input - want).max()) <= 1e-5
    one = ex.explain_one(image, got.class_id, Rise(samples=60), ExplainOptions(batch_size=1))
    many = ex.explain_one(image, got.class_id, Rise(samples=60), ExplainOptions(batch_size=64))
    assert float(np.abs(one.saliency_input - many.saliency_input).max()) <= 1e-6
    both = ex.explain(image, TopK(2), Rise(samples=60))  # from the same forwards
    assert [b.forwards for b in both] == [61, 61] and both[0].class_id == got.class_id
    assert float(np.abs(both[0].saliency_input - want).max()) <= 1e-5
    second = rise(ex, image, both[1].class_id, 60, 7, 0.5, 0)
    assert float(np.abs(both[1].saliency_input - second).max()) <= 1e-5
