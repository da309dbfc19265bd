"""The explainer inside a real Triton Inference Server: a repository written by
`scorecam-onnx triton --backend python` (the classifier and the masked scorers run ONNX Runtime
in Triton's Python backend), explained through tritonclient over HTTP and gRPC. The oracle is
the in-process `Explainer` on the same bundle and image bytes."""

from __future__ import annotations

import math
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import dicom_files
import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from click.testing import CliRunner
from conftest import DEFAULT_BUNDLE, SAMPLES
from dicom_files import write_dicom
from examples import run_python, runnable, workdir
from triton_server import ENV, Triton, require_triton
from tritonclient.utils import InferenceServerException

from scorecam_onnx import (
    Class,
    Explainer,
    ExplainOptions,
    Runtime,
    TopK,
    method_from,
)
from scorecam_onnx.cli import main
from scorecam_onnx.images import decode_image
from scorecam_onnx.runtime import MASKED_BATCH
from scorecam_onnx.triton import write_explainer, write_repository

pytestmark = pytest.mark.triton

NAME = "lite0"
EXPLAIN = f"{NAME}-explain"
VIA_CLASSIFIER = "lite0c-explain"  # the same bundle, masked images sent to the classifier
CHELSEA = (SAMPLES / "chelsea.png").read_bytes()


@pytest.fixture(scope="module")
def yolo_bundle(detectors, tmp_path_factory):
    """A small YOLOv8-layout detector's bundle (see detection/tiny_detectors)."""
    from scorecam_onnx.bundle.detector import write_detector_bundle
    from scorecam_onnx.bundle.graphs import load_model

    path = detectors["yolov8"]
    return write_detector_bundle(
        load_model(path), path, tmp_path_factory.mktemp("y") / "y", ["features"]
    ).path


@pytest.fixture(scope="module")
def grey_bundle(tmp_path_factory):
    """A 1-channel model that applies each DICOM file's window."""
    return dicom_files.grey_bundle(tmp_path_factory.mktemp("g") / "g").path


@pytest.fixture(scope="module")
def triton(tmp_path_factory, yolo_bundle, grey_bundle):
    require_triton()
    repo = tmp_path_factory.mktemp("repo")
    write_explainer(grey_bundle, repo, "grey", backend="python")
    write_repository(yolo_bundle, repo, "yolo")
    write_explainer(yolo_bundle, repo, "yolo", classifier="yolo")
    result = CliRunner().invoke(
        main,
        [
            "triton",
            str(DEFAULT_BUNDLE),
            "--out",
            str(repo),
            "--name",
            NAME,
            "--backend",
            "python",
            "--max-batch",
            "32",
        ],
    )
    assert result.exit_code == 0, result.output
    write_explainer(DEFAULT_BUNDLE, repo, "lite0c", classifier=NAME, forwards="classifier")
    server = Triton(repo)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def local():
    return Explainer(DEFAULT_BUNDLE, Runtime(provider="cpu"))


def _client(triton, protocol):
    if protocol == "http":
        return httpclient, httpclient.InferenceServerClient(
            f"127.0.0.1:{triton.http_port}", network_timeout=120, connection_timeout=120
        )
    return grpcclient, grpcclient.InferenceServerClient(f"127.0.0.1:{triton.grpc_port}")


def _explain(triton, images, protocol="http", model=EXPLAIN, outputs=None, **parameters):
    module, client = _client(triton, protocol)
    item = module.InferInput("image", [len(images)], "BYTES")
    item.set_data_from_numpy(np.array(images, dtype=object))
    requested = [module.InferRequestedOutput(n) for n in outputs] if outputs else None
    try:
        result = client.infer(model, [item], outputs=requested, parameters=parameters or None)
    finally:
        client.close()
    names = outputs or ["probabilities", "class_id", "score", "saliency"]
    if model.startswith("yolo"):
        names = outputs or ["boxes", "class_id", "score", "saliency"]
    return {n: result.as_numpy(n) for n in names if result.as_numpy(n) is not None}


def _stats(triton):
    answer = httpx.get(f"{triton.http}/v2/models/stats", timeout=10).json()
    return {m["name"]: m["execution_count"] for m in answer["model_stats"]}


def _want(local, image_bytes, method, top_k=None, target=None, preset=None):
    rgb = decode_image(image_bytes, "image")
    classes = None if target is None else [target]
    chosen = Class(classes) if classes else TopK(top_k or 1)
    return local.explain(rgb, chosen, method_from(method, preset=preset))


def test_a_dicom_frame_on_a_grey_model_through_its_masked_scorers(triton, grey_bundle, tmp_path):
    frames = np.random.default_rng(4).integers(0, 4096, (2, 16, 24))
    write_dicom(tmp_path / "m.dcm", frames, WindowCenter=2000.0, WindowWidth=1500.0)
    data = (tmp_path / "m.dcm").read_bytes()
    local = Explainer(grey_bundle, Runtime(provider="cpu"))
    before = _stats(triton).get("grey-masked", 0)
    got = _explain(triton, [data], model="grey-explain", frame=1)
    [want] = local.explain(tmp_path / "m.dcm", options=ExplainOptions(frame=1))
    assert int(got["class_id"][0, 0]) == want.class_id
    assert float(np.abs(got["saliency"][0, 0] - want.saliency_input).max()) <= 1e-5
    assert _stats(triton)["grey-masked"] > before  # the 1-channel masked scorer ran


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize(
    ("method", "top_k"), [("scorecam", None), ("faster-scorecam", 2), ("reciprocam", None)]
)
def test_maps_from_triton_equal_the_in_process_maps(triton, local, protocol, method, top_k):
    params = {"method": method, **({"top_k": top_k} if top_k else {})}
    got = _explain(triton, [CHELSEA], protocol, **params)
    want = _want(local, CHELSEA, method, top_k)
    k = len(want)
    assert got["class_id"].shape == (1, k) and got["saliency"].shape == (1, k, 224, 224)
    assert list(got["class_id"][0]) == [w.class_id for w in want]
    for j, w in enumerate(want):
        assert float(np.abs(got["saliency"][0, j] - w.saliency_input).max()) <= 1e-5
    probabilities = local.forwards.probabilities(local.preprocess(decode_image(CHELSEA, "x"))[1])[0]
    assert np.allclose(got["score"][0], probabilities[got["class_id"][0]], atol=1e-6)
    assert np.allclose(got["probabilities"][0], probabilities, atol=1e-6)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_detector_explained_in_triton_equals_in_process(triton, yolo_bundle, protocol):
    """Its forwards go to the detector's Triton model; boxes, classes, scores and a map per
    detection come back."""
    got = _explain(
        triton, [CHELSEA], protocol, model="yolo-explain", method="scorecam", max_detections=2
    )
    local = Explainer(yolo_bundle, Runtime(provider="cpu"))
    want = local.explain(decode_image(CHELSEA, "x"), None, "scorecam")[:2]
    assert got["boxes"].shape == (1, 2, 4) and got["saliency"].shape == (1, 2, 64, 64)
    np.testing.assert_allclose(got["boxes"][0], [w.box for w in want], rtol=1e-5)
    assert list(got["class_id"][0]) == [w.class_id for w in want]
    for j, w in enumerate(want):
        assert float(np.abs(got["saliency"][0, j] - w.saliency_input).max()) <= 1e-5


def test_masked_batches_go_to_the_masked_scorer_or_to_the_classifier(triton, local):
    want = _want(local, CHELSEA, "scorecam", preset="pytorch-grad-cam")[0]
    before = _stats(triton)
    got = _explain(triton, [CHELSEA], preset="pytorch-grad-cam", target=want.class_id)
    after = _stats(triton)
    assert float(np.abs(got["saliency"][0, 0] - want.saliency_input).max()) <= 1e-5
    ran = {n: after[n] - before[n] for n in after}
    # pytorch-grad-cam's preset upsamples with aligned corners: the aligned scorer, one
    # request per MASKED_BATCH distinct masks; the classifier ran only the unmasked forwards
    assert ran[f"{NAME}-masked-aligned"] == math.ceil(want.masks / MASKED_BATCH)
    assert ran[f"{NAME}-masked"] == 0 and ran[EXPLAIN] == 1
    assert 1 <= ran[NAME] <= 2

    before = _stats(triton)
    via = _explain(
        triton, [CHELSEA], model=VIA_CLASSIFIER, preset="pytorch-grad-cam", target=want.class_id
    )
    ran = {n: v - before[n] for n, v in _stats(triton).items()}
    assert float(np.abs(via["saliency"][0, 0] - want.saliency_input).max()) <= 1e-5
    # masked images in batches of at most the classifier's max_batch_size (32)
    assert ran[NAME] >= math.ceil(want.masks / 32) and ran[f"{NAME}-masked-aligned"] == 0


def test_outputs_not_asked_for_are_not_computed(triton, local):
    before = _stats(triton)
    got = _explain(
        triton,
        [CHELSEA, (SAMPLES / "coffee.png").read_bytes()],
        outputs=["class_id", "score"],
        target="3,7",
    )
    ran = {n: v - before[n] for n, v in _stats(triton).items()}
    assert set(got) == {"class_id", "score"}
    assert got["class_id"].tolist() == [[3, 7], [3, 7]]
    assert ran[f"{NAME}-masked"] == 0 and ran[f"{NAME}-masked-aligned"] == 0


def test_a_batch_of_images_gets_each_its_own_maps(triton, local):
    images = [CHELSEA, (SAMPLES / "coffee.png").read_bytes()]
    got = _explain(triton, images, "grpc", method="faster-scorecam", top_k=2)
    assert got["saliency"].shape == (2, 2, 224, 224) and got["class_id"].shape == (2, 2)
    for i, image in enumerate(images):
        want = _want(local, image, "faster-scorecam", top_k=2)
        assert list(got["class_id"][i]) == [w.class_id for w in want]
        for j, w in enumerate(want):
            assert float(np.abs(got["saliency"][i, j] - w.saliency_input).max()) <= 1e-5


def test_four_clients_at_once_all_get_their_maps(triton, local):
    images = [CHELSEA, (SAMPLES / "coffee.png").read_bytes()] * 2
    wants = [_want(local, image, "faster-scorecam")[0] for image in images[:2]]
    with ThreadPoolExecutor(4) as pool:
        got = list(
            pool.map(
                lambda i: _explain(
                    triton, [images[i]], "grpc" if i % 2 else "http", method="faster-scorecam"
                ),
                range(4),
            )
        )
    for i, answer in enumerate(got):
        want = wants[i % 2]
        assert answer["class_id"][0, 0] == want.class_id
        assert float(np.abs(answer["saliency"][0, 0] - want.saliency_input).max()) <= 1e-5


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_bad_request_is_one_error_and_the_next_one_succeeds(triton, local, protocol):
    for images, params, message in [
        ([b"not an image"], {}, "image 0: not an image OpenCV can decode"),
        ([CHELSEA], {"method": "gradcam"}, "method: unknown value 'gradcam'"),
        ([CHELSEA], {"top_k": 5000}, "top_k: must be between 1 and"),
        ([CHELSEA], {"target": "3", "top_k": 2}, "give either target or top_k"),
    ]:
        with pytest.raises(InferenceServerException) as caught:
            _explain(triton, images, protocol, **params)
        text = caught.value.message()
        assert message in text and "\n" not in text
        assert caught.value.status() == (
            "400" if protocol == "http" else "StatusCode.INVALID_ARGUMENT"
        )
    got = _explain(triton, [CHELSEA], protocol, method="reciprocam")
    assert got["class_id"][0, 0] == _want(local, CHELSEA, "reciprocam")[0].class_id
    assert httpx.get(f"{triton.http}/v2/models/{EXPLAIN}/ready").status_code == 200


def test_a_classifier_that_does_not_match_is_one_log_line_and_no_ready_explainer(
    tmp_path, tiny_bundle
):
    require_triton()
    write_repository(tiny_bundle, tmp_path, "other")
    write_explainer(DEFAULT_BUNDLE, tmp_path, NAME, backend="python", classifier="other")
    assert not (tmp_path / NAME).exists()
    server = Triton(tmp_path, extra=("--exit-on-error", "false"), ready="/v2/health/live")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and f"failed to load '{EXPLAIN}'" not in (
            server.output()
        ):
            time.sleep(0.3)
        lines = [
            line
            for line in server.output().splitlines()
            if "failed to load" in line and EXPLAIN in line
        ]
        assert (
            lines
            and (
                "Triton model 'other': input 'input' has shape N×3×8×8, but the "
                "manifest says N×3×224×224"
            )
            in lines[0]
        )
        assert httpx.get(f"{server.http}/v2/models/{EXPLAIN}/ready").status_code != 200
        assert httpx.get(f"{server.http}/v2/models/other/ready").status_code == 200
    finally:
        server.stop()


def test_the_explainers_python_has_no_torch():
    """Triton's stub runs the explainer with .venv-triton's Python, where torch is absent,
    so the maps above were computed without it."""
    require_triton()
    python = ENV / "bin" / "python"
    done = subprocess.run(
        [str(python), "-c", "import scorecam_onnx.triton.explain_adapter, sys; import torch"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and "No module named 'torch'" in done.stderr


def test_a_cancelled_request_stops_at_its_next_batch(triton, local):
    """A gRPC client cancels an exact Score-CAM of 8-map batches: Triton marks the request
    cancelled and the explainer sends no further batch."""
    masks = _want(local, CHELSEA, "scorecam")[0].masks
    batches = math.ceil(masks / 8)
    before = _stats(triton)[f"{NAME}-masked"]
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{triton.grpc_port}")
    item = grpcclient.InferInput("image", [1], "BYTES")
    item.set_data_from_numpy(np.array([CHELSEA], dtype=object))
    answers = []
    call = client.async_infer(
        EXPLAIN, [item], lambda result, error: answers.append(error), parameters={"batch_size": 8}
    )
    deadline = time.monotonic() + 30
    while _stats(triton)[f"{NAME}-masked"] - before < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    call.cancel()
    while not answers and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # the explainer's answer to Triton, after its settle
    stopped = _stats(triton)[f"{NAME}-masked"] - before
    time.sleep(1.5)
    after = _stats(triton)[f"{NAME}-masked"] - before
    client.close()
    assert 3 <= stopped < batches and after == stopped  # nothing ran after the answer
    assert answers and answers[0] is not None and "CANCELLED" in str(answers[0].status())


def test_the_documented_triton_example_runs(triton, tmp_path, detectors):
    """The Triton page's client example, against this repository's explainer."""
    folder = workdir(tmp_path, detectors["yolov8"])
    names = run_python(
        runnable("triton"),
        folder,
        {"127.0.0.1:8001": f"127.0.0.1:{triton.grpc_port}", '"NAME-explain"': f'"{NAME}-explain"'},
    )
    assert names["result"].as_numpy("saliency").shape == (1, 2, 224, 224)
