"""Provider choice: CUDA only when a CUDA session really starts, clear errors otherwise."""

from __future__ import annotations

import types

import pytest

import scorecam_onnx.runners.ort as rt
from scorecam_onnx import ProviderError


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


@pytest.mark.parametrize(
    ("available", "starts", "raises", "want"),
    [
        (["CPUExecutionProvider"], False, False, "cpu"),
        (GPU_BUILD, True, False, "cuda"),
        (GPU_BUILD, False, False, "cpu"),  # ONNX Runtime fell back silently
        (GPU_BUILD, False, True, "cpu"),  # ONNX Runtime raised while loading CUDA
    ],
)
def test_auto(monkeypatch, available, starts, raises, want):
    monkeypatch.setattr(rt, "import_onnxruntime", lambda: _fake_ort(available, starts, raises))
    _, provider = rt.build_session("model.onnx", "auto")
    assert provider == want


def test_cuda_requested_but_not_in_the_build(monkeypatch):
    monkeypatch.setattr(
        rt, "import_onnxruntime", lambda: _fake_ort(["CPUExecutionProvider"], False)
    )
    with pytest.raises(
        ProviderError, match=r"provider 'cuda' is not available .*\(available: cpu\)"
    ):
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
                "CPUExecutionProvider"
            ]

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
    assert seen[-1] == [
        ("OpenVINOExecutionProvider", {"device_type": "GPU"}),
        "CPUExecutionProvider",
    ]
    _, used = rt.build_session("m.onnx", "OpenVINOExecutionProvider")
    assert used == "openvino"
    _, used = rt.build_session("m.onnx", "CPUExecutionProvider")
    assert used == "cpu" and seen[-1] == ["CPUExecutionProvider"]


@pytest.mark.parametrize(
    ("available", "starts", "name", "message"),
    [
        (
            ["CPUExecutionProvider"],
            True,
            "tensorrt",
            r"provider 'tensorrt' is not available in this ONNX Runtime build \(available: cpu\)",
        ),
        (OPENVINO_BUILD, False, "openvino", "provider 'openvino' could not start"),
        (OPENVINO_BUILD, True, "gpu-please", "unknown provider 'gpu-please'"),
    ],
)
def test_provider_errors(monkeypatch, available, starts, name, message):
    fake, _ = _fake_any(available, starts)
    monkeypatch.setattr(rt, "import_onnxruntime", lambda: fake)
    with pytest.raises(ProviderError, match=message):
        rt.build_session("m.onnx", name)


def test_real_full_name_and_providers_command(tiny_bundle):
    from click.testing import CliRunner

    from scorecam_onnx import Explainer, Runtime
    from scorecam_onnx.cli import main

    assert Explainer(tiny_bundle, Runtime(provider="CPUExecutionProvider")).provider == "cpu"
    listed = CliRunner().invoke(main, ["providers"])
    assert listed.exit_code == 0 and "cpu        CPUExecutionProvider" in listed.output
    refused = CliRunner().invoke(
        main, ["explain", "x.png", "--model", str(tiny_bundle.path), "--provider", "tensorrt"]
    )
    assert refused.exit_code == 1 and "provider 'tensorrt' is not available" in refused.output


def test_plugin_style_session_on_a_provider_device(tiny_bundle):
    """The plugin-provider path (a session built from provider devices) on the one device
    every ONNX Runtime ≥ 1.23 lists: its CPU."""
    import numpy as np
    import onnxruntime

    devices = rt.plugin_devices("CPUExecutionProvider")
    assert devices and all(d.ep_name == "CPUExecutionProvider" for d in devices)
    session = rt.device_session(onnxruntime, tiny_bundle.model_path, devices[:1], {}, 1)
    plain, _ = rt.build_session(tiny_bundle.model_path, "cpu")
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(
        session.run(None, {"input": x})[0], plain.run(None, {"input": x})[0]
    )


def test_registered_plugin_library(tiny_bundle, tmp_path):
    """The OpenVINO plugin package: registered from its library; where it finds a device the
    maps equal the CPU provider's, where it finds none (this CPU) the error says so."""
    import numpy as np
    from click.testing import CliRunner

    from scorecam_onnx import Explainer, Runtime
    from scorecam_onnx.cli import main

    plugin = (
        pytest.importorskip("onnxruntime_ep_openvino")
        if not __import__("os").environ.get("CI")
        else __import__("onnxruntime_ep_openvino")
    )
    rt.register_provider_library("openvino_plugin", plugin.get_library_path())
    image = np.random.default_rng(2).integers(0, 256, (8, 8, 3), np.uint8)
    if rt.plugin_devices(plugin.get_ep_name()):
        got = Explainer(tiny_bundle, Runtime(provider="openvino")).explain_one(image)
        want = Explainer(tiny_bundle, Runtime(provider="cpu")).explain_one(image)
        assert np.abs(got.saliency - want.saliency).max() < 1e-4
    else:
        with pytest.raises(
            ProviderError, match="no registered provider library offers a device for it"
        ):
            Explainer(tiny_bundle, Runtime(provider="openvino"))
    bad = CliRunner().invoke(main, ["providers", "--provider-library", f"x={tmp_path / 'none.so'}"])
    assert bad.exit_code == 2 and "cannot register provider library" in bad.output
