"""The command line: exit codes, messages and the files it writes."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from builders import save, tiny_model
from click.testing import CliRunner

from scorecam_onnx.cli import main

COMMANDS = ["explain", "export", "split", "layers", "info"]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def _png(path, seed=0):
    rng = np.random.default_rng(seed)
    cv2.imwrite(str(path), rng.integers(0, 256, size=(12, 10, 3), dtype=np.uint8))
    return path


@pytest.mark.parametrize("command", [[], *[[c] for c in COMMANDS]])
@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_every_command_has_help(runner, command, flag):
    result = runner.invoke(main, [*command, flag])
    assert result.exit_code == 0
    assert "Usage:" in result.output


def test_explain_writes_outputs_per_class(runner, tmp_path, tiny_bundle):
    image = _png(tmp_path / "a.png")
    out = tmp_path / "out"
    result = runner.invoke(
        main,
        [
            "explain",
            str(image),
            "--model",
            str(tiny_bundle.path),
            "--out",
            str(out),
            "--top-k",
            "2",
            "--provider",
            "cpu",
            "--sheet",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "a.json").read_text())
    assert len(summary["classes"]) == 2
    for entry in summary["classes"]:
        base = f"a.c{entry['class_id']}"
        saliency = np.load(out / f"{base}.npy")
        assert saliency.shape == (12, 10) and saliency.dtype == np.float32
        assert cv2.imread(str(out / f"{base}.png")).shape == (12, 10, 3)
        assert json.loads((out / f"{base}.json").read_text())["label"] == entry["label"]
        assert entry["label"] in result.output
    assert (out / "sheet.png").is_file()
    assert not list(out.glob("*.part"))


def test_bad_image_does_not_stop_the_batch(runner, tmp_path, tiny_bundle):
    folder = tmp_path / "images"
    folder.mkdir()
    _png(folder / "good.png")
    (folder / "bad.png").write_text("this is text, not a PNG")
    out = tmp_path / "out"
    result = runner.invoke(
        main, ["explain", str(folder), "--model", str(tiny_bundle.path), "--out", str(out)]
    )
    assert result.exit_code == 1
    assert "bad.png: not an image OpenCV can decode" in result.output
    assert "Error: some inputs failed" in result.output
    assert (out / "good.png").is_file() and (out / "good.json").is_file()
    assert not (out / "bad.json").exists()


def test_skip_existing_resumes(runner, tmp_path, tiny_bundle):
    image = _png(tmp_path / "a.png")
    args = ["explain", str(image), "--model", str(tiny_bundle.path), "--out", str(tmp_path / "o")]
    assert runner.invoke(main, args).exit_code == 0
    again = runner.invoke(main, [*args, "--skip-existing"])
    assert again.exit_code == 0
    assert "1 skipped" in again.output


def test_same_stem_in_two_folders(runner, tmp_path, tiny_bundle):
    for name in ("x", "y"):
        (tmp_path / name).mkdir()
        _png(tmp_path / name / "photo.png", seed=len(name))
    out = tmp_path / "out"
    result = runner.invoke(
        main,
        [
            "explain",
            str(tmp_path / "x"),
            str(tmp_path / "y"),
            "--model",
            str(tiny_bundle.path),
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.glob("*.json"))
    assert len(names) == 2 and names[0] != names[1]
    assert all(p.parent == out for p in out.rglob("*"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch-size", "0"], "Invalid value for '--batch-size'"),
        (["--top-k", "2", "--class", "1"], "give either --class or --top-k"),
        (["--preset", "other"], "Invalid value for '--preset'"),
        (["--provider", "tpu"], "Invalid value for '--provider'"),
    ],
)
def test_usage_errors_exit_2(runner, tmp_path, tiny_bundle, args, message):
    image = _png(tmp_path / "a.png")
    result = runner.invoke(main, ["explain", str(image), "--model", str(tiny_bundle.path), *args])
    assert result.exit_code == 2
    assert message in result.output


def test_missing_input_and_bad_class(runner, tmp_path, tiny_bundle):
    result = runner.invoke(
        main,
        [
            "explain",
            str(tmp_path / "nope.png"),
            "--model",
            str(tiny_bundle.path),
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert result.exit_code == 1
    assert "nope.png: no such file" in result.output
    image = _png(tmp_path / "a.png")
    result = runner.invoke(
        main,
        [
            "explain",
            str(image),
            "--model",
            str(tiny_bundle.path),
            "--class",
            "9",
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert result.exit_code == 1
    assert "class id 9 is out of range (0 to 3)" in result.output


def test_bad_bundle_is_one_line(runner, tmp_path):
    result = runner.invoke(main, ["info", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and "no manifest" in result.output
    assert "Traceback" not in result.output


def test_info(runner, tiny_bundle):
    result = runner.invoke(main, ["info", str(tiny_bundle.path)])
    assert result.exit_code == 0
    assert "feat: 5×4×4" in result.output
    data = json.loads(runner.invoke(main, ["info", str(tiny_bundle.path), "--json"]).output)
    assert data["activation"]["channels"] == 5


def test_layers_and_split(runner, tmp_path):
    model = save(tiny_model(), tmp_path / "tiny.onnx")
    listed = runner.invoke(main, ["layers", str(model)])
    assert listed.exit_code == 0
    lines = listed.output.splitlines()
    assert [line.split()[0] for line in lines] == ["conv", "relu", "feat"]
    assert lines[-1].endswith("<- suggested") and "?×5×4×4" not in lines[-1]
    out = tmp_path / "bundle"
    split = runner.invoke(main, ["split", str(model), "--out", str(out), "--mean", "0.5,0.5,0.5"])
    assert split.exit_code == 0, split.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["activation"]["name"] == "feat"
    assert manifest["input"]["mean"] == [0.5, 0.5, 0.5]
    bad = runner.invoke(
        main, ["split", str(model), "--layer", "gap", "--out", str(tmp_path / "b2")]
    )
    assert bad.exit_code == 1 and "has a spatial size of 1×1" in bad.output
    bad = runner.invoke(main, ["split", str(model), "--mean", "1,2", "--out", str(tmp_path / "b")])
    assert bad.exit_code == 1 and "2 mean values for an input of 3 channels" in bad.output
    missing = runner.invoke(main, ["layers", str(tmp_path / "none.onnx")])
    assert missing.exit_code == 1 and "no such ONNX file" in missing.output


def test_export_command(runner, tmp_path):
    out = tmp_path / "b"
    result = runner.invoke(
        main,
        ["export", "--model", "torch_models:small_net", "--input-size", "16", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert "layer relu2: automatic: the last feature map of the input; 16×8×8" in result.output
    assert "verified against PyTorch" in result.output
    bad = runner.invoke(main, ["export", "--model", "no_such_module:x", "--out", str(out)])
    assert bad.exit_code == 1 and "No module named 'no_such_module'" in bad.output


def test_contact_sheet_keeps_only_the_first_rows(tmp_path, tiny_bundle, monkeypatch):
    from scorecam_onnx import Explainer, Runtime, batch

    monkeypatch.setattr(batch, "SHEET_ROWS", 2)
    for i in range(3):
        _png(tmp_path / f"{i}.png", seed=i)
    job = batch.ExplainJob(
        inputs=[str(tmp_path / f"{i}.png") for i in range(3)], out=tmp_path / "out", sheet=True
    )
    results, _ = batch.explain_files(Explainer(tiny_bundle, Runtime(provider="cpu")), job)
    assert [r.thumbnail is not None for r in results] == [True, True, False]
    assert all(r.summaries for r in results)
