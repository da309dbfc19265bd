"""A real `scorecam-onnx serve` process on a free loopback port, for the service tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from conftest import ROOT

_METRIC = re.compile(r"^(\w+)(?:\{(.*)\})? ([0-9.eE+-]+)$")


class Server:
    """`python -m scorecam_onnx serve --port 0 ARGS`, started and waited for."""

    def __init__(
        self,
        *args: str,
        startup: float = 120.0,
        env: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        verify: Any = True,
    ) -> None:
        fd, self.log = tempfile.mkstemp(prefix="serve-", suffix=".log")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "scorecam_onnx",
                "serve",
                "--port",
                "0",
                "--provider",
                "cpu",
                *args,
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=fd,
            text=True,
            env={**os.environ, **(env or {})},
        )
        os.close(fd)
        deadline = time.monotonic() + startup
        self.url = ""
        self.banner: list[str] = []
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError(f"the server exited: {self.stderr()}")
            self.banner.append(line.rstrip("\n"))
            found = re.search(r"serving on (https?://\S+/)", line)
            if found:
                self.url = found.group(1)
                break
        if not self.url:
            self.stop()
            raise RuntimeError("the server did not start in time")
        self.client = httpx.Client(base_url=self.url, timeout=120, headers=headers, verify=verify)

    def stderr(self) -> str:
        return Path(self.log).read_text(errors="replace")

    def metric(self, name: str, **labels: str) -> float:
        """The value of one Prometheus sample (0 when absent)."""
        text = self.client.get("/metrics").text
        for line in text.splitlines():
            found = _METRIC.match(line)
            if not found or found.group(1) != name:
                continue
            got = dict(re.findall(r'(\w+)="([^"]*)"', found.group(2) or ""))
            if all(got.get(k) == v for k, v in labels.items()):
                return float(found.group(3))
        return 0.0

    def settled(self, model: str, seconds: float = 1.0) -> float:
        """The model's forward count once it has stopped moving for `seconds`."""
        value = self.metric("scorecam_forwards_total", model=model)
        for _ in range(60):
            time.sleep(seconds)
            again = self.metric("scorecam_forwards_total", model=model)
            if again == value:
                return value
            value = again
        raise AssertionError("the forward count never stopped growing")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
            if hasattr(self, "client"):
                self.client.close()
            self.process.stdout.close()
            os.unlink(self.log)
