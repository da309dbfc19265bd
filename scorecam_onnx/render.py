"""Pictures of saliency maps: colour heatmaps, overlays and a captioned contact sheet."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from .fileio import staged_file

# Pixels computed at a time: full-size float intermediates would cost tens of bytes per pixel.
BAND_PIXELS = 1 << 18


def bands(height: int, width: int) -> range:
    """The first rows of bands of about BAND_PIXELS pixels (`rows(width)` rows each)."""
    return range(0, height, rows(width))


def rows(width: int) -> int:
    return max(1, BAND_PIXELS // max(1, width))


def heatmap(saliency: NDArray[np.floating]) -> NDArray[np.uint8]:
    """An RGB uint8 picture of a [0, 1] map with the JET colormap (red = salient)."""
    out = np.empty((*saliency.shape[:2], 3), np.uint8)
    step = rows(saliency.shape[1])
    for top in bands(*saliency.shape[:2]):
        out[top : top + step] = _jet_bgr(saliency[top : top + step])[..., ::-1]
    return out


def _jet_bgr(saliency: NDArray[np.floating]) -> NDArray[np.uint8]:
    level = np.clip(np.nan_to_num(saliency) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.asarray(cv2.applyColorMap(level, cv2.COLORMAP_JET), np.uint8)


def overlay(
    image: NDArray[np.uint8], saliency: NDArray[np.floating], alpha: float = 0.5
) -> NDArray[np.uint8]:
    """Blend the heatmap of `saliency` over an RGB image (the map is resized to fit).

    Args:
        image: H×W×3 uint8 RGB.
        saliency: a map in [0, 1], any size.
        alpha: weight of the heatmap. Default: 0.5.
    """
    return _blend(image, saliency, alpha, bgr=False)


def overlay_png(
    image: NDArray[np.uint8],
    saliency: NDArray[np.floating],
    alpha: float = 0.5,
    box: tuple[float, float, float, float] | None = None,
    caption: str = "",
) -> memoryview:
    """PNG bytes of `overlay(image, saliency, alpha)` (a detection's `box` and `caption`
    drawn on it when given), built without a second full copy (a buffer over the encoder's
    output: write it, or `bytes()` it)."""
    blended = _blend(image, saliency, alpha, bgr=True)
    if box is not None:
        draw_box(blended, box, caption)
    ok, data = cv2.imencode(".png", blended)
    if not ok:
        raise ValueError("PNG encoding failed")
    return np.ascontiguousarray(data).data.cast("B")


def write_overlay_png(
    path: Path,
    image: NDArray[np.uint8],
    saliency: NDArray[np.floating],
    alpha: float = 0.5,
    box: tuple[float, float, float, float] | None = None,
    caption: str = "",
) -> None:
    """Write `overlay(image, saliency, alpha)` as a PNG file, atomically, with a detection's
    `box` and `caption` drawn on it when given; the encoder streams rows to the file, so no
    encoded copy is held in memory."""
    blended = _blend(image, saliency, alpha, bgr=True)
    if box is not None:
        draw_box(blended, box, caption)
    with staged_file(path) as staging:
        if not cv2.imwrite(str(staging), blended):
            raise ValueError(f"{path}: PNG encoding failed")


# A detection's box and caption: white on a dark outline, readable over any heatmap.
BOX_COLOUR, OUTLINE = (255, 255, 255), (0, 0, 0)


def draw_box(
    image: NDArray[np.uint8], box: tuple[float, float, float, float], caption: str = ""
) -> NDArray[np.uint8]:
    """Draw a box (x1, y1, x2, y2, in pixels) and its caption on `image`, in place."""
    x1, y1, x2, y2 = (round(v) for v in box)
    thick = max(1, round(min(image.shape[:2]) / 300))
    cv2.rectangle(image, (x1, y1), (x2, y2), OUTLINE, thick + 2)
    cv2.rectangle(image, (x1, y1), (x2, y2), BOX_COLOUR, thick)
    if caption:
        scale = 0.4 * thick
        (w, h), base = cv2.getTextSize(caption, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        top = y1 - h - base - 2 if y1 - h - base - 2 >= 0 else y1 + 1
        cv2.rectangle(image, (x1, top), (x1 + w + 4, top + h + base + 2), OUTLINE, -1)
        cv2.putText(
            image,
            caption,
            (x1 + 2, top + h + 1),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            BOX_COLOUR,
            thick,
            cv2.LINE_AA,
        )
    return image


def _blend(
    image: NDArray[np.uint8], saliency: NDArray[np.floating], alpha: float, bgr: bool
) -> NDArray[np.uint8]:
    """The overlay in RGB (or BGR, for OpenCV's encoders), a band of rows at a time."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if saliency.shape[:2] != image.shape[:2]:
        saliency = np.asarray(
            cv2.resize(
                saliency.astype(np.float32),
                (image.shape[1], image.shape[0]),
                interpolation=cv2.INTER_LINEAR,
            ),
            np.float32,
        )
    out = np.empty(image.shape, np.uint8)
    step = rows(image.shape[1])
    for top in bands(*image.shape[:2]):
        rgb = image[top : top + step]
        heat = _jet_bgr(saliency[top : top + step])[..., ::-1]
        blend = rgb.astype(np.float32) * (1.0 - alpha) + heat * alpha
        band = np.clip(blend + 0.5, 0, 255).astype(np.uint8)
        out[top : top + step] = band[..., ::-1] if bgr else band
    return out


def fitted(
    image: NDArray[np.uint8], saliency: NDArray[np.floating], height: int
) -> tuple[NDArray[np.uint8], NDArray[np.float32]]:
    """The image and its map resized to `height` pixels high (aspect kept)."""
    width = max(1, round(image.shape[1] * height / image.shape[0]))
    photo = np.asarray(cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA), np.uint8)
    small = np.asarray(
        cv2.resize(saliency.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR),
        np.float32,
    )
    return photo, small


def labelled_row(
    pictures: Sequence[tuple[NDArray[np.uint8], str]], pad: int = 8, caption_h: int = 28
) -> NDArray[np.uint8]:
    """Pictures of one height side by side on white, each with its caption above it."""
    height = pictures[0][0].shape[0]
    width = sum(p.shape[1] for p, _ in pictures) + pad * (len(pictures) + 1)
    strip = np.full((height + caption_h, width, 3), 255, np.uint8)
    x = pad
    for picture, caption in pictures:
        strip[caption_h:, x : x + picture.shape[1]] = picture
        _caption(strip, caption, (x, caption_h - 8))
        x += picture.shape[1] + pad
    return strip


def stacked(strips: Sequence[NDArray[np.uint8]], pad: int = 8) -> NDArray[np.uint8]:
    """Strips one under the other on white, left-aligned."""
    width = max(s.shape[1] for s in strips)
    sheet = np.full((sum(s.shape[0] + pad for s in strips) + pad, width, 3), 255, np.uint8)
    y = pad
    for strip in strips:
        sheet[y : y + strip.shape[0], : strip.shape[1]] = strip
        y += strip.shape[0] + pad
    return sheet


def _caption(picture: NDArray[np.uint8], text: str, where: tuple[int, int]) -> None:
    cv2.putText(picture, text, where, cv2.FONT_HERSHEY_SIMPLEX, 0.6, (20, 20, 20), 1, cv2.LINE_AA)


def contact_sheet(
    rows: Sequence[tuple[NDArray[np.uint8], NDArray[np.floating], str]], height: int = 224
) -> NDArray[np.uint8]:
    """One picture with a row per item: photo | heatmap | overlay, the item's caption over
    the row.

    Args:
        rows: (RGB image, saliency at the image's size, caption) for each item.
        height: height of each tile in pixels. Default: 224.
    """
    if not rows:
        raise ValueError("a contact sheet needs at least one row")
    built = []
    for image, saliency, caption in rows:
        photo, small = fitted(image, saliency, height)
        built.append(
            labelled_row([(photo, caption), (heatmap(small), ""), (overlay(photo, small), "")])
        )
    return stacked(built)


def encode_png(rgb: NDArray[np.uint8]) -> bytes:
    """PNG bytes of an RGB uint8 image."""
    ok, data = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
    if not ok:
        raise ValueError("PNG encoding failed")
    return data.tobytes()
