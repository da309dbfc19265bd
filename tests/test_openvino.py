"""A second real execution provider: OpenVINO (extra 'openvino', its own environment).

`make test` runs these in `.venv-openvino`, where onnxruntime-openvino replaces onnxruntime;
in the main environment, which has no OpenVINO, they are not collected (marker `openvino`).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DEFAULT_BUNDLE, SAMPLES

from scorecam_onnx import Explainer, ProviderError, Runtime, method_from
from scorecam_onnx.runners.ort import available_providers

pytestmark = pytest.mark.openvino


@pytest.fixture(scope="module")
def pair():
    assert "openvino" in available_providers(), "run these where onnxruntime-openvino is"
    return (
        Explainer(DEFAULT_BUNDLE, Runtime(provider="openvino")),
        Explainer(DEFAULT_BUNDLE, Runtime(provider="cpu")),
    )


@pytest.mark.parametrize("method", ["faster-scorecam", "reciprocam", "ablationcam"])
def test_openvino_maps_equal_the_cpu_provider(pair, method):
    openvino, cpu = pair
    assert openvino.provider == "openvino" and cpu.provider == "cpu"
    a = openvino.explain_one(SAMPLES / "chelsea.png", method=method_from(method, channels=16))
    b = cpu.explain_one(SAMPLES / "chelsea.png", method=method_from(method, channels=16))
    assert a.class_id == b.class_id == 285 and a.forwards == b.forwards
    assert np.abs(a.saliency - b.saliency).max() < 1e-3
    x = cpu.preprocess(SAMPLES / "coffee.png")[1]
    np.testing.assert_allclose(openvino.forwards.scores(x), cpu.forwards.scores(x), atol=1e-4)


def test_openvino_provider_options_reach_the_provider(capfd):
    explainer = Explainer(
        DEFAULT_BUNDLE,
        Runtime(provider="OpenVINOExecutionProvider", provider_options={"device_type": "CPU"}),
    )
    assert explainer.provider == "openvino"
    capfd.readouterr()
    with pytest.raises(ProviderError, match="provider 'openvino' could not start"):
        Explainer(
            DEFAULT_BUNDLE, Runtime(provider="openvino", provider_options={"device_type": "NPU"})
        )
    assert capfd.readouterr().err == ""  # ONNX Runtime's own complaint is not shown
