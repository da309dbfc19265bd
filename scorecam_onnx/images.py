"""Reading images into RGB uint8 arrays, and turning them into model inputs."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from .bundle.manifest import InputSpec
from .errors import ImageError
from .quiet import native_stderr_silenced

ImageLike = str | Path | bytes | NDArray[np.uint8]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
# Refuse images above this many pixels before decoding them (decompression bombs).
DEFAULT_MAX_PIXELS = 100_000_000
_INTERPOLATION = {
    "area": cv2.INTER_AREA,
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
    "nearest": cv2.INTER_NEAREST,
    "lanczos": cv2.INTER_LANCZOS4,
}
_ALPHA_FORMATS = (b"\x89PNG", b"RIFF", b"II*\x00", b"MM\x00*")


def load_image(image: ImageLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> NDArray[np.uint8]:
    """An H×W×3 uint8 RGB array from a path, encoded bytes or an array.

    Grayscale is replicated to three channels, an alpha channel is composited over white,
    16-bit images are scaled to 8 bits and the EXIF orientation is applied.
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
    """Decode encoded image bytes (any format OpenCV reads) to RGB uint8."""
    if not data:
        raise ImageError("empty file", name)
    buffer = np.frombuffer(data, dtype=np.uint8)
    _check_size(buffer, name, max_pixels)
    with native_stderr_silenced():
        try:
            bgr = cv2.imdecode(buffer, cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
        except cv2.error:
            bgr = None
        raw = None
        if bgr is not None and data[:4] in _ALPHA_FORMATS:
            raw = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    if bgr is None:
        raise ImageError("not an image OpenCV can decode (corrupt or unsupported)", name)
    if raw is not None:
        has_alpha = raw.ndim == 3 and raw.shape[2] == 4
        if has_alpha and raw.shape[:2] == bgr.shape[:2]:
            alpha = _to_unit(raw[..., 3:4])
            bgr = (_to_unit(raw[..., :3]) * alpha + (1.0 - alpha)) * 255.0
    rgb = cv2.cvtColor(_to_uint8(bgr), cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(rgb)


def _check_size(buffer: NDArray[np.uint8], name: str, max_pixels: int) -> None:
    """Refuse images whose header announces more than `max_pixels` pixels."""
    try:
        size = _header_size(buffer)
    except Exception:  # noqa: BLE001 - a header we cannot parse is left to the decoder
        size = None
    if size is not None and size[0] * size[1] > max_pixels:
        raise ImageError(
            f"{size[1]}×{size[0]} pixels is above the limit of {max_pixels} pixels", name)


def _header_size(buffer: NDArray[np.uint8]) -> tuple[int, int] | None:
    """(height, width) read from a PNG, JPEG, GIF or BMP header without decoding."""
    data = buffer.tobytes()[:1 << 16]
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return int.from_bytes(data[20:24], "big"), int.from_bytes(data[16:20], "big")
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return int.from_bytes(data[8:10], "little"), int.from_bytes(data[6:8], "little")
    if data[:2] == b"BM" and len(data) >= 26:
        return abs(int.from_bytes(data[22:26], "little", signed=True)), int.from_bytes(
            data[18:22], "little", signed=True)
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                return None
            marker = data[i + 1]
            length = int.from_bytes(data[i + 2:i + 4], "big")
            if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD,
                          0xCE, 0xCF):
                return int.from_bytes(data[i + 5:i + 7], "big"), int.from_bytes(
                    data[i + 7:i + 9], "big")
            i += 2 + length
    return None


def _to_unit(array: NDArray) -> NDArray[np.float32]:
    scale = 65535.0 if array.dtype == np.uint16 else 1.0 if array.dtype.kind == "f" else 255.0
    return array.astype(np.float32) / np.float32(scale)


def _to_uint8(array: NDArray) -> NDArray[np.uint8]:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        return (array.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
    if array.dtype.kind == "f" and float(np.nanmax(array, initial=0.0)) <= 1.0:
        array = array * 255.0
    return np.clip(np.nan_to_num(array) + 0.5, 0, 255).astype(np.uint8)


def _from_array(image: NDArray) -> NDArray[np.uint8]:
    """Accept H×W, H×W×1, H×W×3 (RGB) or H×W×4 (RGBA) arrays."""
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ImageError(f"image array of shape {image.shape}: expected H×W×3 RGB")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ImageError(f"image array of shape {image.shape} is empty")
    if image.dtype.kind not in "uif" or (image.dtype == np.int64 and image.size == 0):
        raise ImageError(f"image array of dtype {image.dtype}: expected uint8")
    if image.shape[2] == 4:
        alpha = _to_unit(image[..., 3:4])
        image = (_to_unit(image[..., :3]) * alpha + (1.0 - alpha)) * 255.0
    image = _to_uint8(image)
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image)


def crop_box(shape: tuple[int, ...], spec: InputSpec) -> tuple[int, int, int, int]:
    """(scaled height, scaled width, top, left): the size the image is resized to, and where
    the model's H×W input is cut from it.

    "crop" scales the image to cover H×W (its shorter side fits), "stretch" to H×W itself;
    a crop fraction f < 1 makes that H/f × W/f. The centre is cut out.
    """
    h, w = shape[:2]
    fraction = spec.crop_fraction
    if spec.resize == "crop":
        scale = max(spec.height / h, spec.width / w) / fraction
        sh, sw = round(h * scale), round(w * scale)
    else:
        sh, sw = round(spec.height / fraction), round(spec.width / fraction)
    sh, sw = max(spec.height, sh), max(spec.width, sw)
    return sh, sw, (sh - spec.height) // 2, (sw - spec.width) // 2


def preprocess(rgb: NDArray[np.uint8], spec: InputSpec) -> NDArray[np.float32]:
    """The model input (1×3×H×W, normalised) for an RGB uint8 image, per the manifest.

    Resize policy "stretch" resizes the whole image to H×W; "crop" scales it to cover H×W
    and cuts out the centre (see `crop_box` for the crop fraction). The engine always works
    in NCHW.
    """
    sh, sw, top, left = crop_box(rgb.shape, spec)
    scaled_image = cv2.resize(rgb, (sw, sh), interpolation=_INTERPOLATION[spec.interpolation])
    resized = scaled_image[top:top + spec.height, left:left + spec.width]
    if spec.color == "BGR":
        resized = resized[..., ::-1]
    scaled = resized.astype(np.float32) * np.float32(spec.scale)
    normalised = (scaled - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    return np.ascontiguousarray(normalised.transpose(2, 0, 1)[None])


def to_original(saliency: NDArray[np.float32], shape: tuple[int, ...],
                spec: InputSpec) -> NDArray[np.float32]:
    """A map at the model input's resolution brought back onto the original image.

    Where the image was cut (the "crop" policy, a crop fraction below 1), the parts the model
    did not see get 0.
    """
    sh, sw, top, left = crop_box(shape, spec)
    if (sh, sw) != (spec.height, spec.width):
        canvas = np.zeros((sh, sw), dtype=np.float32)
        canvas[top:top + spec.height, left:left + spec.width] = saliency
        saliency = canvas
    full = cv2.resize(saliency.astype(np.float32), (shape[1], shape[0]),
                      interpolation=cv2.INTER_LINEAR)
    return np.clip(full, 0.0, 1.0)


def read_file(path: Path) -> bytes:
    """The bytes of an image file, or an ImageError saying plainly why they cannot be read.

    Symbolic links are followed wherever they point; a broken link, a link loop, a folder
    or anything but a regular file (a pipe would block forever) is refused.
    """
    name = str(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        reason = "broken symbolic link (its target does not exist)" if path.is_symlink() else (
            "no such file")
        raise ImageError(reason, name) from None
    except OSError as exc:
        reason = "symbolic link loop" if exc.errno == errno.ELOOP else (
            f"cannot read: {exc.strerror}")
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
                problems.append(f"{arg}: no such file" if not glob.has_magic(arg)
                                else f"{arg}: no file matches")
        found.extend(hits)
    return list(dict.fromkeys(found)), problems


def _images_in(folder: Path, problems: list[str]) -> list[Path]:
    """Entries named like images under `folder`, in a stable order, without following
    links to folders; unreadable sub-folders are added to `problems`."""
    def unreadable(exc: OSError) -> None:
        problems.append(f"{exc.filename}: cannot read this folder: {exc.strerror}")

    hits = []
    for root, folders, files in os.walk(folder, onerror=unreadable):
        folders.sort()
        hits.extend(Path(root) / name for name in sorted(files)
                    if Path(name).suffix.lower() in IMAGE_SUFFIXES)
    return hits
