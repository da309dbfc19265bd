"""Inputs beyond 8-bit RGB: grey and multi-band models, 16-bit PNG, TIFF (tifffile), .npy,
value ranges and display bands. Each model input is checked against one computed by hand
in NumPy from the file (block means: every image is a whole multiple of the input size, where
area resizing is the mean of each block)."""

from __future__ import annotations

import json
import warnings

import cv2
import numpy as np
import pytest
import tifffile
from builders import tiny_forward, tiny_model, tiny_weights
from click.testing import CliRunner
from oracles import correlation, paper

from scorecam_onnx import BundleError, Explainer, ImageError, Runtime, write_bundle
from scorecam_onnx import pictures as pictures_module
from scorecam_onnx.bundle import Preprocessing
from scorecam_onnx.bundle.manifest import Manifest
from scorecam_onnx.cli import main

RNG = np.random.default_rng(11)
SIZE = 8  # the tiny CNN's input
# 16-bit pixels are resized in 16 bits (as 8-bit ones in 8): each block mean is rounded to a
# whole value, at most half a step, 0.5 / 65535 before the std of 0.25.
ROUNDED_16 = 0.5 / 65535 / 0.25 + 1e-6


def block_mean(array: np.ndarray, size: int = SIZE) -> np.ndarray:
    """H×W(×C) → size×size(×C): the mean of each block (area resizing by a whole factor)."""
    h, w = array.shape[:2]
    blocks = array.reshape(size, h // size, size, w // size, *array.shape[2:])
    return blocks.astype(np.float64).mean(axis=(1, 3))


def normalised(unit: np.ndarray, mean: float, std: float) -> np.ndarray:
    """1×C×H×W input of H×W(×C) unit values."""
    chw = unit[None] if unit.ndim == 2 else unit.transpose(2, 0, 1)
    return ((chw - mean) / std)[None]


def explainer(tmp_path, bands: int, name: str = "b", **prep) -> Explainer:
    bundle = write_bundle(
        tiny_model(bands=bands),
        tmp_path / name,
        "feat",
        preprocessing=Preprocessing(mean=(0.5,), std=(0.25,), **prep),
    )
    return Explainer(bundle, Runtime(provider="cpu"))


def test_a_16_bit_png_keeps_its_depth_on_a_grey_model(tmp_path):
    raw = RNG.integers(0, 65536, (16, 24), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "g.png"), raw)
    ex = explainer(tmp_path, 1)
    assert ex.bundle.manifest.input.channels == 1
    assert ex.bundle.manifest.input.mean == (0.5,) and ex.bundle.manifest.input.std == (0.25,)
    rgb, x = ex.preprocess(tmp_path / "g.png")
    want = normalised(block_mean(raw) / 65535.0, 0.5, 0.25)
    np.testing.assert_allclose(x, want, atol=ROUNDED_16)
    # 8 bits would have lost what distinguishes neighbouring values: 16 bits keep it
    assert len(np.unique(x)) == SIZE * SIZE
    grey = np.round(raw / 257.0).astype(np.uint8)
    assert rgb.shape == (16, 24, 3) and (rgb == grey[..., None]).all()


def test_the_map_of_a_grey_16_bit_image_equals_the_plain_loop(tmp_path):
    raw = RNG.integers(0, 65536, (32, 32), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "g.png"), raw)
    ex = explainer(tmp_path, 1)
    x = normalised(block_mean(raw) / 65535.0, 0.5, 0.25).astype(np.float32)
    weights = tiny_weights(0, bands=1)
    acts = tiny_forward(x, weights)[0][0]
    [found] = ex.explain(tmp_path / "g.png")
    model = lambda batch: tiny_forward(batch, weights)[1]  # noqa: E731
    want = paper(x, acts, model, found.class_id)
    assert correlation(found.saliency_input, want) > 0.9999


@pytest.mark.parametrize("planar", [False, True])
def test_a_four_band_tiff_on_a_four_channel_model(tmp_path, planar):
    bands = RNG.integers(0, 4096, (16, 32, 4), dtype=np.uint16)
    path = tmp_path / "four.tif"
    if planar:
        tifffile.imwrite(
            path, np.moveaxis(bands, 2, 0), photometric="minisblack", planarconfig="separate"
        )
    else:
        tifffile.imwrite(path, bands, photometric="minisblack", planarconfig="contig")
    ex = explainer(tmp_path, 4, input_range=(0, 4095), display_bands=(2, 1, 0))
    rgb, x = ex.preprocess(path)
    np.testing.assert_allclose(x, normalised(block_mean(bands) / 4095.0, 0.5, 0.25), atol=2e-6)
    shown = np.floor(bands[..., [2, 1, 0]] / 4095.0 * 255.0 + 0.5).astype(np.uint8)
    assert np.abs(rgb.astype(int) - shown).max() <= 1
    assert ex.explain(path)[0].saliency.shape == (16, 32)


def test_an_npy_array_with_an_input_range_is_clipped_to_it(tmp_path):
    values = RNG.uniform(-500.0, 1500.0, (16, 16, 2)).astype(np.float32)
    np.save(tmp_path / "a.npy", values)
    ex = explainer(tmp_path, 2, input_range=(0.0, 1000.0))
    _, x = ex.preprocess(tmp_path / "a.npy")
    unit = block_mean(np.clip(values / 1000.0, 0.0, 1.0))
    np.testing.assert_allclose(x, normalised(unit, 0.5, 0.25), atol=2e-6)


def test_a_window_maps_its_dicom_range(tmp_path):
    """A window C,W maps C − 0.5 − (W − 1)/2 … C − 0.5 + (W − 1)/2 onto 0 … 1."""
    raw = RNG.integers(0, 4096, (16, 16), dtype=np.uint16)
    np.save(tmp_path / "w.npy", raw)
    ex = explainer(tmp_path, 1, window=(2000.0, 1001.0))
    _, x = ex.preprocess(tmp_path / "w.npy")
    low, high = 2000.0 - 0.5 - 500.0, 2000.0 - 0.5 + 500.0
    unit = block_mean(np.clip((raw - low) / (high - low), 0.0, 1.0))
    np.testing.assert_allclose(x, normalised(unit, 0.5, 0.25), atol=2e-6)


def test_colour_for_a_grey_model_is_made_grey_and_said_once(tmp_path, monkeypatch):
    rgb = RNG.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "c.png"), rgb[..., ::-1])
    ex = explainer(tmp_path, 1)
    monkeypatch.setattr(pictures_module, "_SAID", set())
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        _, x = ex.preprocess(tmp_path / "c.png")
        ex.preprocess(tmp_path / "c.png")
    luma = rgb @ np.array([0.299, 0.587, 0.114])  # ITU-R BT.601, as 8-bit values
    want = normalised(block_mean(luma) / 255.0, 0.5, 0.25)
    # the luma and then each block mean are rounded to 8 bits: at most a step in all
    np.testing.assert_allclose(x, want, atol=1 / 255 / 0.25 + 1e-6)
    assert [str(w.message) for w in said] == [pictures_module.GREY_NOTE]


def test_grey_for_an_rgb_model_is_repeated_and_16_bits_are_kept(tmp_path, tiny_bundle):
    raw = RNG.integers(0, 65536, (16, 16), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "g.png"), raw)
    ex = Explainer(tiny_bundle, Runtime(provider="cpu"))
    _, x = ex.preprocess(tmp_path / "g.png")
    unit = np.repeat(block_mean(raw)[..., None] / 65535.0, 3, axis=2)
    np.testing.assert_allclose(x, normalised(unit, 0.5, 0.25), atol=ROUNDED_16)


@pytest.mark.parametrize(
    ("name", "make", "reason"),
    [
        ("rgb.png", lambda p: cv2.imwrite(str(p), np.zeros((8, 8, 3), np.uint8)), "a 3-band image"),
        ("rank.npy", lambda p: np.save(p, np.zeros((2, 8, 8, 4))), "expected H×W or H×W×C"),
        ("complex.npy", lambda p: np.save(p, np.zeros((8, 8), complex)), "dtype complex128"),
        ("flags.npy", lambda p: np.save(p, np.zeros((8, 8), bool)), "dtype bool"),
        ("objects.npy", lambda p: np.save(p, np.full((8, 8), None, object)), "dtype object"),
        ("empty.npy", lambda p: np.save(p, np.zeros((0, 8, 4))), "is empty"),
    ],
)
def test_bad_inputs_are_one_line(tmp_path, name, make, reason):
    make(tmp_path / name)
    ex = explainer(tmp_path, 4)
    with pytest.raises(ImageError, match=reason) as caught:
        ex.explain(tmp_path / name)
    assert "\n" not in str(caught.value) and str(tmp_path / name) in str(caught.value)


def test_an_npy_above_the_pixel_limit_is_refused_from_its_header(tmp_path, monkeypatch):
    np.save(tmp_path / "big.npy", np.zeros((100, 100), np.uint8))
    ex = Explainer(explainer(tmp_path, 1).bundle, Runtime(provider="cpu", max_pixels=9999))
    monkeypatch.setattr(np, "load", lambda *a, **k: pytest.fail("loaded a refused array"))
    with pytest.raises(ImageError, match="above the limit of 9999 pixels"):
        ex.explain(tmp_path / "big.npy")


def test_a_folder_of_mixed_files_explains_the_good_ones(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    tifffile.imwrite(folder / "good.tif", RNG.integers(0, 256, (16, 16, 4), dtype=np.uint8))
    np.save(folder / "good.npy", RNG.uniform(0, 1, (16, 16, 4)).astype(np.float32))
    cv2.imwrite(str(folder / "rgb.png"), np.zeros((16, 16, 3), np.uint8))
    np.save(folder / "rank.npy", np.zeros((16,), np.float32))
    ex = explainer(tmp_path, 4)
    result = CliRunner().invoke(
        main,
        ["explain", str(folder), "--model", str(ex.bundle.path), "--out", str(tmp_path / "out")],
    )
    assert result.exit_code == 1
    errors = [
        line for line in result.stderr.splitlines() if "rank.npy" in line or "rgb.png" in line
    ]
    assert len(errors) == 2 and "a 3-band image for a 4-channel model" in result.stderr
    written = sorted(p.name for p in (tmp_path / "out").glob("*.npy"))
    assert len(written) == 2  # good.npy and good.tif, their names told apart
    assert written[0].endswith("in_good.npy") and written[1].endswith("in_good_2.npy")


def test_split_writes_the_value_settings_and_info_says_them(tmp_path):
    onnx_path = tmp_path / "grey.onnx"
    import onnx

    onnx.save(tiny_model(bands=1), str(onnx_path))
    out = tmp_path / "bundle"
    args = ["split", str(onnx_path), "--layer", "feat", "--out", str(out), "--mean", "0.4"]
    done = CliRunner().invoke(main, [*args, "--std", "0.2", "--window", "40,400"])
    assert done.exit_code == 0, done.output
    data = json.loads((out / "manifest.json").read_text())["input"]
    assert (data["channels"], data["mean"], data["std"]) == (1, [0.4], [0.2])
    assert data["window"] == [40.0, 400.0] and data["input_range"] is None
    info = CliRunner().invoke(main, ["info", str(out)])
    assert "1 channels" in info.output and "window 40,400" in info.output
    both = CliRunner().invoke(
        main, [*args, "--force", "--window", "40,400", "--input-range", "0,1"]
    )
    assert (
        both.exit_code == 2 and "give one of --input-range, --window and --voi-lut" in both.output
    )


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"mean": [0.5, 0.5, 0.5]}, "'input.mean' must be 1 numbers"),
        ({"window": [40, 0]}, "a window's width is at least 1"),
        ({"window": [40, 400], "input_range": [0, 1]}, "give one of"),
        ({"display_bands": [0, 1, 1]}, "display_bands [0, 1, 1] must be band indices below 1"),
        ({"color": "BGR"}, "BGR colour order is for a 3-channel input"),
        ({"input_range": [5, 5]}, "input_range needs LOW < HIGH"),
    ],
)
def test_a_manifest_with_settings_that_do_not_go_together_is_refused(tmp_path, change, error):
    data = explainer(tmp_path, 1).bundle.manifest.to_dict()
    data["input"].update(change)
    with pytest.raises(BundleError, match=error.replace("[", r"\[").replace("]", r"\]")):
        Manifest.from_dict(data)


def test_a_format_4_manifest_reads_as_three_channels(tiny_bundle):
    data = tiny_bundle.manifest.to_dict()
    data["format_version"] = 4
    data["input"]["channels"] = 1  # a key format 4 did not have is ignored there
    spec = Manifest.from_dict(data).input
    assert spec.channels == 3 and spec.input_range is None and spec.display_bands is None


def test_more_than_four_bands_resize_at_any_factor(tmp_path):
    """OpenCV's area resizing takes four bands at most: six are resized band by band."""
    bands = RNG.integers(0, 65536, (25, 41, 6), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "six.tif", bands, photometric="minisblack", planarconfig="contig")
    ex = explainer(tmp_path, 6)
    _, x = ex.preprocess(tmp_path / "six.tif")
    each = [cv2.resize(bands[..., b], (SIZE, SIZE), interpolation=cv2.INTER_AREA) for b in range(6)]
    want = normalised(np.stack(each, axis=2) / 65535.0, 0.5, 0.25)
    np.testing.assert_allclose(x, want, atol=1e-6)


def test_tiffs_opencv_reads_are_read_by_opencv_and_stacks_give_their_first_page(tmp_path):
    rgb = RNG.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "lzw.tif"), rgb[..., ::-1])  # LZW: tifffile alone needs codecs
    cv2.imwrite(str(tmp_path / "same.png"), rgb[..., ::-1])
    ex = explainer(tmp_path, 3)
    np.testing.assert_array_equal(
        ex.preprocess(tmp_path / "lzw.tif")[1], ex.preprocess(tmp_path / "same.png")[1]
    )
    pages = RNG.integers(0, 65536, (3, 16, 16, 2), dtype=np.uint16)
    with tifffile.TiffWriter(tmp_path / "stack.tif") as tif:
        for page in pages:
            tif.write(page, photometric="minisblack", planarconfig="contig")
    _, x = explainer(tmp_path, 2, "b2").preprocess(tmp_path / "stack.tif")
    want = normalised(block_mean(pages[0]) / 65535, 0.5, 0.25)
    np.testing.assert_allclose(x, want, atol=ROUNDED_16)


def test_arrays_keep_the_range_of_their_own_type(tmp_path):
    values = RNG.integers(10, 210, (16, 16, 3)).astype(np.int16)
    np.save(tmp_path / "int16.npy", values)
    deep = RNG.integers(0, 65536, (16, 16), dtype=np.uint16)
    np.save(tmp_path / "big-endian.npy", deep.astype(">u2"))
    ex = explainer(tmp_path, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, x = ex.preprocess(tmp_path / "int16.npy")
    luma = values @ np.array([0.299, 0.587, 0.114])  # other integers: 0–255
    np.testing.assert_allclose(x, normalised(block_mean(luma) / 255, 0.5, 0.25), atol=1e-3)
    _, x = ex.preprocess(tmp_path / "big-endian.npy")
    np.testing.assert_allclose(x, normalised(block_mean(deep) / 65535, 0.5, 0.25), atol=ROUNDED_16)


def test_alpha_is_composited_at_16_bits_before_the_range(tmp_path):
    rgba = np.zeros((16, 16, 4), np.uint16)
    rgba[..., :3], rgba[..., 3] = 30000, 65535  # opaque grey 30000 (BGRA on disk)
    rgba[:8, :8, 3] = 0  # a transparent corner: white
    cv2.imwrite(str(tmp_path / "rgba.png"), rgba)
    ex = explainer(tmp_path, 3, input_range=(0.0, 60000.0))
    _, x = ex.preprocess(tmp_path / "rgba.png")
    unit = np.where(np.add.outer(np.arange(16), np.arange(16)) < 0, 0, 0.5)
    unit[:8, :8] = 1.0  # white (65535) clipped to the range's top
    want = normalised(np.repeat(block_mean(unit)[..., None], 3, axis=2), 0.5, 0.25)
    np.testing.assert_allclose(x, want, atol=1e-6)


def test_grey_and_alpha_are_two_bands_for_a_two_channel_model(tmp_path):
    from PIL import Image

    grey = RNG.integers(0, 256, (16, 16), dtype=np.uint8)
    alpha = RNG.integers(0, 256, (16, 16), dtype=np.uint8)
    Image.fromarray(np.stack([grey, alpha], axis=2), "LA").save(tmp_path / "la.png")
    _, x = explainer(tmp_path, 2).preprocess(tmp_path / "la.png")
    both = np.stack([grey, alpha], axis=2)
    atol = 0.5 / 255 / 0.25 + 1e-6  # block means rounded to 8 bits
    np.testing.assert_allclose(x, normalised(block_mean(both) / 255, 0.5, 0.25), atol=atol)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # grey and alpha on a grey model: no colour note
        _, x = explainer(tmp_path, 1, "b1").preprocess(tmp_path / "la.png")
    over_white = grey * (alpha / 255) + 255 * (1 - alpha / 255)
    np.testing.assert_allclose(x, normalised(block_mean(over_white) / 255, 0.5, 0.25), atol=0.02)


def test_a_window_of_width_one_is_a_threshold(tmp_path):
    raw = RNG.integers(0, 4096, (16, 16), dtype=np.uint16)
    np.save(tmp_path / "t.npy", raw)
    _, x = explainer(tmp_path, 1, window=(2048.0, 1.0)).preprocess(tmp_path / "t.npy")
    unit = block_mean((raw > 2047.5).astype(float))  # DICOM: above CENTER − 0.5 is the top
    np.testing.assert_allclose(x, normalised(unit, 0.5, 0.25), atol=1e-6)


def test_a_picture_read_for_another_model_is_refused(tmp_path):
    rgb = RNG.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    picture = explainer(tmp_path, 3).read(rgb)
    with pytest.raises(ImageError, match="a picture of 3 bands for a 1-channel model"):
        explainer(tmp_path, 1, "b1").explain(picture)


def test_a_damaged_npy_header_is_one_line(tmp_path):
    header = b"{'descr': '<u2', 'fortran_order': False, 'shape': (4, 4), "
    data = b"\x93NUMPY\x01\x00" + (len(header) + 10).to_bytes(2, "little") + header + b" " * 10
    (tmp_path / "broken.npy").write_bytes(data)
    with pytest.raises(ImageError, match="not a readable .npy file"):
        explainer(tmp_path, 1).explain(tmp_path / "broken.npy")


def test_tiff_bands_are_checked_before_decoding_and_a_damaged_tiff_is_one_line(
    tmp_path, monkeypatch, capfd
):
    tifffile.imwrite(
        tmp_path / "many.tif",
        np.zeros((16, 16, 16), np.float64),
        photometric="minisblack",
        planarconfig="contig",
        compression="zlib",
    )
    (tmp_path / "damaged.tif").write_bytes(b"II*\x00" + b"\xff" * 40)
    ex = explainer(tmp_path, 1)
    with monkeypatch.context() as patched:
        patched.setattr(tifffile.TiffPage, "asarray", lambda *a, **k: pytest.fail("decoded"))
        with pytest.raises(ImageError, match="a 16-band image for a 1-channel model"):
            ex.explain(tmp_path / "many.tif")
    with pytest.raises(ImageError, match="not a TIFF this can read: damaged") as caught:
        ex.explain(tmp_path / "damaged.tif")
    assert "\n" not in str(caught.value) and capfd.readouterr().err == ""


def test_grey_and_alpha_tiff_composites_its_alpha_and_keeps_two_bands(tmp_path):
    grey = RNG.integers(0, 65536, (16, 16), dtype=np.uint16)
    alpha = np.full((16, 16), 65535, np.uint16)
    alpha[:8] = 0  # the top half transparent: white
    tifffile.imwrite(
        tmp_path / "la.tif",
        np.stack([grey, alpha], axis=2),
        photometric="minisblack",
        planarconfig="contig",
        extrasamples=[2],
    )
    _, x = explainer(tmp_path, 1).preprocess(tmp_path / "la.tif")
    over_white = np.where(alpha > 0, grey, 65535)
    np.testing.assert_allclose(
        x, normalised(block_mean(over_white) / 65535, 0.5, 0.25), atol=ROUNDED_16 + 2e-5
    )
    _, x = explainer(tmp_path, 2, "b2").preprocess(tmp_path / "la.tif")
    both = np.stack([grey, alpha], axis=2)
    np.testing.assert_allclose(x, normalised(block_mean(both) / 65535, 0.5, 0.25), atol=ROUNDED_16)


def test_a_one_band_tiff_opencv_cannot_decode_is_read_by_tifffile(tmp_path):
    values = RNG.uniform(0, 1, (16, 16)).astype(np.float32)
    tifffile.imwrite(tmp_path / "lzma.tif", values, compression="lzma")
    _, x = explainer(tmp_path, 1).preprocess(tmp_path / "lzma.tif")
    np.testing.assert_allclose(x, normalised(block_mean(values), 0.5, 0.25), atol=2e-6)


def test_split_reads_a_channels_last_input_off_the_graph(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    model = tiny_model(bands=3)
    graph = model.graph
    graph.node[0].input[0] = "nchw"
    graph.node.insert(0, helper.make_node("Transpose", ["input"], ["nchw"], perm=[0, 3, 1, 2]))
    graph.input[0].CopyFrom(
        helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 8, 8, 3])
    )
    onnx.save(model, str(tmp_path / "nhwc.onnx"))
    args = ["split", str(tmp_path / "nhwc.onnx"), "--layer", "feat"]
    done = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "b")])
    assert done.exit_code == 0, done.output
    spec = Manifest.load(tmp_path / "b" / "manifest.json").input
    assert (spec.layout, spec.channels, spec.height, spec.width) == ("NHWC", 3, 8, 8)
    forced = CliRunner().invoke(main, [*args, "--layout", "NCHW", "--out", str(tmp_path / "c")])
    assert forced.exit_code == 1 and "give --layout NHWC for channels last" in forced.output
