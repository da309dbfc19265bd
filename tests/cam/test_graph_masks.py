"""Masks built inside ONNX Runtime give the same maps as masks built on the host."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from builders import tiny_forward, tiny_model, tiny_weights
from test_engine import _tiny_image

from scorecam_onnx import Explainer, FasterScoreCam, Runtime, method_from
from scorecam_onnx.cam.graph_masks import IMAGE, maps_input, masked_scorer_graph


@pytest.mark.parametrize(("align", "bands"), [(False, 3), (True, 3), (False, 1), (True, 4)])
def test_scorer_graph_is_model_of_masked_image(align, bands):
    graph = masked_scorer_graph(tiny_model(bands=bands), "input", (8, 8), align)
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, bands, 8, 8)).astype(np.float32)
    maps = rng.random((5, 4, 4), dtype=np.float32)
    got = session.run(["logits"], {IMAGE: x, maps_input(align): maps})[0]
    up = F.interpolate(
        torch.from_numpy(maps)[:, None], size=(8, 8), mode="bilinear", align_corners=align
    ).numpy()
    want = tiny_forward((x * up).astype(np.float64), tiny_weights(bands=bands))[1]
    np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize(
    ("method", "preset"),
    [
        ("scorecam", "paper"),
        ("scorecam", "pytorch-grad-cam"),
        ("scorecam", "torchcam"),
        ("iscam", None),
        ("sscam", None),
        ("faster-scorecam", None),
    ],
)
def test_device_masks_match_host_masks(tiny_bundle, method, preset):
    host = Explainer(tiny_bundle, Runtime(provider="cpu", device_masks=False))
    device = Explainer(tiny_bundle, Runtime(provider="cpu", device_masks=True))
    image = _tiny_image(13)
    chosen = method_from(method, preset, samples=3, channels=2)
    a, b = host.explain_one(image, method=chosen), device.explain_one(image, method=chosen)
    np.testing.assert_allclose(a.saliency, b.saliency, atol=1e-5)
    assert a.forwards == b.forwards


def test_default_bundle_device_masks(default_explainer, chelsea):
    device = Explainer(default_explainer.bundle, Runtime(provider="cpu", device_masks=True))
    method = FasterScoreCam(preset="pytorch-grad-cam")
    a = default_explainer.explain_one(chelsea, method=method)
    b = device.explain_one(chelsea, method=method)
    np.testing.assert_allclose(a.saliency, b.saliency, atol=1e-5)


def test_device_masks_on_a_four_band_model(tmp_path):
    from scorecam_onnx import write_bundle
    from scorecam_onnx.bundle import Preprocessing

    prep = Preprocessing(mean=(0.5,), std=(0.25,))
    bundle = write_bundle(tiny_model(bands=4), tmp_path / "b4", "feat", preprocessing=prep)
    image = np.random.default_rng(7).uniform(0, 1, (16, 16, 4)).astype(np.float32)
    host = Explainer(bundle, Runtime(provider="cpu", device_masks=False))
    device = Explainer(bundle, Runtime(provider="cpu", device_masks=True))
    a, b = host.explain_one(image), device.explain_one(image)
    np.testing.assert_allclose(a.saliency, b.saliency, atol=1e-5)
