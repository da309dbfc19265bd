"""An image as the model reads it: its pixels in their own depth and bands (`Picture`),
read from any source and format, turned into the model input and into an RGB picture to
draw on."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from .bundle.manifest import ImageConvention, InputSpec
from .errors import ImageError
from .formats import (
    bands_fit,
    check_array,
    is_dicom,
    is_npy,
    is_tiff,
    read_dicom,
    read_npy,
    read_tiff,
)
from .images import (
    DEFAULT_MAX_PIXELS,
    INTERPOLATION,
    LETTERBOX_GREY,
    composite_over_white,
    crop_box,
    decode_pixels,
    place,
    read_file,
)
from .render import bands, rows

__all__ = ["Picture", "display", "model_input", "preprocess", "read_picture"]

GREY_NOTE = "colour images given to a 1-channel model are converted to grey (BT.601 luma)"
_SAID: set[str] = set()  # notes given in this process (each is said once)
# The largest value of each integer depth read as it is (no range given).
DEPTH_MAX = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


@dataclass(frozen=True)
class Picture:
    """An image's pixels (H×W×C, in the file's depth; colour in RGB order) and the range of
    values that maps to [0, 1].

    Attributes:
        pixels: the bands the model reads, one per input channel.
        low, high: the values that become 0 and 1 (after `slope` and `intercept`); values
            outside are clipped unless `exact`.
        slope, intercept: a DICOM file's rescale (value · slope + intercept).
        invert: MONOCHROME1: 1 − the unit value.
        exact: 8- or 16-bit pixels over their whole depth: resized as they are, then scaled.
    """

    pixels: NDArray[Any]
    low: float
    high: float
    slope: float = 1.0
    intercept: float = 0.0
    invert: bool = False
    exact: bool = False

    @property
    def shape(self) -> tuple[int, ...]:
        """H×W×C."""
        return tuple(self.pixels.shape)


def read_picture(
    image: Any,
    spec: ImageConvention,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    frame: int = 0,
    name: str | None = None,
) -> Picture:
    """A path, encoded bytes (any OpenCV format, TIFF, .npy, DICOM) or an array (H×W or
    H×W×C; four bands of an RGB or grey model are colour and alpha) as the picture the
    input `spec` reads: its bands matched to the input's channels (one grey band for an RGB
    input, repeated once resized) and its range from the spec (a range or window), the
    DICOM file, or its bit depth. Errors name the image as `name` (default: its path, or
    "image bytes")."""
    if isinstance(image, Picture):
        if not _fits(image.shape[2], spec.channels):
            raise ImageError(
                f"a picture of {image.shape[2]} bands for a {spec.channels}-channel model",
                name or "picture",
            )
        return image
    if isinstance(image, np.ndarray):
        check_array(image.shape, image.dtype, "image array", max_pixels)
        return _picture(image, spec, name or "image array", alpha=True)
    if isinstance(image, str | Path):
        data = read_file(Path(image))
        return _from_bytes(data, name or str(image), spec, max_pixels, frame)
    if isinstance(image, bytes | bytearray | memoryview):
        return _from_bytes(bytes(image), name or "image bytes", spec, max_pixels, frame)
    raise TypeError(f"expected a path, bytes or an array, got {type(image).__name__}")


def _from_bytes(data: bytes, name: str, spec: ImageConvention, limit: int, frame: int) -> Picture:
    if not data:
        raise ImageError("empty file", name)
    if is_dicom(data):
        found = read_dicom(data, name, limit, frame, spec.voi_lut)
        low, high = spec.value_range() or found.window or found.natural
        pixels = _bands(found.pixels, spec.channels, name, alpha=False)
        return Picture(pixels, low, high, found.slope, found.intercept, found.invert)
    if is_npy(data):
        return _picture(read_npy(data, name, limit), spec, name, alpha=False)
    if is_tiff(data):
        banded = read_tiff(data, name, limit, spec.channels)
        if banded is not None:
            return _picture(banded[0], spec, name, alpha=banded[1])
    keep_alpha = spec.channels in (2, 4)
    try:
        return _picture(decode_pixels(data, name, limit, keep_alpha), spec, name, alpha=True)
    except ImageError as exc:  # a TIFF OpenCV cannot decode may be one tifffile reads
        forced = read_tiff(data, name, limit, spec.channels, True) if is_tiff(data) else None
        if forced is None or "OpenCV can decode" not in exc.reason:
            raise
        return _picture(forced[0], spec, name, alpha=forced[1])


def _picture(array: NDArray[Any], spec: ImageConvention, name: str, alpha: bool) -> Picture:
    """An array's picture: the range of its depth (8 or 16 bits: exact; other integers
    0–255, floats 0–1) unless the spec gives one. `alpha`: a last band of two or four is
    alpha, composited over white when the model has one band fewer."""
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    given = spec.value_range()
    top = DEPTH_MAX.get(array.dtype)
    pixels = _bands(array, spec.channels, name, alpha)
    if given is not None:
        return Picture(pixels, *given)
    if top is not None and pixels.dtype == array.dtype:
        return Picture(pixels, 0.0, top, exact=True)
    return Picture(pixels, 0.0, 1.0 if array.dtype.kind == "f" else top or 255.0)


def _fits(have: int, channels: int) -> bool:
    """Whether a picture of `have` bands is read by an input of `channels` channels (one
    grey band is repeated for an RGB input)."""
    return have == channels or (have == 1 and channels == 3)


def _bands(array: NDArray[Any], channels: int, name: str, alpha: bool) -> NDArray[Any]:
    """The array as H×W×bands for an input of `channels`: as it is when the counts agree or
    it is grey for an RGB input; alpha (when `alpha`) composited over white; colour made
    grey for a 1-channel input."""
    pixels = array[..., None] if array.ndim == 2 else array
    have = pixels.shape[2]
    if not bands_fit(have, channels, alpha):
        raise ImageError(f"a {have}-band image for a {channels}-channel model", name)
    if alpha and have in (2, 4) and channels < have:
        pixels, have = composite_over_white(pixels), have - 1
    if have == 3 and channels == 1:
        if GREY_NOTE not in _SAID:
            _SAID.add(GREY_NOTE)
            warnings.warn(GREY_NOTE, stacklevel=4)
        usable = pixels if pixels.dtype in (np.uint8, np.uint16) else pixels.astype(np.float32)
        return np.asarray(cv2.cvtColor(usable, cv2.COLOR_RGB2GRAY))[..., None]
    return pixels


def unit_values(picture: Picture, bands_of: tuple[int, ...] | None = None) -> NDArray[np.float32]:
    """The picture's values on [0, 1] (H×W×C, float32; of the bands `bands_of`), mapped a
    band of rows at a time."""
    pixels = picture.pixels if bands_of is None else picture.pixels[..., list(bands_of)]
    out = np.empty(pixels.shape, np.float32)
    span = picture.high - picture.low
    factor = np.float32(picture.slope / span) if span > 0 else np.float32(0.0)
    offset = np.float32((picture.intercept - picture.low) / span) if span > 0 else np.float32(0)
    step = rows(pixels.shape[1])
    for top in bands(*pixels.shape[:2]):
        if span > 0:
            band = pixels[top : top + step].astype(np.float32) * factor + offset
        else:  # a window of width 1: a threshold
            values = pixels[top : top + step] * picture.slope + picture.intercept
            band = (values > picture.low).astype(np.float32)
        if not picture.exact:
            np.clip(np.nan_to_num(band), 0.0, 1.0, out=band)
        out[top : top + step] = 1.0 - band if picture.invert else band
    return out


def model_input(picture: Picture, spec: InputSpec) -> NDArray[np.float32]:
    """The model input (1×C×H×W, NCHW) of a picture, per the manifest.

    Resize policy "stretch" resizes the whole image to H×W; "crop" scales it to cover H×W
    and cuts out the centre (see `crop_box` for the crop fraction); "letterbox" scales it to
    fit and pads it with grey (114 of 255). 8- and 16-bit pixels over their whole depth are
    resized as they are, other values mapped to [0, 1] first.
    """
    sh, sw, top, left = crop_box(picture.shape, spec)
    interpolation = INTERPOLATION[spec.interpolation]
    if picture.exact:
        source, grey = picture.pixels, LETTERBOX_GREY * picture.high / 255.0
        factor = spec.scale if picture.high == 255.0 else spec.scale * 255.0 / picture.high
    else:
        source, grey, factor = unit_values(picture), LETTERBOX_GREY / 255.0, 255.0 * spec.scale
    scaled_image = resized_bands(source, (sw, sh), interpolation)
    if scaled_image.shape[2] == 1 and spec.channels == 3:
        scaled_image = np.repeat(scaled_image, 3, axis=2)
    resized = place(scaled_image, spec, top, left, grey)
    if spec.color == "BGR":
        resized = resized[..., ::-1]
    values = resized.astype(np.float32) * np.float32(factor)
    normalised = (values - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    return np.ascontiguousarray(normalised.transpose(2, 0, 1)[None])


def resized_bands(image: NDArray[Any], size: tuple[int, int], interpolation: int) -> NDArray[Any]:
    """H×W×C resized to `size` (width, height), at most four bands at a time (OpenCV's area
    resizing takes no more); always H×W×C."""
    parts = [
        cv2.resize(image[..., start : start + 4], size, interpolation=interpolation).reshape(
            size[1], size[0], -1
        )
        for start in range(0, image.shape[2], 4)
    ]
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=2)


def display(picture: Picture, spec: ImageConvention) -> NDArray[np.uint8]:
    """An H×W×3 uint8 RGB picture to draw on: the display bands (default the first three;
    one band as grey), on the range the model reads."""
    channels = picture.shape[2]
    chosen = spec.display_bands or ((0, 1, 2) if channels >= 3 else (0, 0, 0))
    if picture.exact and picture.pixels.dtype == np.uint8 and chosen == (0, 1, 2):
        return picture.pixels if channels == 3 else np.ascontiguousarray(picture.pixels[..., :3])
    out = np.empty((*picture.shape[:2], 3), np.uint8)
    step = rows(picture.shape[1])
    for top in bands(*picture.shape[:2]):
        part = replace(picture, pixels=picture.pixels[top : top + step])
        unit = unit_values(part, chosen)
        out[top : top + step] = np.clip(unit * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return out


def preprocess(image: Any, spec: InputSpec) -> NDArray[np.float32]:
    """The model input (1×C×H×W) of an image (a path, bytes, an array) per the manifest."""
    return model_input(read_picture(image, spec), spec)
