"""The serve side imports and runs without PyTorch."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT

BLOCK_TORCH = """
import sys

class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")
        return None

sys.meta_path.insert(0, _NoTorch())
"""


def _python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_import_leaves_torch_unloaded():
    out = _python(
        "import sys, scorecam_onnx, scorecam_onnx.cli.main; "
        "print('torch' in sys.modules, 'onnxruntime' in sys.modules)"
    )
    assert out == "False False"


def test_explains_with_torch_unavailable():
    code = (
        BLOCK_TORCH
        + """
from scorecam_onnx import Explainer, FasterScoreCam, Runtime
res = Explainer(None, Runtime(provider="cpu")).explain_one(
    "samples/coffee.png", method=FasterScoreCam(channels=4))
print(res.class_id, res.forwards, "torch" in sys.modules)
"""
    )
    assert _python(code) == "967 5 False"
