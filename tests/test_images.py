"""Reading images: formats, conversions, EXIF orientation, and clear errors."""

from __future__ import annotations

import struct
import subprocess
import sys

import cv2
import numpy as np
import pytest
from builders import palette_png, webp_bomb
from conftest import ROOT

from scorecam_onnx import ImageError, images, load_image
from scorecam_onnx.bundle.manifest import InputSpec
from scorecam_onnx.images import DEFAULT_MAX_PIXELS
from scorecam_onnx.pictures import preprocess


def _encode(array: np.ndarray, ext: str = ".png") -> bytes:
    ok, data = cv2.imencode(ext, array)
    assert ok
    return data.tobytes()


def _with_orientation(jpeg: bytes, orientation: int) -> bytes:
    """Insert an EXIF APP1 segment holding only the orientation tag."""
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1)
    tiff += struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack("<I", 0)
    body = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body + jpeg[2:]


def test_rgb_order_from_png():
    bgr = np.zeros((4, 5, 3), np.uint8)
    bgr[..., 0] = 200  # blue in OpenCV's order
    rgb = load_image(_encode(bgr))
    assert rgb.shape == (4, 5, 3) and rgb.dtype == np.uint8
    assert (rgb[..., 2] == 200).all() and (rgb[..., 0] == 0).all()


def test_grayscale_is_replicated():
    gray = np.arange(20, dtype=np.uint8).reshape(4, 5) * 10
    rgb = load_image(_encode(gray))
    assert rgb.shape == (4, 5, 3)
    for c in range(3):
        np.testing.assert_array_equal(rgb[..., c], gray)


def test_rgba_is_composited_over_white():
    bgra = np.zeros((2, 2, 4), np.uint8)
    bgra[..., 2] = 255  # red
    bgra[0, 0, 3] = 255  # opaque
    bgra[0, 1, 3] = 0  # transparent → white
    bgra[1, :, 3] = 128  # half → pink
    rgb = load_image(_encode(bgra))
    np.testing.assert_array_equal(rgb[0, 0], [255, 0, 0])
    np.testing.assert_array_equal(rgb[0, 1], [255, 255, 255])
    np.testing.assert_allclose(rgb[1, 0], [255, 127, 127], atol=1)


def test_sixteen_bit_is_scaled():
    deep = np.full((3, 3, 3), 65535, np.uint16)
    deep[0, 0] = 257 * 100
    rgb = load_image(_encode(deep))
    assert rgb.dtype == np.uint8
    assert rgb[1, 1, 0] == 255 and rgb[0, 0, 0] == 100


def test_palette_png(tmp_path):
    path = tmp_path / "palette.png"
    path.write_bytes(palette_png())
    rgb = load_image(path)
    np.testing.assert_array_equal(rgb[0], [[255, 0, 0], [0, 0, 255]])


def test_exif_orientation_is_applied():
    tall = np.zeros((20, 10, 3), np.uint8)
    tall[:5] = 255  # white band at the top
    data = _with_orientation(_encode(tall, ".jpg"), 6)  # 6: rotate 90° clockwise
    rgb = load_image(data)
    assert rgb.shape == (10, 20, 3)
    assert rgb[:, -3:].mean() > 200 and rgb[:, :3].mean() < 50  # top band now on the right


def test_one_pixel_image():
    assert load_image(_encode(np.full((1, 1, 3), 7, np.uint8))).shape == (1, 1, 3)


def test_arrays_are_accepted():
    gray = np.full((3, 4), 9, np.uint8)
    assert load_image(gray).shape == (3, 4, 3)
    with pytest.raises(ImageError, match="expected H×W×3"):
        load_image(np.zeros((2, 2, 5), np.uint8))
    with pytest.raises(TypeError, match="expected a path, bytes or a uint8 array"):
        load_image(42)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_text("hello, I am text"), "not an image OpenCV can decode"),
        (
            lambda p: p.write_bytes(_encode(np.zeros((64, 64, 3), np.uint8), ".jpg")[:200]),
            "not an image OpenCV can decode",
        ),
    ],
)
def test_bad_files(tmp_path, make, message):
    path = tmp_path / "x.png"
    make(path)
    with pytest.raises(ImageError, match=message):
        load_image(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ImageError, match="is a folder"):
        load_image(tmp_path)


# Every format this OpenCV encodes (and so decodes) whose size Pillow reads from the header.
HEADER_FORMATS = [
    ".png",
    ".jpg",
    ".bmp",
    ".tif",
    ".webp",
    ".jp2",
    ".ppm",
    ".pgm",
    ".sr",
    ".avif",
    ".gif",
]


def _sample(ext: str) -> bytes:
    image = np.zeros((60, 80, 3), np.uint8)  # JPEG 2000 needs a few tiles' worth
    image[5:40, 10:60] = (200, 40, 90)
    if ext == ".pgm":
        image = image[..., 0]
    if ext == ".gif" and not cv2.haveImageWriter("x.gif"):
        pytest.skip("this OpenCV writes no GIF")
    return _encode(image, ext)


@pytest.mark.parametrize("ext", HEADER_FORMATS)
def test_pixel_limit_refused_before_decoding_in_every_format(ext, monkeypatch):
    data = _sample(ext)
    decoded = []
    real = cv2.imdecode
    monkeypatch.setattr(images.cv2, "imdecode", lambda *a: decoded.append(1) or real(*a))
    with pytest.raises(ImageError, match="80×60 pixels is above the limit of 4000 pixels"):
        load_image(data, max_pixels=4000)
    assert decoded == []  # refused from the header alone
    assert load_image(data, max_pixels=4800).shape == (60, 80, 3)


def test_a_webp_bomb_is_refused_from_its_few_bytes(monkeypatch):
    bomb = webp_bomb()
    assert len(bomb) < 100
    monkeypatch.setattr(images.cv2, "imdecode", lambda *a: pytest.fail("decoded a bomb"))
    with pytest.raises(ImageError, match="256000000 pixels is above the limit of 100000000"):
        load_image(bomb)


@pytest.mark.parametrize("ext", [".pfm", ".hdr"])
def test_formats_without_a_readable_header_are_bounded_by_opencvs_guard(ext):
    """Pillow does not read these; OpenCV's own guard (set when the package loads, before
    cv2 is imported) refuses them before decoding."""
    code = f"""
import os
os.environ["OPENCV_IO_MAX_IMAGE_PIXELS"] = "1000"
import numpy as np, cv2
from scorecam_onnx import load_image, ImageError
from scorecam_onnx.images import opencv_pixel_limit
data = cv2.imencode("{ext}", np.full((30, 40, 3), 0.5, np.float32))[1].tobytes()
assert opencv_pixel_limit() == 1000
try:
    load_image(data)
except ImageError as exc:
    print(exc)
print(load_image(data, max_pixels=10**9).shape if False else "")
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert "above the limit of 1000 pixels of OpenCV's decoders" in done.stdout
    small = cv2.imencode(ext, np.full((30, 40, 3), 0.5, np.float32))[1].tobytes()
    assert load_image(small).shape == (30, 40, 3)


def test_the_package_sets_opencvs_guard_to_the_default_limit():
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os; os.environ.pop("
            "'OPENCV_IO_MAX_IMAGE_PIXELS', None); import scorecam_onnx; "
            "print(os.environ['OPENCV_IO_MAX_IMAGE_PIXELS'])",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.stdout.strip() == str(DEFAULT_MAX_PIXELS)


def test_preprocess_follows_the_manifest():
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 255, 0, 51
    spec = InputSpec(name="in", height=2, width=2, mean=(0.5, 0.5, 0.5), std=(0.5, 0.25, 0.5))
    x = preprocess(rgb, spec)
    assert x.shape == (1, 3, 2, 2) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, :, 0, 0], [1.0, -2.0, -0.6], atol=1e-6)
    bgr = preprocess(
        rgb, InputSpec(name="in", height=2, width=2, color="BGR", mean=(0, 0, 0), std=(1, 1, 1))
    )
    np.testing.assert_allclose(bgr[0, :, 0, 0], [0.2, 0.0, 1.0], atol=1e-6)


def test_crop_policy_by_hand():
    from scorecam_onnx.images import crop_box, to_original

    spec = InputSpec(
        name="in",
        height=224,
        width=224,
        resize="crop",
        mean=(0, 0, 0),
        std=(1, 1, 1),
        interpolation="linear",
    )
    assert crop_box((300, 451, 3), spec) == (224, 337, 0, 56)
    rgb = np.random.default_rng(0).integers(0, 256, (300, 451, 3), dtype=np.uint8)
    want = cv2.resize(rgb, (337, 224), interpolation=cv2.INTER_LINEAR)[:, 56:280] / 255.0
    np.testing.assert_allclose(preprocess(rgb, spec)[0].transpose(1, 2, 0), want, atol=1e-6)
    back = to_original(np.ones((224, 224), np.float32), (300, 451), spec)
    assert back.shape == (300, 451)
    # 56 of 337 scaled columns are cut on each side: about 75 of the 451 original ones.
    assert back[:, :70].max() == 0 and back[:, -70:].max() == 0
    assert back[:, 80:-80].min() == 1.0


def test_crop_fraction_by_hand():
    """timm's crop_pct 0.875 at 224: the shorter side to 256, then the centre 224×224; with
    "stretch", the whole image to 256×256 first."""
    from scorecam_onnx.images import crop_box, to_original

    spec = InputSpec(
        name="in",
        height=224,
        width=224,
        resize="crop",
        mean=(0, 0, 0),
        std=(1, 1, 1),
        interpolation="linear",
        crop_fraction=0.875,
    )
    # scale = (224 / 300) / 0.875: 300 → 256, 451 → 384.9 → 385
    assert crop_box((300, 451, 3), spec) == (256, 385, 16, 80)
    rgb = np.random.default_rng(1).integers(0, 256, (300, 451, 3), dtype=np.uint8)
    want = cv2.resize(rgb, (385, 256), interpolation=cv2.INTER_LINEAR)[16:240, 80:304] / 255.0
    np.testing.assert_allclose(preprocess(rgb, spec)[0].transpose(1, 2, 0), want, atol=1e-6)
    stretch = InputSpec(name="in", height=224, width=224, crop_fraction=0.875)
    assert crop_box((300, 451, 3), stretch) == (256, 256, 16, 16)
    back = to_original(np.ones((224, 224), np.float32), (300, 451), stretch)
    # 16 of 256 rows and columns cut on each side: about 19 of the 300 original rows, 28 of
    # the 451 columns
    assert back[:15].max() == 0 and back[:, :25].max() == 0
    assert back[25:-25, 35:-35].min() == 1.0


def test_explaining_a_large_image_costs_at_most_16_bytes_per_pixel(tmp_path):
    """In a process of its own, after a warm-up on a small image (the model's own memory):
    decoding a 24-megapixel JPEG, explaining it and writing its overlay PNG and map NPY."""
    small = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    big = cv2.resize(small, (6000, 4000), interpolation=cv2.INTER_LINEAR)
    path = tmp_path / "big.jpg"
    cv2.imwrite(str(path), big, [cv2.IMWRITE_JPEG_QUALITY, 90])
    del big
    script = f"""
from pathlib import Path
import numpy as np
from scorecam_onnx import Explainer, Runtime, TopK
from scorecam_onnx.batch import write_outputs
from scorecam_onnx.evaluation.bench import peak_rss_growth_mib
ex = Explainer(None, Runtime(provider="cpu", threads=1))
warm = np.zeros((224, 224, 3), np.uint8)
write_outputs(Path({str(tmp_path / "warm")!r}), "w", Path("w"), warm,
              ex.explain(warm, TopK(1), "reciprocam"), False)
def run():
    rgb = ex.preprocess({str(path)!r})[0]
    found = ex.explain(rgb, TopK(1), "reciprocam")
    write_outputs(Path({str(tmp_path / "out")!r}), "big", Path("big"), rgb, found, False)
print(peak_rss_growth_mib(run))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    per_pixel = float(done.stdout) * 2**20 / (6000 * 4000)
    assert 7 <= per_pixel <= 16, per_pixel  # at least the RGB image and the float32 map
    saved = np.load(tmp_path / "out" / "big.npy")
    assert saved.shape == (4000, 6000) and saved.dtype == np.float32


@pytest.mark.parametrize("orientation", range(1, 9))
def test_an_image_with_alpha_is_oriented_as_its_exif_says(orientation):
    """Against Pillow's `exif_transpose` (OpenCV orients every image but those it reads with
    their alpha)."""
    import io

    from PIL import Image, ImageOps

    rgba = np.random.default_rng(orientation).integers(0, 256, (4, 6, 4), dtype=np.uint8)
    rgba[..., 3] = np.where(rgba[..., 3] > 128, 255, 0)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, "PNG", exif=exif.tobytes())
    data = buffer.getvalue()
    want = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))))
    assert (images.decode_pixels(data, "x", keep_alpha=True) == want).all()
    white = np.where(want[..., 3:] > 0, want[..., :3], 255)
    assert (load_image(data) == white).all()
