"""Heatmaps, overlays and the contact sheet."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from scorecam_onnx import contact_sheet, heatmap, overlay


def test_heatmap_ends_are_blue_and_red():
    colours = heatmap(np.array([[0.0, 1.0]]))
    assert colours.dtype == np.uint8 and colours.shape == (1, 2, 3)
    r0, _, b0 = colours[0, 0].astype(int)
    r1, _, b1 = colours[0, 1].astype(int)
    assert b0 > 100 and r0 == 0  # low saliency: blue
    assert r1 > 100 and b1 == 0  # high saliency: red


def test_overlay_blends_by_alpha():
    image = np.full((4, 6, 3), 200, np.uint8)
    sal = np.linspace(0, 1, 24, dtype=np.float32).reshape(4, 6)
    np.testing.assert_array_equal(overlay(image, sal, alpha=0.0), image)
    np.testing.assert_array_equal(overlay(image, sal, alpha=1.0), heatmap(sal))
    half = overlay(image, sal, alpha=0.5).astype(int)
    want = np.floor(image * 0.5 + heatmap(sal) * 0.5 + 0.5).astype(int)
    np.testing.assert_array_equal(half, want)
    with pytest.raises(ValueError, match="alpha must be in"):
        overlay(image, sal, alpha=2.0)


def test_overlay_resizes_the_map():
    image = np.zeros((30, 40, 3), np.uint8)
    assert overlay(image, np.ones((7, 7), np.float32)).shape == (30, 40, 3)


def test_contact_sheet_layout():
    rows = [
        (np.zeros((50, 100, 3), np.uint8), np.zeros((50, 100), np.float32), "a"),
        (np.zeros((100, 50, 3), np.uint8), np.ones((100, 50), np.float32), "b"),
    ]
    sheet = contact_sheet(rows, height=40)
    # Row 1: tiles 80 wide; row 2: 20 wide. Width = 3 tiles + 4 gaps of 8 for the widest row.
    assert sheet.shape[1] == 3 * 80 + 4 * 8
    assert sheet.shape[0] == 2 * (40 + 28) + 3 * 8
    assert cv2.cvtColor(sheet, cv2.COLOR_RGB2GRAY).min() < 255
    with pytest.raises(ValueError):
        contact_sheet([])
