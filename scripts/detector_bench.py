"""What explaining a detector costs, and how many D-RISE masks it needs: per detector (a
plain .onnx for D-RISE; a bundle with a layer for Score-CAM and EigenCAM), on one photo,
the forwards and seconds per image of each method, one detection against ten (all from the
same forwards), and D-RISE's convergence: the correlation of the map of N masks with the map
of 2N (the first N masks shared) at the model's input size.

    python scripts/detector_bench.py --model yolov8n.onnx --bundle yolo-bundle \\
        [--image samples/coffee.png] [--masks 250,500,1000,2000,4000] [--threads 2]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="the detector's .onnx")
    parser.add_argument("--bundle", type=Path, help="a bundle of it with a layer")
    parser.add_argument("--image", type=Path, default=ROOT / "samples" / "coffee.png")
    parser.add_argument("--masks", default="250,500,1000,2000,4000")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--skip-convergence", action="store_true")
    args = parser.parse_args()

    from scorecam_onnx import (
        DRise,
        EigenCam,
        Explainer,
        ExplainOptions,
        FasterScoreCam,
        Runtime,
        ScoreCam,
        TopK,
    )

    runtime = Runtime(provider="cpu", threads=args.threads or None)
    plain = Explainer(args.model, runtime)
    found = plain.detect(args.image)
    print(f"{args.model.name}: {plain.bundle.manifest.decoder.kind}, input "
          f"{plain.bundle.manifest.input.height}×{plain.bundle.manifest.input.width}, "
          f"{len(found)} detections on {args.image.name}\n")
    runs = [("drise (default)", plain, DRise()), ("drise, 1000 masks", plain,
                                                   DRise(samples=1000))]
    if args.bundle:
        layered = Explainer(args.bundle, runtime)
        runs += [("scorecam", layered, ScoreCam()),
                 ("faster-scorecam (64)", layered, FasterScoreCam()),
                 ("eigencam", layered, EigenCam())]
    print("| method | detections | forwards | s / image |\n|---|---|---|---|")
    for name, ex, method in runs:
        for k in (1, 10):
            if k > len(found):
                continue
            started = time.perf_counter()
            maps = ex.explain(args.image, TopK(k), method, ExplainOptions())
            seconds = time.perf_counter() - started
            print(f"| {name} | {k} | {maps[0].forwards} | {seconds:.1f} |", flush=True)
    if args.skip_convergence:
        return
    print("\n| masks N | corr(N, 2N) | s for 2N |\n|---|---|---|")
    for n in (int(v) for v in args.masks.split(",")):
        started = time.perf_counter()
        small = plain.explain(args.image, TopK(1), DRise(samples=n))[0].saliency_input
        large = plain.explain(args.image, TopK(1), DRise(samples=2 * n))[0].saliency_input
        seconds = time.perf_counter() - started
        corr = float(np.corrcoef(small.ravel(), large.ravel())[0, 1])
        print(f"| {n} | {corr:.3f} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
