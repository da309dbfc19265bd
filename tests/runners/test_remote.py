"""Forwards sent to a classifier served by a real Triton Inference Server (ONNX Runtime in its
Python backend, dynamic batching, max batch 16), over HTTP and gRPC with tritonclient: maps
equal the in-process ones; metadata checks, faults and their one-line errors."""

from __future__ import annotations

import json

import dicom_files
import httpx
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import DEFAULT_BUNDLE, SAMPLES
from dicom_files import write_dicom
from triton_server import Triton, require_triton

from scorecam_onnx import (
    BundleError,
    Explainer,
    ExplainOptions,
    Preprocessing,
    Rise,
    Runtime,
    ScoreCam,
    TopK,
)
from scorecam_onnx.bundle import open_model
from scorecam_onnx.cli import main
from scorecam_onnx.request import request_from
from scorecam_onnx.runners.remote import ModelUrl, RemoteError, RemoteRunner
from scorecam_onnx.triton import write_repository

pytestmark = pytest.mark.triton

MAX_BATCH = 16


def _repository(root, tiny_bundle=None, masked=False):
    write_repository(DEFAULT_BUNDLE, root, "classifier", max_batch=MAX_BATCH, masked=masked)
    if tiny_bundle is not None:
        write_repository(tiny_bundle, root, "tiny", max_batch=4)
    return root


@pytest.fixture(scope="module")
def grey_bundle(tmp_path_factory):
    """A 1-channel model that applies each DICOM file's window."""
    return dicom_files.grey_bundle(tmp_path_factory.mktemp("g") / "g")


@pytest.fixture(scope="module")
def triton(tmp_path_factory, grey_bundle):
    require_triton()
    root = _repository(tmp_path_factory.mktemp("repo"), masked=True)
    write_repository(grey_bundle, root, "grey", max_batch=8)
    server = Triton(root)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def local():
    return Explainer(DEFAULT_BUNDLE, Runtime(provider="cpu"))


def test_urls():
    assert ModelUrl.parse("grpcs://h:8001/v2/models/m/versions/3") == ModelUrl(
        "grpc", True, "h:8001", "m", "3"
    )
    assert ModelUrl.parse("http://h:8000/v2/models/m").version == ""
    for bad in (
        "ftp://h/v2/models/m",
        "http://h:1/v1/models/m",
        "grpc://h/v2/models/m",
        "http://h:1/v2/models/m/extra",
    ):
        with pytest.raises(RemoteError, match="model URL"):
            ModelUrl.parse(bad)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("method", ["scorecam", "faster-scorecam", "reciprocam"])
def test_maps_through_triton_equal_the_in_process_maps(triton, local, protocol, method):
    remote = Explainer(
        DEFAULT_BUNDLE, Runtime(provider="cpu", model_url=triton.url("classifier", protocol))
    )
    assert remote.forwards.model.max_batch == MAX_BATCH and remote.batch_size == 64
    got = remote.explain(SAMPLES / "chelsea.png", TopK(3), method)
    want = local.explain(SAMPLES / "chelsea.png", TopK(3), method)
    assert [g.class_id for g in got] == [w.class_id for w in want]
    for g, w in zip(got, want, strict=True):
        assert float(np.abs(g.saliency - w.saliency).max()) <= 1e-5
        assert g.forwards == w.forwards and g.score == pytest.approx(w.score, abs=1e-6)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_dicom_frame_on_a_grey_model_with_its_forwards_remote(
    triton, grey_bundle, protocol, tmp_path
):
    frames = np.random.default_rng(6).integers(0, 4096, (2, 16, 24))
    write_dicom(tmp_path / "m.dcm", frames, WindowCenter=2000.0, WindowWidth=1500.0)
    remote = Explainer(grey_bundle, Runtime(provider="cpu", model_url=triton.url("grey", protocol)))
    local = Explainer(grey_bundle, Runtime(provider="cpu"))
    options = ExplainOptions(frame=1)
    [got] = remote.explain(tmp_path / "m.dcm", options=options)
    [want] = local.explain(tmp_path / "m.dcm", options=options)
    assert got.provider == "remote" and got.class_id == want.class_id
    assert float(np.abs(got.saliency - want.saliency).max()) <= 1e-5


def test_batches_are_split_to_the_servers_maximum(triton):
    stats_before = _executions(triton)
    runner = RemoteRunner(triton.url("classifier"), in_flight=3)
    x = np.random.default_rng(0).standard_normal((40, 3, 224, 224)).astype(np.float32)
    (out,) = runner.run(["logits"], {"input": x})
    local = Explainer(DEFAULT_BUNDLE, Runtime(provider="cpu"))
    np.testing.assert_allclose(out, local.forwards.scores(x), atol=1e-4)
    # 40 inputs in pieces of 16, 16 and 8 (none can join another within 16): 3 executions
    inferences, executions = (a - b for a, b in zip(_executions(triton), stats_before, strict=True))
    assert (inferences, executions) == (40, 3)
    assert runner.sent_bytes == x.nbytes


def _executions(triton) -> tuple[int, int]:
    stats = httpx.get(f"{triton.http}/v2/models/classifier/stats").json()["model_stats"][0]
    return int(stats["inference_count"]), int(stats["execution_count"])


def test_a_model_that_does_not_match_the_bundle_is_one_line(tmp_path, tiny_bundle):
    require_triton()
    server = Triton(_repository(tmp_path / "repo", tiny_bundle))
    try:
        with pytest.raises(
            BundleError,
            match=r"input 'input' has shape N×3×8×8, but the "
            r"manifest says N×3×224×224",
        ):
            Explainer(DEFAULT_BUNDLE, Runtime(provider="cpu", model_url=server.url("tiny")))
        with pytest.raises(RemoteError, match="the model 'absent' is not ready"):
            Explainer(DEFAULT_BUNDLE, Runtime(provider="cpu", model_url=server.url("absent")))
    finally:
        server.stop()


def test_an_unreachable_server_is_one_line_and_exit_1(tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "explain",
            str(SAMPLES / "chelsea.png"),
            "--out",
            str(tmp_path / "out"),
            "--model-url",
            "http://127.0.0.1:9/v2/models/classifier",
            "-q",
        ],
    )
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "Error: http://127.0.0.1:9/v2/models/classifier: the server does not answer"
    ), lines
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_server_that_dies_mid_run_fails_each_image_and_writes_nothing(tmp_path):
    require_triton()
    server = Triton(_repository(tmp_path / "repo"))
    try:
        explainer = Explainer(
            DEFAULT_BUNDLE,
            Runtime(provider="cpu", model_url=server.url("classifier"), remote_timeout=10),
        )
        explainer.explain(SAMPLES / "coffee.png", method="faster-scorecam")  # works
    finally:
        server.stop()
    from scorecam_onnx.batch import ExplainJob, explain_files

    job = ExplainJob(
        inputs=[str(SAMPLES)], out=tmp_path / "out", request=request_from(method="faster-scorecam")
    )
    results, problems = explain_files(explainer, job)
    assert not problems and len(results) == 2
    for item in results:
        assert item.error.startswith(f"{server.url('classifier')}: could not run a forward"), (
            item.error
        )
        assert "\n" not in item.error
    assert not list((tmp_path / "out").glob("*.png")) and not list(
        (tmp_path / "out").glob("*.json")
    )


def test_serve_answers_502_when_the_predictor_is_gone(tmp_path):
    from serving import Server

    require_triton()
    triton = Triton(_repository(tmp_path / "repo"))
    server = Server(
        "--model", f"lite0={DEFAULT_BUNDLE}@{triton.url('classifier')}", "--remote-timeout", "10"
    )
    try:
        image = (SAMPLES / "chelsea.png").read_bytes()
        ok = server.client.post("/explain?model=lite0&method=faster-scorecam", content=image)
        assert ok.status_code == 200, ok.text
        local = Explainer(DEFAULT_BUNDLE, Runtime(provider="cpu")).explain_one(
            SAMPLES / "chelsea.png", method="faster-scorecam"
        )
        assert json.loads(ok.text)["class_id"] == local.class_id
        triton.stop()
        gone = server.client.post("/explain?model=lite0&method=faster-scorecam", content=image)
        assert gone.status_code == 502
        assert gone.json()["error"].startswith(f"{triton.url('classifier')}: could not run")
        assert server.client.get("/v2/health/live").status_code == 200
    finally:
        server.stop()
        triton.stop()


def test_explain_command_with_model_url(triton, local, tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "explain",
            str(SAMPLES / "chelsea.png"),
            "--out",
            str(tmp_path),
            "--method",
            "faster-scorecam",
            "-q",
            "--model-url",
            triton.url("classifier", "grpc"),
        ],
    )
    assert result.exit_code == 0, result.output
    want = local.explain_one(SAMPLES / "chelsea.png", method="faster-scorecam").saliency
    assert float(np.abs(np.load(tmp_path / "chelsea.npy") - want).max()) <= 1e-5
    summary = json.loads((tmp_path / "chelsea.json").read_text())
    assert summary["provider"] == "remote"


def test_rise_on_a_plain_model_with_every_forward_remote(triton):
    """A model-only bundle whose forwards all go to Triton: nothing runs in process."""
    model = DEFAULT_BUNDLE / "model.onnx"
    prep = Preprocessing(mean=(0.5,) * 3, std=(0.5,) * 3)
    remote = Explainer(open_model(model, prep), Runtime(model_url=triton.url("classifier", "grpc")))
    local = Explainer(open_model(model, prep), Runtime(provider="cpu"))
    assert remote.forwards.features is None and remote.provider == "remote"
    got = remote.explain_one(SAMPLES / "chelsea.png", method=Rise(samples=96))
    want = local.explain_one(SAMPLES / "chelsea.png", method=Rise(samples=96))
    assert got.class_id == want.class_id and got.forwards == want.forwards == 97
    assert float(np.abs(got.saliency - want.saliency).max()) <= 1e-5


@pytest.mark.parametrize(
    ("model", "preset", "maps_sent"),
    [
        ("classifier-masked", "paper", True),  # half-pixel: the maps go
        ("classifier-masked-aligned", "pytorch-grad-cam", True),
        ("classifier-masked", "pytorch-grad-cam", False),  # the other convention: images go
    ],
)
def test_a_served_masked_scorer_gives_the_same_maps_for_a_fraction_of_the_bytes(
    triton, local, model, preset, maps_sent
):
    through = Explainer(
        DEFAULT_BUNDLE, Runtime(provider="cpu", model_url=triton.url(model, "grpc"))
    )
    classifier = Explainer(
        DEFAULT_BUNDLE, Runtime(provider="cpu", model_url=triton.url("classifier", "grpc"))
    )
    got = through.explain(SAMPLES / "coffee.png", TopK(2), ScoreCam(preset=preset))
    want = local.explain(SAMPLES / "coffee.png", TopK(2), ScoreCam(preset=preset))
    for g, w in zip(got, want, strict=True):
        assert g.class_id == w.class_id
        assert float(np.abs(g.saliency - w.saliency).max()) <= 1e-5
    classifier.explain(SAMPLES / "coffee.png", TopK(2), ScoreCam(preset=preset))
    ratio = through.forwards.model.runner.sent_bytes / classifier.forwards.model.sent_bytes
    # maps: one image and 7×7 floats per mask, against 3×224×224 floats per mask
    assert (ratio <= 0.01) == maps_sent, ratio


def test_transient_failures_are_retried_with_bounded_backoff(triton):
    """The retry policy on tritonclient's own exceptions: UNAVAILABLE and 503 are retried
    (three more tries), anything else fails at once with one line."""
    from tritonclient.utils import InferenceServerException

    runner = RemoteRunner(triton.url("classifier"), retries=3)
    calls = []

    def flaky(failures: int, status: str):
        def call():
            calls.append(1)
            if len(calls) <= failures:
                raise InferenceServerException("try later", status=status)
            return "answer"

        return call

    assert runner._call(flaky(2, "StatusCode.UNAVAILABLE"), "run a forward") == "answer"
    assert len(calls) == 3
    calls.clear()
    with pytest.raises(RemoteError, match="could not run a forward: .*try later"):
        runner._call(flaky(9, "503"), "run a forward")
    assert len(calls) == 4  # one try and three retries
    calls.clear()
    with pytest.raises(RemoteError, match="could not run a forward"):
        runner._call(flaky(9, "StatusCode.INVALID_ARGUMENT"), "run a forward")
    assert len(calls) == 1


@pytest.mark.serve
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_our_own_service_as_the_predictor(local, protocol):
    """`serve --classifiers` serves the bundle's classifier as a V2 tensor model; another
    explainer's forwards through it (HTTP and gRPC) give the in-process maps."""
    from serving import Server

    server = Server("--classifiers", "--grpc-port", "0", "-q", "--max-body-mb", "100")
    try:
        line = server.process.stdout.readline()
        grpc_address = line.split()[-1]
        base = server.url.rstrip("/") if protocol == "http" else f"grpc://{grpc_address}"
        remote = Explainer(
            DEFAULT_BUNDLE,
            Runtime(provider="cpu", model_url=f"{base}/v2/models/efficientnet-lite0-classifier"),
        )
        model = remote.forwards.model
        assert model.max_batch == 0 and model.input_names == ["input"]
        for method in ("faster-scorecam", "reciprocam"):
            got = remote.explain(SAMPLES / "chelsea.png", TopK(2), method)
            want = local.explain(SAMPLES / "chelsea.png", TopK(2), method)
            for g, w in zip(got, want, strict=True):
                assert g.class_id == w.class_id
                assert float(np.abs(g.saliency - w.saliency).max()) <= 1e-5
        bad = httpx.post(
            f"{server.url}v2/models/efficientnet-lite0-classifier/infer",
            json={
                "inputs": [
                    {"name": "input", "datatype": "FP32", "shape": [1, 3, 2, 2], "data": [0.0] * 12}
                ]
            },
        )
        assert bad.status_code == 400 and "must have shape [N, 3, 224, 224]" in bad.json()["error"]
    finally:
        server.stop()
