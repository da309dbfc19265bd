"""Explaining through Seldon MLServer against in process, paired on the same machine: the
explainer inside MLServer (its forwards in process), the same with its forwards sent to the
bundle's model served by a second MLServer (with and without that model's adaptive
batching), and four clients at once against four one after another.

    python scripts/mlserver_bench.py [--bundle models/efficientnet-lite0] [--method M]
        [--repeat 3] [--mlserver .venv-mlserver/bin/mlserver]

Prints a Markdown table of median seconds per image and the ratio to in process.
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGE = ROOT / "samples" / "chelsea.png"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, program: Path, folder: Path, models: list[str]) -> None:
        import httpx

        self.http = json.loads((folder / "settings.json").read_text())["http_port"]
        self.process = subprocess.Popen(
            [str(program), "start", str(folder)],
            cwd=tempfile.mkdtemp(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for _ in range(600):
            try:
                if all(
                    httpx.get(f"{self.url}/v2/models/{m}/ready").status_code == 200 for m in models
                ):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("mlserver did not start")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http}"

    def stop(self) -> None:
        import os

        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(60)


def folder(
    bundle: Path, name: str, infer_uri: str | None = None, batching: tuple[int, float] | None = None
) -> Path:
    from scorecam_onnx.mlserver import write_mlserver

    out = Path(tempfile.mkdtemp()) / name
    write_mlserver(
        bundle,
        out,
        name,
        infer_uri,
        parallel_workers=1,
        http_port=free_port(),
        grpc_port=free_port(),
    )
    if batching:
        path = out / f"{name}-classifier" / "model-settings.json"
        settings = json.loads(path.read_text())
        settings.update(max_batch_size=batching[0], max_batch_time=batching[1])
        path.write_text(json.dumps(settings))
    if infer_uri:
        shutil.rmtree(out / f"{name}-classifier")
    return out


def timed(call, repeat: int) -> float:
    call()  # warm up
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=ROOT / "models" / "efficientnet-lite0")
    parser.add_argument("--method", default="faster-scorecam")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--mlserver", type=Path, default=ROOT / ".venv-mlserver" / "bin" / "mlserver"
    )
    args = parser.parse_args()
    import httpx

    from scorecam_onnx import Explainer, Runtime

    data = base64.b64encode(IMAGE.read_bytes()).decode()
    body = {
        "inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [data]}],
        "outputs": [{"name": "saliency"}],
        "parameters": {"method": args.method},
    }
    local = Explainer(args.bundle, Runtime(provider="cpu"))
    rows = [("in process", timed(lambda: local.explain(IMAGE, method=args.method), args.repeat))]

    def post(url: str, model: str) -> None:
        reply = httpx.post(f"{url}/v2/models/{model}/infer", json=body, timeout=600)
        reply.raise_for_status()

    a = Server(args.mlserver, folder(args.bundle, "a"), ["a", "a-classifier"])
    batched = Server(
        args.mlserver, folder(args.bundle, "c", batching=(64, 0.005)), ["c", "c-classifier"]
    )
    servers = [a, batched]
    try:
        rows.append(("MLServer, forwards in process", timed(lambda: post(a.url, "a"), args.repeat)))
        for label, target in (("no adaptive batching", "a"), ("adaptive batching 64, 5 ms", "c")):
            source = a if target == "a" else batched
            uri = f"{source.url}/v2/models/{target}-classifier"
            b = Server(args.mlserver, folder(args.bundle, f"b{target}", uri), [f"b{target}"])
            servers.append(b)
            rows.append(
                (
                    f"MLServer, forwards to a second MLServer ({label})",
                    timed(lambda b=b, t=target: post(b.url, f"b{t}"), args.repeat),
                )
            )
        one = timed(lambda: [post(a.url, "a") for _ in range(4)], 1)
        with ThreadPoolExecutor(4) as pool:
            four = timed(lambda: list(pool.map(lambda _: post(a.url, "a"), range(4))), 1)
    finally:
        for server in servers:
            server.stop()
    base = rows[0][1]
    print(f"| {args.method}, chelsea | s / image | ÷ in process |\n|---|---|---|")
    for label, seconds in rows:
        print(f"| {label} | {seconds:.2f} | {seconds / base:.2f} |")
    print(
        f"\nfour clients at once: {four:.2f} s; four one after another: {one:.2f} s "
        f"(ratio {four / one:.2f})"
    )


if __name__ == "__main__":
    main()
