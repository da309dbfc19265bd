"""Throughput of a local run against Ray on the same machine (`python scripts/ray_bench.py`).

50 images (the two sample photos, alternately), faster-scorecam, shipped bundle: the local
batch run with ONNX Runtime on 2 threads, then Ray Data with 2 actors of 1 thread each on a
local cluster. Prints images/s of both, their ratio, and Ray's start-up cost (cluster start,
and the time to the first row).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--actors", type=int, default=2)
    args = parser.parse_args()

    from scorecam_onnx import Explainer, Runtime
    from scorecam_onnx.batch import ExplainJob, explain_files
    from scorecam_onnx.request import request_from

    request = request_from(method="faster-scorecam")

    folder = Path(tempfile.mkdtemp(prefix="raybench-"))
    samples = [ROOT / "samples" / "chelsea.png", ROOT / "samples" / "coffee.png"]
    for i in range(args.images):
        shutil.copy(samples[i % 2], folder / f"img{i:03d}.png")
    try:
        explainer = Explainer(None, Runtime(provider="cpu", threads=2))
        job = ExplainJob([str(folder)], folder / "local", request=request)
        started = time.perf_counter()
        explain_files(explainer, job)
        local = time.perf_counter() - started

        import ray

        from scorecam_onnx.distributed import RayPool, explain_dataset

        started = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        ray.data.DataContext.get_current().enable_progress_bars = False
        cluster = time.perf_counter() - started
        started = time.perf_counter()
        first = None
        rows = explain_dataset(
            [str(p) for p in sorted(folder.glob("img*.png"))],
            request=request,
            runtime=Runtime(threads=1, provider="cpu"),
            pool=RayPool(actors=args.actors, images_per_task=2),
            out=folder / "ray",
        )
        count = 0
        for _ in rows.iter_rows():
            count += 1
            first = first or time.perf_counter() - started
        remote = time.perf_counter() - started
        ray.shutdown()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    n = args.images
    steady = (n - 1) / max(remote - first, 1e-9)
    print(f"local, 2 threads: {n / local:.2f} images/s ({local:.1f} s)")
    print(
        f"ray, {args.actors} actors × 1 thread: {n / remote:.2f} images/s ({remote:.1f} s; "
        f"{steady:.2f} images/s after the first row); {count} rows"
    )
    print(f"ray start-up: cluster {cluster:.1f} s, first row after {first:.1f} s")
    print(
        f"throughput ratio ray ÷ local: {local / remote:.2f} (after start-up: "
        f"{steady / (n / local):.2f})"
    )


if __name__ == "__main__":
    main()
