"""The peer's own code beside ours: pytorch-grad-cam's ScoreCAM with aug_smooth and
eigen_smooth, with two target layers, with a SemanticSegmentationTarget, on multi-label and
binary heads, and its ROAD metric, against this package on the same models and photo.

torchvision's ResNet-18 (random weights, seeded) is exported as a bundle at `layer4` (and at
`layer3` + `layer4`); its LR-ASPP MobileNetV3 segmentation model (random weights) at
`backbone.16`. Both explain chelsea from the same preprocessed tensor. Prints a Markdown
table: item, largest difference, correlation. Runs outside CI, in the environment of
`scripts/verify_families.py` plus the peer:

    /tmp/zoo/bin/pip install grad-cam ttach scipy scikit-learn
    /tmp/zoo/bin/python scripts/verify_peers.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
IMAGE = ROOT / "samples" / "chelsea.png"


def main() -> None:
    import torch
    import torchvision
    from pytorch_grad_cam import ScoreCAM
    from pytorch_grad_cam.metrics.perturbation_confidence import (
        PerturbationConfidenceMetric,
        RemoveLeastRelevantFirst,
        RemoveMostRelevantFirst,
    )
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer
    from pytorch_grad_cam.utils.model_targets import (
        ClassifierOutputSoftmaxTarget,
        ClassifierOutputTarget,
    )
    from scorecam_onnx_export import export_bundle
    from scorecam_onnx_export.models import LoadedModel

    from scorecam_onnx import Explainer, ExplainOptions, Runtime, ScoreCam
    from scorecam_onnx.evaluation.road import PERCENTILES, road

    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    out = Path(tempfile.mkdtemp()) / "resnet18"
    export_bundle(
        LoadedModel(model, {"framework": "torchvision", "model": "resnet18"}), out, layer="layer4"
    )
    ours = Explainer(out, Runtime(provider="cpu"))
    x = ours.preprocess(IMAGE)[1]  # the same normalised tensor goes to both
    tensor = torch.from_numpy(x)
    c = int(np.argmax(ours.forwards.scores(x)[0]))
    rows = []
    with ScoreCAM(model, target_layers=[model.layer4]) as peer:
        for name, options in (
            ("plain", {}),
            ("aug_smooth", {"aug_smooth": True}),
            ("eigen_smooth", {"eigen_smooth": True}),
            ("aug_smooth + eigen_smooth", {"aug_smooth": True, "eigen_smooth": True}),
        ):
            want = peer(tensor, [ClassifierOutputTarget(c)], **options)[0]
            got = ours.explain_one(
                IMAGE, c, ScoreCam(preset="pytorch-grad-cam"), ExplainOptions(**options)
            ).saliency_input
            rows.append(
                (
                    f"Score-CAM {name}",
                    float(np.abs(got - want).max()),
                    float(np.corrcoef(got.ravel(), want.ravel())[0, 1]),
                )
            )
        cam = peer(tensor, [ClassifierOutputTarget(c)])[0]
    found = road(ours.forwards.probabilities, x, cam, c, noise=0.0)
    for name, removal, value in (
        ("ROAD MoRF", RemoveMostRelevantFirst, found.morf),
        ("ROAD LeRF", RemoveLeastRelevantFirst, found.lerf),
    ):
        scores = []
        for percentile in PERCENTILES:
            metric = PerturbationConfidenceMetric(
                removal(percentile, NoisyLinearImputer(noise=0.0))
            )
            scores.append(metric(tensor, cam[None], [ClassifierOutputSoftmaxTarget(c)], model)[0])
        rows.append(
            (f"{name} (noise 0)", abs(float(np.mean(np.float32(scores))) - value), float("nan"))
        )
    rows += _two_layers(model, tensor, x, c)
    rows += _heads(tensor)
    rows += _segmentation()
    print("| item | largest difference | correlation |")
    print("|---|---|---|")
    for name, diff, corr in rows:
        print(f"| {name} | {diff:.2e} | {corr:.6f} |")


def _two_layers(model, tensor, x, c):
    from pytorch_grad_cam import ScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from scorecam_onnx_export import export_bundle
    from scorecam_onnx_export.models import LoadedModel

    from scorecam_onnx import Explainer, Runtime, ScoreCam

    out = Path(tempfile.mkdtemp()) / "resnet18-2"
    export_bundle(
        LoadedModel(model, {"framework": "torchvision", "model": "resnet18"}),
        out,
        layer=["layer3", "layer4"],
    )
    ours = Explainer(out, Runtime(provider="cpu"))
    with ScoreCAM(model, target_layers=[model.layer3, model.layer4]) as peer:
        want = peer(tensor, [ClassifierOutputTarget(c)])[0]
    got = ours.explain_one(IMAGE, c, ScoreCam(preset="pytorch-grad-cam")).saliency_input
    return [
        (
            "Score-CAM, layer3 + layer4 (mean)",
            float(np.abs(got - want).max()),
            float(np.corrcoef(got.ravel(), want.ravel())[0, 1]),
        )
    ]


def _heads(tensor):
    """A 14-label sigmoid head and a binary head on the ResNet-18, as pytorch-grad-cam
    explains them: `ClassifierOutputTarget` on the raw logits, `BinaryClassifierOutputTarget`
    for each class of the binary one."""
    import torch
    from pytorch_grad_cam import ScoreCAM
    from pytorch_grad_cam.utils.model_targets import (
        BinaryClassifierOutputTarget,
        ClassifierOutputTarget,
    )
    from scorecam_onnx_export import export_bundle
    from scorecam_onnx_export.models import LoadedModel

    from scorecam_onnx import Class, Explainer, Runtime, ScoreCam

    rows = []
    for head, width in (("multi-label", 14), ("binary", 1)):
        torch.manual_seed(2)
        model = __import__("torchvision").models.resnet18().eval()
        model.fc = torch.nn.Linear(512, width)
        out = Path(tempfile.mkdtemp()) / head
        export_bundle(
            LoadedModel(model, {"framework": "torchvision", "model": "resnet18"}),
            out,
            layer="layer4",
            head=head,
        )
        ours = Explainer(out, Runtime(provider="cpu"))
        classes = (2, 9) if head == "multi-label" else (0, 1)
        for c in classes:
            target = (
                ClassifierOutputTarget(c)
                if head == "multi-label"
                else BinaryClassifierOutputTarget(c)
            )
            with ScoreCAM(model, target_layers=[model.layer4]) as peer:
                want = peer(tensor, [target])[0]
            [got] = ours.explain(IMAGE, Class(c), ScoreCam(preset="pytorch-grad-cam"))
            rows.append(
                (
                    f"Score-CAM, {head} head, class {c} ({type(target).__name__})",
                    float(np.abs(got.saliency_input - want).max()),
                    float(np.corrcoef(got.saliency_input.ravel(), want.ravel())[0, 1]),
                )
            )
    return rows


def _segmentation():
    import torch
    import torchvision
    from pytorch_grad_cam import ScoreCAM
    from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget
    from scorecam_onnx_export import export_bundle
    from scorecam_onnx_export.models import LoadedModel

    from scorecam_onnx import Explainer, Preprocessing, Runtime, ScoreCam

    class Out(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.model = inner

        def forward(self, x):
            return self.model(x)["out"]

    torch.manual_seed(0)
    seg = Out(
        torchvision.models.segmentation.lraspp_mobilenet_v3_large(
            weights=None, weights_backbone=None, num_classes=21
        )
    ).eval()
    out = Path(tempfile.mkdtemp()) / "lraspp"
    export_bundle(
        LoadedModel(seg, {"framework": "torchvision", "model": "lraspp"}),
        out,
        layer="model.backbone.16",
        preprocessing=Preprocessing(height=128, width=128),
    )
    ours = Explainer(out, Runtime(provider="cpu"))
    x = ours.preprocess(IMAGE)[1]
    with torch.no_grad():
        scores = seg(torch.from_numpy(x))[0].numpy()
    winners = scores.argmax(axis=0)
    c = int(np.bincount(winners.ravel()).argmax())
    mask = np.float32(winners == c)
    with ScoreCAM(seg, target_layers=[seg.model.backbone["16"]]) as peer:
        want = peer(torch.from_numpy(x), [SemanticSegmentationTarget(c, mask)])[0]
    found = ours.explain_one(IMAGE, c, ScoreCam(preset="pytorch-grad-cam"))  # argmax region
    got = found.saliency_input
    return [
        (
            f"Score-CAM, segmentation class {c} (argmax region)",
            float(np.abs(got - want).max()),
            float(np.corrcoef(got.ravel(), want.ravel())[0, 1]),
        )
    ]


if __name__ == "__main__":
    main()
