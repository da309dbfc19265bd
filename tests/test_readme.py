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
    assert fast.class_id == 285 and fast.forwards == 17      # 16 channels + the clean one
    assert smooth.forwards == 6 * 9 and smooth.preset == "torchcam"   # six passes
    assert names["cpu"].provider == "cpu"
    assert names["picture"].shape == (*res.saliency.shape, 3)
    assert np.isfinite(res.saliency).all()
