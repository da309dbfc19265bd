"""A real Triton Inference Server (the `tritonserver` that PyPI's nvidia-pytriton ships) on
free loopback ports, over a model repository, for the remote-forward tests.

It runs from `.venv-triton` (built by `make test`): Triton's Python backend wants numpy < 2,
and its stub imports packages from the Python found first on PATH.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest
from conftest import ROOT

ENV = ROOT / ".venv-triton"


def _site() -> Path | None:
    found = sorted(ENV.glob("lib/python3*/site-packages/pytriton/tritonserver"))
    return found[0] if found else None


def require_triton() -> Path:
    """The wheel's tritonserver folder; on CI its absence fails, elsewhere it skips."""
    site = _site()
    if site is None or not (site / "bin" / "tritonserver").is_file():
        if os.environ.get("CI"):
            pytest.fail("Triton is required on CI: make test builds .venv-triton")
        pytest.skip("no .venv-triton (make test builds it)")
    return site


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Triton:
    """tritonserver over `repository`, started and waited for until `ready` answers 200
    (`extra`: more tritonserver flags)."""

    def __init__(
        self,
        repository: Path,
        startup: float = 90.0,
        extra: tuple[str, ...] = (),
        ready: str = "/v2/health/ready",
    ) -> None:
        site = require_triton()
        version = next(ENV.glob("lib/python3*")).name.removeprefix("python")
        stub = site / "backends" / "python" / "triton_python_backend_stub"
        if not stub.exists():
            shutil.copy2(site / "python_backend_stubs" / version / stub.name, stub)
        self.http_port, self.grpc_port = _free_port(), _free_port()
        env = {
            **os.environ,
            "PATH": f"{ENV / 'bin'}:{os.environ.get('PATH', '')}",
            "LD_LIBRARY_PATH": str(site.parent.parent / "nvidia_pytriton.libs"),
        }
        fd, self.log = tempfile.mkstemp(prefix="triton-", suffix=".log")
        self.process = subprocess.Popen(
            [
                str(site / "bin" / "tritonserver"),
                "--model-repository",
                str(repository),
                "--backend-directory",
                str(site / "backends"),
                "--http-address",
                "127.0.0.1",
                "--grpc-address",
                "127.0.0.1",
                "--http-port",
                str(self.http_port),
                "--grpc-port",
                str(self.grpc_port),
                "--allow-metrics",
                "false",
                "--log-verbose",
                "0",
                *extra,
            ],
            cwd=ROOT,
            env=env,
            stdout=fd,
            stderr=fd,
        )
        os.close(fd)
        deadline = time.monotonic() + startup
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"tritonserver exited: {self.output()[-2000:]}")
            try:
                if httpx.get(f"{self.http}{ready}", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"tritonserver was not ready in time: {self.output()[-2000:]}")

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def url(self, model: str, protocol: str = "http") -> str:
        port = self.http_port if protocol == "http" else self.grpc_port
        return f"{protocol}://127.0.0.1:{port}/v2/models/{model}"

    def output(self) -> str:
        return Path(self.log).read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if os.path.exists(self.log):
            os.unlink(self.log)
