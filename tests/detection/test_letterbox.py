"""The letterbox resize policy (YOLO's), checked against the image built by hand: scale to
fit (ratio min(H/h, W/w)), centre on grey 114 with the padding before it rounded from half
the margin minus 0.1; maps and boxes brought back through the same placement."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import SAMPLES

from scorecam_onnx.bundle.manifest import InputSpec
from scorecam_onnx.images import (
    boxes_to_input,
    boxes_to_original,
    load_image,
    to_original,
)
from scorecam_onnx.pictures import preprocess

SPEC = InputSpec(
    name="images",
    height=64,
    width=64,
    mean=(0.0, 0.0, 0.0),
    std=(1.0, 1.0, 1.0),
    resize="letterbox",
    interpolation="linear",
)


def test_a_letterboxed_input_is_the_image_fitted_on_grey():
    rgb = load_image(SAMPLES / "chelsea.png")  # 300 × 451
    ratio = min(64 / 300, 64 / 451)
    h, w = round(300 * ratio), round(451 * ratio)  # 43 × 64
    top = round((64 - h) / 2 - 0.1)  # 10.5 - 0.1 → 10
    canvas = np.full((64, 64, 3), 114, np.uint8)
    canvas[top : top + h, :w] = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_LINEAR)
    want = canvas.astype(np.float32).transpose(2, 0, 1)[None] / np.float32(255.0)
    got = preprocess(rgb, SPEC)
    assert (h, w, top) == (43, 64, 10)
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_maps_drop_the_padding_and_boxes_map_both_ways():
    shape = (300, 451, 3)
    inside = np.zeros((64, 64), np.float32)
    inside[:10] = inside[53:] = 1.0  # the padding only
    assert to_original(inside, shape, SPEC).max() == 0.0
    input_box = np.array([[0.0, 10.0, 32.0, 31.5]])
    # each axis by its resized size over the image's: 64/451 and 43/300
    original = boxes_to_original(input_box, shape, SPEC)
    np.testing.assert_allclose(original, [[0.0, 0.0, 32 * 451 / 64, 21.5 * 300 / 43]])
    np.testing.assert_allclose(boxes_to_input(original, shape, SPEC), input_box)
    clipped = boxes_to_original(np.array([[-5.0, 0.0, 70.0, 64.0]]), shape, SPEC)
    assert clipped.tolist() == [[0.0, 0.0, 451.0, 300.0]]


@pytest.mark.parametrize("shape", [(300, 451, 3), (451, 300, 3), (64, 64, 3), (10, 500, 3)])
def test_the_scaled_image_always_fits(shape):
    image = np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)
    x = preprocess(image, SPEC)
    assert x.shape == (1, 3, 64, 64)
    grey = np.isclose(x[0], 114 / 255).all(axis=0)
    rows, cols = np.flatnonzero(~grey.all(axis=1)), np.flatnonzero(~grey.all(axis=0))
    ratio = min(64 / shape[0], 64 / shape[1])
    assert rows.size <= round(shape[0] * ratio) and cols.size <= round(shape[1] * ratio)


@pytest.mark.parametrize("shape", [(65, 64, 3), (64, 65, 3), (1000, 5, 3)])
def test_a_one_pixel_margin_or_a_sliver_still_fills_the_input(shape):
    """One pixel of padding rounds to 0 before and 1 after (ultralytics pads the same); a
    side that would round to nothing keeps one pixel."""
    image = np.full(shape, 200, np.uint8)
    x = preprocess(image, SPEC)
    assert x.shape == (1, 3, 64, 64)
    grey = np.isclose(x[0, 0], 114 / 255)
    assert grey.sum() == 64 * 64 - np.isclose(x[0, 0], 200 / 255).sum() > 0
    back = to_original(np.ones((64, 64), np.float32), shape, SPEC)
    assert back.shape == shape[:2] and back.min() == 1.0
