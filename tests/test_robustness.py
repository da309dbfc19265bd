"""Bad input gives one clear line and the rest goes on; nothing is lost; threads agree."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from builders import nonfinite_model, palette_png, set_key, tiny_model
from click.testing import CliRunner
from conftest import ROOT, SAMPLES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scorecam_onnx import (
    Explainer,
    ExplainOptions,
    FasterScoreCam,
    Runtime,
    ScoreCam,
    load_image,
    write_bundle,
)
from scorecam_onnx.cli import main


def _png(path: Path, array: np.ndarray) -> Path:
    _, data = cv2.imencode(".png", array)
    path.write_bytes(data.tobytes())
    return path


def _palette_png(path: Path) -> Path:
    path.write_bytes(palette_png())
    return path


RNG = np.random.default_rng(0)
GOOD_IMAGES = {
    "gray.png": lambda p: _png(p, RNG.integers(0, 256, (9, 7), dtype=np.uint8)),
    "rgba.png": lambda p: _png(p, RNG.integers(0, 256, (9, 7, 4), dtype=np.uint8)),
    "deep.png": lambda p: _png(p, RNG.integers(0, 65536, (9, 7, 3), dtype=np.uint16)),
    "palette.png": _palette_png,
    "dot.png": lambda p: _png(p, np.full((1, 1, 3), 90, np.uint8)),
}
BAD_IMAGES = {
    "missing.png": (None, "missing.png: no such file"),
    "empty.png": (lambda p: p.write_bytes(b""), "empty.png: empty file"),
    "text.png": (lambda p: p.write_text("plain text"), "text.png: not an image OpenCV can decode"),
    "cut.jpg": (
        lambda p: p.write_bytes(
            cv2.imencode(".jpg", RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8))[1].tobytes()[
                :300
            ]
        ),
        "cut.jpg: not an image OpenCV can decode",
    ),
    "huge.png": (
        lambda p: _png(p, np.zeros((300, 400, 3), np.uint8)),
        "huge.png: 400×300 pixels is above the limit of 100000 pixels",
    ),
}


def _explain(args: list[str]):
    return CliRunner().invoke(main, ["explain", *args, "--provider", "cpu", "-q"])


@pytest.mark.parametrize("name", list(GOOD_IMAGES))
def test_unusual_but_valid_images_work(tmp_path, tiny_bundle, name):
    image = GOOD_IMAGES[name](tmp_path / name)
    result = _explain(
        [str(image), "--model", str(tiny_bundle.path), "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 0, result.output
    saliency = np.load(tmp_path / "out" / f"{Path(name).stem}.npy")
    assert saliency.shape == load_image(image).shape[:2] and np.isfinite(saliency).all()


@pytest.mark.parametrize("name", list(BAD_IMAGES))
def test_bad_image_is_one_line_and_the_rest_goes_on(tmp_path, tiny_bundle, name):
    make, message = BAD_IMAGES[name]
    folder = tmp_path / "in"
    folder.mkdir()
    _png(folder / "fine.png", RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    bad = folder / name
    if make is not None:
        make(bad)
    result = _explain(
        [
            str(folder / "fine.png"),
            str(bad),
            "--model",
            str(tiny_bundle.path),
            "--out",
            str(tmp_path / "out"),
            "--max-pixels",
            "100000",
        ]
    )
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output
    assert (tmp_path / "out" / "fine.json").is_file()


def test_folder_without_images(tmp_path, tiny_bundle):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no pictures here")
    result = _explain(
        [str(tmp_path / "empty"), "--model", str(tiny_bundle.path), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 1
    assert "empty: no images in this folder" in result.output


def _damage(bundle_path: Path, **manifest_changes) -> None:
    path = bundle_path / "manifest.json"
    data = json.loads(path.read_text())
    for key, value in manifest_changes.items():
        set_key(data, key.replace("__", "."), value)
    path.write_text(json.dumps(data))


def _external_outside(graph_path: Path) -> None:
    """Point one initializer of the graph at a file outside the bundle folder."""
    graph = onnx.load(str(graph_path))
    tensor = next(t for t in graph.graph.initializer if t.name == "w2")
    tensor.ClearField("raw_data")
    del tensor.float_data[:]
    tensor.data_location = onnx.TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value="../outside.bin")
    onnx.save(graph, str(graph_path))


BUNDLE_DAMAGE = {
    "missing graph": (
        lambda b: (b / "features.onnx").unlink(),
        "the features file 'features.onnx' is missing",
    ),
    "corrupt graph": (
        lambda b: ((b / "model.onnx").write_bytes(b"\x00garbage"), _damage(b, checksums={})),
        "model.onnx: not a readable ONNX model",
    ),
    "missing key": (lambda b: _damage(b, input__mean=KeyError), "missing key 'input.mean'"),
    "ill-typed key": (
        lambda b: _damage(b, activation__channels="five"),
        "'activation.channels' must be int",
    ),
    "unknown version": (lambda b: _damage(b, format_version=7), "unsupported 'format_version' 7"),
    "checksum": (
        lambda b: (b / "features.onnx").write_bytes((b / "features.onnx").read_bytes() + b"\0"),
        "features.onnx does not match its checksum",
    ),
    "labels outside": (
        lambda b: _damage(b, labels="../../etc/passwd"),
        "'labels' points outside the bundle",
    ),
    "weights outside": (
        lambda b: (_external_outside(b / "model.onnx"), _damage(b, checksums={})),
        "external data of w2' points outside the bundle",
    ),
    "input size": (
        lambda b: _damage(b, input__height=16),
        "has shape batch×3×8×8, but the manifest says N×3×16×8",
    ),
    "channels": (
        lambda b: _damage(b, activation__channels=7),
        "has shape batch×5×4×4, but the manifest says N×7×4×4",
    ),
}


@pytest.mark.parametrize("case", list(BUNDLE_DAMAGE))
def test_damaged_bundle_is_one_line(tmp_path, tiny_bundle, case):
    damage, message = BUNDLE_DAMAGE[case]
    damage(tiny_bundle.path)
    image = _png(tmp_path / "a.png", RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    result = _explain([str(image), "--model", str(tiny_bundle.path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert message in result.output
    assert result.output.count("\n") <= 2 and "Traceback" not in result.output


def test_all_nan_outputs_are_flagged_never_nan(tmp_path):
    bundle = write_bundle(nonfinite_model("nan"), tmp_path / "nan", "feat")
    explainer = Explainer(bundle, Runtime(provider="cpu"))
    image = RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    for preset in ("paper", "pytorch-grad-cam", "torchcam"):
        res = explainer.explain_one(image, method=ScoreCam(preset=preset))
        assert res.nonfinite and res.degenerate
        assert np.isfinite(res.saliency).all() and np.isfinite(res.score)


def test_infinite_score_of_one_mask_is_flagged(tmp_path):
    bundle = write_bundle(nonfinite_model("log"), tmp_path / "log", "feat")
    explainer = Explainer(bundle, Runtime(provider="cpu"))
    image = np.full((8, 8, 3), 230, np.uint8)
    image[:4] = 250  # bright (log of the mean is finite), not uniform
    res = explainer.explain_one(image, method=ScoreCam(preset="torchcam"))  # −∞: zero mask
    assert res.nonfinite
    assert np.isfinite(res.saliency).all()


def test_interrupted_run_loses_nothing_and_resumes(tmp_path, tiny_bundle):
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    for i in range(40):
        _png(folder / f"img{i:02d}.png", RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    command = [
        sys.executable,
        "-m",
        "scorecam_onnx",
        "explain",
        str(folder),
        "--model",
        str(tiny_bundle.path),
        "--out",
        str(out),
        "--method",
        "sscam",
        "--samples",
        "150",
        "--provider",
        "cpu",
        "-q",
    ]
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while len(list(out.glob("*.json"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    finished = sorted(out.glob("img*.json"))
    assert 3 <= len(finished) < 40, "the run was not stopped in the middle"
    for path in out.iterdir():  # every visible file is complete
        if path.name.startswith("."):
            continue
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".npy":
            assert np.load(path).shape == (8, 8)
        elif path.suffix == ".png":
            assert cv2.imread(str(path)) is not None
    resumed = subprocess.run(
        [*command, "--skip-existing"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(finished)} skipped" in resumed.stderr
    assert len(list(out.glob("img*.json"))) == 40
    assert not list(out.glob(".*.part"))


def test_ctrl_c_leaves_no_partial_files(tmp_path, tiny_bundle):
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    for i in range(30):
        _png(folder / f"img{i:02d}.png", RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "scorecam_onnx",
            "explain",
            str(folder),
            "--model",
            str(tiny_bundle.path),
            "--out",
            str(out),
            "--method",
            "sscam",
            "--samples",
            "150",
            "--provider",
            "cpu",
            "-q",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while len(list(out.glob("*.json"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "interrupted" in err and "Traceback" not in err
    assert not list(out.glob(".*.part"))
    for path in out.glob("*.npy"):
        assert np.load(path).shape == (8, 8)


def test_threads_share_one_explainer(default_explainer):
    base = [load_image(SAMPLES / "chelsea.png"), load_image(SAMPLES / "coffee.png")]
    images = [
        *base,
        *(b[:, ::-1] for b in base),
        *(b[::2, ::2] for b in base),
        *(b[20:-20, 30:-30] for b in base),
    ]
    method = FasterScoreCam(channels=16)
    serial = [default_explainer.explain_one(np.ascontiguousarray(i), method=method) for i in images]
    threaded = [None] * len(images)

    def work(n: int) -> None:
        threaded[n] = default_explainer.explain_one(np.ascontiguousarray(images[n]), method=method)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(len(images))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for one, other in zip(serial, threaded, strict=True):
        assert one.class_id == other.class_id
        np.testing.assert_array_equal(one.saliency, other.saliency)


def _rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_memory_is_flat_over_many_images(tiny_bundle):
    explainer = Explainer(tiny_bundle, Runtime(provider="cpu"))
    rng = np.random.default_rng(5)
    images = [rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(250)]
    for image in images[:50]:
        explainer.explain(image, method=FasterScoreCam(channels=3))
    tracemalloc.start()
    before, rss_before = tracemalloc.get_traced_memory()[0], _rss_mib()
    for image in images[50:]:
        explainer.explain(image, method=FasterScoreCam(channels=3))
    growth = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert growth < 256 * 1024
    assert _rss_mib() - rss_before < 32


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    height=st.integers(1, 40),
    width=st.integers(1, 40),
    channels=st.sampled_from([0, 1, 3, 4]),
    dtype=st.sampled_from(["uint8", "uint16", "float32"]),
    seed=st.integers(0, 2**16),
)
def test_any_image_array_gives_a_finite_map(tiny_bundle, height, width, channels, dtype, seed):
    rng = np.random.default_rng(seed)
    shape = (height, width) if channels == 0 else (height, width, channels)
    if dtype == "float32":
        array = rng.random(shape, dtype=np.float32)
    else:
        array = rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype, endpoint=True)
    rgb = load_image(array)
    assert rgb.shape == (height, width, 3) and rgb.dtype == np.uint8
    res = _tiny_explainer(tiny_bundle).explain_one(array)
    assert res.saliency.shape == (height, width)
    assert np.isfinite(res.saliency).all()
    assert res.saliency.min() >= 0 and res.saliency.max() <= 1


_CACHE: dict[str, Explainer] = {}


def _tiny_explainer(bundle) -> Explainer:
    key = str(bundle.path)
    if key not in _CACHE:
        _CACHE[key] = Explainer(bundle, Runtime(provider="cpu"))
    return _CACHE[key]


def test_fixed_batch_model_bundle(tmp_path):
    bundle = write_bundle(tiny_model(batch=1), tmp_path / "b", "feat")
    res = Explainer(bundle, Runtime(provider="cpu")).explain_one(
        RNG.integers(0, 256, (8, 8, 3), np.uint8), options=ExplainOptions(batch_size=5)
    )
    assert np.isfinite(res.saliency).all()


def test_a_long_folder_run_keeps_no_arrays(tmp_path, tiny_bundle):
    from scorecam_onnx.batch import ExplainJob, explain_files
    from scorecam_onnx.request import request_from

    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(60):
        _png(folder / f"{i:02d}.png", RNG.integers(0, 256, (256, 256, 3), dtype=np.uint8))
    explainer = Explainer(tiny_bundle, Runtime(provider="cpu"))
    job = ExplainJob(
        inputs=[str(folder)],
        out=tmp_path / "out",
        request=request_from(method="faster-scorecam", channels=2),
    )
    tracemalloc.start()
    results, _ = explain_files(explainer, job)
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert len(results) == 60 and all(r.summaries for r in results)
    saliency_mib = 60 * 256 * 256 * 4 / 2**20  # 15 MiB if the maps were kept
    assert held / 2**20 < saliency_mib / 10
