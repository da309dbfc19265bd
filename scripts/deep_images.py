"""Memory per pixel of deep images: a 16-bit grey PNG and a 16-bit DICOM (with its window)
of SIZE×SIZE on a 1-channel model, explained (the map at full size) and written (overlay PNG
and map NPY), each in a process of its own after a warm-up on a small image; peak resident
memory growth over the run, from the kernel.

    python scripts/deep_images.py [--size 4096]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

RUN = """
from pathlib import Path
import numpy as np
from scorecam_onnx import Explainer, Runtime
from scorecam_onnx.batch import write_outputs
from scorecam_onnx.evaluation.bench import peak_rss_growth_mib
ex = Explainer({bundle!r}, Runtime(provider="cpu", threads=1))
warm = np.zeros((64, 64), np.uint16)
write_outputs(Path({out!r}) / "warm", "w", Path("w"), ex.display(ex.read(warm)),
              ex.explain(warm), False)
def explain_only():
    ex.explain({image!r})
def explain_and_write():
    picture = ex.read({image!r})
    found = ex.explain(picture)
    write_outputs(Path({out!r}), "big", Path("big"), ex.display(picture), found, False)
print(peak_rss_growth_mib({run}))
"""


def measure(bundle: Path, image: Path, out: Path, run: str) -> float:
    """Peak resident memory growth (MiB) of `run` in a fresh process."""
    code = RUN.format(bundle=str(bundle), image=str(image), out=str(out), run=run)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    size = parser.parse_args().size
    import cv2
    import numpy as np
    from builders import tiny_model
    from dicom_files import write_dicom

    from scorecam_onnx import write_bundle
    from scorecam_onnx.bundle import Preprocessing

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        prep = Preprocessing(mean=(0.5,), std=(0.25,), voi_lut=True)
        bundle = write_bundle(tiny_model(bands=1), folder / "grey", "feat", preprocessing=prep)
        ramp = np.add.outer(np.arange(size), np.arange(size)) * (65535 // (2 * size))
        pixels = (ramp + np.random.default_rng(0).integers(0, 64, (size, size))).astype(np.uint16)
        cv2.imwrite(str(folder / "deep.png"), pixels)
        write_dicom(
            folder / "deep.dcm",
            pixels >> 4,
            RescaleSlope=1.0,
            RescaleIntercept=-1024.0,
            WindowCenter=40.0,
            WindowWidth=400.0,
        )
        print(f"{size}×{size} 16-bit, 1-channel model; MiB of peak growth, bytes per pixel")
        for name in ("deep.png", "deep.dcm"):
            for run in ("explain_only", "explain_and_write"):
                mib = measure(bundle.path, folder / name, folder / "out", run)
                print(f"{name:9} {run:18} {mib:8.1f} MiB  {mib * 2**20 / size**2:5.1f} B/pixel")


if __name__ == "__main__":
    main()
