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


def _fake_any(available: list[str], starts: bool):
    """A fake ONNX Runtime whose first requested provider starts when `starts`."""
    seen: list[list] = []

    class Session:
        def __init__(self, path, sess_options=None, providers=()):
            seen.append(list(providers))
            first = providers[0][0] if isinstance(providers[0], tuple) else providers[0]
            self.providers = ([first] if starts and first != "CPUExecutionProvider" else []) + [
                "CPUExecutionProvider"]

        def get_providers(self):
            return self.providers

    fake = _fake_ort(available, False)
    fake.InferenceSession = Session
    return fake, seen


OPENVINO_BUILD = ["OpenVINOExecutionProvider", "CPUExecutionProvider"]


def test_any_provider_by_short_or_full_name_with_options(monkeypatch):
    fake, seen = _fake_any(OPENVINO_BUILD, starts=True)
    monkeypatch.setattr(rt, "import_onnxruntime", lambda: fake)
    _, used = rt.build_session("m.onnx", "openvino", options={"device_type": "GPU"})
    assert used == "openvino"
    assert seen[-1] == [("OpenVINOExecutionProvider", {"device_type": "GPU"}),
                        "CPUExecutionProvider"]
    _, used = rt.build_session("m.onnx", "OpenVINOExecutionProvider")
    assert used == "openvino"
    _, used = rt.build_session("m.onnx", "CPUExecutionProvider")
    assert used == "cpu" and seen[-1] == ["CPUExecutionProvider"]


@pytest.mark.parametrize(("available", "starts", "name", "message"), [
    (["CPUExecutionProvider"], True, "tensorrt",
     r"provider 'tensorrt' is not available in this ONNX Runtime build \(available: cpu\)"),
    (OPENVINO_BUILD, False, "openvino", "provider 'openvino' could not start"),
    (OPENVINO_BUILD, True, "gpu-please", "unknown provider 'gpu-please'"),
])
def test_provider_errors(monkeypatch, available, starts, name, message):
    fake, _ = _fake_any(available, starts)
    monkeypatch.setattr(rt, "import_onnxruntime", lambda: fake)
    with pytest.raises(ProviderError, match=message):
        rt.build_session("m.onnx", name)


def test_real_full_name_and_providers_command(tiny_bundle):
    from click.testing import CliRunner

    from scorecam_onnx import Explainer
    from scorecam_onnx.cli import main

    assert Explainer(tiny_bundle, provider="CPUExecutionProvider").provider == "cpu"
    listed = CliRunner().invoke(main, ["providers"])
    assert listed.exit_code == 0 and "cpu        CPUExecutionProvider" in listed.output
    refused = CliRunner().invoke(main, ["explain", "x.png", "--model", str(tiny_bundle.path),
                                        "--provider", "tensorrt"])
    assert refused.exit_code == 1 and "provider 'tensorrt' is not available" in refused.output
