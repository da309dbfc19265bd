"""Our deletion curve and the sanity checks' rank correlation against Quantus, on the same maps
and the same model, where Quantus computes the same quantity (outside CI).

Quantus (0.6) has no Average Drop, Increase in Confidence or insertion metric. Its
`PixelFlipping` with a zero baseline is the deletion curve once the removal order is the same:
it ranks the C·H·W values of the map broadcast over the channels, so the map handed to it has
one distinct value per pixel and channel, in our (stable) pixel order with a pixel's channels
together; its step (in values) must divide H·W, which has no factor 3, so it removes a third of
our step (in pixels) at a time and every third of its points is one of ours; its curve has no
unperturbed first point, which ours has. Its MPRT randomises
PyTorch or TensorFlow layers and cannot run on an ONNX graph; the similarity it applies,
`correlation_spearman`, is compared on the trained and randomised maps of our `sanity`.

An environment of its own: python -m venv /tmp/q && /tmp/q/bin/pip install torch==2.13.0
quantus "numpy<2.4" -e ".[cpu]"; then /tmp/q/bin/python scripts/verify_quantus.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
IMAGES = [ROOT / "samples" / "chelsea.png", ROOT / "samples" / "coffee.png"]


def _torch_module(explainer):
    """A torch module whose forward runs the bundle's model in ONNX Runtime."""
    import torch

    class Wrapped(torch.nn.Module):
        def forward(self, x):
            return torch.from_numpy(explainer.forwards.scores(x.numpy().astype(np.float32)))

    return Wrapped().eval()


def deletion_against_pixel_flipping(explainer, method, parts=32) -> list[str]:
    import quantus

    from scorecam_onnx.metrics import causal_curve

    lines = []
    module = _torch_module(explainer)
    for image in IMAGES:
        x = explainer.preprocess(image)[1]
        res = explainer.explain(image, method=method)[0]
        h, w = res.saliency_input.shape
        ours = causal_curve(
            explainer.forwards.probabilities, x, res.saliency_input, res.class_id, "deletion",
            1 / parts,
        )  # fmt: skip
        order = np.argsort(-res.saliency_input.ravel(), kind="stable")
        rank = np.empty(h * w, np.int64)
        rank[order] = np.arange(h * w)
        distinct = (3 * (h * w - rank))[None, :] - np.arange(3)[:, None]  # channels together
        metric = quantus.PixelFlipping(
            features_in_step=h * w // parts, perturb_baseline=0.0, normalise=False, abs=False,
            disable_warnings=True,
        )  # fmt: skip
        theirs = np.asarray(
            metric(
                model=module, x_batch=x, y_batch=np.array([res.class_id]),
                a_batch=distinct.reshape(1, 3, h, w).astype(np.float32), softmax=True,
                channel_first=True,
            )[0]
        )[2::3]  # fmt: skip
        difference = float(np.abs(ours[1:] - theirs).max())
        auc_ours = float(np.trapezoid(ours) / (ours.size - 1))
        with_start = np.r_[ours[0], theirs]
        auc_theirs = float(np.trapezoid(with_start) / (with_start.size - 1))
        lines.append(
            f"| {image.name} | {method} | {ours.size - 1} | {difference:.1e} | "
            f"{auc_ours:.4f} | {auc_theirs:.4f} |"
        )
    return lines


def spearman_against_mprt_similarity(explainer) -> list[str]:
    import tempfile

    from quantus.functions.similarity_func import correlation_spearman

    from scorecam_onnx import Class
    from scorecam_onnx.evaluation.randomise import RandomisableBundle
    from scorecam_onnx.evaluation.similarity import spearman

    model = RandomisableBundle(explainer.bundle, seed=0)
    lines = []
    with tempfile.TemporaryDirectory() as folder:
        randomised = type(explainer)(model.write(model.layers[:5], Path(folder) / "r"))
        for image in IMAGES:
            class_id = explainer.chosen_classes(image)[0][0]
            for method in ("faster-scorecam", "eigencam"):
                a = explainer.explain(image, Class(class_id), method)[0].saliency_input
                b = randomised.explain(image, Class(class_id), method)[0].saliency_input
                ours, theirs = spearman(a, b), float(correlation_spearman(a.ravel(), b.ravel()))
                lines.append(f"| {image.name} | {method} | {ours:.6f} | {theirs:.6f} |")
    return lines


def main() -> None:
    from scorecam_onnx import Explainer

    explainer = Explainer()
    print("| image | method | steps | largest curve difference | deletion AUC (ours) | (Quantus) |")
    print("|---|---|---|---|---|---|")
    for method in ("faster-scorecam", "eigencam"):
        print("\n".join(deletion_against_pixel_flipping(explainer, method)))
    print()
    print("| image | method | Spearman (ours) | Quantus correlation_spearman |")
    print("|---|---|---|---|")
    print("\n".join(spearman_against_mprt_similarity(explainer)))


if __name__ == "__main__":
    main()
