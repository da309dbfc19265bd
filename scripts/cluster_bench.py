"""Fewer forwards that still hold: Faster and clustered Score-CAM at the same number of
forwards, and RISE with its masks, against exact Score-CAM, per bundle, on the sample photos:
forwards, ms per image, correlation of the maps (at the model's input size) with exact
Score-CAM (mean and worst over the images; images whose exact map is constant are left out),
and Average Drop and Insertion (`evaluate`'s protocol).

    python scripts/cluster_bench.py BUNDLE... [--channels 64] [--rise-masks 4000]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
METHODS = ("scorecam", "faster-scorecam", "cluster-scorecam", "rise")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundles", nargs="+", type=Path)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--rise-masks", type=int, default=4000)
    parser.add_argument(
        "--images",
        nargs="+",
        type=Path,
        default=[ROOT / "samples" / "chelsea.png", ROOT / "samples" / "coffee.png"],
    )
    args = parser.parse_args()

    from scorecam_onnx import Explainer, Runtime, method_from
    from scorecam_onnx.evaluation import evaluate
    from scorecam_onnx.evaluation.faithfulness import EvaluationPlan

    methods = {
        name: method_from(
            name, channels=args.channels, samples=args.rise_masks if name == "rise" else None
        )
        for name in METHODS
    }

    print(
        "| bundle | method | forwards | ms per image | corr. with exact | worst | "
        "Average Drop % | Insertion |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for bundle in args.bundles:
        explainer = Explainer(bundle, Runtime(provider="cpu"))
        exact = {}
        rows = {}
        for method in METHODS:
            times, corr, forwards = [], [], []
            for image in args.images:
                started = time.perf_counter()
                target = exact[image].class_id if image in exact else None
                found = explainer.explain_one(image, target, methods[method])
                times.append((time.perf_counter() - started) * 1000)
                forwards.append(found.forwards)
                if method == "scorecam":
                    exact[image] = found
                corr.append(
                    float(
                        np.corrcoef(
                            found.saliency_input.ravel(), exact[image].saliency_input.ravel()
                        )[0, 1]
                    )
                )
            rows[method] = (np.mean(forwards), np.mean(times), np.nanmean(corr), np.nanmin(corr))
        plan = EvaluationPlan(methods=[methods[name] for name in METHODS], baselines=())
        report = evaluate(explainer, args.images, plan)
        for r in report.rows:
            forwards, ms, corr, worst = rows[r.method]
            print(
                f"| {bundle.name} | {r.method} | {forwards:.0f} | {ms:.0f} | {corr:.4f} | "
                f"{worst:.4f} | "
                f"{r.average_drop:.1f} | {r.insertion:.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
