"""Provider choice: CUDA only when a CUDA session really starts, clear errors otherwise."""

from __future__ import annotations

import types

import pytest

from scorecam_onnx import ProviderError
from scorecam_onnx import runtime as rt


def _fake_ort(available: list[str], cuda_starts: bool, cuda_raises: bool = False):
    class Options:
        def __init__(self):
            self.entries = {}

        def add_session_config_entry(self, key, value):
            self.entries[key] = value

    class Session:
        def __init__(self, path, sess_options=None, providers=()):
            names = [p[0] if isinstance(p, tuple) else p for p in providers]
            if "CUDAExecutionProvider" in names and cuda_raises:
                raise RuntimeError("libcudnn.so.9: cannot open shared object file")
            started = "CUDAExecutionProvider" in names and cuda_starts
            self.providers = ["CUDAExecutionProvider"] * started + ["CPUExecutionProvider"]

        def get_providers(self):
            return self.providers

    return types.SimpleNamespace(
        get_available_providers=lambda: available,
        SessionOptions=Options,
        GraphOptimizationLevel=types.SimpleNamespace(ORT_ENABLE_ALL=99),
        InferenceSession=Session,
        set_default_logger_severity=lambda level: None,
    )


GPU_BUILD = ["CUDAExecutionProvider", "CPUExecutionProvider"]


@pytest.mark.parametrize(("available", "starts", "raises", "want"), [
    (["CPUExecutionProvider"], False, False, "cpu"),
    (GPU_BUILD, True, False, "cuda"),
    (GPU_BUILD, False, False, "cpu"),     # ONNX Runtime fell back silently
    (GPU_BUILD, False, True, "cpu"),      # ONNX Runtime raised while loading CUDA
])
def test_auto(monkeypatch, available, starts, raises, want):
    monkeypatch.setattr(rt, "import_onnxruntime", lambda: _fake_ort(available, starts, raises))
    _, provider = rt.build_session("model.onnx", "auto")
    assert provider == want


def test_cuda_requested_but_not_in_the_build(monkeypatch):
    monkeypatch.setattr(rt, "import_onnxruntime",
                        lambda: _fake_ort(["CPUExecutionProvider"], False))
    with pytest.raises(ProviderError,
                       match=r"provider 'cuda' is not available .*\(available: cpu\)"):
        rt.build_session("model.onnx", "cuda")


def test_cuda_requested_but_falls_back(monkeypatch):
    monkeypatch.setattr(rt, "import_onnxruntime", lambda: _fake_ort(GPU_BUILD, False))
    with pytest.raises(ProviderError, match="provider 'cuda' could not start"):
        rt.build_session("model.onnx", "cuda")


def test_unknown_provider():
    with pytest.raises(ProviderError, match="unknown provider 'tpu'"):
        rt.build_session("model.onnx", "tpu")


def test_missing_onnxruntime(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError("No module named 'onnxruntime'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ProviderError, match="install scorecam-onnx with the 'cpu' extra"):
        rt.import_onnxruntime()


def test_real_cpu_session(tiny_onnx):
    runner = rt.OrtRunner(tiny_onnx, "cpu", threads=1)
    assert runner.provider == "cpu" and runner.input_names == ["input"]
