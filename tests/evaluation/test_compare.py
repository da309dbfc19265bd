"""The comparison report: its numbers are `evaluate`'s, its correlations are those of the
maps explained by hand, its HTML parses with every picture inlined and decodable, and it opens
in a real Chromium without asking anything of another machine."""

from __future__ import annotations

import base64
import functools
import http.server
import json
import re
import threading
from html.parser import HTMLParser

import cv2
import numpy as np
import pytest
from chromium import chromium, requested_urls
from click.testing import CliRunner

from scorecam_onnx import Explainer, FasterScoreCam, Runtime
from scorecam_onnx.cli import main
from scorecam_onnx.evaluation import evaluate
from scorecam_onnx.evaluation.comparison import compare
from scorecam_onnx.evaluation.faithfulness import EvaluationPlan
from scorecam_onnx.evaluation.report_html import write_comparison

RNG = np.random.default_rng(11)
METHODS = ("scorecam", FasterScoreCam(channels=3), "eigencam")


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.cells: list[str] = []
        self._in_cell = False

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        self._in_cell = self._in_cell or tag in ("td", "th")

    def handle_endtag(self, tag):
        self._in_cell = False if tag in ("td", "th") else self._in_cell

    def handle_data(self, data):
        if self._in_cell and data.strip():
            self.cells.append(data.strip())


@pytest.fixture
def images(tmp_path):
    paths = []
    for i in range(2):
        path = tmp_path / f"photo {i}.png"
        cv2.imwrite(str(path), RNG.integers(0, 256, (24, 20, 3), dtype=np.uint8))
        paths.append(path)
    return paths


@pytest.fixture
def report(tiny_bundle, images, tmp_path):
    explainer = Explainer(tiny_bundle, Runtime(provider="cpu"))
    found = compare(explainer, images, EvaluationPlan(METHODS, baselines=()), height=48)
    return explainer, found, write_comparison(found, tmp_path / "report")


def _without_seconds(table):
    head, rows = table
    keep = [i for i, h in enumerate(head) if h != "s / image"]
    return [[row[i] for i in keep] for row in rows]


def test_the_numbers_are_evaluates_and_the_correlations_the_maps(report, images):
    explainer, found, _ = report
    again = evaluate(explainer, images, EvaluationPlan(METHODS, baselines=()))
    assert _without_seconds(found.evaluation.table()) == _without_seconds(again.table())
    for method in METHODS[1:]:
        name = getattr(method, "name", method)
        expected = np.mean(
            [
                np.corrcoef(
                    explainer.explain(image, method=method)[0].saliency_input.ravel(),
                    explainer.explain(image)[0].saliency_input.ravel(),
                )[0, 1]
                for image in images
            ]
        )
        assert found.correlations[name] == pytest.approx(expected, abs=1e-9)


def test_the_page_inlines_every_picture_and_shows_the_table(report):
    _, found, written = report
    folder = written[0].parent
    page = _Page()
    page.feed((folder / "report.html").read_text(encoding="utf-8"))
    pngs = sorted(p for p in written if p.suffix == ".png")
    assert len(page.images) == len(pngs) == 3  # the curves and a row per image
    inlined = [base64.b64decode(src.split(",", 1)[1]) for src in page.images]
    assert sorted(inlined) == sorted(p.read_bytes() for p in pngs)
    for data in inlined:
        assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is not None
    for cells in found.evaluation.table()[1]:
        assert all(c in page.cells for c in cells)
    row = cv2.imread(str(folder / "01-photo_0.png"))
    assert row.shape[0] == 48 + 28  # the tiles and their captions
    data = json.loads((folder / "report.json").read_text())
    assert [m["method"] for m in data["methods"]] == ["scorecam", "faster-scorecam", "eigencam"]
    assert re.search(r"corr\. with exact", (folder / "report.md").read_text())


@pytest.mark.browser
def test_the_page_opens_offline_in_chromium(report):
    folder = report[2][0].parent
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    browser = chromium()
    try:
        driver = next(browser)
        driver.get(base + "report.html")
        loaded = driver.execute_script(
            "return Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)"
        )
        assert loaded == [True, True, True]
        seen = requested_urls(driver)
        assert [u for u in seen if not u.startswith(("data:", "chrome:", "about:"))] == [
            base + "report.html"
        ]
    finally:
        server.shutdown()
        next(browser, None)


def test_the_compare_command_prints_the_table_and_writes_the_report(tiny_bundle, images, tmp_path):
    out = tmp_path / "cmp"
    args = ["compare", *map(str, images), "--model", str(tiny_bundle.path), "-q", "--out", str(out)]
    result = CliRunner().invoke(main, [*args, "--methods", "scorecam,eigencam"])
    assert result.exit_code == 0, result.output
    assert "| eigencam |" in result.output and "corr. with exact" in result.output
    assert (out / "report.html").is_file() and (out / "01-photo_0.png").is_file()
    missing = CliRunner().invoke(main, [*args, str(tmp_path / "gone.png")])
    assert missing.exit_code == 1 and "gone.png" in missing.output
