"""The explainer inside a real Seldon MLServer (`mlserver start` on a folder written by
`scorecam-onnx mlserver`), over its REST API (JSON, base64 images) and gRPC (tritonclient,
raw bytes), its forwards in process and sent to the bundle's model that the same MLServer
serves. The oracle is the in-process `Explainer` on the same bundle and image bytes."""

from __future__ import annotations

import base64
import shutil

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from click.testing import CliRunner
from conftest import DEFAULT_BUNDLE, SAMPLES
from mlserver_server import MLServer, free_port, require_mlserver
from tritonclient.utils import InferenceServerException

from scorecam_onnx import Explainer, Runtime, TopK, method_from
from scorecam_onnx.cli import main
from scorecam_onnx.mlserver import write_mlserver

pytestmark = pytest.mark.mlserver

CHELSEA = (SAMPLES / "chelsea.png").read_bytes()
CASES = [("scorecam", None), ("faster-scorecam", 2), ("reciprocam", None)]


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """MLServer A: the explainer `lite0` and the bundle's model `lite0-classifier`;
    MLServer B: the explainer `lite0r`, its forwards sent to A's classifier over HTTP (JSON:
    MLServer's REST API has no binary extension)."""
    require_mlserver()
    folder = tmp_path_factory.mktemp("mls") / "a"
    http = free_port()
    result = CliRunner().invoke(
        main,
        [
            "mlserver",
            str(DEFAULT_BUNDLE),
            "--out",
            str(folder),
            "--name",
            "lite0",
            "--http-port",
            str(http),
            "--grpc-port",
            str(free_port()),
        ],
    )
    assert result.exit_code == 0, result.output
    a = MLServer(folder, ["lite0", "lite0-classifier"])
    remote = tmp_path_factory.mktemp("mls") / "b"
    try:
        write_mlserver(
            DEFAULT_BUNDLE,
            remote,
            "lite0r",
            f"http://127.0.0.1:{http}/v2/models/lite0-classifier",
            http_port=free_port(),
            grpc_port=free_port(),
        )
        shutil.rmtree(remote / "lite0r-classifier")
        b = MLServer(remote, ["lite0r"])
    except BaseException:
        a.stop()
        raise
    yield {"lite0": a, "lite0r": b}
    b.stop()
    a.stop()


@pytest.fixture(scope="module")
def server(servers):
    return servers["lite0"]


@pytest.fixture(scope="module")
def local():
    return Explainer(DEFAULT_BUNDLE, Runtime(provider="cpu"))


def _want(local, method, top_k):
    return local.explain(CHELSEA, TopK(top_k or 1), method_from(method))


def _rest(server, model, **parameters):
    body = {
        "inputs": [
            {
                "name": "image",
                "datatype": "BYTES",
                "shape": [1],
                "data": [base64.b64encode(CHELSEA).decode()],
            }
        ],
        "parameters": parameters,
    }
    return httpx.post(f"{server.http}/v2/models/{model}/infer", json=body, timeout=300)


def _outputs(reply):
    return {o["name"]: np.asarray(o["data"]).reshape(o["shape"]) for o in reply.json()["outputs"]}


@pytest.mark.parametrize(("method", "top_k"), CASES)
@pytest.mark.parametrize("model", ["lite0", "lite0r"])
def test_rest_maps_equal_the_in_process_maps(servers, local, model, method, top_k):
    reply = _rest(servers[model], model, method=method, **({"top_k": top_k} if top_k else {}))
    assert reply.status_code == 200, reply.text
    got, want = _outputs(reply), _want(local, method, top_k)
    assert list(got["class_id"][0]) == [w.class_id for w in want]
    for j, w in enumerate(want):
        assert float(np.abs(got["saliency"][0, j] - w.saliency_input).max()) <= 1e-5
    probabilities = local.forwards.probabilities(local.preprocess(CHELSEA)[1])[0]
    assert np.allclose(got["probabilities"][0], probabilities, atol=1e-6)


def test_grpc_with_raw_bytes_equals_in_process(server, local):
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    try:
        image = grpcclient.InferInput("image", [1], "BYTES")
        image.set_data_from_numpy(np.array([CHELSEA], dtype=object))
        outputs = [grpcclient.InferRequestedOutput(n) for n in ("class_id", "saliency")]
        result = client.infer(
            "lite0", [image], outputs=outputs, parameters={"method": "faster-scorecam", "top_k": 2}
        )
        want = _want(local, "faster-scorecam", 2)
        assert list(result.as_numpy("class_id")[0]) == [w.class_id for w in want]
        for j, w in enumerate(want):
            assert float(np.abs(result.as_numpy("saliency")[0, j] - w.saliency_input).max()) <= 1e-5
        assert result.as_numpy("probabilities") is None  # only what was asked for
    finally:
        client.close()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"image": base64.b64encode(b"not an image").decode()}, "not an image OpenCV can decode"),
        ({"parameters": {"method": "gradcam"}}, "method: unknown value 'gradcam'"),
        ({"parameters": {"top_k": 50}}, "top_k: must be between 1 and 20, got 50"),
        ({"datatype": "FP32", "image": 1.5}, "image 0: expected encoded image bytes"),
    ],
)
def test_a_bad_request_is_one_line_and_the_next_one_succeeds(server, local, body, reason):
    item = {
        "name": "image",
        "datatype": body.get("datatype", "BYTES"),
        "shape": [1],
        "data": [body.get("image", base64.b64encode(CHELSEA).decode())],
    }
    reply = httpx.post(
        f"{server.http}/v2/models/lite0/infer",
        timeout=60,
        json={"inputs": [item], "parameters": body.get("parameters", {})},
    )
    assert reply.status_code == 400 and reason in reply.json()["error"]
    assert "\n" not in reply.json()["error"]
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    try:
        if "parameters" in body:
            image = grpcclient.InferInput("image", [1], "BYTES")
            image.set_data_from_numpy(np.array([CHELSEA], dtype=object))
            with pytest.raises(InferenceServerException) as caught:
                client.infer("lite0", [image], parameters=body["parameters"])
            assert "INVALID_ARGUMENT" in str(caught.value.status())
        assert client.is_model_ready("lite0")
    finally:
        client.close()
    good = _rest(server, "lite0", method="eigencam")
    assert good.status_code == 200, good.text


def test_a_dead_infer_uri_is_one_line_not_a_hang(tmp_path):
    folder = tmp_path / "dead"
    write_mlserver(
        DEFAULT_BUNDLE,
        folder,
        "dead",
        f"http://127.0.0.1:{free_port()}/v2/models/none",
        http_port=free_port(),
        grpc_port=free_port(),
    )
    with pytest.raises(RuntimeError) as caught:
        MLServer(folder, ["dead"], startup=90)
    said = str(caught.value)
    assert "mlserver exited" in said
    assert "does not answer" in said or "cannot connect" in said


def test_forwards_from_inside_mlserver_to_a_real_triton(tmp_path, local):
    """The explainer in MLServer, its forwards sent to the bundle's model served by Triton
    (over HTTP with Triton's binary tensor extension)."""
    from triton_server import Triton, require_triton

    from scorecam_onnx.triton import write_repository

    require_triton()
    write_repository(DEFAULT_BUNDLE, tmp_path / "repo", "classifier", max_batch=32)
    triton = Triton(tmp_path / "repo")
    try:
        folder = tmp_path / "mls"
        write_mlserver(
            DEFAULT_BUNDLE,
            folder,
            "viat",
            triton.url("classifier", "http"),
            http_port=free_port(),
            grpc_port=free_port(),
        )
        shutil.rmtree(folder / "viat-classifier")
        server = MLServer(folder, ["viat"])
        try:
            reply = _rest(server, "viat", method="faster-scorecam", top_k=2)
        finally:
            server.stop()
    finally:
        triton.stop()
    assert reply.status_code == 200, reply.text
    got, want = _outputs(reply), _want(local, "faster-scorecam", 2)
    assert list(got["class_id"][0]) == [w.class_id for w in want]
    for j, w in enumerate(want):
        assert float(np.abs(got["saliency"][0, j] - w.saliency_input).max()) <= 1e-5
