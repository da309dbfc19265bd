"""Exact Score-CAM with the full-model forwards in this process and on a served model, side
by side in one run: seconds per explanation, their ratio, bytes sent, and the effect of the
batch size and of requests in flight.

    python scripts/remote_bench.py http://127.0.0.1:8000/v2/models/classifier \\
        grpc://127.0.0.1:8001/v2/models/classifier [--image samples/chelsea.png]

The URLs serve the shipped bundle's classifier (for instance a repository written by
`scorecam_onnx.triton.write_repository`).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _seconds(explainer, image: Path, repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        explainer.explain(image)
        runs.append(time.perf_counter() - started)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("urls", nargs="+")
    parser.add_argument("--image", type=Path, default=ROOT / "samples" / "chelsea.png")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from scorecam_onnx import Explainer, Runtime

    local = Explainer(None, Runtime(provider="cpu"))
    base = _seconds(local, args.image, args.repeat)
    print(f"in process: {base:.2f} s per explanation (batch {local.batch_size})")
    print("| url | batch | in flight | seconds | ÷ in process | MB sent |")
    print("|---|---|---|---|---|---|")
    for url in args.urls:
        for batch, in_flight in ((8, 1), (16, 1), (64, 1), (64, 2), (64, 4), (64, 8)):
            remote = Explainer(
                None, Runtime(provider="cpu", model_url=url, batch_size=batch, in_flight=in_flight)
            )
            remote.explain(args.image)  # warm the connection
            remote.forwards.model.sent_bytes = 0
            seconds = _seconds(remote, args.image, args.repeat)
            sent = remote.forwards.model.sent_bytes / args.repeat / 1e6
            print(
                f"| {url.split(':')[0]} | {batch} | {in_flight} | {seconds:.2f} | "
                f"{seconds / base:.2f} | {sent:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
