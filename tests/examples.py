"""The Python and shell examples of the README and the documentation site, collected and run
as written.

A block runs in a working folder that holds what the examples name: `samples/`, `models/`,
`photo.jpg` (the sample cat), `yolov8n.onnx` (a small detector in YOLOv8's layout), and
`xray.onnx` with `scan.dcm`, `crops.onnx` with `field.tif` (see `_medical_and_bands`). An HTML
comment right before a block says how it runs: `<!-- example: KIND -->` needs a server or a
cluster that the test for KIND starts (`service`, `triton`, `ray`), and `<!-- not run: REASON
-->` is for the blocks that cannot run here, with one of `NOT_RUN`'s reasons. A `print(...)`
line ending in `# TEXT` must print TEXT.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
from conftest import ROOT, SAMPLES

FILES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
KINDS = ("service", "triton", "ray")
NOT_RUN = ("installs packages", "runs until stopped", "needs a GPU", "needs a cluster")
LANGUAGES = ("python", "bash")
_BLOCK = re.compile(r"(?:<!-- (?P<marker>[^>]*?) -->\n)?```(?P<lang>\w*)\n(?P<code>.*?)```", re.S)
_PRINTS = re.compile(r"^\s*print\(.*\)\s*#\s*(?P<text>.+?)\s*$")


@dataclass(frozen=True)
class Example:
    """One fenced block: where it is, its language, its code and its marker."""

    path: Path
    line: int
    lang: str
    code: str
    marker: str | None

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def kind(self) -> str | None:
        """The server or cluster it needs (None: none), or "not run"."""
        if self.marker is None:
            return None
        if self.marker.startswith("not run: "):
            return "not run"
        return self.marker.removeprefix("example: ")


def examples(path: Path | None = None) -> list[Example]:
    """Every fenced block of the README and the site (or of one file), in order."""
    found = []
    for file in [path] if path else FILES:
        text = file.read_text(encoding="utf-8")
        for m in _BLOCK.finditer(text):
            line = text.count("\n", 0, m.start("code"))
            found.append(Example(file, line, m["lang"], m["code"], m["marker"]))
    return found


def runnable(kind: str | None = None) -> list[Example]:
    """The Python and shell examples that run with `kind`'s server (None: with nothing)."""
    return [e for e in examples() if e.lang in LANGUAGES and e.kind == kind]


def workdir(folder: Path, detector: Path) -> Path:
    """A folder holding what the examples name."""
    (folder / "samples").symlink_to(SAMPLES)
    (folder / "models").symlink_to(ROOT / "models")
    cv2.imwrite(str(folder / "photo.jpg"), cv2.imread(str(SAMPLES / "chelsea.png")))
    shutil.copyfile(detector, folder / "yolov8n.onnx")
    _medical_and_bands(folder)
    return folder


def _medical_and_bands(folder: Path) -> None:
    """`xray.onnx` (a 1-channel classifier) and `scan.dcm` (a windowed 12-bit CT of 64×64);
    `crops.onnx` (a 4-channel one) and `field.tif` (4 bands of 16 bits, 48×64)."""
    import numpy as np
    import onnx
    import tifffile
    from builders import tiny_model
    from dicom_files import write_dicom

    rng = np.random.default_rng(0)
    onnx.save(tiny_model(bands=1), str(folder / "xray.onnx"))
    onnx.save(tiny_model(bands=4), str(folder / "crops.onnx"))
    write_dicom(
        folder / "scan.dcm",
        rng.integers(0, 4096, (64, 64)),
        RescaleSlope=1.0,
        RescaleIntercept=-1024.0,
        WindowCenter=40.0,
        WindowWidth=400.0,
    )
    tifffile.imwrite(folder / "field.tif", rng.integers(0, 10000, (48, 64, 4), dtype=np.uint16))


def expected_prints(code: str) -> list[str]:
    """What the `print(...)  # TEXT` lines say they print."""
    return [m["text"] for line in code.splitlines() if (m := _PRINTS.match(line))]


def run_python(
    blocks: list[Example], folder: Path, replace: dict[str, str] | None = None
) -> dict[str, object]:
    """Run the blocks in order in one namespace, in `folder`, and check what they print;
    the namespace."""
    names: dict[str, object] = {"__name__": "__example__"}
    out = io.StringIO()
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        for block in blocks:
            code = _replaced(block.code, replace)
            with contextlib.redirect_stdout(out):
                exec(compile(code, block.name, "exec"), names)
    finally:
        os.chdir(cwd)
    printed = out.getvalue()
    for block in blocks:
        for text in expected_prints(block.code):
            assert text in printed, f"{block.name}: expected {text!r} in {printed!r}"
    return names


def run_shell(
    block: Example, folder: Path, replace: dict[str, str] | None = None, timeout: float = 600
) -> str:
    """Run a shell block with this Python's scripts first on PATH; its output."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", _replaced(block.code, replace)],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"{block.name} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _replaced(code: str, replace: dict[str, str] | None) -> str:
    for old, new in (replace or {}).items():
        assert old in code, f"{old!r} is not in the example"
        code = code.replace(old, new)
    return code
