"""The peer's own code beside ours: pytorch-grad-cam's ScoreCAM with aug_smooth and
eigen_smooth, and its ROAD metric, against this package on the same model and photo.

torchvision's ResNet-18 (random weights, seeded) is exported as a bundle at `layer4`; both
explain chelsea's top-1 class from the same preprocessed tensor. Prints a Markdown table:
item, largest difference, correlation. Runs outside CI, in the environment of
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

    from scorecam_onnx import Explainer
    from scorecam_onnx.evaluation.road import PERCENTILES, road

    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    out = Path(tempfile.mkdtemp()) / "resnet18"
    export_bundle(LoadedModel(model, {"framework": "torchvision", "model": "resnet18"}), out,
                  layer="layer4")
    ours = Explainer(out, provider="cpu")
    x = ours.preprocess(IMAGE)[1]            # the same normalised tensor goes to both
    tensor = torch.from_numpy(x)
    c = int(np.argmax(ours.scores(x)[0]))
    rows = []
    with ScoreCAM(model, target_layers=[model.layer4]) as peer:
        for name, options in (("plain", {}), ("aug_smooth", {"aug_smooth": True}),
                              ("eigen_smooth", {"eigen_smooth": True}),
                              ("aug_smooth + eigen_smooth",
                               {"aug_smooth": True, "eigen_smooth": True})):
            want = peer(tensor, [ClassifierOutputTarget(c)], **options)[0]
            got = ours.explain(IMAGE, c, preset="pytorch-grad-cam", **options).saliency_input
            rows.append((f"Score-CAM {name}", float(np.abs(got - want).max()),
                         float(np.corrcoef(got.ravel(), want.ravel())[0, 1])))
        cam = peer(tensor, [ClassifierOutputTarget(c)])[0]
    found = road(ours.probabilities, x, cam, c, noise=0.0)
    for name, removal, value in (("ROAD MoRF", RemoveMostRelevantFirst, found.morf),
                                 ("ROAD LeRF", RemoveLeastRelevantFirst, found.lerf)):
        scores = []
        for percentile in PERCENTILES:
            metric = PerturbationConfidenceMetric(removal(percentile,
                                                          NoisyLinearImputer(noise=0.0)))
            scores.append(metric(tensor, cam[None], [ClassifierOutputSoftmaxTarget(c)],
                                 model)[0])
        rows.append((f"{name} (noise 0)", abs(float(np.mean(np.float32(scores))) - value),
                     float("nan")))
    print("| item | largest difference | correlation |")
    print("|---|---|---|")
    for name, diff, corr in rows:
        print(f"| {name} | {diff:.2e} | {corr:.6f} |")


if __name__ == "__main__":
    main()
