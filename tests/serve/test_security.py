"""The service on a real network: API keys (HTTP and gRPC), TLS with a certificate made here,
CORS, and offline API docs; each against a real server process on a loopback port."""

from __future__ import annotations

import re
import signal
import ssl
import subprocess
import time

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from builders import tiny_model
from conftest import SAMPLES, TINY_PREP
from serving import Server
from tritonclient.utils import InferenceServerException

from scorecam_onnx import write_bundle

pytestmark = pytest.mark.serve

CHELSEA = (SAMPLES / "chelsea.png").read_bytes()
GIVEN, FROM_FILE, FROM_ENV = "key-given-Zq81", "key-file-Kp02", "key-env-Xr55"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("security")
    return write_bundle(tiny_model(), folder / "tiny", "feat", preprocessing=TINY_PREP)


@pytest.fixture(scope="module")
def keyed(tiny, tmp_path_factory):
    keys = tmp_path_factory.mktemp("keys") / "keys.txt"
    keys.write_text(f"# one key per line\n{FROM_FILE}\n\n")
    server = Server(
        "--model",
        f"tiny={tiny.path}",
        "--api-key",
        GIVEN,
        "--api-key-file",
        str(keys),
        "--grpc-port",
        "0",
        env={"SCORECAM_API_KEYS": f" {FROM_ENV} ,"},
    )
    server.keys = keys
    yield server
    server.stop()


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _grpc_port(server) -> int:
    """The gRPC port the server printed after its HTTP banner."""
    if not any(x.startswith("gRPC on") for x in server.banner):
        server.banner.append(server.process.stdout.readline().strip())
    line = next(x for x in server.banner if x.startswith("gRPC on"))
    return int(line.rsplit(":", 1)[1])


def test_every_route_but_health_and_the_page_needs_a_key(keyed):
    client = keyed.client
    for path in ("/v2/health/live", "/v2/health/ready", "/"):
        assert client.get(path).status_code == 200
    for method, path, body in [
        ("GET", "/v1/models", None),
        ("GET", "/v2/models/tiny", None),
        ("GET", "/metrics", None),
        ("POST", "/explain", CHELSEA),
        ("POST", "/v1/models/tiny:predict", b"{}"),
    ]:
        refused = client.request(method, path, content=body)
        assert refused.status_code == 401, path
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert "needs an API key" in refused.json()["error"]
        wrong = client.request(method, path, content=body, headers=_bearer("guess"))
        assert wrong.status_code == 401 and wrong.json() == {"error": "the API key is not accepted"}
    for key in (GIVEN, FROM_FILE, FROM_ENV):
        assert client.get("/v1/models", headers=_bearer(key)).status_code == 200
    assert client.get("/v1/models", headers={"Authorization": f"Basic {GIVEN}"}).status_code == 401
    log = keyed.stderr()
    assert all(k not in log for k in (GIVEN, FROM_FILE, FROM_ENV, "guess"))


def test_tritonclient_carries_the_key_in_its_headers(keyed):
    url = keyed.url.removeprefix("http://").rstrip("/")
    client = httpclient.InferenceServerClient(url)
    image = httpclient.InferInput("image", [1], "BYTES")
    image.set_data_from_numpy(np.array([CHELSEA], dtype=object))
    with pytest.raises(InferenceServerException, match="needs an API key"):
        client.infer("tiny", [image])
    result = client.infer(
        "tiny",
        [image],
        headers=_bearer(GIVEN),
        outputs=[httpclient.InferRequestedOutput("class_id")],
    )
    assert result.as_numpy("class_id").shape == (1, 1)
    client.close()

    channel = grpcclient.InferenceServerClient(f"127.0.0.1:{_grpc_port(keyed)}")
    assert channel.is_server_live()  # open, as the health routes
    item = grpcclient.InferInput("image", [1], "BYTES")
    item.set_data_from_numpy(np.array([CHELSEA], dtype=object))
    with pytest.raises(InferenceServerException) as refused:
        channel.infer("tiny", [item])
    assert refused.value.status() == str(grpc.StatusCode.UNAUTHENTICATED)
    answer = channel.infer(
        "tiny",
        [item],
        headers={"authorization": f"Bearer {FROM_ENV}"},
        outputs=[grpcclient.InferRequestedOutput("class_id")],
    )
    assert answer.as_numpy("class_id").shape == (1, 1)
    channel.close()


def test_the_key_file_is_read_again_on_sighup(keyed):
    client = keyed.client
    keyed.keys.write_text("key-rotated-Wd17\n")
    keyed.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while client.get("/v1/models", headers=_bearer("key-rotated-Wd17")).status_code != 200:
        assert time.monotonic() < deadline, "the new key was never accepted"
        time.sleep(0.1)
    assert client.get("/v1/models", headers=_bearer(FROM_FILE)).status_code == 401
    assert client.get("/v1/models", headers=_bearer(GIVEN)).status_code == 200
    keyed.keys.write_text(f"{FROM_FILE}\n")
    keyed.process.send_signal(signal.SIGHUP)


def test_health_can_be_protected_and_an_open_host_warns(tiny):
    server = Server("--model", f"tiny={tiny.path}", "--api-key", GIVEN, "--protect-health")
    try:
        assert server.client.get("/v2/health/ready").status_code == 401
        assert server.client.get("/v2/health/ready", headers=_bearer(GIVEN)).status_code == 200
    finally:
        server.stop()
    server = Server("--model", f"tiny={tiny.path}", "--host", "0.0.0.0")
    try:
        warnings = [line for line in server.stderr().splitlines() if "warning" in line]
        assert len(warnings) == 1 and "no API key" in warnings[0]
    finally:
        server.stop()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_tls_on_http_and_grpc(tiny, certificate):
    cert, key = certificate
    server = Server(
        "--model",
        f"tiny={tiny.path}",
        "--ssl-certfile",
        str(cert),
        "--ssl-keyfile",
        str(key),
        "--grpc-port",
        "0",
        verify=ssl.create_default_context(cafile=str(cert)),
    )
    try:
        assert server.url.startswith("https://127.0.0.1:")
        assert server.client.get("/v2/health/ready").status_code == 200
        with pytest.raises(httpx.ConnectError):  # the certificate is checked
            httpx.get(f"{server.url}v2/health/ready", verify=True)
        plain = server.url.replace("https://", "http://")
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{plain}v2/health/ready", timeout=5).raise_for_status()

        import gevent.ssl

        url = server.url.removeprefix("https://").rstrip("/")
        client = httpclient.InferenceServerClient(
            url,
            ssl=True,
            ssl_context_factory=lambda: gevent.ssl.create_default_context(cafile=str(cert)),
        )
        image = httpclient.InferInput("image", [1], "BYTES")
        image.set_data_from_numpy(np.array([CHELSEA], dtype=object))
        got = client.infer(
            "tiny", [image], outputs=[httpclient.InferRequestedOutput("probabilities")]
        ).as_numpy("probabilities")
        client.close()
        secure = grpcclient.InferenceServerClient(
            f"127.0.0.1:{_grpc_port(server)}", ssl=True, root_certificates=str(cert)
        )
        item = grpcclient.InferInput("image", [1], "BYTES")
        item.set_data_from_numpy(np.array([CHELSEA], dtype=object))
        again = secure.infer(
            "tiny", [item], outputs=[grpcclient.InferRequestedOutput("probabilities")]
        ).as_numpy("probabilities")
        secure.close()
        assert got.shape == (1, 4) and np.array_equal(got, again)
    finally:
        server.stop()


def test_cors_only_for_the_origins_named(tiny):
    preflight = {
        "Origin": "https://app.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    server = Server(
        "--model", f"tiny={tiny.path}", "--cors-origin", "https://app.example", "--api-key", GIVEN
    )
    try:
        answer = server.client.options("/explain", headers=preflight)
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == "https://app.example"
        assert "authorization" in answer.headers["access-control-allow-headers"].lower()
        refused = server.client.get("/v1/models", headers={"Origin": "https://app.example"})
        assert refused.status_code == 401  # the browser can read why
        assert refused.headers["access-control-allow-origin"] == "https://app.example"
        other = server.client.options(
            "/explain", headers={**preflight, "Origin": "https://evil.example"}
        )
        assert "access-control-allow-origin" not in other.headers
    finally:
        server.stop()
    server = Server("--model", f"tiny={tiny.path}")
    try:
        answer = server.client.options("/explain", headers=preflight)
        assert "access-control-allow-origin" not in answer.headers
    finally:
        server.stop()


def test_the_api_docs_name_no_outside_host(keyed):
    """Open without a key like the page (they hold no data); the schema names the bearer
    scheme, so that the docs' Authorize button takes a key."""
    page = keyed.client.get("/docs")
    assert page.status_code == 200
    assert re.findall(r"https?://[^\s\"'<>]+", page.text) == []
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets)
    for asset in assets:
        fetched = keyed.client.get(httpx.URL(keyed.url).join(asset))
        assert fetched.status_code == 200 and len(fetched.content) > 100, asset
    schema = keyed.client.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}


def test_idle_and_slow_connections_do_not_starve_health_or_requests(tiny):
    """200 connections left open (100 silent, 100 sending a request line a byte at a time)
    cost uvicorn's event loop nothing: health and a real prediction are still answered at
    once. Past --max-connections (uvicorn's limit_concurrency), a request gets 503."""
    import socket
    import threading

    server = Server("--model", f"tiny={tiny.path}", "--max-connections", "1000")
    host, port = server.url.split("/")[2].split(":")
    sockets, stop = [], threading.Event()
    try:
        for _ in range(200):
            sockets.append(socket.create_connection((host, int(port)), timeout=10))
        request = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n"

        def trickle() -> None:
            for i in range(len(request)):
                if stop.wait(1.0):
                    return
                for s in sockets[100:]:
                    s.send(request[i : i + 1])

        thread = threading.Thread(target=trickle, daemon=True)
        thread.start()
        time.sleep(2.5)
        started = time.monotonic()
        assert server.client.get("/v2/health/ready", timeout=5).status_code == 200
        body = {"instances": [{"b64": __import__("base64").b64encode(CHELSEA).decode()}]}
        answer = server.client.post("/v1/models/tiny:predict", json=body, timeout=10)
        assert answer.status_code == 200 and answer.json()["predictions"][0]["top"]
        assert time.monotonic() - started < 5
    finally:
        stop.set()
        for s in sockets:
            s.close()
        server.stop()

    small = Server("--model", f"tiny={tiny.path}", "--max-connections", "20")
    host, port = small.url.split("/")[2].split(":")
    held = [socket.create_connection((host, int(port)), timeout=10) for _ in range(25)]
    try:
        time.sleep(0.5)
        answer = httpx.get(f"{small.url}v2/health/live", timeout=5)
        assert answer.status_code == 503
    finally:
        for s in held:
            s.close()
        small.stop()
