"""The gradient-free family against oracles of their formulas."""

from __future__ import annotations

import numpy as np
import oracles
import pytest
from builders import tiny_forward, tiny_weights
from test_engine import _tiny_image

from scorecam_onnx import Explainer, make_method


@pytest.fixture
def tiny(tiny_bundle):
    explainer = Explainer(tiny_bundle, provider="cpu")
    image = _tiny_image(11)
    _, x = explainer.preprocess(image)
    w = tiny_weights()
    acts, logits = tiny_forward(x.astype(np.float64), w)
    model = lambda batch: tiny_forward(batch.astype(np.float64), w)[1]  # noqa: E731
    return explainer, image, x, acts[0].astype(np.float32), model, int(np.argmax(logits[0]))


def _close(got, want):
    assert oracles.correlation(got, want) >= 0.9999
    assert np.abs(got - want).max() <= 1e-4


def test_faster_scorecam_is_scorecam_on_the_top_channels(tiny):
    explainer, image, x, acts, model, c = tiny
    spread = acts.reshape(acts.shape[0], -1).std(axis=1)
    top = np.argsort(-spread)[:2]
    res = explainer.explain(image, method="faster-scorecam", channels=2)
    _close(res.saliency_input, oracles.paper(x, acts[top], model, c))
    assert res.forwards == 1 + 2
    assert np.count_nonzero(res.weights) == 2


def test_sscam_matches_oracle(tiny):
    explainer, image, x, acts, model, c = tiny
    res = explainer.explain(image, method="sscam", samples=6)
    _close(res.saliency_input, oracles.sscam(x, acts, model, c, samples=6, std=2.0))
    assert res.preset == "torchcam"
    assert res.forwards == 1 + 6 * acts.shape[0]


def test_sscam_is_reproducible_across_batch_sizes(tiny):
    explainer, image, *_ = tiny
    maps = [explainer.explain(image, method="sscam", samples=4, batch_size=b).saliency
            for b in (1, 5, 64)]
    for other in maps[1:]:
        np.testing.assert_allclose(other, maps[0], atol=1e-6)


def test_iscam_matches_oracle(tiny):
    explainer, image, x, acts, model, c = tiny
    res = explainer.explain(image, method="iscam")
    _close(res.saliency_input, oracles.iscam(x, acts, model, c, samples=10))


def test_iscam_coefficients_by_hand():
    engine = make_method("iscam", samples=4)
    assert [engine.coefficient(s) for s in range(4)] == [0.25, 0.75, 1.5, 2.5]


def test_eigencam_matches_oracle(tiny):
    explainer, image, x, acts, *_ = tiny
    res = explainer.explain(image, method="eigencam")
    _close(res.saliency_input, oracles.eigencam(x, acts))
    assert res.forwards == 1


@pytest.mark.parametrize("method", ["scorecam", "faster-scorecam", "sscam", "iscam"])
def test_top_k_reuses_forwards_for_every_masked_method(tiny, method):
    explainer, image, *_ = tiny
    options = {"method": method, "channels": 3, "samples": 2}
    one = explainer.explain(image, **options)
    three = explainer.explain(image, top_k=3, **options)
    assert [r.forwards for r in three] == [one.forwards] * 3
    np.testing.assert_allclose(three[0].saliency, one.saliency, atol=1e-6)


def test_unknown_method():
    with pytest.raises(ValueError, match="unknown method 'gradcam'"):
        make_method("gradcam")


def test_faster_scorecam_64_channels_tracks_scorecam(default_explainer, chelsea):
    exact = default_explainer.explain(chelsea)
    fast = default_explainer.explain(chelsea, method="faster-scorecam", channels=64)
    assert oracles.correlation(exact.saliency, fast.saliency) >= 0.95
    assert fast.forwards == 65 and exact.forwards > 5 * fast.forwards


@pytest.mark.parametrize(("options", "error", "message"), [
    ({"batch_size": 0}, ValueError, "batch_size must be at least 1, got 0"),
    ({"method": "sscam", "samples": -1}, ValueError, "samples must be at least 1, got -1"),
    ({"method": "faster-scorecam", "channels": 0}, ValueError, "channels must be at least 1"),
    ({"target": 1, "top_k": 2}, ValueError, "give either target or top_k"),
    ({"target": True}, TypeError, "class ids must be integers"),
    ({"target": []}, ValueError, "target list is empty"),
    ({"top_k": 9}, ValueError, "top_k must be between 1 and 4, got 9"),
    ({"preset": "gradcam"}, ValueError, "unknown preset 'gradcam'"),
])
def test_bad_settings_are_clear_errors(tiny, options, error, message):
    explainer, image, *_ = tiny
    with pytest.raises(error, match=message):
        explainer.explain(image, **options)
