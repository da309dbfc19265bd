"""The interpolation matrices against PyTorch's and OpenCV's own resizing."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from scorecam_onnx.cam.interp import Resizer, bilinear_matrix


@pytest.mark.parametrize("align", [False, True])
@pytest.mark.parametrize(
    ("src", "dst"), [((7, 7), (224, 224)), ((3, 5), (17, 9)), ((4, 4), (8, 8)), ((1, 3), (5, 7))]
)
def test_matches_torch_interpolate(src, dst, align):
    maps = np.random.default_rng(0).normal(size=(6, *src)).astype(np.float32)
    want = F.interpolate(
        torch.from_numpy(maps)[None], size=dst, mode="bilinear", align_corners=align
    )[0].numpy()
    got = Resizer(src, dst, align)(maps)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_half_pixel_matches_opencv_linear():
    img = np.random.default_rng(1).normal(size=(7, 9)).astype(np.float32)
    want = cv2.resize(img, (31, 20), interpolation=cv2.INTER_LINEAR)
    got = Resizer((7, 9), (20, 31), align_corners=False)(img)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_matrix_rows_by_hand():
    # 2 → 4 with half-pixel centres: sources -0.25 (clamped to 0), 0.25, 0.75, 1.25 (→ 1).
    m = bilinear_matrix(4, 2, align_corners=False)
    np.testing.assert_allclose(m, [[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]])
    # 2 → 3 with aligned corners: sources 0, 0.5, 1.
    np.testing.assert_allclose(
        bilinear_matrix(3, 2, align_corners=True), [[1, 0], [0.5, 0.5], [0, 1]]
    )
