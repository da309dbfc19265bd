"""The CUDA path (skipped unless ONNX Runtime offers CUDA); run by scripts/gpu-check.sh."""

from __future__ import annotations

import numpy as np
import pytest

from scorecam_onnx import Explainer, Runtime, ScoreCam, TopK


@pytest.mark.gpu
@pytest.mark.parametrize("preset", ["paper", "pytorch-grad-cam", "torchcam"])
def test_cuda_matches_cpu(default_explainer, chelsea, preset):
    cuda = Explainer(default_explainer.bundle, Runtime(provider="cuda"))
    assert cuda.provider == "cuda" and cuda.forwards.maps_scorer is not None
    on_gpu = cuda.explain_one(chelsea, method=ScoreCam(preset=preset))
    on_cpu = default_explainer.explain_one(chelsea, method=ScoreCam(preset=preset))
    assert on_gpu.class_id == on_cpu.class_id
    assert np.corrcoef(on_gpu.saliency.ravel(), on_cpu.saliency.ravel())[0, 1] >= 0.999
    assert on_gpu.forwards == on_cpu.forwards


@pytest.mark.gpu
def test_cuda_top5_reuses_forwards(default_explainer, chelsea):
    cuda = Explainer(default_explainer.bundle, Runtime(provider="cuda"))
    one = cuda.explain_one(chelsea)
    five = cuda.explain(chelsea, TopK(5))
    assert [r.forwards for r in five] == [one.forwards] * 5
