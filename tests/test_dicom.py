"""DICOM files written with pydicom: the model input against pydicom's own
`apply_modality_lut` and `apply_voi_lut` (then area resizing by a whole factor, a block
mean), MONOCHROME1, frames, and the files that cannot be read (one line each)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pydicom
import pytest
from click.testing import CliRunner
from conftest import ROOT
from dicom_files import write_dicom
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.sequence import Sequence
from pydicom.uid import JPEGLSLossless
from test_pictures import block_mean, explainer, normalised

from scorecam_onnx import Explainer, ExplainOptions, ImageError, Runtime
from scorecam_onnx.cli import main

RNG = np.random.default_rng(5)


def pydicom_input(ds: Dataset, natural: tuple[float, float], frame: int | None = None):
    """The input pydicom's LUTs give: modality, then VOI, on [0, 1] over the range the VOI
    maps to, inverted for MONOCHROME1, block-averaged, normalised (mean 0.5, std 0.25)."""
    pixels = ds.pixel_array if frame is None else ds.pixel_array[frame]
    values = apply_voi_lut(apply_modality_lut(pixels, ds), ds)
    unit = np.clip((values - natural[0]) / (natural[1] - natural[0]), 0.0, 1.0)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        unit = 1.0 - unit
    return normalised(block_mean(unit), 0.5, 0.25)


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_rescale_and_the_files_window_as_pydicom_applies_them(tmp_path, photometric):
    stored = RNG.integers(0, 4096, (16, 24))
    ds = write_dicom(
        tmp_path / "ct.dcm",
        stored,
        PhotometricInterpretation=photometric,
        RescaleSlope=1.0,
        RescaleIntercept=-1024.0,
        WindowCenter=40.0,
        WindowWidth=400.0,
    )
    ex = explainer(tmp_path, 1, voi_lut=True)
    rgb, x = ex.preprocess(tmp_path / "ct.dcm")
    # pydicom's windowing maps onto the stored range, rescaled: 0 … 4095 less 1024
    want = pydicom_input(ds, (-1024.0, 3071.0))
    np.testing.assert_allclose(x, want, atol=2e-6)
    dark = rgb[..., 0][stored - 1024 < 40 - 200]  # below the window: black (white if inverted)
    assert (dark == (255 if photometric == "MONOCHROME1" else 0)).all() and dark.size > 0


def test_a_voi_lut_table_as_pydicom_applies_it(tmp_path):
    stored = RNG.integers(0, 4096, (16, 16))
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 8]  # 4096 entries from 0, 8-bit output
    item.LUTData = [int(v) for v in np.sqrt(np.arange(4096) / 4095.0) * 255.0]
    item["LUTData"].VR = "US"
    ds = write_dicom(tmp_path / "lut.dcm", stored, VOILUTSequence=Sequence([item]))
    ex = explainer(tmp_path, 1, voi_lut=True)
    _, x = ex.preprocess(tmp_path / "lut.dcm")
    np.testing.assert_allclose(x, pydicom_input(ds, (0.0, 255.0)), atol=2e-6)


def test_the_manifests_window_equals_pydicoms_windowing(tmp_path):
    """A window in the manifest (here on Hounsfield units of a signed CT) gives what
    pydicom's windowing of a file holding that window gives."""
    stored = RNG.integers(-2000, 2000, (16, 16))
    tags = {"PixelRepresentation": 1, "BitsStored": 16, "HighBit": 15}
    tags |= {"RescaleSlope": 2.0, "RescaleIntercept": -100.0}
    write_dicom(tmp_path / "plain.dcm", stored, **tags)
    windowed = write_dicom(
        tmp_path / "w.dcm", stored, **tags, WindowCenter=-600.0, WindowWidth=1500.0
    )
    ex = explainer(tmp_path, 1, window=(-600.0, 1500.0))
    _, x = ex.preprocess(tmp_path / "plain.dcm")
    natural = (-(2**15) * 2.0 - 100.0, (2**15 - 1) * 2.0 - 100.0)
    np.testing.assert_allclose(x, pydicom_input(windowed, natural), atol=2e-6)


def test_with_no_window_the_stored_depth_sets_the_range(tmp_path):
    stored = RNG.integers(0, 4096, (16, 16))
    ds = write_dicom(tmp_path / "d.dcm", stored, RescaleSlope=0.5, RescaleIntercept=10.0)
    _, x = explainer(tmp_path, 1).preprocess(tmp_path / "d.dcm")
    np.testing.assert_allclose(x, pydicom_input(ds, (10.0, 4095 * 0.5 + 10.0)), atol=2e-6)


def test_a_frame_of_a_multi_frame_file(tmp_path):
    frames = RNG.integers(0, 4096, (3, 16, 16))
    ds = write_dicom(tmp_path / "m.dcm", frames)
    ex = explainer(tmp_path, 1)
    for frame in range(3):
        x = ex.preprocess(tmp_path / "m.dcm", frame)[1]
        np.testing.assert_allclose(x, pydicom_input(ds, (0.0, 4095.0), frame), atol=2e-6)
    [second] = ex.explain(tmp_path / "m.dcm", options=ExplainOptions(frame=1))
    assert second.score == ex.explain(ex.read(tmp_path / "m.dcm", 1))[0].score
    with pytest.raises(ImageError, match="no frame 3: the file has 3"):
        ex.explain(tmp_path / "m.dcm", options=ExplainOptions(frame=3))


def test_an_rgb_model_reads_a_grey_dicom_as_grey(tmp_path, tiny_bundle):
    stored = RNG.integers(0, 4096, (16, 16))
    ds = write_dicom(tmp_path / "g.dcm", stored)
    _, x = Explainer(tiny_bundle, Runtime(provider="cpu")).preprocess(tmp_path / "g.dcm")
    grey = pydicom_input(ds, (0.0, 4095.0))
    np.testing.assert_allclose(x, np.repeat(grey, 3, axis=1), atol=2e-6)


def test_files_that_cannot_be_read_are_one_line_and_the_others_go_on(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    stored = RNG.integers(0, 4096, (16, 16))
    write_dicom(folder / "good.dcm", stored)
    write_dicom(folder / "empty.dcm", stored, with_pixels=False)
    jpeg_ls = encapsulate([b"\xff\xd8\xff\xf7" + bytes(64)])
    write_dicom(folder / "packed.dcm", stored, syntax=JPEGLSLossless, PixelData=jpeg_ls)
    ex = explainer(tmp_path, 1)
    result = CliRunner().invoke(
        main,
        ["explain", str(folder), "--model", str(ex.bundle.path), "--out", str(tmp_path / "out")],
    )
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert any("empty.dcm: a DICOM file with no pixel data" in line for line in lines)
    packed = [line for line in lines if "packed.dcm" in line]
    assert len(packed) == 1 and "JPEG-LS Lossless Image Compression" in packed[0]
    assert "no installed decoder reads it" in packed[0]
    assert [p.name.split("_in_")[-1] for p in (tmp_path / "out").glob("*.npy")] == ["good.npy"]


def test_the_pixel_limit_holds_before_decoding(tmp_path, monkeypatch):
    write_dicom(tmp_path / "big.dcm", RNG.integers(0, 4096, (100, 100)))
    ex = Explainer(explainer(tmp_path, 1).bundle, Runtime(provider="cpu", max_pixels=9999))
    monkeypatch.setattr(
        pydicom.pixels, "pixel_array", lambda *a, **k: pytest.fail("decoded a refused file")
    )
    with pytest.raises(ImageError, match="100×100 pixels is above the limit of 9999 pixels"):
        ex.explain(tmp_path / "big.dcm")


def test_a_16_bit_4096_square_file_costs_a_few_bytes_per_pixel(tmp_path):
    """In a process of its own, after a warm-up: explaining a windowed 16-bit 4096×4096
    DICOM holds its 2-byte pixels and the 4-byte map at full size, little more."""
    size = 4096
    pixels = np.add.outer(np.arange(size), np.arange(size)) % 4096
    write_dicom(tmp_path / "big.dcm", pixels, WindowCenter=2000.0, WindowWidth=1500.0)
    bundle = explainer(tmp_path, 1, voi_lut=True).bundle.path
    script = f"""
import numpy as np
from scorecam_onnx import Explainer, Runtime
from scorecam_onnx.evaluation.bench import peak_rss_growth_mib
ex = Explainer({str(bundle)!r}, Runtime(provider="cpu", threads=1))
ex.explain(np.zeros((64, 64), np.uint16))
print(peak_rss_growth_mib(lambda: ex.explain({str(tmp_path / "big.dcm")!r})))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    per_pixel = float(done.stdout.strip().splitlines()[-1]) * 2**20 / size**2
    assert 6 <= per_pixel <= 10, per_pixel


def test_evaluate_reads_the_frame_the_options_name(tmp_path):
    """Average Drop over two DICOM files at frame 1, against the definition on what the API
    reads: mean of max(0, Y − O) / Y with Y the top class's probability and O that of the
    input times the map."""
    from scorecam_onnx.evaluation import EvaluationPlan, evaluate

    paths = []
    for n in range(2):
        frames = RNG.integers(0, 4096, (2, 16, 16))
        write_dicom(tmp_path / f"f{n}.dcm", frames, WindowCenter=1800.0, WindowWidth=2500.0)
        paths.append(tmp_path / f"f{n}.dcm")
    ex = explainer(tmp_path, 1, voi_lut=True)
    options = ExplainOptions(frame=1)
    plan = EvaluationPlan(
        methods=["scorecam"], baselines=(), metrics=["average-drop"], options=options
    )
    (row,) = evaluate(ex, paths, plan).rows
    drops = []
    for path in paths:
        x = ex.preprocess(path, 1)[1]
        p = ex.forwards.probabilities(x)[0]
        c = int(np.argmax(p))
        cam = ex.explain(path, c, options=options)[0].saliency_input
        masked = ex.forwards.probabilities(x * cam[None, None])[0, c]
        drops.append(max(0.0, p[c] - masked) / p[c])
    assert row.average_drop == pytest.approx(100 * np.mean(drops), abs=1e-6)


def test_a_header_value_that_is_not_a_number_is_one_line(tmp_path):
    write_dicom(tmp_path / "d.dcm", RNG.integers(0, 4096, (16, 16)), RescaleSlope="9.99")
    data = (tmp_path / "d.dcm").read_bytes().replace(b"9.99", b"abc ")
    (tmp_path / "d.dcm").write_bytes(data)
    with pytest.raises(ImageError, match="a DICOM attribute that cannot be applied"):
        explainer(tmp_path, 1).explain(tmp_path / "d.dcm")
