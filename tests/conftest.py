from __future__ import annotations

from pathlib import Path

import pytest
from builders import save, tiny_model

from scorecam_onnx import Bundle, Explainer, Preprocessing, Runtime, write_bundle

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
DEFAULT_BUNDLE = ROOT / "models" / "efficientnet-lite0"
TINY_PREP = Preprocessing(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` run only where ONNX Runtime offers CUDA."""
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        return
    skip = pytest.mark.skip(reason="needs onnxruntime-gpu and a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def tiny_onnx(tmp_path: Path) -> Path:
    return save(tiny_model(), tmp_path / "tiny.onnx")


@pytest.fixture
def tiny_bundle(tmp_path: Path) -> Bundle:
    labels = [f"label{i}" for i in range(4)]
    return write_bundle(
        tiny_model(),
        tmp_path / "tiny-bundle",
        "feat",
        preprocessing=TINY_PREP,
        labels=labels,
        source={"framework": "onnx", "model": "tiny"},
    )


@pytest.fixture(scope="session")
def default_explainer() -> Explainer:
    return Explainer(DEFAULT_BUNDLE, Runtime(provider="cpu"))


@pytest.fixture(scope="session")
def chelsea() -> Path:
    return SAMPLES / "chelsea.png"


@pytest.fixture(scope="session")
def detectors(tmp_path_factory) -> dict[str, Path]:
    """A small detector of each output layout, as ONNX files (see detection/tiny_detectors)."""
    from detection.tiny_detectors import LAYOUTS, export

    folder = tmp_path_factory.mktemp("detectors")
    return {layout: export(layout, folder / f"{layout}.onnx") for layout in LAYOUTS}
