"""Token activations (N×L×C) and NHWC stages: vision transformers through the whole pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import oracles
import pytest
import torch
from builders import save, token_model
from click.testing import CliRunner
from conftest import TINY_PREP
from scorecam_onnx_export import export_bundle
from scorecam_onnx_export.torch_export import LoadedModel, prefix_tokens
from torch_models import swin_like, tiny_vit, tiny_vit_registers

from scorecam_onnx import (
    Bundle,
    BundleError,
    Explainer,
    Preprocessing,
    Runtime,
    ScoreCam,
    write_bundle,
)
from scorecam_onnx.bundle.tokens import check_grid, infer_grid
from scorecam_onnx.cli import main

RNG = np.random.default_rng(21)
PRESET_ORACLES = {
    "paper": oracles.paper,
    "pytorch-grad-cam": oracles.grad_cam_style,
    "torchcam": oracles.torchcam_style,
}


# Reading the grid --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("length", "size", "prefix", "want"),
    [
        (197, (224, 224), None, (1, 14, 14)),  # ViT-B/16: class token + 14×14
        (50, (224, 224), None, (1, 7, 7)),  # ViT-B/32
        (198, (224, 224), None, (2, 14, 14)),  # DeiT distilled: class + distillation
        (201, (224, 224), None, (5, 14, 14)),  # class + 4 registers
        (17, (24, 24), 1, (1, 4, 4)),  # ambiguous alone, settled by the model's P
        (24, (16, 24), None, (0, 4, 6)),  # no class token, a non-square input
    ],
)
def test_grid_inference(length, size, prefix, want):
    assert infer_grid(length, size, prefix) == want


def test_ambiguous_or_impossible_grids_are_refused():
    with pytest.raises(
        BundleError,
        match=r"17 tokens at input 24×24 could be read as "
        r"1:4x4, 8:3x3 .*give --tokens P:GHxGW",
    ):
        infer_grid(17, (24, 24))
    with pytest.raises(BundleError, match="no patch grid fits"):
        infer_grid(23, (224, 224), prefix=1)
    with pytest.raises(BundleError, match="does not fit a tensor of 17 tokens"):
        check_grid(17, (1, 3, 3))
    assert check_grid(17, (8, 3, 3)) == (8, 3, 3)


def test_prefix_tokens_read_off_the_model():
    assert prefix_tokens(tiny_vit()) == 1
    assert prefix_tokens(tiny_vit_registers()) == 4
    assert prefix_tokens(swin_like()) is None


# Exported transformers against hand-made reshapes -------------------------------------------
def _export(tmp_path, factory, layer, **options) -> Explainer:
    loaded = LoadedModel(factory(), {"framework": "pytorch", "model": factory.__name__})
    report = export_bundle(
        loaded, tmp_path / factory.__name__, layer, Preprocessing(height=32, width=32), **options
    )
    return Explainer(report.bundle, Runtime(provider="cpu"))


def _hooked(model: torch.nn.Module, module: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    seen = []
    handle = module.register_forward_hook(lambda _m, _i, out: seen.append(out.detach()))
    with torch.no_grad():
        model(torch.from_numpy(x))
    handle.remove()
    return seen[0].numpy()


def _torch_fn(model: torch.nn.Module):
    def run(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(np.ascontiguousarray(batch))).numpy()

    return run


@pytest.mark.parametrize("factory", [tiny_vit, tiny_vit_registers])
def test_vit_bundle_matches_the_hand_reshaped_oracle(tmp_path, factory):
    explainer = _export(tmp_path, factory, "blocks.0")
    a = explainer.bundle.manifest.activation
    prefix = prefix_tokens(factory())
    assert (a.layout, a.prefix, a.height, a.width, a.channels) == ("NLC", prefix, 4, 4, 16)
    assert explainer.forwards.tail is not None
    model = factory().eval()
    image = RNG.integers(0, 256, (40, 36, 3), dtype=np.uint8)
    x = explainer.preprocess(image)[1]
    tokens = _hooked(model, model.blocks[0], x)
    # pytorch-grad-cam's ViT reshape_transform, by hand: drop the leading tokens, grid, NCHW.
    acts = tokens[:, prefix:, :].reshape(1, 4, 4, 16).transpose(0, 3, 1, 2)[0]
    np.testing.assert_allclose(explainer.forwards.activations(x), acts, atol=1e-4)
    for preset, oracle in PRESET_ORACLES.items():
        for c in (0, 3):
            got = explainer.explain_one(image, c, ScoreCam(preset=preset)).saliency_input
            want = oracle(x, acts, _torch_fn(model), c)
            assert oracles.correlation(got, want) > 0.999, preset
            np.testing.assert_allclose(got, want, atol=5e-3)


def test_split_of_an_exported_vit_suggests_the_last_blocks_norm_input(tmp_path):
    """`split` with no --layer picks the input of the last block's first LayerNormalization:
    the same tensor as the export's `blocks.0` (the residual stream entering block 1)."""
    exported = _export(tmp_path, tiny_vit, "blocks.0")
    result = CliRunner().invoke(
        main,
        [
            "split",
            str(exported.bundle.model_path),
            "--out",
            str(tmp_path / "s"),
            "--input-size",
            "32",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "16 channels of 1 + 4×4 tokens" in result.output
    split = Explainer(tmp_path / "s", Runtime(provider="cpu"))
    x = RNG.standard_normal((1, 3, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(
        split.forwards.activations(x), exported.forwards.activations(x), atol=1e-5
    )
    listed = CliRunner().invoke(main, ["layers", str(exported.bundle.model_path)])
    suggested = [line for line in listed.output.splitlines() if "<- suggested" in line]
    assert len(suggested) == 1 and "×16 " in suggested[0]


def test_tail_methods_on_a_vit_keep_the_leading_tokens(tmp_path):
    explainer = _export(tmp_path, tiny_vit_registers, "blocks.0")
    model = tiny_vit_registers().eval()
    image = RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    x = explainer.preprocess(image)[1]
    tokens = _hooked(model, model.blocks[0], x)
    lead, acts = tokens[:, :4], tokens[:, 4:].reshape(1, 4, 4, 16).transpose(0, 3, 1, 2)[0]

    def tail(batch: np.ndarray) -> np.ndarray:
        n = batch.shape[0]
        patches = batch.transpose(0, 2, 3, 1).reshape(n, 16, 16)
        full = np.concatenate([np.repeat(lead, n, axis=0), patches], axis=1)
        with torch.no_grad():
            return model.tail(torch.from_numpy(full.astype(np.float32))).numpy()

    clean = tail(acts[None])[0]
    for c in (1, 2):
        got = explainer.explain_one(image, c, method="reciprocam").saliency_input
        np.testing.assert_allclose(got, oracles.reciprocam(acts, tail, c, (32, 32)), atol=1e-3)
        got = explainer.explain_one(image, c, method="ablationcam").saliency_input
        want = oracles.ablationcam(acts, tail, clean, c, (32, 32))
        assert oracles.correlation(got, want) > 0.999


def test_nhwc_stage_bundle_matches_the_oracle(tmp_path):
    explainer = _export(tmp_path, swin_like, "stage", activation_layout="NHWC")
    a = explainer.bundle.manifest.activation
    assert (a.layout, a.channels, a.height, a.width) == ("NHWC", 12, 8, 8)
    model = swin_like().eval()
    image = RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    x = explainer.preprocess(image)[1]
    acts = _hooked(model, model.stage, x)[0].transpose(2, 0, 1)
    for preset, oracle in PRESET_ORACLES.items():
        got = explainer.explain_one(image, 2, ScoreCam(preset=preset)).saliency_input
        want = oracle(x, acts, _torch_fn(model), 2)
        np.testing.assert_allclose(got, want, atol=5e-3)


def test_export_cli_with_tokens_and_model_kwargs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tests = str(Path(__file__).parent.parent)
    (tmp_path / "zoo.py").write_text(
        f"import sys\nsys.path.insert(0, {tests!r})\nfrom torch_models import TinyViT\n"
        "def build(registers=0):\n    return TinyViT(registers=registers)\n"
    )
    result = CliRunner().invoke(
        main,
        [
            "export",
            "--model",
            "zoo:build",
            "--model-kwargs",
            '{"registers": 2}',
            "--layer",
            "blocks.1",
            "--input-size",
            "32",
            "--out",
            str(tmp_path / "b"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "16 channels of 3 + 4×4 tokens" in result.output
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["source"]["model_kwargs"] == '{"registers": 2}'
    bad = CliRunner().invoke(
        main,
        ["export", "--model", "zoo:build", "--model-kwargs", "[1]", "--out", str(tmp_path / "c")],
    )
    assert bad.exit_code == 2 and "expected a JSON object" in bad.output


# Split of a token graph (no torch) ----------------------------------------------------------
def _with_output(model: onnx.ModelProto, name: str) -> ort.InferenceSession:
    extra = onnx.ModelProto()
    extra.CopyFrom(model)
    extra.graph.output.append(
        onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
    )
    return ort.InferenceSession(extra.SerializeToString(), providers=["CPUExecutionProvider"])


def test_split_token_graph_infers_the_grid_and_explains(tmp_path):
    graph = token_model()
    listed = CliRunner().invoke(main, ["layers", str(save(graph, tmp_path / "t.onnx"))])
    assert "tokens" in listed.output and "Concat" in listed.output
    result = CliRunner().invoke(
        main,
        [
            "split",
            str(tmp_path / "t.onnx"),
            "--layer",
            "tokens",
            "--out",
            str(tmp_path / "b"),
            "--mean",
            "0.5,0.5,0.5",
            "--std",
            "0.25,0.25,0.25",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "6 channels of 1 + 4×4 tokens" in result.output
    explainer = Explainer(tmp_path / "b", Runtime(provider="cpu"))
    session = _with_output(graph, "tokens")
    image = RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    x = explainer.preprocess(image)[1]
    tokens = session.run(["tokens"], {"input": x})[0]
    acts = tokens[:, 1:, :].reshape(1, 4, 4, 6).transpose(0, 3, 1, 2)[0]

    def model(batch: np.ndarray) -> np.ndarray:
        return session.run(["logits"], {"input": batch.astype(np.float32)})[0]

    for c in range(3):
        got = explainer.explain_one(image, c).saliency_input
        np.testing.assert_allclose(got, oracles.paper(x, acts, model, c), atol=1e-4)


def test_split_refuses_an_ambiguous_grid_until_told(tmp_path):
    graph = token_model(size=24, patch=6)  # 1 + 16 tokens, or 8 + 9?
    with pytest.raises(BundleError, match="could be read as 1:4x4, 8:3x3"):
        write_bundle(graph, tmp_path / "b", "tokens", preprocessing=TINY_PREP)
    bundle = write_bundle(
        graph, tmp_path / "b", "tokens", preprocessing=TINY_PREP, tokens=(1, 4, 4)
    )
    a = bundle.manifest.activation
    assert (a.prefix, a.height, a.width) == (1, 4, 4)
    with pytest.raises(BundleError, match="does not fit a tensor of 17 tokens"):
        write_bundle(graph, tmp_path / "c", "tokens", tokens=(2, 4, 4))
    with pytest.raises(BundleError, match="--tokens is for a token tensor"):
        write_bundle(graph, tmp_path / "d", "grid", tokens=(1, 4, 4))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"prefix": -1}, "'activation.prefix' must be 0 or more"),
        ({"prefix": "one"}, "'activation.prefix' must be int"),
        ({"layout": "NTC"}, "'activation.layout'"),
    ],
)
def test_manifest_token_fields_are_validated(tmp_path, change, message):
    bundle = write_bundle(token_model(), tmp_path / "b", "tokens", preprocessing=TINY_PREP)
    path = bundle.path / "manifest.json"
    data = json.loads(path.read_text())
    data["activation"].update(change)
    path.write_text(json.dumps(data))
    with pytest.raises(BundleError, match=message):
        Bundle.load(bundle.path)


def test_token_layout_needs_format_2(tmp_path):
    bundle = write_bundle(token_model(), tmp_path / "b", "tokens", preprocessing=TINY_PREP)
    path = bundle.path / "manifest.json"
    data = json.loads(path.read_text())
    data["format_version"] = 1
    path.write_text(json.dumps(data))
    with pytest.raises(BundleError, match="'activation.layout'"):
        Bundle.load(bundle.path)
