"""What explaining a detector costs, and how many D-RISE masks it needs: per detector (a
plain .onnx for D-RISE; a bundle with a layer for Score-CAM and EigenCAM), on one photo,
the forwards and seconds per image of each method, one detection against ten (all from the
same forwards), and D-RISE's convergence: the correlation of the map of N masks with the map
of 2N (the first N masks shared) at the model's input size.

    python scripts/detector_bench.py --model yolov8n.onnx --bundle yolo-bundle \\
        [--image samples/coffee.png] [--masks 250,500,1000,2000,4000] [--threads 2]
        [--score-threshold 0.25]
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
    parser.add_argument("--skip-timing", action="store_true")
    parser.add_argument("--score-threshold", type=float, default=0.25)
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

    runtime = Runtime(provider="cpu", threads=args.threads)
    plain = Explainer(args.model, runtime)
    found = plain.detect(args.image, args.score_threshold)
    print(
        f"{args.model.name}: {plain.bundle.manifest.decoder.kind}, input "
        f"{plain.bundle.manifest.input.height}×{plain.bundle.manifest.input.width}, "
        f"{len(found)} detections on {args.image.name}\n"
    )
    runs = [("drise (default)", plain, DRise()), ("drise, 1000 masks", plain, DRise(samples=1000))]
    if args.skip_timing:
        runs = []
    if args.bundle:
        layered = Explainer(args.bundle, runtime)
        runs += [
            ("scorecam", layered, ScoreCam()),
            ("faster-scorecam (64)", layered, FasterScoreCam()),
            ("eigencam", layered, EigenCam()),
        ]
    print("| method | detections | forwards | s / image |\n|---|---|---|---|")
    for name, ex, method in runs:
        for k in sorted({1, min(10, len(found))}):
            started = time.perf_counter()
            maps = ex.explain(
                args.image, TopK(k), method, ExplainOptions(score_threshold=args.score_threshold)
            )
            seconds = time.perf_counter() - started
            print(f"| {name} | {k} | {maps[0].forwards} | {seconds:.1f} |", flush=True)
    if not args.skip_convergence:
        convergence(
            plain, args.image, [int(v) for v in args.masks.split(",")], args.score_threshold
        )


def convergence(explainer, image: Path, counts: list[int], threshold: float) -> None:
    """corr(map of N masks, map of 2N) for each N, the masks' weights computed once."""
    from scorecam_onnx.cam.rise import rise_mask
    from scorecam_onnx.detection import drise_similarity
    from scorecam_onnx.methods import DRise

    method = DRise()
    _, x = explainer.preprocess(image)
    size = x.shape[2:]
    target = explainer.forwards.detections(x, threshold)[0].take([0])
    total = 2 * max(counts)
    weights = np.zeros(total)
    started = time.perf_counter()
    for start in range(0, total, 8):
        masks = [
            rise_mask(i, size, method.grid, method.p, method.seed)
            for i in range(start, min(total, start + 8))
        ]
        found = explainer.forwards.detections(
            (x * np.stack(masks)[:, None]).astype(np.float32), threshold
        )
        weights[start : start + len(masks)] = [drise_similarity(target, f)[0] for f in found]
    seconds = time.perf_counter() - started
    sums, done, masks = {}, np.zeros(size), np.zeros(size)
    for i in range(total):
        mask = rise_mask(i, size, method.grid, method.p, method.seed)
        done += weights[i] * mask
        masks += mask
        if i + 1 in counts or (i + 1) in {2 * n for n in counts}:
            # the plain sum, and with the mean weight subtracted (the masks' own density
            # removed: the same map in expectation, less noise)
            sums[i + 1] = (done.copy(), done - weights[: i + 1].mean() * masks)
    print(f"\n{total} masks in {seconds:.0f} s ({1000 * seconds / total:.0f} ms each)\n")
    print("| masks N | corr(N, 2N) | weights centred |\n|---|---|---|")
    for n in counts:
        corr = [
            float(np.corrcoef(sums[n][k].ravel(), sums[2 * n][k].ravel())[0, 1]) for k in (0, 1)
        ]
        print(f"| {n} | {corr[0]:.3f} | {corr[1]:.3f} |", flush=True)


if __name__ == "__main__":
    main()
