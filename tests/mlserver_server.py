"""A real Seldon MLServer (`mlserver start`, from `.venv-mlserver`, built by `make test`)
on free loopback ports, over a folder written by `scorecam-onnx mlserver`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest
from conftest import ROOT
from triton_server import _free_port

__all__ = ["ENV", "MLServer", "free_port", "require_mlserver"]
free_port = _free_port

ENV = ROOT / ".venv-mlserver"


def require_mlserver() -> Path:
    """The `mlserver` program; on CI its absence fails, elsewhere it skips."""
    program = ENV / "bin" / "mlserver"
    if not program.is_file():
        if os.environ.get("CI"):
            pytest.fail("MLServer is required on CI: make test builds .venv-mlserver")
        pytest.skip("no .venv-mlserver (make test builds it)")
    return program


class MLServer:
    """`mlserver start FOLDER` on the ports of its settings.json, waited for until every
    model in `models` answers ready."""

    def __init__(self, folder: Path, models: list[str], startup: float = 120.0) -> None:
        program = require_mlserver()
        settings = json.loads((folder / "settings.json").read_text())
        self.http_port, self.grpc_port = settings["http_port"], settings["grpc_port"]
        self.cwd = tempfile.mkdtemp(prefix="mlserver-")  # it leaves a .metrics folder
        fd, self.log = tempfile.mkstemp(prefix="mlserver-", suffix=".log")
        self.process = subprocess.Popen(
            [str(program), "start", str(folder)],
            cwd=self.cwd,
            stdout=fd,
            stderr=fd,
            start_new_session=True,
        )
        os.close(fd)
        deadline = time.monotonic() + startup
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlserver exited: {self.output()[-3000:]}")
            if all(self._ready(m) for m in models):
                return
            time.sleep(0.3)
        said = self.output()[-3000:]
        self.stop()
        raise RuntimeError(f"mlserver was not ready in time: {said}")

    def _ready(self, model: str) -> bool:
        try:
            return httpx.get(f"{self.http}/v2/models/{model}/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def url(self, model: str, protocol: str = "grpc") -> str:
        port = self.http_port if protocol == "http" else self.grpc_port
        return f"{protocol}://127.0.0.1:{port}/v2/models/{model}"

    def output(self) -> str:
        return Path(self.log).read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        if os.path.exists(self.log):
            os.unlink(self.log)
