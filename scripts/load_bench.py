"""The service under load, on loopback only, bounded in time (`make load-bench`).

Starts `scorecam-onnx serve` on a free port and measures, in one run:
- requests/s and p50/p95/p99 latency, predict-only and faster-scorecam explanations, at
  1, 4 and 16 concurrent clients (locust, headless, closed loop), and the errors;
- HTTP explain time ÷ in-process explain time for exact Score-CAM, paired run by run;
- predict-only overhead: HTTP `:predict` latency minus the same work in process, in ms;
- the server's RSS before and after 1,000 requests.
Prints a Markdown table; --json writes the numbers too.
"""

from __future__ import annotations

import argparse
import base64
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from serving import Server  # noqa: E402 - the test suite's server launcher

from scorecam_onnx import Explainer, Runtime  # noqa: E402

IMAGE = ROOT / "samples" / "chelsea.png"
MODEL = "efficientnet-lite0"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def locust(url: str, scenario: str, users: int, seconds: int) -> dict[str, float]:
    """One headless locust run; the aggregated row of its CSV statistics."""
    with tempfile.TemporaryDirectory() as folder:
        prefix = os.path.join(folder, "run")
        env = {**os.environ, "SCENARIO": scenario}
        subprocess.run(
            [
                sys.executable,
                "-m",
                "locust",
                "-f",
                str(ROOT / "scripts" / "locustfile.py"),
                "--headless",
                "-u",
                str(users),
                "-r",
                str(users),
                "-t",
                f"{seconds}s",
                "--host",
                url.rstrip("/"),
                "--csv",
                prefix,
                "--only-summary",
                "--stop-timeout",
                "30",
            ],
            env=env,
            check=False,
            capture_output=True,
            timeout=seconds + 120,
        )
        with open(f"{prefix}_stats.csv", newline="") as handle:
            row = next(r for r in csv.DictReader(handle) if r["Name"] == "Aggregated")
    return {
        "requests": int(row["Request Count"]),
        "errors": int(row["Failure Count"]),
        "rps": float(row["Requests/s"]),
        "p50": float(row["50%"]),
        "p95": float(row["95%"]),
        "p99": float(row["99%"]),
    }


def paired_ratio(server: Server, explainer: Explainer, data: bytes, repeat: int) -> dict:
    """HTTP ÷ in-process time of exact Score-CAM, each HTTP run paired with a local one."""
    ratios, http_s, local_s = [], [], []
    for _ in range(repeat):
        started = time.perf_counter()
        explainer.explain(data, method="scorecam")
        local = time.perf_counter() - started
        started = time.perf_counter()
        reply = server.client.post("/explain", params={"method": "scorecam"}, content=data)
        remote = time.perf_counter() - started
        reply.raise_for_status()
        ratios.append(remote / local)
        http_s.append(remote)
        local_s.append(local)
    return {
        "ratio": statistics.median(ratios),
        "http_s": statistics.median(http_s),
        "local_s": statistics.median(local_s),
        "ratios": ratios,
    }


def predict_overhead(server: Server, explainer: Explainer, data: bytes, repeat: int) -> dict:
    """Median HTTP `:predict` latency minus the median in-process decode + forward (ms)."""
    body = {"instances": [{"b64": base64.b64encode(data).decode()}]}
    remote, local = [], []
    for _ in range(repeat):
        started = time.perf_counter()
        server.client.post(f"/v1/models/{MODEL}:predict", json=body).raise_for_status()
        remote.append(time.perf_counter() - started)
        started = time.perf_counter()
        explainer.forwards.probabilities(explainer.preprocess(data)[1])
        local.append(time.perf_counter() - started)
    http_ms, local_ms = statistics.median(remote) * 1e3, statistics.median(local) * 1e3
    return {"http_ms": http_ms, "local_ms": local_ms, "overhead_ms": http_ms - local_ms}


def rss_growth(server: Server, data: bytes, count: int) -> dict:
    """Server RSS before and after `count` requests (every tenth an explanation)."""
    body = {"instances": [{"b64": base64.b64encode(data).decode()}]}
    for _ in range(20):  # warm up allocator pools first
        server.client.post(f"/v1/models/{MODEL}:predict", json=body)
    before = rss_mb(server.process.pid)
    for n in range(count):
        if n % 10 == 0:
            server.client.post("/explain", params={"method": "faster-scorecam"}, content=data)
        else:
            server.client.post(f"/v1/models/{MODEL}:predict", json=body)
    return {"requests": count, "before_mb": before, "after_mb": rss_mb(server.process.pid)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=20, help="Length of each locust run.")
    parser.add_argument("--users", default="1,4,16")
    parser.add_argument(
        "--concurrency", type=int, default=1, help="The server's --max-concurrency."
    )
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--json", type=Path, help="Also write the numbers here.")
    args = parser.parse_args()
    data = IMAGE.read_bytes()
    server = Server("--quiet", "--max-concurrency", str(args.concurrency), "--max-queue", "64")
    report: dict[str, object] = {"concurrency": args.concurrency, "load": []}
    try:
        explainer = Explainer(None, Runtime(provider="cpu"))
        explainer.explain(data, method="faster-scorecam")  # warm both sides
        server.client.post("/explain", params={"method": "faster-scorecam"}, content=data)
        report["scorecam"] = paired_ratio(server, explainer, data, args.repeat)
        report["predict"] = predict_overhead(server, explainer, data, 50)
        del explainer
        for scenario in ("predict", "explain"):
            for users in (int(u) for u in args.users.split(",")):
                row = locust(server.url, scenario, users, args.seconds)
                report["load"].append({"scenario": scenario, "users": users, **row})
                print(f"{scenario} × {users}: {row}", file=sys.stderr)
        report["rss"] = rss_growth(server, data, args.requests)
    finally:
        server.stop()
    print(markdown(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


def markdown(report: dict) -> str:
    lines = [
        f"server --max-concurrency {report['concurrency']}",
        "",
        "| requests | clients | req/s | p50 ms | p95 ms | p99 ms | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report["load"]:
        kind = "predict" if r["scenario"] == "predict" else "explain (faster-scorecam)"
        lines.append(
            f"| {kind} | {r['users']} | {r['rps']:.1f} | {r['p50']:.0f} | "
            f"{r['p95']:.0f} | {r['p99']:.0f} | {r['errors']}/{r['requests']} |"
        )
    s, p, m = report["scorecam"], report["predict"], report["rss"]
    lines += [
        "",
        f"exact Score-CAM: HTTP {s['http_s']:.2f} s, in process {s['local_s']:.2f} s, "
        f"ratio {s['ratio']:.3f} (median of paired runs)",
        f"predict-only: HTTP {p['http_ms']:.1f} ms, in process {p['local_ms']:.1f} ms, "
        f"overhead {p['overhead_ms']:.1f} ms",
        f"server RSS: {m['before_mb']:.0f} MiB before, {m['after_mb']:.0f} MiB after "
        f"{m['requests']} requests",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
