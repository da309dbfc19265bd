"""Hugging Face image classifiers as users save them (`save_pretrained` of a model built from
its config, and of its image processor), exported with `--model hf:PATH`: the layer chosen,
the preprocessing and labels read from the folder, and maps against the plain
re-implementation on the PyTorch model itself."""

from __future__ import annotations

import json
import warnings

import numpy as np
import oracles
import pytest
import torch
import transformers
from click.testing import CliRunner
from conftest import SAMPLES
from scorecam_onnx_export.zoos import hf_preprocessing

from scorecam_onnx import Bundle, Explainer, Runtime
from scorecam_onnx.cli import main
from scorecam_onnx.images import load_image
from scorecam_onnx.pictures import preprocess

LABELS = {i: f"thing{i}" for i in range(5)}


def _config(kind: str):
    common = {"num_labels": 5, "id2label": LABELS, "label2id": {v: k for k, v in LABELS.items()}}
    if kind == "vit":
        return transformers.ViTConfig(
            image_size=32,
            patch_size=8,
            hidden_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=32,
            **common,
        )
    if kind == "swin":
        return transformers.SwinConfig(
            image_size=32,
            patch_size=4,
            embed_dim=8,
            depths=[1, 1],
            num_heads=[1, 2],
            window_size=4,
            **common,
        )
    if kind == "convnext":
        return transformers.ConvNextConfig(
            hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, **common
        )
    return transformers.ResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], **common
    )


def _processor(kind: str, size: int = 32):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "vit":
            return transformers.ViTImageProcessor(
                size={"height": size, "width": size},
                image_mean=[0.5, 0.4, 0.3],
                image_std=[0.2, 0.25, 0.3],
                resample=3,
            )
        if kind == "convnext":
            return transformers.ConvNextImageProcessor(size={"shortest_edge": size}, crop_pct=0.875)
        if kind == "deit":
            big = size * 8 // 7
            return transformers.DeiTImageProcessor(
                size={"height": big, "width": big},
                crop_size={"height": size, "width": size},
                do_center_crop=True,
            )
        return None


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Folders as save_pretrained writes them; the ResNet and Swin ones without a processor."""
    root = tmp_path_factory.mktemp("hf")
    models = {}
    for seed, kind in enumerate(("vit", "swin", "convnext", "resnet")):
        torch.manual_seed(seed)
        auto = transformers.AutoModelForImageClassification
        model = auto.from_config(_config(kind)).eval()
        model.save_pretrained(root / kind)
        processor = _processor(kind)
        if processor is not None:
            processor.save_pretrained(root / kind)
        models[kind] = model
    return root, models


def _hooked(model, name: str, point: str, x: np.ndarray) -> np.ndarray:
    """The tensor at a module's input or output, caught with a hook on the PyTorch model."""
    seen = []
    module = model.get_submodule(name)
    if point == "input":
        handle = module.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    else:
        handle = module.register_forward_hook(
            lambda _m, _a, out: seen.append(out if isinstance(out, torch.Tensor) else out[0])
        )
    with torch.no_grad():
        model(torch.from_numpy(x))
    handle.remove()
    return seen[0].detach().numpy()


# kind: (layer chosen, point, prefix tokens, input size, mean, flags); the ResNet folder
# says nothing of its input size, so the flag gives it
EXPECTED = {
    "vit": ("vit.layers.1.layernorm_before", "input", 1, 32, (0.5, 0.4, 0.3), []),
    "swin": (
        "swin.encoder.layers.1.blocks.0.layernorm_before",
        "input",
        0,
        32,
        (0.485, 0.456, 0.406),
        [],
    ),
    "convnext": (None, "output", None, 32, (0.5, 0.5, 0.5), []),
    "resnet": (None, "output", None, 64, (0.485, 0.456, 0.406), ["--input-size", "64"]),
}


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_export_hf_folder(saved, tmp_path, kind):
    root, models = saved
    layer, point, prefix, size, mean, flags = EXPECTED[kind]
    result = CliRunner().invoke(
        main, ["export", "--model", f"hf:{root / kind}", "--out", str(tmp_path / "b"), *flags]
    )
    assert result.exit_code == 0, result.output
    bundle = Bundle.load(tmp_path / "b")
    m = bundle.manifest
    assert (m.input.height, m.input.mean) == ((size, mean))
    assert bundle.labels == tuple(LABELS.values())
    assert m.source["labels"] == "config.id2label"
    a = m.activation
    name, _, read_point = m.layer.partition(":")
    assert read_point == ("input" if point == "input" else "")
    if layer is not None:
        assert name == layer and a.layout == "NLC" and a.prefix == prefix
    else:  # a CNN: the last stage's feature map, NCHW
        assert a.layout == "NCHW" and (a.channels, a.height, a.width) == (
            16,
            size // 8,
            size // 8,
        ), m.layer  # two stages: stride 8
    model = models[kind]
    explainer = Explainer(bundle, Runtime(provider="cpu"))
    x = explainer.preprocess(SAMPLES / "chelsea.png")[1]
    raw = _hooked(model, name, read_point or "output", x)
    acts = (
        raw[0, a.prefix :].reshape(a.height, a.width, a.channels).transpose(2, 0, 1)
        if a.layout == "NLC"
        else raw[0]
    )
    np.testing.assert_allclose(explainer.forwards.activations(x), acts, atol=1e-4)

    def logits(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(np.ascontiguousarray(batch))).logits.numpy()

    got = explainer.explain_one(SAMPLES / "chelsea.png", 3).saliency_input
    np.testing.assert_allclose(got, oracles.paper(x, acts, logits, 3), atol=5e-3)


def test_preprocessing_sources(saved, tmp_path):
    root, _ = saved
    result = CliRunner().invoke(
        main, ["export", "--model", f"hf:{root / 'swin'}", "--out", str(tmp_path / "b")]
    )
    assert result.exit_code == 0, result.output
    source = json.loads((tmp_path / "b" / "manifest.json").read_text())["source"]
    assert source["preprocessing"] == (
        "input size: config.image_size; mean, std, interpolation, resize: defaults"
    )
    assert source["framework"] == "transformers"


@pytest.mark.parametrize(
    ("kind", "resize", "fraction", "interpolation"),
    [
        ("vit", "stretch", 1.0, "cubic"),  # exact size, bicubic
        ("convnext", "crop", 0.875, "cubic"),  # shortest edge, then ConvNeXt's crop_pct
        ("deit", "stretch", 0.875, "cubic"),  # 256×256, then a 224×224 centre crop
    ],
)
def test_processor_configs_and_their_pixels(tmp_path, kind, resize, fraction, interpolation):
    """Settings read from the processor's own saved config; and the pixels we feed equal the
    processor's (PIL's resampling differs from OpenCV's: correlation, not equality)."""
    processor = _processor(kind, 224)
    processor.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "preprocessor_config.json").read_text())
    prep = hf_preprocessing(config)
    assert (prep.height, prep.width, prep.resize, prep.interpolation) == (
        224,
        224,
        resize,
        interpolation,
    )
    assert prep.crop_fraction == pytest.approx(fraction)
    from scorecam_onnx.bundle.manifest import InputSpec

    spec = InputSpec(
        "input",
        prep.height,
        prep.width,
        scale=prep.scale,
        mean=prep.mean,
        std=prep.std,
        resize=prep.resize,
        interpolation=prep.interpolation,
        crop_fraction=prep.crop_fraction,
    )
    rgb = load_image(SAMPLES / "chelsea.png")
    ours = preprocess(rgb, spec)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = np.asarray(processor(rgb, return_tensors="np")["pixel_values"][0])
    assert theirs.shape == ours.shape
    assert np.corrcoef(ours.ravel(), theirs.ravel())[0, 1] > 0.98
    assert float(np.abs(ours - theirs).mean()) < 0.1 * float(np.abs(theirs).mean() + 1)


def test_convnext_processor_warps_from_384():
    """ConvNeXt's processor: below 384 the shorter side goes to size / crop_pct and the centre
    is cut; from 384 on the image is warped to the square, with no crop."""
    big = hf_preprocessing({"size": {"shortest_edge": 384}, "crop_pct": 0.875, "resample": 3})
    assert (big.height, big.resize, big.crop_fraction) == (384, "stretch", 1.0)
    bit = hf_preprocessing(
        {
            "size": {"shortest_edge": 256},
            "do_center_crop": True,
            "crop_size": {"height": 224, "width": 224},
        }
    )
    assert (bit.height, bit.resize, bit.crop_fraction) == (224, "crop", 224 / 256)
