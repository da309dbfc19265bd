"""ONNX Runtime sessions: provider choice by short name, and a small runner seam."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from .errors import BundleError, ProviderError

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
PROVIDER_CHOICES = ("auto", *PROVIDERS)


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
    """Short names of the execution providers this ONNX Runtime build offers."""
    ort = import_onnxruntime()
    names = {v: k for k, v in PROVIDERS.items()}
    return [names[p] for p in ort.get_available_providers() if p in names]


class Runner(Protocol):
    """Anything that maps a feed of named arrays to the requested outputs."""

    provider: str

    def run(self, outputs: list[str], feed: dict[str, NDArray[np.float32]]) -> list[NDArray]: ...


class OrtRunner:
    """An ONNX Runtime session with the provider it really runs on.

    Args:
        path: the ONNX graph; loaded by path so external weights resolve beside it.
        provider: "auto" (CUDA when a CUDA session really starts, else CPU), "cpu" or "cuda".
        threads: intra-op threads; 0 lets ONNX Runtime use one per physical core.
    """

    def __init__(self, path: Path, provider: str = "auto", threads: int = 0) -> None:
        self.path = path
        try:
            self.session, self.provider = build_session(path, provider, threads)
        except ProviderError:
            raise
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises its own exception types
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BundleError(f"{path}: ONNX Runtime cannot load this graph: {text}") from None
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, outputs: list[str], feed: dict[str, NDArray[np.float32]]) -> list[NDArray]:
        return self.session.run(outputs, feed)


def session_options(threads: int) -> Any:
    """Session options for explaining: full graph optimisation, quiet logs, no idle spinning."""
    ort = import_onnxruntime()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = max(0, threads)
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def build_session(path: Path | bytes, provider: str = "auto",
                  threads: int = 0) -> tuple[Any, str]:
    """Create an InferenceSession on the requested provider; return it with the one in use.

    `path` is a graph file (external weights resolve beside it) or a serialised model.
    """
    if provider not in PROVIDER_CHOICES:
        raise ProviderError(
            f"unknown provider {provider!r}: choose one of {', '.join(PROVIDER_CHOICES)}"
        )
    ort = import_onnxruntime()
    available = ort.get_available_providers()
    want_cuda = provider == "cuda" or (provider == "auto" and PROVIDERS["cuda"] in available)
    if provider == "cuda" and PROVIDERS["cuda"] not in available:
        raise ProviderError(
            "provider 'cuda' is not available in this ONNX Runtime build "
            f"(available: {', '.join(available_providers()) or 'none'}); "
            "install the 'gpu' extra (onnxruntime-gpu) on a machine with CUDA"
        )
    if want_cuda:
        session = _try_cuda(ort, path, threads, quiet=provider == "auto")
        if session is not None:
            return session, "cuda"
        if provider == "cuda":
            raise ProviderError(
                "provider 'cuda' could not start (CUDA or cuDNN libraries missing, or no GPU); "
                "use --provider cpu or auto"
            )
    session = _new_session(ort, path, ["CPUExecutionProvider"], threads)
    return session, "cpu"


def _new_session(ort: ModuleType, path: Path | bytes, providers: list[Any],
                 threads: int) -> Any:
    source = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(source, sess_options=session_options(threads),
                                providers=providers)


def _try_cuda(ort: ModuleType, path: Path | bytes, threads: int, quiet: bool) -> Any | None:
    """A CUDA session, or None when ONNX Runtime silently fell back to the CPU."""
    preload = getattr(ort, "preload_dlls", None)
    with _stderr_silenced(quiet):
        if quiet:
            ort.set_default_logger_severity(4)
        try:
            if preload is not None:
                # Preloading pip-installed CUDA libraries is best effort.
                with contextlib.suppress(Exception):
                    preload(directory="")
            session = _new_session(ort, path, [PROVIDERS["cuda"], "CPUExecutionProvider"],
                                   threads)
        except Exception:  # noqa: BLE001 - any failure here means "no CUDA"
            return None
        finally:
            if quiet:
                ort.set_default_logger_severity(2)   # ONNX Runtime's default: warnings
    if session.get_providers()[0] != PROVIDERS["cuda"]:
        return None
    return session


class _stderr_silenced:
    """Point file descriptor 2 at /dev/null while active (native libraries write there)."""

    def __init__(self, active: bool) -> None:
        self.active = active
        self.saved: int | None = None

    def __enter__(self) -> None:
        if self.active:
            self.saved = os.dup(2)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            os.close(devnull)

    def __exit__(self, *exc: object) -> None:
        if self.saved is not None:
            os.dup2(self.saved, 2)
            os.close(self.saved)
            self.saved = None
