"""ONNX Runtime sessions: provider choice by short name, and a small runner seam."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from ..errors import BundleError, ProviderError
from ..quiet import native_stderr_silenced

# Short names of ONNX Runtime's execution providers; any full name is accepted as well.
PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "dml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "qnn": "QNNExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "migraphx": "MIGraphXExecutionProvider",
    "xnnpack": "XnnpackExecutionProvider",
    "nnapi": "NnapiExecutionProvider",
    "acl": "ACLExecutionProvider",
    "armnn": "ArmNNExecutionProvider",
    "cann": "CANNExecutionProvider",
    "webgpu": "WebGpuExecutionProvider",
    "vitisai": "VitisAIExecutionProvider",
    "azure": "AzureExecutionProvider",
}
PROVIDER_CHOICES = ("auto", "cpu", "cuda")
# Providers that run on an accelerator: larger batches keep them busy.
ACCELERATORS = ("cuda", "tensorrt", "rocm", "migraphx", "dml", "webgpu", "cann")


def import_onnxruntime() -> ModuleType:
    """Import onnxruntime, or explain which extra installs it."""
    try:
        import onnxruntime
    except ImportError:
        raise ProviderError(
            "ONNX Runtime is not installed: install scorecam-onnx with the 'cpu' extra "
            "(onnxruntime) or the 'gpu' extra (onnxruntime-gpu), not both"
        ) from None
    return onnxruntime


def available_providers() -> list[str]:
    """Short names (full names where there is none) of the execution providers this ONNX
    Runtime build offers."""
    ort = import_onnxruntime()
    return [short_name(p) for p in ort.get_available_providers()]


def short_name(full: str) -> str:
    """'cuda' for 'CUDAExecutionProvider'; a name without a short form is kept as it is."""
    return next((k for k, v in PROVIDERS.items() if v == full), full)


def full_name(provider: str) -> str:
    """'CUDAExecutionProvider' for 'cuda' (any case); full names are kept."""
    return PROVIDERS.get(provider.lower(), provider)


class Runner(Protocol):
    """Anything that maps a feed of named arrays to the requested outputs, and says what its
    inputs and outputs are."""

    @property
    def provider(self) -> str: ...

    @property
    def path(self) -> Path | str: ...

    def run(self, outputs: list[str], feed: dict[str, NDArray[np.float32]]) -> list[NDArray]: ...

    def shapes(self, kind: str) -> dict[str, list[int | str | None]]: ...

    def datatype(self, kind: str, name: str) -> str: ...


class OrtRunner:
    """An ONNX Runtime session with the provider it really runs on.

    Args:
        path: the ONNX graph; loaded by path so external weights resolve beside it.
        provider: "auto" (CUDA when a CUDA session really starts, else CPU), "cpu" or "cuda".
        threads: intra-op threads; 0 lets ONNX Runtime use one per physical core.
    """

    def __init__(
        self,
        path: Path,
        provider: str = "auto",
        threads: int = 0,
        options: Mapping[str, str] | None = None,
    ) -> None:
        self.path = path
        try:
            self.session, self.provider = build_session(path, provider, threads, options)
        except ProviderError:
            raise
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises its own exception types
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BundleError(f"{path}: ONNX Runtime cannot load this graph: {text}") from None
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, outputs: list[str], feed: dict[str, NDArray[np.float32]]) -> list[NDArray]:
        return self.session.run(outputs, feed)

    def shapes(self, kind: str) -> dict[str, list[int | str | None]]:
        """Names and shapes ("input" or "output"); symbolic dimensions as names or None."""
        values = self.session.get_inputs() if kind == "input" else self.session.get_outputs()
        return {v.name: list(v.shape) for v in values}

    def datatype(self, kind: str, name: str) -> str:
        """The Open Inference Protocol's name of an input's or output's element type."""
        values = self.session.get_inputs() if kind == "input" else self.session.get_outputs()
        kinds = {
            "tensor(float)": "FP32",
            "tensor(float16)": "FP16",
            "tensor(double)": "FP64",
            "tensor(int64)": "INT64",
            "tensor(int32)": "INT32",
            "tensor(bool)": "BOOL",
        }
        found = next(v.type for v in values if v.name == name)
        return kinds.get(found, found)


def session_options(threads: int) -> Any:
    """Session options for explaining: full graph optimisation, quiet logs, no idle spinning."""
    ort = import_onnxruntime()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = max(0, threads)
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def build_session(
    path: Path | bytes,
    provider: str = "auto",
    threads: int = 0,
    options: Mapping[str, str] | None = None,
) -> tuple[Any, str]:
    """Create an InferenceSession on the requested provider; return it with the one in use.

    Args:
        path: a graph file (external weights resolve beside it) or a serialised model.
        provider: "auto" (CUDA when a CUDA session really starts, else CPU), a short name
            ("cpu", "cuda", "tensorrt", "openvino", "dml", "coreml", "qnn"…) or a full
            ONNX Runtime name ("OpenVINOExecutionProvider").
        options: provider options (e.g. {"device_type": "GPU"} for OpenVINO).
    """
    ort = import_onnxruntime()
    available = ort.get_available_providers()
    provider = provider if provider == "auto" else short_name(full_name(provider))
    if provider not in ("auto", "cpu", "cuda"):
        return _other_provider(ort, path, provider, threads, options or {}, available), (provider)
    want_cuda = provider == "cuda" or (provider == "auto" and PROVIDERS["cuda"] in available)
    if provider == "cuda" and PROVIDERS["cuda"] not in available:
        raise ProviderError(
            "provider 'cuda' is not available in this ONNX Runtime build "
            f"(available: {', '.join(available_providers()) or 'none'}); "
            "install the 'gpu' extra (onnxruntime-gpu) on a machine with CUDA"
        )
    if want_cuda:
        session = _try_cuda(ort, path, threads, quiet=provider == "auto", options=options)
        if session is not None:
            return session, "cuda"
        if provider == "cuda":
            raise ProviderError(
                "provider 'cuda' could not start (CUDA or cuDNN libraries missing, or no GPU); "
                "use --provider cpu or auto"
            )
    cpu = (
        [("CPUExecutionProvider", options)]
        if options and provider == "cpu"
        else ["CPUExecutionProvider"]
    )
    session = _new_session(ort, path, cpu, threads)
    return session, "cpu"


def _other_provider(
    ort: ModuleType,
    path: Path | bytes,
    provider: str,
    threads: int,
    options: Mapping[str, str],
    available: list[str],
) -> Any:
    """A session whose first provider is `provider`, or a ProviderError saying why not."""
    full = full_name(provider)
    if not full.endswith("ExecutionProvider"):
        raise ProviderError(
            f"unknown provider {provider!r}: use auto, a short name "
            f"({', '.join(PROVIDERS)}) or a full ONNX Runtime name"
        )
    # A registered plugin library's devices first: its provider may also be listed as
    # available (ONNX Runtime ≥ 1.32), but starts only when chosen by device.
    devices = plugin_devices(full)
    if full not in available and not devices:
        raise ProviderError(
            f"provider {provider!r} is not available in this ONNX Runtime build (available: "
            f"{', '.join(short_name(p) for p in available) or 'none'}), and no registered "
            "provider library offers a device for it; 'scorecam-onnx providers' lists them"
        )
    try:
        # A provider that cannot start says so on descriptor 2; the error below says it once.
        with native_stderr_silenced():
            if devices:
                session = device_session(ort, path, devices, options, threads)
            else:
                session = _new_session(
                    ort, path, [(full, options), "CPUExecutionProvider"], threads
                )
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises its own types
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ProviderError(f"provider {provider!r} could not start: {text}") from None
    if session.get_providers()[0] != full:
        raise ProviderError(
            f"provider {provider!r} could not start (ONNX Runtime fell back to the CPU)"
        )
    return session


def register_provider_library(name: str, library: str) -> None:
    """Register a plugin execution provider library (ONNX Runtime 1.23 or newer) under
    `name`; its devices then appear in `plugin_devices`."""
    ort = import_onnxruntime()
    register = getattr(ort, "register_execution_provider_library", None)
    if register is None:
        raise ProviderError(
            f"provider libraries need ONNX Runtime 1.23 or newer (this is {ort.__version__})"
        )
    try:
        register(name, library)
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises its own types
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ProviderError(f"cannot register provider library {library}: {text}") from None


def plugin_devices(full: str | None = None) -> list[Any]:
    """Devices that registered providers offer (all, or those of provider `full`)."""
    ort = import_onnxruntime()
    devices = list(getattr(ort, "get_ep_devices", list)())
    return [d for d in devices if full is None or d.ep_name == full]


def device_session(
    ort: ModuleType,
    path: Path | bytes,
    devices: list[Any],
    options: Mapping[str, str] | None,
    threads: int,
) -> Any:
    """A session on the given provider devices (the plugin-provider way of choosing)."""
    sess_options = session_options(threads)
    sess_options.add_provider_for_devices(devices, dict(options or {}))
    source = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(source, sess_options=sess_options)


def _new_session(ort: ModuleType, path: Path | bytes, providers: list[Any], threads: int) -> Any:
    source = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(source, sess_options=session_options(threads), providers=providers)


def _try_cuda(
    ort: ModuleType,
    path: Path | bytes,
    threads: int,
    quiet: bool,
    options: Mapping[str, str] | None = None,
) -> Any | None:
    """A CUDA session, or None when ONNX Runtime silently fell back to the CPU."""
    preload = getattr(ort, "preload_dlls", None)
    with native_stderr_silenced() if quiet else contextlib.nullcontext():
        if quiet:
            ort.set_default_logger_severity(4)
        try:
            if preload is not None:
                # Preloading pip-installed CUDA libraries is best effort.
                with contextlib.suppress(Exception):
                    preload(directory="")
            cuda = (PROVIDERS["cuda"], dict(options)) if options else PROVIDERS["cuda"]
            session = _new_session(ort, path, [cuda, "CPUExecutionProvider"], threads)
        except Exception:  # noqa: BLE001 - any failure here means "no CUDA"
            return None
        finally:
            if quiet:
                ort.set_default_logger_severity(2)  # ONNX Runtime's default: warnings
    if session.get_providers()[0] != PROVIDERS["cuda"]:
        return None
    return session
