"""Big photos end to end: for each size, `scorecam-onnx explain`'s peak memory and time (a
process of its own, peak resident memory from the kernel), the service's answers (JSON at the
original size and capped at 512 pixels a side, the overlay PNG: bytes and seconds), and the
page's time from choosing the file to the drawn overlay in headless Chromium (when Debian's
chromium and chromium-driver are installed).

    python scripts/big_images.py [--megapixels 12 64 100] [--method reciprocam]

The photos are the sample chelsea.png enlarged to 4:3 and saved as JPEG (quality 90).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def _photo(folder: Path, megapixels: int) -> Path:
    import cv2

    from scorecam_onnx import load_image

    width = round((megapixels * 1e6 * 4 / 3) ** 0.5)
    height = round(width * 3 / 4)
    big = cv2.resize(
        load_image(ROOT / "samples" / "chelsea.png"), (width, height), interpolation=cv2.INTER_CUBIC
    )
    path = folder / f"photo-{megapixels}mpx.jpg"
    cv2.imwrite(str(path), big[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    return path


def _explain(photo: Path, out: Path, method: str) -> tuple[float, float]:
    """Seconds and peak resident MiB of the explain command on one photo."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "scorecam_onnx",
            "explain",
            str(photo),
            "--out",
            str(out),
            "--method",
            method,
            "--provider",
            "cpu",
            "-q",
        ],
        stdout=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"explain failed on {photo}")
    return time.perf_counter() - started, usage.ru_maxrss / 1024


def _browser():
    import shutil

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        return None
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-')}",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


def _page_seconds(browser, url: str, photo: Path) -> float:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url)
    started = time.perf_counter()
    browser.find_element(By.ID, "file").send_keys(str(photo))
    WebDriverWait(browser, 600).until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-explained") == "1"
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megapixels", type=int, nargs="+", default=[12, 64, 100])
    parser.add_argument("--method", default="reciprocam")
    args = parser.parse_args()

    from serving import Server

    folder = Path(tempfile.mkdtemp(prefix="big-images-"))
    server = Server("--method", args.method, "--max-body-mb", "200")
    browser = _browser()
    try:
        print(
            "| Mpx | JPEG MB | explain s | explain peak MiB | MiB above the model | "
            "JSON original MB (s) | JSON 512 MB (s) | PNG MB (s) | page s |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        _, base = _explain(ROOT / "samples" / "chelsea.png", folder / "base", args.method)
        for megapixels in args.megapixels:
            photo = _photo(folder, megapixels)
            seconds, peak = _explain(photo, folder / f"out-{megapixels}", args.method)
            data = photo.read_bytes()
            answers = []
            for params, headers in (
                ({}, {}),
                ({"map_size": "512"}, {}),
                ({}, {"Accept": "image/png"}),
            ):
                started = time.perf_counter()
                reply = server.client.post(
                    "/explain", params=params, content=data, headers=headers, timeout=600
                )
                if reply.status_code != 200:
                    raise SystemExit(f"{reply.status_code}: {reply.text[:200]}")
                answers.append(
                    f"{len(reply.content) / 1e6:.2f} ({time.perf_counter() - started:.1f})"
                )
            page = f"{_page_seconds(browser, server.url, photo):.1f}" if browser else "–"
            print(
                f"| {megapixels} | {len(data) / 1e6:.1f} | {seconds:.1f} | {peak:.0f} | "
                f"{peak - base:.0f} ({(peak - base) * 2**20 / (megapixels * 1e6):.1f} B/px) "
                f"| {' | '.join(answers)} | {page} |",
                flush=True,
            )
            photo.unlink()
    finally:
        server.stop()
        if browser is not None:
            browser.quit()


if __name__ == "__main__":
    main()
