"""Folder runs: every unreadable entry reported once, no native messages, stdout for results."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
from conftest import ROOT

from scorecam_onnx import ImageError, load_image

RNG = np.random.default_rng(3)


def _png_bytes(shape=(8, 8, 3)) -> bytes:
    return cv2.imencode(".png", RNG.integers(0, 256, shape, dtype=np.uint8))[1].tobytes()


def corrupt_png() -> bytes:
    """A PNG whose compressed data is broken after a valid header (libpng complains)."""
    data = bytearray(_png_bytes((16, 16, 3)))
    start = data.find(b"IDAT") + 4
    data[start : start + 4] = b"\xff\xff\xff\xff"
    return bytes(data)


def _run(args: list[str]) -> subprocess.CompletedProcess:
    """The CLI in a subprocess, so that descriptor 2 itself is captured, not sys.stderr."""
    return subprocess.run(
        [sys.executable, "-m", "scorecam_onnx", *args, "--provider", "cpu", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _bad_folder(root: Path) -> Path:
    folder = root / "in"
    folder.mkdir()
    (folder / "good.png").write_bytes(_png_bytes())
    os.symlink("self.png", folder / "self.png")  # a link to itself
    os.symlink(root / "gone.png", folder / "dangling.png")  # a link to nothing
    (folder / "x.jpg").mkdir()  # a folder named like an image
    (folder / "x.jpg" / "inner.png").write_bytes(_png_bytes())
    (folder / "corrupt.png").write_bytes(corrupt_png())
    os.symlink(folder, folder / "loop")  # a link to a folder above
    return folder


def test_bad_entries_reported_once_each(tmp_path, tiny_bundle):
    folder = _bad_folder(tmp_path)
    out = tmp_path / "out"
    done = _run(["explain", str(folder), "--model", str(tiny_bundle.path), "--out", str(out)])
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert sorted(errors) == sorted(
        [
            f"error: {folder / 'corrupt.png'}: not an image OpenCV can decode (corrupt or "
            "unsupported)",
            f"error: {folder / 'dangling.png'}: broken symbolic link (its target does not exist)",
            f"error: {folder / 'self.png'}: symbolic link loop",
        ]
    )
    assert "libpng" not in done.stderr and "Traceback" not in done.stderr
    assert "2 explained, 0 skipped, 3 failed" in done.stderr
    # The good photo and the one inside the folder named x.jpg are explained; the link to
    # a folder is not descended into (the good photo is not found twice).
    assert sorted(p.name for p in out.glob("*.json")) == ["good.json", "inner.json"]
    rows = done.stdout.splitlines()
    assert rows[0].split()[:2] == ["image", "class"]
    assert sorted(r.split()[0] for r in rows[1:]) == ["good", "inner"]


def test_no_result_means_empty_stdout(tmp_path, tiny_bundle):
    bad = tmp_path / "corrupt.png"
    bad.write_bytes(corrupt_png())
    done = _run(
        ["explain", str(bad), "--model", str(tiny_bundle.path), "--out", str(tmp_path / "out")]
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.count(str(bad)) == 1 and "libpng" not in done.stderr


def test_evaluate_reports_bad_images_and_goes_on(tmp_path, tiny_bundle):
    good = tmp_path / "good.png"
    good.write_bytes(_png_bytes())
    bad = tmp_path / "corrupt.png"
    bad.write_bytes(corrupt_png())
    done = _run(
        [
            "evaluate",
            str(good),
            str(bad),
            "--model",
            str(tiny_bundle.path),
            "--methods",
            "faster-scorecam",
            "--no-baselines",
            "--out",
            str(tmp_path / "ev"),
        ]
    )
    assert done.returncode == 1
    assert done.stderr.count(f"error: {bad}: not an image OpenCV can decode") == 1
    assert "libpng" not in done.stderr
    assert "faster-scorecam" in done.stdout  # the good image was still evaluated
    assert (tmp_path / "ev" / "report.json").is_file()


def test_decoding_in_process_writes_nothing_to_descriptor_2(capfd):
    try:
        load_image(corrupt_png())
    except ImageError as exc:
        assert exc.reason.startswith("not an image OpenCV can decode")
    else:
        raise AssertionError("a corrupt PNG was decoded")
    assert capfd.readouterr().err == ""
    os.write(2, b"still connected\n")  # descriptor 2 is restored afterwards
    assert capfd.readouterr().err == "still connected\n"


def test_pipe_named_like_an_image_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    try:
        load_image(fifo)
    except ImageError as exc:
        assert str(exc) == f"{fifo}: not a regular file"
    else:
        raise AssertionError("a pipe was read as an image")
