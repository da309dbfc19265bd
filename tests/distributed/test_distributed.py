"""Datasets on Ray Data and replicas on Ray Serve, on a real local Ray cluster (2 CPUs)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import threading
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from builders import save, tiny_model
from click.testing import CliRunner
from conftest import DEFAULT_BUNDLE, SAMPLES, TINY_PREP
from dicom_files import grey_bundle, write_dicom
from examples import run_python, run_shell, runnable, workdir

from scorecam_onnx import (
    Explainer,
    ExplainOptions,
    ExplainRequest,
    FasterScoreCam,
    Rise,
    Runtime,
)
from scorecam_onnx.bundle import open_model
from scorecam_onnx.cli import main

ray = pytest.importorskip("ray") if not os.environ.get("CI") else __import__("ray")
pytestmark = pytest.mark.ray
RNG = np.random.default_rng(31)


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


def _images(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"img{i:02d}.png"
        cv2.imwrite(str(path), RNG.integers(0, 256, (12, 10, 3), dtype=np.uint8))
        paths.append(path)
    (folder / "text.png").write_text("not a picture")
    (folder / "empty.png").write_bytes(b"")
    os.symlink(folder / "gone.png", folder / "dangling.png")
    return paths


def test_dataset_rows_and_files_equal_in_process_maps(cluster, tmp_path, tiny_bundle):
    from scorecam_onnx.distributed import RayPool, explain_dataset

    good = _images(tmp_path / "in", 20)
    rows = explain_dataset(
        tmp_path / "in",
        tiny_bundle.path,
        pool=RayPool(actors=2, images_per_task=3),
        out=tmp_path / "out",
    ).take_all()
    assert len(rows) == 23
    by_name = {r["name"]: r for r in rows}
    local = Explainer(tiny_bundle, Runtime(provider="cpu", threads=1))
    for path in good:
        row = by_name[path.stem]
        want = local.explain_one(path)
        assert row["error"] == "" and row["class_id"] == want.class_id
        assert np.asarray(row["saliency"]).tobytes() == want.saliency.tobytes()
        assert np.load(tmp_path / "out" / f"{path.stem}.npy").tobytes() == (want.saliency.tobytes())
    assert by_name["text"]["error"].startswith("not an image OpenCV can decode")
    assert by_name["empty"]["error"] == "empty file"
    assert by_name["dangling"]["error"].startswith("broken symbolic link")
    assert not list((tmp_path / "out").glob("text*"))


def test_dicom_16_bit_and_npy_files_on_a_grey_model(cluster, tmp_path):
    from scorecam_onnx.distributed import RayPool, explain_dataset

    grey = grey_bundle(tmp_path / "grey")
    folder = tmp_path / "in"
    folder.mkdir()
    frames = RNG.integers(0, 4096, (2, 16, 24))
    write_dicom(folder / "scan.dcm", frames, WindowCenter=2000.0, WindowWidth=1500.0)
    write_dicom(folder / "empty.dcm", frames[0], with_pixels=False)
    cv2.imwrite(str(folder / "deep.png"), RNG.integers(0, 65536, (16, 24), dtype=np.uint16))
    np.save(folder / "array.npy", RNG.uniform(0, 1, (16, 24)).astype(np.float32))
    request = ExplainRequest(options=ExplainOptions(frame=1))
    rows = explain_dataset(folder, grey.path, request, pool=RayPool(actors=1)).take_all()
    by_name = {r["name"]: r for r in rows}
    assert by_name["empty"]["error"] == "a DICOM file with no pixel data"
    local = Explainer(grey, Runtime(provider="cpu", threads=1))
    for name in ("scan.dcm", "deep.png", "array.npy"):
        [want] = local.explain(folder / name, options=ExplainOptions(frame=1))
        row = by_name[name.split(".")[0]]
        assert row["error"] == "" and row["class_id"] == want.class_id
        assert np.asarray(row["saliency"]).tobytes() == want.saliency.tobytes()


def test_cli_with_ray_writes_what_a_local_run_writes(cluster, tmp_path, tiny_bundle):
    _images(tmp_path / "in", 20)
    args = [
        "explain",
        str(tmp_path / "in"),
        "--model",
        str(tiny_bundle.path),
        "-q",
        "--method",
        "faster-scorecam",
        "--channels",
        "3",
    ]
    remote = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "r"), "--ray"])
    local = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "l")])
    assert remote.exit_code == local.exit_code == 1
    assert "3 failed" in remote.output and "20 explained" in remote.output
    for name in ("text.png: not an image", "empty.png: empty file", "dangling.png: broken"):
        assert name in remote.output
    for path in sorted((tmp_path / "l").iterdir()):
        twin = tmp_path / "r" / path.name
        if path.suffix == ".npy":
            assert np.load(twin).tobytes() == np.load(path).tobytes()
        elif path.suffix == ".json":
            a, b = json.loads(path.read_text()), json.loads(twin.read_text())
            assert (a["class_id"], a["forwards"]) == (b["class_id"], b["forwards"])
    again = CliRunner().invoke(
        main, [*args, "--out", str(tmp_path / "r"), "--ray", "--skip-existing"]
    )
    assert "0 explained, 20 skipped, 3 failed" in again.output


def test_rise_on_a_plain_model_runs_on_ray(cluster, tmp_path):
    model = save(tiny_model(), tmp_path / "plain.onnx")
    paths = _images(tmp_path / "in", 3)
    args = [
        "explain",
        *map(str, paths),
        "--model",
        str(model),
        "-q",
        "--method",
        "rise",
        "--samples",
        "24",
        "--mean",
        "0.5,0.5,0.5",
        "--std",
        "0.25,0.25,0.25",
    ]
    run = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "r"), "--ray"])
    assert run.exit_code == 0, run.output
    local = Explainer(open_model(model, TINY_PREP), Runtime(provider="cpu", threads=1))
    for path in paths:
        want = local.explain_one(path, method=Rise(samples=24))
        assert np.load(tmp_path / "r" / f"{path.stem}.npy").tobytes() == (want.saliency.tobytes())


def test_a_detector_on_ray_writes_what_a_local_run_writes(cluster, tmp_path, detectors):
    args = [
        "explain",
        str(SAMPLES / "chelsea.png"),
        str(SAMPLES / "coffee.png"),
        "--model",
        str(detectors["yolov8"]),
        "-q",
        "--method",
        "drise",
        "--samples",
        "16",
        "--max-detections",
        "2",
    ]
    remote = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "r"), "--ray"])
    local = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "l")])
    assert remote.exit_code == local.exit_code == 0, remote.output
    written = sorted(p.name for p in (tmp_path / "l").iterdir())
    assert written == sorted(p.name for p in (tmp_path / "r").iterdir())
    assert "chelsea.d1.npy" in written
    for name in written:
        a, b = (tmp_path / "l" / name), (tmp_path / "r" / name)
        if name.endswith(".npy"):
            assert np.load(a).tobytes() == np.load(b).tobytes()
        elif name.endswith(".json"):
            assert json.loads(a.read_text()).get("box") == json.loads(b.read_text()).get("box")


def _actor_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if b"MapWorker" in title and b"ExplainActor" in title:
                pids.append(int(entry.name))
    return pids


def test_killed_actor_is_restarted_and_nothing_is_lost_or_doubled(cluster, tmp_path):
    from scorecam_onnx.distributed import RayPool, explain_dataset

    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    image = cv2.imread(str(SAMPLES / "chelsea.png"))
    for i in range(20):
        cv2.imwrite(str(folder / f"cat{i:02d}.png"), image)
    rows: list[dict] = []
    dataset = explain_dataset(
        folder,
        DEFAULT_BUNDLE,
        ExplainRequest(FasterScoreCam()),
        pool=RayPool(actors=2, images_per_task=2),
        out=out,
    )
    worker = threading.Thread(target=lambda: rows.extend(dataset.iter_rows()))
    worker.start()
    deadline = time.monotonic() + 120
    while len(list(out.glob("cat*.json"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    pids = _actor_pids()
    assert pids, "no actor process found"
    os.kill(pids[0], signal.SIGKILL)
    worker.join(300)
    assert not worker.is_alive()
    assert sorted(r["name"] for r in rows) == [f"cat{i:02d}" for i in range(20)]
    assert all(r["error"] == "" for r in rows)
    for i in range(20):
        meta = json.loads((out / f"cat{i:02d}.json").read_text())
        assert meta["class_id"] == 285
        assert np.load(out / f"cat{i:02d}.npy").shape == (300, 451)
    assert not list(out.glob(".*.part"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_deployment_with_two_replicas_answers_v2(cluster, tiny_bundle):
    from ray import serve

    from scorecam_onnx.serve.on_ray import deployment

    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        app = deployment(
            {"tiny": tiny_bundle.path},
            num_replicas=2,
            ray_actor_options={"num_cpus": 0.5},
            runtime=Runtime(provider="cpu", threads=1),
        )
        serve.run(app, name="scorecam", route_prefix="/")
        status = serve.status().applications["scorecam"].deployments["scorecam"]
        assert sum(status.replica_states.values()) == 2
        local = Explainer(tiny_bundle, Runtime(provider="cpu", threads=1))
        image = cv2.imencode(".png", RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8))[1]
        data = image.tobytes()
        body = {
            "inputs": [
                {
                    "name": "image",
                    "datatype": "BYTES",
                    "shape": [1],
                    "data": [base64.b64encode(data).decode()],
                }
            ],
            "outputs": [{"name": "saliency"}, {"name": "class_id"}],
        }
        want = local.explain_one(data)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            for _ in range(6):
                reply = client.post("/v2/models/tiny/infer", json=body)
                assert reply.status_code == 200, reply.text
                out = {o["name"]: o for o in reply.json()["outputs"]}
                saliency = np.asarray(out["saliency"]["data"], np.float32).reshape(8, 8)
                assert out["class_id"]["data"] == [want.class_id]
                assert saliency.tobytes() == want.saliency_input.tobytes()
            assert client.get("/v2/health/ready").status_code == 200
    finally:
        serve.shutdown()


@pytest.mark.triton
def test_actors_send_their_forwards_to_a_served_model(cluster, tmp_path, tiny_bundle):
    """Each actor's Explainer gets the model URL: rows equal in-process maps, and Triton's
    statistics count the actors' forwards."""
    from triton_server import Triton, require_triton

    from scorecam_onnx.distributed import RayPool, explain_dataset
    from scorecam_onnx.triton import write_repository

    require_triton()
    write_repository(tiny_bundle, tmp_path / "repo", "tiny", max_batch=8)
    triton = Triton(tmp_path / "repo")
    try:
        good = _images(tmp_path / "in", 4)
        rows = explain_dataset(
            [str(p) for p in good],
            tiny_bundle.path,
            ExplainRequest(FasterScoreCam(channels=4)),
            Runtime(threads=1, model_url=triton.url("tiny", "grpc")),
            RayPool(actors=1),
        ).take_all()
        local = Explainer(tiny_bundle, Runtime(provider="cpu", threads=1))
        for row, path in zip(sorted(rows, key=lambda r: r["name"]), good, strict=True):
            want = local.explain_one(path, method=FasterScoreCam(channels=4))
            assert row["error"] == "" and row["class_id"] == want.class_id
            assert float(np.abs(np.asarray(row["saliency"]) - want.saliency).max()) <= 1e-5
        stats = httpx.get(f"{triton.http}/v2/models/tiny/stats").json()["model_stats"][0]
        assert int(stats["inference_count"]) == sum(r["forwards"] for r in rows)
    finally:
        triton.stop()


def test_the_documented_ray_examples_run(cluster, tmp_path, detectors):
    """The Ray page's examples: the command on a cluster of its own, the Python on this one."""
    folder = workdir(tmp_path, detectors["yolov8"])
    blocks = runnable("ray")
    for block in (b for b in blocks if b.lang == "bash"):
        run_shell(block, folder)
    assert sorted(p.name for p in (folder / "maps").glob("*.json")) == [
        "chelsea.json",
        "coffee.json",
    ]
    shutil.rmtree(folder / "maps")
    names = run_python([b for b in blocks if b.lang == "python"], folder)
    rows = names["rows"].take_all()  # relative paths are the caller's, not the actors'
    assert len(list((folder / "maps").glob("*.json"))) == 2
    assert sorted((r["name"], r["class_id"]) for r in rows) == [("chelsea", 285), ("coffee", 967)]
    assert names["app"] is not None
