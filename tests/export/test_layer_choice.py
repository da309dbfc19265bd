"""The automatic layer of `export`, and how a named layer is read, on small PyTorch models
whose right answer is known by construction."""

from __future__ import annotations

import json

import numpy as np
import oracles
import pytest
import torch
from click.testing import CliRunner
from scorecam_onnx_export import export_bundle, resolve_layer
from scorecam_onnx_export.models import LoadedModel
from torch_models import (
    inplace_head,
    mixed_layouts,
    qk_norm_vit,
    residual_net,
    small_net,
    swin_like,
    tiny_vit,
    token_mixer,
)

from scorecam_onnx import BundleError, Explainer, Preprocessing, Runtime
from scorecam_onnx.bundle.tokens import map_layouts
from scorecam_onnx.cli import main

X32 = torch.zeros(2, 3, 32, 32)


@pytest.mark.parametrize(
    ("shape", "size", "want"),
    [
        ((2, 768, 7, 7), (224, 224), ("NCHW",)),  # a CNN's or ConvNeXt's last stage
        ((2, 7, 7, 768), (224, 224), ("NHWC",)),  # timm Swin's final norm
        ((2, 3, 198, 64), (224, 224), ()),  # DeiT's k_norm: heads × L × d
        ((2, 2048, 8, 8), (299, 299), ("NCHW",)),  # Inception: 299 / 37 rounds to 8
        ((2, 64, 56, 56), (224, 224), ("NCHW",)),
        ((2, 16, 16, 16), (32, 32), ("NCHW", "NHWC")),  # channels equal to a side
        ((2, 768, 1, 1), (224, 224), ()),  # pooled: no map
    ],
)
def test_layouts_a_shape_fits(shape, size, want):
    assert map_layouts(shape, size) == want


def _block_input(model: torch.nn.Module, module: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    seen = []
    handle = module.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach()))
    with torch.no_grad():
        model(x)
    handle.remove()
    return seen[0].numpy()


def test_a_transformer_gets_the_input_of_its_last_blocks_first_norm(tmp_path):
    model = tiny_vit()
    choice = resolve_layer(model, None, X32)
    assert (choice.name, choice.point, choice.label) == (
        "blocks.1.norm1",
        "input",
        "blocks.1.norm1:input",
    )
    assert choice.shape == (2, 17, 16) and "last transformer block's first norm" in choice.reason
    report = export_bundle(
        LoadedModel(model, {"model": "tiny_vit"}),
        tmp_path / "b",
        preprocessing=Preprocessing(height=32, width=32),
    )
    a = report.bundle.manifest.activation
    assert (a.layout, a.prefix, a.height, a.width, a.channels) == ("NLC", 1, 4, 4, 16)
    explainer = Explainer(report.bundle, Runtime(provider="cpu"))
    image = np.random.default_rng(3).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    x = explainer.preprocess(image)[1]
    # the hooked input of blocks[-1].norm1, patch tokens as 16 channels of 4×4
    tokens = _block_input(model, model.blocks[-1].norm1, torch.from_numpy(x))
    acts = tokens[0, 1:].reshape(4, 4, 16).transpose(2, 0, 1)
    np.testing.assert_allclose(explainer.forwards.activations(x), acts, atol=1e-5)

    def logits(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(np.ascontiguousarray(batch))).numpy()

    got = explainer.explain_one(image, 2).saliency_input
    np.testing.assert_allclose(got, oracles.paper(x, acts, logits, 2), atol=5e-3)


def test_an_attention_internal_tensor_is_never_the_layer():
    model = qk_norm_vit()
    choice = resolve_layer(model, None, X32)
    assert choice.label == "blocks.1.norm1:input"
    with pytest.raises(
        BundleError,
        match=r"'blocks.1.attn.k_norm' gives 2×2×17×8: neither "
        r"NCHW nor NHWC .*--activation-layout",
    ):
        resolve_layer(model, "blocks.1.attn.k_norm", X32)
    forced = resolve_layer(model, "blocks.1.attn.k_norm", X32, layout="NCHW")
    assert forced.layout == "NCHW"


def test_an_nhwc_stage_is_read_as_nhwc(tmp_path):
    choice = resolve_layer(swin_like(), None, X32)
    assert (choice.name, choice.layout, choice.shape) == ("stage.2", "NHWC", (2, 8, 8, 12))
    report = export_bundle(
        LoadedModel(swin_like(), {"model": "swin_like"}),
        tmp_path / "b",
        preprocessing=Preprocessing(height=32, width=32),
    )
    a = report.bundle.manifest.activation
    assert (a.layout, a.channels, a.height, a.width) == ("NHWC", 12, 8, 8)


def test_a_patch_embedding_is_refused():
    with pytest.raises(
        BundleError,
        match=r"the last feature map, patch \(2×8×4×4\), feeds 5 "
        r"module calls on token sequences: it is a patch "
        r"embedding",
    ):
        resolve_layer(token_mixer(), None, X32)


def test_an_inplace_activation_is_the_layer_not_the_tensor_it_changed():
    """timm's BatchNormAct2d hands one tensor from bn through drop to an in-place act: the
    act (the last module that changed it) is named, not the container nor the dropout."""
    choice = resolve_layer(inplace_head(), None, X32)
    assert choice.name == "bn2.act"
    # a block whose last child's output then takes the residual in place: the block
    assert resolve_layer(residual_net(), None, X32).name == "block"


def test_a_shape_that_reads_both_ways():
    # settled by the model's other maps when they are all NCHW
    choice = resolve_layer(small_net(), None, X32)
    assert (choice.name, choice.layout, choice.shape) == ("relu2", "NCHW", (2, 16, 16, 16))
    # refused, with the candidates, when the model has maps of both layouts
    with pytest.raises(
        BundleError,
        match=r"stage.3 outputs 2×16×16×16, which reads as NCHW "
        r"and as NHWC: .*stage.3 2×16×16×16; stage.2 "
        r"2×16×16×24",
    ):
        resolve_layer(mixed_layouts(), None, X32)
    assert resolve_layer(mixed_layouts(), None, X32, layout="NHWC").layout == "NHWC"


def test_named_layers_and_their_errors():
    model = tiny_vit()
    assert resolve_layer(model, "blocks.0", X32).shape == (2, 17, 16)
    assert resolve_layer(model, "blocks.1.norm1:input", X32).point == "input"
    with pytest.raises(BundleError, match="use NAME, NAME#K, NAME:input"):
        resolve_layer(model, "blocks.1.norm1:inside", X32)
    with pytest.raises(BundleError, match="no module named 'blocks.9'"):
        resolve_layer(model, "blocks.9", X32)


def test_export_prints_the_layer_and_why(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        main,
        [
            "export",
            "--model",
            "torch_models:swin_like",
            "--input-size",
            "32",
            "--out",
            str(tmp_path / "b"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert (
        "layer stage.2: automatic: the last feature map of the input; 12×8×8 NHWC" in result.output
    )
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["activation"]["layout"] == "NHWC" and manifest["layer"] == "stage.2"
