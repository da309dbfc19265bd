"""The gradient-free family against oracles of their formulas."""

from __future__ import annotations

import numpy as np
import oracles
import pytest
from builders import tiny_forward, tiny_weights
from test_engine import _tiny_image

from scorecam_onnx import (
    EigenCam,
    Explainer,
    ExplainOptions,
    FasterScoreCam,
    ISCam,
    Runtime,
    ScoreCam,
    SSCam,
    TopK,
    method_from,
)
from scorecam_onnx.request import request_from


@pytest.fixture
def tiny(tiny_bundle):
    explainer = Explainer(tiny_bundle, Runtime(provider="cpu"))
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
    res = explainer.explain_one(image, method=FasterScoreCam(channels=2))
    _close(res.saliency_input, oracles.paper(x, acts[top], model, c))
    assert res.forwards == 1 + 2
    assert np.count_nonzero(res.weights) == 2


def test_sscam_matches_oracle(tiny):
    explainer, image, x, acts, model, c = tiny
    res = explainer.explain_one(image, method=SSCam(samples=6))
    _close(res.saliency_input, oracles.sscam(x, acts, model, c, samples=6, std=2.0))
    assert res.preset == "torchcam"
    assert res.forwards == 1 + 6 * acts.shape[0]


def test_sscam_is_reproducible_across_batch_sizes(tiny):
    explainer, image, *_ = tiny
    maps = [
        explainer.explain_one(image, None, SSCam(samples=4), ExplainOptions(batch_size=b)).saliency
        for b in (1, 5, 64)
    ]
    for other in maps[1:]:
        np.testing.assert_allclose(other, maps[0], atol=1e-6)


def test_iscam_matches_oracle(tiny):
    explainer, image, x, acts, model, c = tiny
    res = explainer.explain_one(image, method=ISCam())
    _close(res.saliency_input, oracles.iscam(x, acts, model, c, samples=10))


def test_iscam_coefficients_by_hand():
    engine = method_from("iscam", samples=4).engine(8)
    assert [engine.coefficient(s) for s in range(4)] == [0.25, 0.75, 1.5, 2.5]


def test_eigencam_matches_oracle(tiny):
    explainer, image, x, acts, *_ = tiny
    res = explainer.explain_one(image, method=EigenCam())
    _close(res.saliency_input, oracles.eigencam(x, acts))
    assert res.forwards == 1


@pytest.mark.parametrize("method", ["scorecam", "faster-scorecam", "sscam", "iscam"])
def test_top_k_reuses_forwards_for_every_masked_method(tiny, method):
    explainer, image, *_ = tiny
    chosen = method_from(method, channels=3, samples=2)
    one = explainer.explain_one(image, method=chosen)
    three = explainer.explain(image, TopK(3), chosen)
    assert [r.forwards for r in three] == [one.forwards] * 3
    np.testing.assert_allclose(three[0].saliency, one.saliency, atol=1e-6)


def test_unknown_method():
    with pytest.raises(ValueError, match="unknown method 'gradcam'"):
        method_from("gradcam")


def test_faster_scorecam_64_channels_tracks_scorecam(default_explainer, chelsea):
    exact = default_explainer.explain_one(chelsea)
    fast = default_explainer.explain_one(chelsea, method=FasterScoreCam(channels=64))
    assert oracles.correlation(exact.saliency, fast.saliency) >= 0.95
    assert fast.forwards == 65 and exact.forwards > 5 * fast.forwards


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda ex, im: ex.explain(im, options=ExplainOptions(batch_size=0)),
            ValueError,
            "batch_size must be at least 1, got 0",
        ),
        (
            lambda ex, im: ex.explain(im, method=SSCam(samples=-1)),
            ValueError,
            "samples must be at least 1, got -1",
        ),
        (
            lambda ex, im: ex.explain(im, method=FasterScoreCam(channels=0)),
            ValueError,
            "channels must be at least 1",
        ),
        (
            lambda ex, im: ex.run(im, request_from(target=1, top_k=2)),
            ValueError,
            "give either target or top_k",
        ),
        (lambda ex, im: ex.explain(im, True), TypeError, "class ids must be integers"),
        (lambda ex, im: ex.explain(im, []), ValueError, "target list is empty"),
        (
            lambda ex, im: ex.explain(im, TopK(9)),
            ValueError,
            "top_k must be between 1 and 4, got 9",
        ),
        (
            lambda ex, im: ex.explain(im, method=ScoreCam(preset="gradcam")),
            ValueError,
            "unknown preset 'gradcam'",
        ),
    ],
)
def test_bad_settings_are_clear_errors(tiny, call, error, message):
    explainer, image, *_ = tiny
    with pytest.raises(error, match=message):
        call(explainer, image)
