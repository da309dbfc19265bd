"""The README's Python example runs as written, against the shipped bundle, and says what it
prints."""

from __future__ import annotations

import numpy as np
from conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def python_block(after: str) -> str:
    return README.split(after, 1)[1].split("```python", 1)[1].split("```", 1)[0]


def test_the_python_api_example_runs(monkeypatch):
    monkeypatch.chdir(ROOT)
    names: dict[str, object] = {}
    exec(compile(python_block("## Python API"), "README.md", "exec"), names)
    res, maps, fast, smooth = (names[k] for k in ("res", "maps", "fast", "smooth"))
    assert (res.class_id, res.label, round(res.score, 2)) == (285, "Egyptian cat", 0.78)
    assert [m.class_id for m in maps] == [281, 285]
    assert fast.class_id == 285 and fast.forwards == 17  # 16 channels + the clean one
    assert smooth.forwards == 6 * 9 and smooth.preset == "torchcam"  # six passes
    assert names["cpu"].provider == "cpu"
    assert names["picture"].shape == (*res.saliency.shape, 3)
    assert np.isfinite(res.saliency).all()


def test_the_detector_example_runs(monkeypatch, tmp_path, detectors):
    """The detector example, with a small YOLOv8-layout detector as its yolov8n.onnx."""
    (tmp_path / "yolov8n.onnx").write_bytes(detectors["yolov8"].read_bytes())
    (tmp_path / "samples").symlink_to(ROOT / "samples")
    monkeypatch.chdir(tmp_path)
    names: dict[str, object] = {}
    exec(compile(python_block("## Object detectors"), "README.md", "exec"), names)
    found, maps, given = names["found"], names["maps"], names["given"]
    assert len(maps) == min(3, len(found)) and maps[0].box == found[0].box
    assert [m.forwards for m in maps] == [501] * len(maps)  # one set of forwards for all
    assert given[0].class_id == found[0].class_id
    assert given[0].saliency.shape == names["first"].saliency.shape
