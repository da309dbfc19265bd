"""`serve --grpc-port`: the Open Inference Protocol over gRPC, driven with the stock
`tritonclient.grpc` against a real server process: maps equal the in-process ones, the bad
requests of HTTP get the right status codes, and a cancelled call stops its work."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from conftest import DEFAULT_BUNDLE, SAMPLES
from serving import Server
from tritonclient.utils import InferenceServerException

from scorecam_onnx import Explainer, Runtime, TopK

pytestmark = pytest.mark.serve

MODEL = "efficientnet-lite0"
CHELSEA = (SAMPLES / "chelsea.png").read_bytes()


def _grpc_server(*args: str) -> tuple[Server, grpcclient.InferenceServerClient]:
    server = Server("--grpc-port", "0", *args)
    line = server.process.stdout.readline()
    assert line.startswith("gRPC on 127.0.0.1:"), line
    server.banner.append(line.strip())
    return server, grpcclient.InferenceServerClient(line.split()[-1])


@pytest.fixture(scope="module")
def served():
    server, client = _grpc_server("--max-queue", "1")
    yield server, client
    client.close()
    server.stop()


@pytest.fixture(scope="module")
def local():
    return Explainer(DEFAULT_BUNDLE, Runtime(provider="cpu"))


def _image(*data: bytes) -> grpcclient.InferInput:
    """Input `image`: BYTES [N], the encoded files (default: the cat)."""
    files = data or (CHELSEA,)
    item = grpcclient.InferInput("image", [len(files)], "BYTES")
    item.set_data_from_numpy(np.array(files, dtype=object))
    return item


def _outputs(*names: str) -> list[grpcclient.InferRequestedOutput]:
    return [grpcclient.InferRequestedOutput(n) for n in names]


def test_health_and_metadata(served):
    _, client = served
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(MODEL)
    assert not client.is_model_ready("nope")
    meta = client.get_model_metadata(MODEL, as_json=True)
    assert [i["name"] for i in meta["inputs"]] == ["image"]
    assert [o["name"] for o in meta["outputs"]] == [
        "probabilities",
        "class_id",
        "score",
        "saliency",
    ]


@pytest.mark.parametrize("method", ["faster-scorecam", "reciprocam"])
def test_maps_equal_the_in_process_maps(served, local, method):
    _, client = served
    result = client.infer(
        MODEL,
        [_image()],
        outputs=_outputs("saliency", "class_id", "score"),
        parameters={"method": method, "top_k": 2},
    )
    want = local.explain(SAMPLES / "chelsea.png", TopK(2), method)
    assert result.as_numpy("class_id").tolist() == [[w.class_id for w in want]]
    saliency = result.as_numpy("saliency")
    assert saliency.shape == (1, 2, 224, 224)
    for i, w in enumerate(want):
        assert float(np.abs(saliency[0, i] - w.saliency_input).max()) <= 1e-5
    np.testing.assert_allclose(result.as_numpy("score")[0], [w.score for w in want], atol=1e-6)


def test_probabilities_alone_run_no_masked_forward(served, local):
    server, client = served
    before = server.metric("scorecam_forwards_total", model=MODEL)
    coffee = (SAMPLES / "coffee.png").read_bytes()
    result = client.infer(MODEL, [_image(CHELSEA, coffee)], outputs=_outputs("probabilities"))
    assert result.as_numpy("probabilities").shape == (2, 1000)
    x = local.preprocess(SAMPLES / "chelsea.png")[1]
    np.testing.assert_allclose(
        result.as_numpy("probabilities")[0], local.forwards.probabilities(x)[0], atol=1e-6
    )
    assert server.metric("scorecam_forwards_total", model=MODEL) - before == 2


@pytest.mark.parametrize(
    ("call", "code", "message"),
    [
        (lambda c: c.infer("nope", [_image()]), "StatusCode.NOT_FOUND", "unknown model 'nope'"),
        (
            lambda c: c.infer(MODEL, [_image()], parameters={"method": "gradcam"}),
            "StatusCode.INVALID_ARGUMENT",
            "method: unknown value 'gradcam'",
        ),
        (
            lambda c: c.infer(MODEL, [_image()], parameters={"top_k": 0}),
            "StatusCode.INVALID_ARGUMENT",
            "top_k",
        ),
        (
            lambda c: c.infer(MODEL, [_image(b"not an image")], outputs=_outputs("probabilities")),
            "StatusCode.INVALID_ARGUMENT",
            "image 0: not an image OpenCV can decode",
        ),
        (
            lambda c: c.infer(MODEL, [_image()], outputs=_outputs("heatmap")),
            "StatusCode.INVALID_ARGUMENT",
            "unknown output 'heatmap'",
        ),
        (
            lambda c: c.infer(MODEL, [grpcclient.InferInput("pixels", [1], "BYTES")]),
            "StatusCode.INVALID_ARGUMENT",
            "expected one input named 'image'",
        ),
    ],
)
def test_bad_requests_get_status_codes_and_one_line(served, call, code, message):
    _, client = served
    with pytest.raises(InferenceServerException) as err:
        call(client)
    assert str(err.value.status()) == code
    assert message in err.value.message() and "\n" not in err.value.message()


def test_a_cancelled_call_stops_its_work(served, local):
    server, client = served
    before = server.settled(MODEL)
    full = local.explain_one(SAMPLES / "chelsea.png", method="scorecam").forwards  # SS-CAM: 35×
    with pytest.raises(InferenceServerException) as err:
        client.infer(
            MODEL,
            [_image()],
            outputs=_outputs("saliency"),
            parameters={"method": "sscam"},
            client_timeout=0.8,
        )
    assert str(err.value.status()) == "StatusCode.DEADLINE_EXCEEDED"
    after = server.settled(MODEL)
    assert 0 < after - before < full, "work went on after the call was cancelled"


def test_a_full_queue_is_resource_exhausted(served):
    server, client = served
    server.settled(MODEL)
    codes: list[str] = []

    def explain() -> None:
        try:
            client.infer(
                MODEL, [_image()], outputs=_outputs("saliency"), parameters={"method": "scorecam"}
            )
            codes.append("OK")
        except InferenceServerException as exc:
            codes.append(str(exc.status()))

    workers = [threading.Thread(target=explain) for _ in range(3)]
    for w in workers:
        w.start()
        time.sleep(0.3)
    for w in workers:
        w.join(120)
    assert sorted(codes) == ["OK", "OK", "StatusCode.RESOURCE_EXHAUSTED"], codes


def test_the_request_timeout_is_deadline_exceeded():
    server, client = _grpc_server("--timeout", "0.5")
    try:
        with pytest.raises(InferenceServerException) as err:
            client.infer(
                MODEL, [_image()], outputs=_outputs("saliency"), parameters={"method": "scorecam"}
            )
        assert str(err.value.status()) == "StatusCode.DEADLINE_EXCEEDED"
        assert "timed out" in err.value.message()
    finally:
        client.close()
        server.stop()
