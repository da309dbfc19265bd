"""`serve` as KServe's explainer component: the controller's flags, the sample
InferenceService, and the explainer process computing through a real Triton predictor."""

from __future__ import annotations

import base64

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from conftest import DEFAULT_BUNDLE, ROOT, SAMPLES
from serving import Server
from triton_server import Triton, require_triton

from scorecam_onnx import Explainer, Runtime
from scorecam_onnx.cli import main
from scorecam_onnx.cli.kserve import KServeFlags
from scorecam_onnx.cli.serve import serve
from scorecam_onnx.triton import write_repository

pytestmark = [pytest.mark.serve, pytest.mark.triton]

SAMPLE = ROOT / "deploy" / "kserve" / "inferenceservice.yaml"


def test_predictor_urls():
    flags = KServeFlags("lite0", "lite0-predictor.default", 8080, "v2")
    assert flags.predictor_url() == "http://lite0-predictor.default:80/v2/models/lite0"
    assert KServeFlags("m", "h:9000", None, "grpc-v2", True).predictor_url() == (
        "grpcs://h:9000/v2/models/m"
    )


def test_v1_and_missing_flags_are_usage_errors():
    result = CliRunner().invoke(main, ["serve", "--model_name", "m", "--predictor_host", "h"])
    assert result.exit_code == 2 and "--predictor_protocol v1 cannot carry" in result.output
    result = CliRunner().invoke(main, ["serve", "--model_name", "m", "--predictor_protocol", "v2"])
    assert result.exit_code == 2 and "give both --model_name and --predictor_host" in (
        result.output
    )


def test_the_sample_inference_service_parses_and_its_arguments_are_ours():
    spec = yaml.safe_load(SAMPLE.read_text())
    assert (spec["apiVersion"], spec["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    name = spec["metadata"]["name"]
    assert "triton" in spec["spec"]["predictor"]
    (container,) = spec["spec"]["explainer"]["containers"]
    assert container["command"] == ["scorecam-onnx"]
    args = container["args"]
    assert args[0] == "serve"
    appended = [
        "--model_name",
        name,
        "--predictor_host",
        f"{name}-predictor.default",
        "--http_port",
        "8080",
    ]
    ctx = serve.make_context("serve", [*args[1:], *appended])
    kserve = KServeFlags(
        ctx.params["model_name"],
        ctx.params["predictor_host"],
        ctx.params["http_port"],
        ctx.params["predictor_protocol"],
        ctx.params["predictor_use_ssl"],
    )
    assert kserve.predictor_url() == (f"http://{name}-predictor.default:80/v2/models/{name}")
    assert ctx.params["models"] == {"bundle": "/bundle"}


@pytest.fixture(scope="module")
def triton(tmp_path_factory):
    require_triton()
    root = tmp_path_factory.mktemp("repo")
    write_repository(DEFAULT_BUNDLE, root, "lite0", max_batch=32)
    server = Triton(root)
    yield server
    server.stop()


@pytest.mark.parametrize("protocol", ["v2", "grpc-v2"])
def test_the_explainer_computes_through_the_predictor(triton, protocol):
    port = triton.http_port if protocol == "v2" else triton.grpc_port
    server = Server(
        "--model",
        str(DEFAULT_BUNDLE),
        "--host",
        "127.0.0.1",
        "--model_name",
        "lite0",
        "--predictor_host",
        f"127.0.0.1:{port}",
        "--http_port",
        "0",
        "--predictor_protocol",
        protocol,
    )
    try:
        scheme = "http" if protocol == "v2" else "grpc"
        url = f"{scheme}://127.0.0.1:{port}/v2/models/lite0"
        assert any(
            f"model lite0: {DEFAULT_BUNDLE} (forwards on {url})" in line for line in server.banner
        ), server.banner
        image = base64.b64encode((SAMPLES / "chelsea.png").read_bytes()).decode()
        reply = server.client.post(
            "/v1/models/lite0:explain",
            json={"instances": [{"b64": image}], "parameters": {"method": "faster-scorecam"}},
        )
        assert reply.status_code == 200, reply.text
        (explanation,) = reply.json()["explanations"]
        saliency = np.frombuffer(base64.b64decode(explanation["saliency"]["b64"]), np.float32)
        want = Explainer(DEFAULT_BUNDLE, Runtime(provider="cpu")).explain_one(
            SAMPLES / "chelsea.png", method="faster-scorecam"
        )
        assert explanation["class_id"] == want.class_id
        assert float(np.abs(saliency.reshape(want.saliency.shape) - want.saliency).max()) <= 1e-5
    finally:
        server.stop()
