"""Every Python and shell example of the README and the site runs as written against the
shipped bundle and prints what it says (the synopsis is checked in `cli/test_synopsis.py`).

Examples that need the service run here against a real one; those needing Triton or Ray run
in the tests that start them (`triton_repository/`, `distributed/`).
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from examples import (
    FILES,
    KINDS,
    LANGUAGES,
    NOT_RUN,
    examples,
    run_python,
    run_shell,
    runnable,
    workdir,
)
from serving import Server

PYTHON_FILES = sorted({e.path for e in runnable() if e.lang == "python"})
SHELL = [e for e in runnable() if e.lang == "bash"]


@pytest.fixture
def folder(tmp_path, detectors):
    return workdir(tmp_path, detectors["yolov8"])


def test_every_block_runs_or_says_why_not():
    found = examples()
    assert len(found) > 20
    for block in found:
        assert block.lang in (*LANGUAGES, "text", "json"), f"{block.name}: {block.lang!r}"
        if block.kind == "not run":
            reason = block.marker.removeprefix("not run: ")
            assert reason.startswith(NOT_RUN), f"{block.name}: {reason!r}"
        else:
            assert block.kind in (None, *KINDS), f"{block.name}: {block.marker!r}"
    assert all(runnable(kind) for kind in KINDS)


def _check_readme(names):
    result, maps = names["result"], names["maps"]
    assert (result.class_id, result.label, result.forwards) == (285, "Egyptian cat", 472)
    assert [m.forwards for m in maps] == [17, 17]  # 16 channels + the clean one, once
    assert maps[0].class_id == 285 and maps[0].score > maps[1].score
    assert names["picture"].shape == (*maps[0].saliency.shape, 3)


def _check_python_api(names):
    res, maps, fast, smooth = (names[k] for k in ("res", "maps", "fast", "smooth"))
    assert (res.class_id, res.label, round(res.score, 2)) == (285, "Egyptian cat", 0.78)
    assert [m.class_id for m in maps] == [281, 285]
    assert fast.class_id == 285 and fast.forwards == 17
    assert smooth.forwards == 6 * 9 and smooth.preset == "torchcam"  # six passes
    assert names["cpu"].provider == "cpu"
    assert np.isfinite(res.saliency).all()


def _check_detectors(names):
    found, maps, given = names["found"], names["maps"], names["given"]
    assert len(maps) == min(3, len(found)) and maps[0].box == found[0].box
    assert [m.forwards for m in maps] == [501] * len(maps)  # one set of forwards for all
    assert given[0].class_id == found[0].class_id


def _check_evaluation(names):
    rows = {row.method: row for row in names["report"].rows}
    assert set(rows) == {"faster-scorecam", "eigencam", "center"}
    assert rows["faster-scorecam"].forwards == 9 and rows["eigencam"].forwards == 1


CHECKS = {
    "README.md": _check_readme,
    "docs/guides/python-api.md": _check_python_api,
    "docs/guides/detectors.md": _check_detectors,
    "docs/guides/evaluation.md": _check_evaluation,
}


@pytest.mark.parametrize("path", PYTHON_FILES, ids=lambda p: p.name)
def test_python_examples(path, folder):
    blocks = [e for e in runnable() if e.path == path and e.lang == "python"]
    names = run_python(blocks, folder)
    check = CHECKS.get(str(path.relative_to(FILES[0].parent)))
    if check:
        check(names)


# The small detector standing in for yolov8n.onnx has no neck to find its layer by: it is named.
SHELL_REPLACE = {
    "docs/guides/detectors.md": {
        "split yolov8n.onnx --out yolo": "split yolov8n.onnx --layer features --out yolo"
    }
}


@pytest.mark.parametrize("block", SHELL, ids=lambda e: e.name)
def test_shell_examples(block, folder):
    run_shell(block, folder, SHELL_REPLACE.get(block.name.split(":")[0]))
    for out in re.findall(r"--out (\S+)", block.code):
        assert any((folder / out).iterdir()), f"{block.name} wrote nothing in {out}"


@pytest.mark.serve
def test_service_examples(folder):
    server = Server()
    try:
        address = server.url.removeprefix("http://").rstrip("/")
        run_python(runnable("service"), folder, {"127.0.0.1:8080": address})
    finally:
        server.stop()
