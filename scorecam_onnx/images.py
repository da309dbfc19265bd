"""Reading images with OpenCV, finding image files, and the geometry between an image and
the model input (resizing, cropping, letterboxing, boxes)."""

from __future__ import annotations

import errno
import io
import os
import re
import stat
import warnings
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from .bundle.manifest import InputSpec
from .errors import ImageError
from .quiet import native_stderr_silenced
from .render import bands, rows

ImageLike = str | Path | bytes | NDArray[Any]

IMAGE_SUFFIXES = (
    *(".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"),
    *(".npy", ".dcm", ".dicom"),
)
# Refuse images above this many pixels before decoding them (decompression bombs).
DEFAULT_MAX_PIXELS = 100_000_000
INTERPOLATION = {
    "area": cv2.INTER_AREA,
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
    "nearest": cv2.INTER_NEAREST,
    "lanczos": cv2.INTER_LANCZOS4,
}


def load_image(image: ImageLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> NDArray[np.uint8]:
    """An H×W×3 uint8 RGB array from a path, encoded bytes (any format OpenCV reads) or an
    array, to show or draw on.

    Grayscale is replicated to three channels, an alpha channel is composited over white,
    16-bit images are scaled to 8 bits and the EXIF orientation is applied. To explain an
    image as a model reads it (16 bits, many bands, .npy, DICOM), give the file itself, or
    `Explainer.read` it; `Explainer.display` draws it.
    """
    if isinstance(image, np.ndarray):
        return _from_array(image)
    if isinstance(image, str | Path):
        path = Path(image)
        return decode_image(read_file(path), str(path), max_pixels)
    if isinstance(image, bytes | bytearray | memoryview):
        return decode_image(bytes(image), "image bytes", max_pixels)
    raise TypeError(f"expected a path, bytes or a uint8 array, got {type(image).__name__}")


def decode_image(data: bytes, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> NDArray[np.uint8]:
    """Decode encoded image bytes (any format OpenCV reads) to RGB uint8 (see `load_image`)."""
    return _from_array(decode_pixels(data, name, max_pixels, keep_alpha=True))


def decode_pixels(
    data: bytes, name: str, max_pixels: int = DEFAULT_MAX_PIXELS, keep_alpha: bool = False
) -> NDArray[Any]:
    """Decode encoded image bytes (any format OpenCV reads) in their own depth: H×W grey or
    H×W×3 RGB, the EXIF orientation applied; an image with alpha is composited over white,
    or with `keep_alpha` kept (H×W×2 grey and alpha, H×W×4 RGBA).

    The size is read from the header first (Pillow, lazily, for every format it knows) and
    an image above `max_pixels` is refused before it is decoded; other formats are bounded
    by OpenCV's own guard (`OPENCV_IO_MAX_IMAGE_PIXELS`, set when the package loads).
    """
    if not data:
        raise ImageError("empty file", name)
    alpha, grey, orientation = _check_header(data, name, max_pixels)
    buffer = np.frombuffer(data, dtype=np.uint8)
    with native_stderr_silenced():
        try:
            found = cv2.imdecode(buffer, cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH)
        except cv2.error as exc:
            if "CV_IO_MAX_IMAGE_PIXELS" in str(exc):
                raise ImageError(
                    f"above the limit of {opencv_pixel_limit()} pixels of OpenCV's "
                    "decoders (OPENCV_IO_MAX_IMAGE_PIXELS)",
                    name,
                ) from None
            found = None
        raw = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED) if found is not None and alpha else None
    if raw is not None and raw.ndim == 3:  # OpenCV orients all but the image with alpha
        raw = np.ascontiguousarray(_ORIENTED[orientation](raw))
    if found is None:
        raise ImageError("not an image OpenCV can decode (corrupt or unsupported)", name)
    if found.shape[0] * found.shape[1] > max_pixels:
        raise ImageError(
            f"{found.shape[1]}×{found.shape[0]} pixels is above the limit of {max_pixels} pixels",
            name,
        )
    if raw is not None and raw.ndim == 3 and raw.shape[2] == 4 and raw.shape[:2] == found.shape[:2]:
        if grey or found.ndim == 2:  # grey and alpha (OpenCV repeats the grey)
            raw = np.ascontiguousarray(raw[..., [0, 3]])
            return raw if keep_alpha else composite_over_white(raw)[..., 0]
        cv2.cvtColor(raw, cv2.COLOR_BGRA2RGBA, dst=raw)
        return raw if keep_alpha else composite_over_white(raw)
    if found.ndim == 3 and found.shape[2] == 3:
        cv2.cvtColor(found, cv2.COLOR_BGR2RGB, dst=found)  # in place: no second copy
    return found


def decode_mask(data: bytes, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> NDArray[np.bool_]:
    """A mask image (H×W): where its alpha is non-zero when it has alpha, else where any
    channel is non-zero, at every bit depth. The pixel limit is checked as for images."""
    if not data:
        raise ImageError("empty file", name)
    _check_header(data, name, max_pixels)
    with native_stderr_silenced():
        try:
            raw = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
        except cv2.error:
            raw = None
    if raw is None:
        raise ImageError("not an image OpenCV can decode (corrupt or unsupported)", name)
    if raw.shape[0] * raw.shape[1] > max_pixels:
        raise ImageError(
            f"{raw.shape[1]}×{raw.shape[0]} pixels is above the limit of {max_pixels} pixels", name
        )
    found: NDArray[np.bool_] = (
        raw[..., 3] != 0
        if raw.ndim == 3 and raw.shape[2] == 4
        else raw != 0
        if raw.ndim == 2
        else (raw != 0).any(axis=2)
    )
    return found


def opencv_pixel_limit() -> int:
    """The pixel limit OpenCV's decoders enforce (read by OpenCV when it loads)."""
    return int(os.environ.get("OPENCV_IO_MAX_IMAGE_PIXELS", 1 << 30))


def _check_header(data: bytes, name: str, max_pixels: int) -> tuple[bool, bool, int]:
    """Refuse an image whose header announces more than `max_pixels` pixels; whether it has
    an alpha channel, whether it is grey with alpha, and its EXIF orientation (1 when none).
    Formats Pillow does not know are left to OpenCV's guard."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as image:
                (width, height), mode, info = image.size, image.mode, image.info
                orientation = _orientation(image) if "A" in mode or "transparency" in info else 1
        except Image.DecompressionBombError as exc:  # past Pillow's own limit
            found = re.search(r"\((\d+) pixels\)", str(exc))
            pixels = int(found.group(1)) if found else max_pixels + 1
            if pixels > max_pixels:
                raise ImageError(
                    f"{pixels} pixels is above the limit of {max_pixels} pixels", name
                ) from None
            return True, False, 1
        except Exception:  # noqa: BLE001 - unknown to Pillow, or corrupt: OpenCV decides
            return True, False, 1
    if width * height > max_pixels:
        raise ImageError(f"{width}×{height} pixels is above the limit of {max_pixels} pixels", name)
    return "A" in mode or "transparency" in info, mode in ("LA", "La"), orientation


def _orientation(image: Any) -> int:
    """An image's EXIF orientation (1 to 8; 1 when it has none or it cannot be read)."""
    try:
        value = int(image.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 - a damaged EXIF block: no orientation
        return 1
    return value if value in _ORIENTED else 1


# An EXIF orientation's transform of an H×W×C array (as OpenCV applies it when decoding).
_ORIENTED: dict[int, Any] = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: np.rot90(a, 1),
}


def composite_over_white(image: NDArray[Any]) -> NDArray[Any]:
    """The colour (or grey) of an image with alpha last blended over white: 16 bits stay 16
    bits, anything else becomes uint8; a band of rows at a time so that no full-size float
    copy is made."""
    deep = image.dtype == np.uint16
    top_value = 65535.0 if deep else 255.0
    out = np.empty((*image.shape[:2], image.shape[2] - 1), np.uint16 if deep else np.uint8)
    step = rows(image.shape[1])
    for top in bands(*image.shape[:2]):
        band = image[top : top + step]
        alpha = _to_unit(band[..., -1:])
        blended = (_to_unit(band[..., :-1]) * alpha + (1.0 - alpha)) * top_value
        out[top : top + step] = np.clip(np.nan_to_num(blended) + 0.5, 0, top_value)
    return out


def _to_unit(array: NDArray[Any]) -> NDArray[np.float32]:
    scale = 65535.0 if array.dtype == np.uint16 else 1.0 if array.dtype.kind == "f" else 255.0
    return array.astype(np.float32) / np.float32(scale)


def _to_uint8(array: NDArray[Any]) -> NDArray[np.uint8]:
    """uint8 of an 8-bit, 16-bit or float image (floats up to 1 are scaled by 255), a band
    of rows at a time."""
    if array.dtype == np.uint8:
        return array
    unit = array.dtype.kind == "f" and float(np.nanmax(array, initial=0.0)) <= 1.0
    out = np.empty(array.shape, np.uint8)
    step = rows(array.shape[1]) if array.ndim > 1 else max(1, len(array))
    for top in range(0, array.shape[0], step):
        band = array[top : top + step]
        if array.dtype == np.uint16:
            out[top : top + step] = (band.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
            continue
        band = band * 255.0 if unit else band
        out[top : top + step] = np.clip(np.nan_to_num(band) + 0.5, 0, 255).astype(np.uint8)
    return out


def _from_array(image: NDArray[Any]) -> NDArray[np.uint8]:
    """Accept H×W, H×W×1, H×W×2 (grey and alpha), H×W×3 (RGB) or H×W×4 (RGBA) arrays."""
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] not in (1, 2, 3, 4):
        raise ImageError(f"image array of shape {image.shape}: expected H×W×3 RGB")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ImageError(f"image array of shape {image.shape} is empty")
    if image.dtype.kind not in "uif" or (image.dtype == np.int64 and image.size == 0):
        raise ImageError(f"image array of dtype {image.dtype}: expected uint8")
    if image.shape[2] in (2, 4):
        image = composite_over_white(image)
    image = _to_uint8(image)
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image)


def crop_box(shape: tuple[int, ...], spec: InputSpec) -> tuple[int, int, int, int]:
    """(scaled height, scaled width, top, left): the size the image is resized to, and where
    the model's H×W input is cut from it (negative where the input pads it).

    "crop" scales the image to cover H×W (its shorter side fits), "stretch" to H×W itself;
    a crop fraction f < 1 makes that H/f × W/f. The centre is cut out. "letterbox" scales it
    to fit inside H×W and centres it (YOLO's rounding: the padding before is the half
    rounded after subtracting 0.1).
    """
    h, w = shape[:2]
    if spec.resize == "letterbox":
        ratio = min(spec.height / h, spec.width / w)
        sh, sw = max(1, round(h * ratio)), max(1, round(w * ratio))
        return sh, sw, -round((spec.height - sh) / 2 - 0.1), -round((spec.width - sw) / 2 - 0.1)
    fraction = spec.crop_fraction
    if spec.resize == "crop":
        scale = max(spec.height / h, spec.width / w) / fraction
        sh, sw = round(h * scale), round(w * scale)
    else:
        sh, sw = round(spec.height / fraction), round(spec.width / fraction)
    sh, sw = max(spec.height, sh), max(spec.width, sw)
    return sh, sw, (sh - spec.height) // 2, (sw - spec.width) // 2


# The grey a letterboxed input is padded with (YOLO's), as a uint8 pixel value.
LETTERBOX_GREY = 114


def place(scaled: NDArray[Any], spec: InputSpec, top: int, left: int, fill: float) -> NDArray[Any]:
    """The model's H×W view of an image already resized: cut from it, or (letterbox) set on
    a canvas of `fill`."""
    if spec.resize != "letterbox":
        return scaled[top : top + spec.height, left : left + spec.width]
    canvas = np.full((spec.height, spec.width, *scaled.shape[2:]), fill, scaled.dtype)
    canvas[-top : -top + scaled.shape[0], -left : -left + scaled.shape[1]] = scaled
    return canvas


def to_original(
    saliency: NDArray[np.float32], shape: tuple[int, ...], spec: InputSpec
) -> NDArray[np.float32]:
    """A map at the model input's resolution brought back onto the original image.

    Where the image was cut (the "crop" policy, a crop fraction below 1), the parts the model
    did not see get 0; a letterbox's padding is dropped.
    """
    sh, sw, top, left = crop_box(shape, spec)
    if spec.resize == "letterbox":
        saliency = saliency[-top : -top + sh, -left : -left + sw]
    elif (sh, sw) != (spec.height, spec.width):
        canvas = np.zeros((sh, sw), dtype=np.float32)
        canvas[top : top + spec.height, left : left + spec.width] = saliency
        saliency = canvas
    full = np.asarray(
        cv2.resize(
            saliency.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR
        ),
        np.float32,
    )
    np.clip(full, 0.0, 1.0, out=full)  # in place: one full-size map
    return full


def box_scales(shape: tuple[int, ...], spec: InputSpec) -> tuple[float, float, int, int]:
    """(x scale, y scale, top, left): an image's pixel (x, y) is the input's
    (x·sx − left, y·sy − top), each axis scaled as its pixels were resized (a letterbox's
    rounded size over the image's, as ultralytics scales boxes back)."""
    h, w = shape[:2]
    sh, sw, top, left = crop_box(shape, spec)
    return sw / w, sh / h, top, left


def boxes_to_original(
    boxes: NDArray[np.floating], shape: tuple[int, ...], spec: InputSpec
) -> NDArray[np.float64]:
    """K×4 boxes (x1, y1, x2, y2) in input pixels as the original image's, clipped to it."""
    sx, sy, top, left = box_scales(shape, spec)
    offset, scale = np.array([left, top, left, top]), np.array([sx, sy, sx, sy])
    out = (np.asarray(boxes, np.float64).reshape(-1, 4) + offset) / scale
    clipped: NDArray[np.float64] = np.clip(out, 0.0, [shape[1], shape[0], shape[1], shape[0]])
    return clipped


def boxes_to_input(
    boxes: NDArray[np.floating], shape: tuple[int, ...], spec: InputSpec
) -> NDArray[np.float64]:
    """K×4 boxes in the original image's pixels as the model input's."""
    sx, sy, top, left = box_scales(shape, spec)
    offset, scale = np.array([left, top, left, top]), np.array([sx, sy, sx, sy])
    moved: NDArray[np.float64] = np.asarray(boxes, np.float64).reshape(-1, 4) * scale - offset
    return moved


def read_file(path: Path) -> bytes:
    """The bytes of an image file, or an ImageError saying plainly why they cannot be read.

    Symbolic links are followed wherever they point; a broken link, a link loop, a folder
    or anything but a regular file (a pipe would block forever) is refused.
    """
    name = str(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        reason = (
            "broken symbolic link (its target does not exist)"
            if path.is_symlink()
            else ("no such file")
        )
        raise ImageError(reason, name) from None
    except OSError as exc:
        reason = (
            "symbolic link loop" if exc.errno == errno.ELOOP else (f"cannot read: {exc.strerror}")
        )
        raise ImageError(reason, name) from None
    if stat.S_ISDIR(info.st_mode):
        raise ImageError("is a folder, not an image", name)
    if not stat.S_ISREG(info.st_mode):
        raise ImageError("not a regular file", name)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ImageError(f"cannot read: {exc.strerror}", name) from None


def find_images(paths: list[str]) -> tuple[list[Path], list[str]]:
    """Expand files, folders (searched recursively) and globs into image paths.

    In folders, every entry named like an image is returned, readable or not (a broken link
    then fails like any unreadable image); links to folders are not descended into, so a
    link loop cannot trap the search, while links to files are followed wherever they point.

    Returns the images found and one message per argument that yielded none.
    """
    import glob

    found: list[Path] = []
    problems: list[str] = []
    for arg in paths:
        path = Path(arg)
        if path.is_dir():
            hits = _images_in(path, problems)
            if not hits:
                problems.append(f"{arg}: no images in this folder")
        elif path.exists() or path.is_symlink():
            hits = [path]
        else:
            hits = [Path(p) for p in sorted(glob.glob(arg, recursive=True)) if Path(p).is_file()]
            if not hits:
                problems.append(
                    f"{arg}: no such file" if not glob.has_magic(arg) else f"{arg}: no file matches"
                )
        found.extend(hits)
    return list(dict.fromkeys(found)), problems


def _images_in(folder: Path, problems: list[str]) -> list[Path]:
    """Entries named like images under `folder`, in a stable order, without following
    links to folders; unreadable sub-folders are added to `problems`."""

    def unreadable(exc: OSError) -> None:
        problems.append(f"{exc.filename}: cannot read this folder: {exc.strerror}")

    hits: list[Path] = []
    for root, folders, files in os.walk(folder, onerror=unreadable):
        folders.sort()
        hits.extend(
            Path(root) / name
            for name in sorted(files)
            if Path(name).suffix.lower() in IMAGE_SUFFIXES
        )
    return hits
