"""Exact Score-CAM explained by Triton (a repository written by `scorecam-onnx triton`) and
in this process, side by side in one run: seconds per explanation on each side and their
ratio per explainer model, image and batch size, then several clients at once (wall time,
and the mean batch Triton's dynamic batcher formed for each model it ran).

    python scripts/triton_bench.py 127.0.0.1:8000 --model lite0-explain \\
        --model lite0c-explain [--image samples/chelsea.png --image samples/coffee.png] \\
        [--repeat 5] [--batch 8] [--clients 4]

The repository must hold the shipped bundle's explainer(s); the in-process runs use the same
bundle. Both sides are measured the same way: the same image bytes (decoded on each side), a
client and an explainer made before the clock starts, Triton and in-process runs interleaved
(their order swapped every pair, so that neither always runs in the other's wake), and the
ratio is the median of the pairs' ratios. Both sides run ONNX Runtime on the same batches:
in process the CPU default, 8 masked images per run; in Triton the models' `run_batch`, 8 per
run on a CPU instance, whatever a request carries (256 maps per masked-scorer request by
default, or `--batch`: the `batch_size` request parameter). The table also gives the requests
per explanation that each model Triton called received.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = [ROOT / "samples" / "chelsea.png", ROOT / "samples" / "coffee.png"]


def _client(address: str):
    import tritonclient.http as httpclient

    return httpclient.InferenceServerClient(address, network_timeout=600, connection_timeout=600)


def _triton_explain(client, model: str, image: bytes, **parameters) -> float:
    import tritonclient.http as httpclient

    item = httpclient.InferInput("image", [1], "BYTES")
    item.set_data_from_numpy(np.array([image], dtype=object))
    outputs = [httpclient.InferRequestedOutput("saliency")]
    started = time.perf_counter()
    client.infer(model, [item], parameters=parameters or None, outputs=outputs)
    return time.perf_counter() - started


def _local_explain(explainer, image: bytes) -> float:
    started = time.perf_counter()
    explainer.explain(image)
    return time.perf_counter() - started


def _stats(client) -> dict[str, tuple[int, int]]:
    stats = client.get_inference_statistics()["model_stats"]
    return {m["name"]: (int(m["inference_count"]), int(m["execution_count"])) for m in stats}


def _called(
    before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]], explainer: str, per: int
) -> str:
    """Requests per explanation that each model the explainer called received."""
    found = []
    for name, (_, runs) in sorted(after.items()):
        ran = runs - before.get(name, (0, 0))[1]
        if ran and name != explainer:
            found.append(f"{name} {ran / per:.1f}")
    return ", ".join(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("address", help="Triton's HTTP address, HOST:PORT")
    parser.add_argument("--model", action="append", required=True, help="explainer model(s)")
    parser.add_argument(
        "--image",
        type=Path,
        action="append",
        help="image file(s) (default: samples/chelsea.png and coffee.png)",
    )
    parser.add_argument("--repeat", type=int, default=5, help="pairs per row")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument(
        "--batch",
        type=int,
        action="append",
        help="batch_size request parameters to try on the Triton side (default: the explainer's)",
    )
    args = parser.parse_args()

    from scorecam_onnx import Explainer, Runtime

    images = [(path.name, path.read_bytes()) for path in args.image or SAMPLES]
    local = Explainer(None, Runtime(provider="cpu"))
    client = _client(args.address)
    local.explain(images[0][1])
    print(
        f"In process: {local.batch_size} masked images per ONNX Runtime run. Medians of "
        f"{args.repeat} interleaved pairs.\n"
    )
    print(
        "| explainer | image | batch per request | Triton s | in process s | "
        "Triton ÷ in process | requests per explanation |"
    )
    print("|---|---|---|---|---|---|---|")
    for model in args.model:
        _triton_explain(client, model, images[0][1])  # warm every session
        for name, data in images:
            for batch in args.batch or [None]:
                options = {"batch_size": batch} if batch else {}
                before = _stats(client)
                pairs = []
                for i in range(args.repeat):
                    if i % 2:
                        here = _local_explain(local, data)
                        remote = _triton_explain(client, model, data, **options)
                    else:
                        remote = _triton_explain(client, model, data, **options)
                        here = _local_explain(local, data)
                    pairs.append((remote, here))
                called = _called(before, _stats(client), model, args.repeat)
                remote = statistics.median(p[0] for p in pairs)
                here = statistics.median(p[1] for p in pairs)
                ratio = statistics.median(p[0] / p[1] for p in pairs)
                print(
                    f"| {model} | {name} | {batch or 'default'} | {remote:.2f} | {here:.2f} | "
                    f"{ratio:.2f} | {called} |",
                    flush=True,
                )

    print(f"\n{args.clients} clients at once (one exact Score-CAM each) against one after another:")
    print("| explainer | one after another s | at once s | ratio | mean batch per model |")
    print("|---|---|---|---|---|")
    data = images[0][1]
    for model in args.model:
        started = time.perf_counter()
        for _ in range(args.clients):
            _triton_explain(client, model, data)
        serial = time.perf_counter() - started
        before = _stats(client)
        together = _at_once(args.address, model, data, args.clients)
        after = _stats(client)
        batches = []
        for name, (count, runs) in after.items():
            ran = (count - before[name][0], runs - before[name][1])
            if ran[1] and name != model:
                batches.append(f"{name} {ran[0] / ran[1]:.1f}")
        print(
            f"| {model} | {serial:.2f} | {together:.2f} | {together / serial:.2f} | "
            f"{', '.join(batches)} |",
            flush=True,
        )
    client.close()


def _at_once(address: str, model: str, image: bytes, clients: int) -> float:
    """Seconds for `clients` explanations sent at once, each from its own thread and client
    (a tritonclient HTTP client belongs to the thread that made it), made before the clock
    starts."""
    ready = threading.Barrier(clients + 1)

    def one() -> None:
        client = _client(address)
        ready.wait()
        _triton_explain(client, model, image)
        client.close()

    with ThreadPoolExecutor(clients) as pool:
        done = [pool.submit(one) for _ in range(clients)]
        ready.wait()
        started = time.perf_counter()
        for future in done:
            future.result()
        return time.perf_counter() - started


if __name__ == "__main__":
    main()
