"""Reading the image formats OpenCV does not: NumPy arrays (.npy), multi-band TIFF (with
`tifffile`) and DICOM (with `pydicom`), each bounded by the pixel limit before decoding."""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .errors import ImageError

NPY_MAGIC = b"\x93NUMPY"
TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
# NumPy dtypes an array image may have: unsigned and signed integers, floats.
ARRAY_KINDS = "uif"


def is_npy(data: bytes) -> bool:
    """True for the bytes of a .npy file."""
    return data.startswith(NPY_MAGIC)


def is_tiff(data: bytes) -> bool:
    """True for the bytes of a TIFF (or BigTIFF) file."""
    return data[:4] in TIFF_MAGICS


def is_dicom(data: bytes) -> bool:
    """True for the bytes of a DICOM file (a 128-byte preamble, then 'DICM')."""
    return data[128:132] == b"DICM"


def check_array(shape: tuple[int, ...], dtype: np.dtype[Any], name: str, max_pixels: int) -> None:
    """Refuse an array that is not an H×W or H×W×C image of numbers within the pixel limit."""
    if len(shape) not in (2, 3):
        raise ImageError(f"an array of shape {shape}: expected H×W or H×W×C", name)
    if min(shape) < 1:
        raise ImageError(f"an array of shape {shape} is empty", name)
    if dtype.kind not in ARRAY_KINDS:
        raise ImageError(f"an array of dtype {dtype}: expected integers or floats", name)
    bands = shape[2] if len(shape) == 3 else 1
    check_size(shape[0], shape[1], bands, name, max_pixels, dtype.itemsize)


def check_size(
    height: int, width: int, bands: int, name: str, max_pixels: int, itemsize: int = 1
) -> None:
    """Refuse an image above the pixel limit, or of more values than four bands of it, or
    of more bytes than four 16-bit bands of it."""
    if height * width > max_pixels:
        raise ImageError(f"{width}×{height} pixels is above the limit of {max_pixels} pixels", name)
    values = height * width * bands
    if values > 4 * max_pixels or values * itemsize > 8 * max_pixels:
        raise ImageError(
            f"{width}×{height} pixels of {bands} bands of {itemsize} bytes is above the "
            f"limit of {max_pixels} pixels of four 16-bit bands",
            name,
        )


def read_npy(data: bytes, name: str, max_pixels: int) -> NDArray[Any]:
    """The array of a .npy file (no pickled objects), checked from its header first."""
    stream = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(stream)
        reader = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, _, dtype = reader(stream)
    except Exception as exc:  # noqa: BLE001 - NumPy's header parser raises many kinds
        raise ImageError(f"not a readable .npy file: {_said(exc)}", name) from None
    check_array(tuple(shape), dtype, name, max_pixels)
    try:
        array: NDArray[Any] = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - a short or damaged file
        raise ImageError(f"not a readable .npy file: {_said(exc)}", name) from None
    return array if array.dtype.isnative else array.astype(array.dtype.newbyteorder("="))


# TIFF photometric interpretations OpenCV reads as grey or colour (with its compressions,
# palettes and orientation): MINISWHITE, MINISBLACK (one band), RGB, PALETTE, CMYK, YCBCR.
OPENCV_PHOTOMETRICS = (0, 1, 2, 3, 5, 6)


def read_tiff(
    data: bytes, name: str, max_pixels: int, channels: int, force: bool = False
) -> tuple[NDArray[Any], bool] | None:
    """The first page of a multi-band TIFF (more than one band that is not colour, more than
    four, planar, or grey and alpha) as H×W×bands with `tifffile`, and whether its last band
    is alpha; checked from its header first (size, and bands against the model's
    `channels`). None for the TIFFs OpenCV reads (unless `force`), or without `tifffile`."""
    try:
        import tifffile
    except ImportError:
        return None
    logger = logging.getLogger("tifffile")
    quiet, logger.disabled = logger.disabled, True
    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            page = tif.pages.first
            bands, alpha = int(page.samplesperpixel), _has_alpha(page)
            if not force and _opencv_reads(page, bands, alpha):
                return None
            height, width = int(page.imagelength), int(page.imagewidth)
            itemsize = page.dtype.itemsize if page.dtype is not None else 8
            check_size(height, width, bands, name, max_pixels, itemsize)
            if not bands_fit(bands, channels, alpha):
                raise ImageError(f"a {bands}-band image for a {channels}-channel model", name)
            array, axes = page.asarray(), page.axes
    except ImageError:
        raise
    except Exception as exc:  # noqa: BLE001 - tifffile raises many kinds on a bad file
        raise ImageError(f"not a TIFF this can read: {_said(exc)}", name) from None
    finally:
        logger.disabled = quiet
    return _interleaved(array, axes, name), alpha


def bands_fit(have: int, channels: int, alpha: bool) -> bool:
    """Whether an image of `have` bands (the last one alpha when `alpha`) can be read by an
    input of `channels`: alpha composited when the input has one band fewer, one grey band
    repeated for RGB, colour made grey for one channel."""
    if alpha and have in (2, 4) and channels < have:
        have -= 1
    return have == channels or (have, channels) in ((1, 3), (3, 1))


def _has_alpha(page: Any) -> bool:
    """Whether a TIFF page's first extra sample is (associated or unassociated) alpha."""
    return tuple(page.extrasamples)[:1] in ((1,), (2,))


def _opencv_reads(page: Any, bands: int, alpha: bool) -> bool:
    """Whether OpenCV reads this TIFF page as it is: colour or one grey band, interleaved,
    four bands at most."""
    photometric = int(page.photometric)
    colour = photometric != 1 or bands == 1
    return (
        bands <= 4
        and int(page.planarconfig) == 1
        and photometric in OPENCV_PHOTOMETRICS
        and (colour and not (photometric == 2 and bands == 4 and not alpha))
    )


def _interleaved(array: NDArray[Any], axes: str, name: str) -> NDArray[Any]:
    """A TIFF page as H×W×bands: its sample axis last."""
    if set(axes) - set("YXS") or array.ndim != len(axes):
        raise ImageError(f"a TIFF page of axes {axes} and shape {array.shape}", name)
    order = [axes.index("Y"), axes.index("X"), *([axes.index("S")] if "S" in axes else [])]
    return np.ascontiguousarray(array.transpose(order))


@dataclass(frozen=True)
class DicomImage:
    """One frame of a DICOM file: stored values H×W(×C), what makes them modality values
    (a linear rescale, or a table already applied), and how they are shown.

    Attributes:
        pixels: the frame's values: stored values, or modality values when the file has a
            Modality LUT table (or the VOI LUT table was applied).
        slope, intercept: modality value = stored value · slope + intercept.
        natural: the range of modality values the stored bit depth allows.
        window: the range of the file's own linear window (first one), if it has one.
        invert: MONOCHROME1: the least value is white.
    """

    pixels: NDArray[Any]
    slope: float
    intercept: float
    natural: tuple[float, float]
    window: tuple[float, float] | None
    invert: bool


def read_dicom(
    data: bytes, name: str, max_pixels: int, frame: int = 0, voi_lut: bool = False
) -> DicomImage:
    """One frame of a DICOM file (pydicom), refused before decoding when it has no pixel
    data, is above the pixel limit, lacks the frame or is compressed in a syntax no installed
    decoder reads. With `voi_lut`, a VOI LUT table (or a non-linear window function) of the
    file is applied here; a linear window is returned as a range."""
    pydicom = _pydicom(name)
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - pydicom raises many kinds on a bad file
        raise ImageError(f"not a readable DICOM file: {exc}", name) from None
    if "PixelData" not in ds and "FloatPixelData" not in ds:
        raise ImageError("a DICOM file with no pixel data", name)
    try:
        rows, columns = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except Exception as exc:  # noqa: BLE001 - a header value pydicom cannot parse
        raise ImageError(f"a DICOM attribute that is not a number: {_said(exc)}", name) from None
    if rows * columns > max_pixels:
        raise ImageError(f"{columns}×{rows} pixels is above the limit of {max_pixels} pixels", name)
    if not 0 <= frame < frames:
        raise ImageError(f"no frame {frame}: the file has {frames}", name)
    pixels = _decoded(pydicom, ds, frame, name)
    try:
        return _with_luts(pydicom, ds, pixels, voi_lut)
    except Exception as exc:  # noqa: BLE001 - a rescale, window or LUT pydicom cannot read
        raise ImageError(f"a DICOM attribute that cannot be applied: {_said(exc)}", name) from None


def _said(exc: BaseException) -> str:
    """An exception's message, or its kind where the message says nothing."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return text if len(text) > 3 else f"damaged ({type(exc).__name__})"


def _pydicom(name: str) -> Any:
    try:
        import pydicom
    except ImportError:
        raise ImageError(
            "reading DICOM needs pydicom: pip install 'scorecam-onnx[dicom]'", name
        ) from None
    return pydicom


def _decoded(pydicom: Any, ds: Any, frame: int, name: str) -> NDArray[Any]:
    """The frame's stored values; a compressed syntax no decoder reads is one line."""
    syntax = ds.file_meta.get("TransferSyntaxUID") if "file_meta" in dir(ds) else None
    try:
        return np.asarray(pydicom.pixels.pixel_array(ds, index=frame))
    except Exception as exc:  # noqa: BLE001 - decoders raise many kinds
        if syntax is not None and syntax.is_compressed:
            raise ImageError(
                f"pixel data compressed as {syntax.name} ({syntax}): no installed decoder "
                "reads it (pylibjpeg or python-gdcm add most)",
                name,
            ) from None
        raise ImageError(f"cannot decode the pixel data: {exc}", name) from None


def _with_luts(pydicom: Any, ds: Any, pixels: NDArray[Any], voi_lut: bool) -> DicomImage:
    """The frame with its modality rescale (or table), natural range and window."""
    bits = int(ds.get("BitsStored", 8 * pixels.dtype.itemsize))
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    slope, intercept = float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0))
    if "ModalityLUTSequence" in ds:
        pixels = np.asarray(pydicom.pixels.apply_modality_lut(pixels, ds), np.float32)
        slope, intercept = 1.0, 0.0
        low, high = float(pixels.min()), float(pixels.max())
    natural = tuple(sorted((low * slope + intercept, high * slope + intercept)))
    window = None
    if voi_lut and ("VOILUTSequence" in ds or _window_function(ds) not in ("LINEAR", None)):
        values = (
            pydicom.pixels.apply_modality_lut(pixels, ds) if slope != 1 or intercept else pixels
        )
        pixels = np.asarray(pydicom.pixels.apply_voi_lut(values, ds, prefer_lut=True), np.float32)
        slope, intercept = 1.0, 0.0
        natural = _voi_range(ds, natural)
    elif voi_lut and "WindowCenter" in ds and "WindowWidth" in ds:
        window = _first_window(ds)
    return DicomImage(
        pixels,
        slope,
        intercept,
        (float(natural[0]), float(natural[1])),
        window,
        str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1",
    )


def _window_function(ds: Any) -> str | None:
    function = ds.get("VOILUTFunction")
    return None if function is None else str(function).upper()


def _first_window(ds: Any) -> tuple[float, float]:
    """The file's first window (centre, width) as the range it maps to [0, 1]."""

    def first(element: Any) -> float:
        return float(element.value[0] if element.VM > 1 else element.value)

    center, width = first(ds["WindowCenter"]), first(ds["WindowWidth"])
    low = center - 0.5 - (width - 1.0) / 2.0
    return low, low + max(width - 1.0, 0.0)


def _voi_range(ds: Any, natural: tuple[float, float]) -> tuple[float, float]:
    """What a VOI LUT table (its third descriptor value: bits) or a non-linear window maps
    values to: [0, 2**bits − 1], or the natural range."""
    if "VOILUTSequence" in ds:
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        return 0.0, float(2**bits - 1)
    return natural
