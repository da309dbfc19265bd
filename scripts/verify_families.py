"""Export real model families from torchvision's builders (random weights) and explain a
photo with each: the end-to-end check of `export` on architectures beyond CNN classics.

torchvision does not import beside the CPU build of torch that the test suite uses, so this
runs in its own environment, outside CI:

    python3 -m venv /tmp/tv
    /tmp/tv/bin/pip install torch==2.14.1 torchvision==0.29.1 -e ".[cpu]" onnxscript
    /tmp/tv/bin/python scripts/verify_families.py [--out /tmp/families] [NAME ...]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGE = ROOT / "samples" / "chelsea.png"

# name: (torchvision builder, target layer, activation layout, why that layer)
FAMILIES = {
    "vit_b_16": ("vit_b_16", "encoder.layers.encoder_layer_10", None,
                 "output of block 11 of 12 = input of the last block's first norm"),
    "swin_t": ("swin_t", "features", "NHWC", "last stage, N×7×7×768 (NHWC)"),
    "convnext_tiny": ("convnext_tiny", "features", None, "last stage, 768×7×7"),
    "mobilenet_v3_large": ("mobilenet_v3_large", None, None, "automatic: last 4-D output"),
    "efficientnet_v2_s": ("efficientnet_v2_s", None, None, "automatic: last 4-D output"),
}


def _randomize_zero_layers(module) -> None:
    """Give zero-initialised linear layers (torchvision's ViT head) random weights, so that
    the logits, and the maps, are not constant."""
    import torch

    torch.manual_seed(0)
    for layer in module.modules():
        if isinstance(layer, torch.nn.Linear) and not layer.weight.detach().any():
            torch.nn.init.normal_(layer.weight, std=0.02)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=list(FAMILIES))
    parser.add_argument("--out", type=Path, default=Path("/tmp/families"))
    args = parser.parse_args()

    from scorecam_onnx_export import export_bundle, load_model

    from scorecam_onnx import Explainer, Preprocessing

    rows = []
    for name in args.names:
        builder, layer, layout, why = FAMILIES[name]
        loaded = load_model(f"torchvision.models:{builder}", kwargs={"weights": None})
        _randomize_zero_layers(loaded.module)
        started = time.perf_counter()
        report = export_bundle(loaded, args.out / name, layer,
                               Preprocessing(height=224, width=224), force=True,
                               activation_layout=layout)
        exported = time.perf_counter() - started
        explainer = Explainer(report.bundle, provider="cpu")
        timings = {}
        for method in ("faster-scorecam", "reciprocam", "ablationcam"):
            if method != "faster-scorecam" and explainer.tail is None:
                timings[method] = "no tail"
                continue
            started = time.perf_counter()
            result = explainer.explain(IMAGE, method=method)
            assert result.saliency.shape == (300, 451)
            timings[method] = f"{time.perf_counter() - started:.2f} s"
        a = report.bundle.manifest.activation
        shape = (f"{a.channels} ch, {a.prefix} + {a.height}×{a.width} tokens"
                 if a.layout == "NLC" else f"{a.channels}×{a.height}×{a.width} {a.layout}")
        rows.append((name, report.layer.label, shape, why, f"{exported:.0f} s",
                     f"{report.activation_diff:.1e} / {report.logits_diff:.1e}", timings))
        print(rows[-1], flush=True)
    print("\n| family | layer | activation | export | max diff (acts / logits) | "
          "faster-scorecam | "
          "reciprocam | ablationcam |")
    print("|---|---|---|---|---|---|---|---|")
    for name, layer, shape, _why, seconds, diff, t in rows:
        print(f"| {name} | `{layer}` | {shape} | {seconds} | {diff} | "
              f"{t['faster-scorecam']} | {t['reciprocam']} | {t['ablationcam']} |")


if __name__ == "__main__":
    main()
