"""Exact Score-CAM explained by Triton (a repository written by `scorecam-onnx triton`) and
in this process, side by side in one run: seconds per explanation and their ratio per
explainer model and batch size, then several clients at once (wall time, and the mean batch
Triton's dynamic batcher formed for each model it ran).

    python scripts/triton_bench.py 127.0.0.1:8000 --model lite0-explain \\
        --model lite0c-explain [--image samples/chelsea.png] [--clients 4]

The repository must hold the shipped bundle's explainer(s); the in-process runs use the same
bundle and image.
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def _triton_explain(address: str, model: str, image: bytes, **parameters) -> float:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(address, network_timeout=600,
                                              connection_timeout=600)
    item = httpclient.InferInput("image", [1], "BYTES")
    item.set_data_from_numpy(np.array([image], dtype=object))
    started = time.perf_counter()
    client.infer(model, [item], parameters=parameters or None,
                 outputs=[httpclient.InferRequestedOutput("saliency")])
    client.close()
    return time.perf_counter() - started


def _local_explain(explainer, image: Path) -> float:
    started = time.perf_counter()
    explainer.explain(image)
    return time.perf_counter() - started


def _stats(address: str) -> dict[str, tuple[int, int]]:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(address)
    stats = client.get_inference_statistics()["model_stats"]
    client.close()
    return {m["name"]: (int(m["inference_count"]), int(m["execution_count"])) for m in stats}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("address", help="Triton's HTTP address, HOST:PORT")
    parser.add_argument("--model", action="append", required=True, help="explainer model(s)")
    parser.add_argument("--image", type=Path, default=ROOT / "samples" / "chelsea.png")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--batch", type=int, action="append",
                        help="batch_size request parameters to try (default: the model's)")
    args = parser.parse_args()

    from scorecam_onnx import Explainer, Runtime

    data = args.image.read_bytes()
    local = Explainer(None, Runtime(provider="cpu"))
    local.explain(args.image)
    print("| explainer | batch | Triton s | in process s | ÷ in process |")
    print("|---|---|---|---|---|")
    for model in args.model:
        _triton_explain(args.address, model, data)        # warm every session
        for batch in args.batch or [None]:
            options = {"batch_size": batch} if batch else {}
            pairs = [(_triton_explain(args.address, model, data, **options),
                      _local_explain(local, args.image)) for _ in range(args.repeat)]
            remote = statistics.median(p[0] for p in pairs)
            here = statistics.median(p[1] for p in pairs)
            print(f"| {model} | {batch or 'default'} | {remote:.2f} | {here:.2f} | "
                  f"{remote / here:.2f} |", flush=True)

    print(f"\n{args.clients} clients at once (one exact Score-CAM each) against one after "
          "another:")
    print("| explainer | one after another s | at once s | ratio | mean batch per model |")
    print("|---|---|---|---|---|")
    for model in args.model:
        started = time.perf_counter()
        for _ in range(args.clients):
            _triton_explain(args.address, model, data)
        serial = time.perf_counter() - started
        before = _stats(args.address)
        started = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(lambda _, m=model: _triton_explain(args.address, m, data),
                          range(args.clients)))
        together = time.perf_counter() - started
        after = _stats(args.address)
        batches = []
        for name, (count, runs) in after.items():
            ran = (count - before[name][0], runs - before[name][1])
            if ran[1] and name != model:
                batches.append(f"{name} {ran[0] / ran[1]:.1f}")
        print(f"| {model} | {serial:.2f} | {together:.2f} | {together / serial:.2f} | "
              f"{', '.join(batches)} |", flush=True)


if __name__ == "__main__":
    main()
