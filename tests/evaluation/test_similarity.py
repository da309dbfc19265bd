"""The sanity checks' similarities against SciPy's and scikit-image's own computations on
the same maps."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr
from skimage.feature import hog as skimage_hog
from skimage.metrics import structural_similarity

from scorecam_onnx.evaluation.similarity import hog, hog_similarity, similarities, spearman, ssim

RNG = np.random.default_rng(7)


def _maps(shape):
    """Two related maps in [0, 1] with many ties (zeros after a cut, as ReLU'd maps have)."""
    a = RNG.random(shape)
    b = np.clip(a + RNG.normal(0, 0.3, shape), 0, 1)
    a[a < 0.3], b[b < 0.5] = 0.0, 0.0
    return a, b


@pytest.mark.parametrize("shape", [(224, 224), (37, 53), (7, 9), (64, 48)])
def test_spearman_and_ssim_equal_scipy_and_skimage(shape):
    a, b = _maps(shape)
    assert spearman(a, b) == pytest.approx(spearmanr(a.ravel(), b.ravel())[0], abs=1e-12)
    assert ssim(a, b) == pytest.approx(structural_similarity(a, b, data_range=1.0), abs=1e-12)


@pytest.mark.parametrize("shape", [(224, 224), (64, 80), (50, 49)])
def test_hog_equals_skimage_with_the_papers_cells(shape):
    a, b = _maps(shape)
    for image in (a, b):
        expected = skimage_hog(
            image, orientations=9, pixels_per_cell=(16, 16), cells_per_block=(3, 3),
            block_norm="L2-Hys",
        )  # fmt: skip
        assert hog(image) == pytest.approx(expected, abs=1e-6)
    reference = pearsonr(
        skimage_hog(a, pixels_per_cell=(16, 16)), skimage_hog(b, pixels_per_cell=(16, 16))
    )
    assert hog_similarity(a, b) == pytest.approx(reference[0], abs=1e-6)


def test_a_constant_map_has_no_correlation_and_identical_maps_are_alike():
    assert math.isnan(hog_similarity(*_maps((32, 32))))  # smaller than one 3×3-cell block
    a, _ = _maps((64, 64))
    found = similarities(a, np.zeros_like(a))
    assert math.isnan(found["spearman"]) and math.isnan(found["hog"])
    same = similarities(a, a.copy())
    assert same["spearman"] == pytest.approx(1.0) and same["ssim"] == pytest.approx(1.0)
    assert same["hog"] == pytest.approx(1.0) and same["spearman_abs"] == pytest.approx(1.0)
    assert similarities(a, 1 - a)["spearman"] == pytest.approx(-1.0)
