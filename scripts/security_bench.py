"""What an API key and TLS add to a prediction: the same V1 predict request to three servers
(open, with a key, with a key and TLS), interleaved so that each round sees the same machine,
median milliseconds and the differences.

    python scripts/security_bench.py [--rounds 200]
"""

from __future__ import annotations

import argparse
import base64
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()

    from serving import Server

    folder = Path(tempfile.mkdtemp(prefix="tls-"))
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    auth = {"Authorization": "Bearer bench-key"}
    servers = {
        "open": Server("-q"),
        "API key": Server("-q", "--api-key", "bench-key", headers=auth),
        "API key + TLS": Server(
            "-q",
            "--api-key",
            "bench-key",
            "--ssl-certfile",
            str(cert),
            "--ssl-keyfile",
            str(key),
            headers=auth,
            verify=ssl.create_default_context(cafile=str(cert)),
        ),
    }
    image = base64.b64encode((ROOT / "samples" / "chelsea.png").read_bytes()).decode()
    body = {"instances": [{"b64": image}]}
    times: dict[str, list[float]] = {name: [] for name in servers}
    try:
        for server in servers.values():  # warm up (and keep-alive)
            for _ in range(5):
                server.client.post("/v1/models/efficientnet-lite0:predict", json=body)
        for _ in range(args.rounds):
            for name, server in servers.items():
                started = time.perf_counter()
                reply = server.client.post("/v1/models/efficientnet-lite0:predict", json=body)
                times[name].append((time.perf_counter() - started) * 1000)
                assert reply.status_code == 200, reply.text
    finally:
        for server in servers.values():
            server.stop()
    base = statistics.median(times["open"])
    print("| server | median ms | added ms |")
    print("|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.2f} | {median - base:+.2f} |")


if __name__ == "__main__":
    main()
