#!/usr/bin/env bash
# CUDA checks in one go, for a machine with a GPU and onnxruntime-gpu already installed:
# the provider list, the GPU-marked tests, and the benchmark on CUDA beside the CPU.
# Usage: bash scripts/gpu-check.sh [OUTPUT_DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu-check}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
py="${PYTHON:-python3}"

echo "== environment" | tee "$out/summary.txt"
"$py" - <<'PY' 2>&1 | tee -a "$out/summary.txt"
import importlib
for name in ("numpy", "cv2", "onnx", "click", "onnxruntime", "pytest"):
    try:
        module = importlib.import_module(name)
        print(f"{name} {getattr(module, '__version__', '?')}")
    except ImportError as exc:
        print(f"{name} MISSING ({exc})")
import onnxruntime
print("providers:", onnxruntime.get_available_providers())
PY
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv \
    | tee -a "$out/summary.txt"

echo "== GPU tests" | tee -a "$out/summary.txt"
"$py" -m pytest -q -m gpu tests/test_gpu.py 2>&1 | tee "$out/tests.txt" | tail -n 3 \
    | tee -a "$out/summary.txt"

for provider in cuda cpu; do
    echo "== bench --provider $provider" | tee -a "$out/summary.txt"
    "$py" -m scorecam_onnx bench samples/chelsea.png --provider "$provider" --repeat 3 -q \
        2>&1 | tee "$out/bench-$provider.txt" | tee -a "$out/summary.txt"
done
