"""Malformed requests against a running server (Hypothesis, seeded so that CI sees the same
cases every run): V2 JSON and binary bodies, the V2 tensor model, V1 instances, multipart
uploads, query settings, nested JSON. Properties: never a 5xx, an answer well within the
request timeout, and after all of them the server's memory is bounded and a good request is
answered right. The worst cases found are kept below as a fixed corpus."""

from __future__ import annotations

import base64
import json
import struct
import time

import numpy as np
import pytest
from builders import tiny_model
from conftest import SAMPLES, TINY_PREP
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from serving import Server

from scorecam_onnx import Explainer, Runtime, write_bundle

pytestmark = pytest.mark.serve

PNG = (SAMPLES / "coffee.png").read_bytes()
B64 = base64.b64encode(PNG).decode()
TIMEOUT = 10.0  # the server's --timeout
CASES = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
answered: list[int] = []  # statuses seen, for the summary at the end


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    bundle = write_bundle(
        tiny_model(), tmp_path_factory.mktemp("fuzz") / "tiny", "feat", preprocessing=TINY_PREP
    )
    srv = Server(
        "--model",
        f"tiny={bundle.path}",
        "--classifiers",
        "--timeout",
        str(TIMEOUT),
        "--max-body-mb",
        "2",
        "-q",
    )
    srv.bundle = bundle
    yield srv
    srv.stop()


def _rss_mib(server) -> float:
    with open(f"/proc/{server.process.pid}/status") as handle:
        line = next(x for x in handle if x.startswith("VmRSS:"))
    return float(line.split()[1]) / 1024


def _send(server, path: str, **request) -> int:
    if "json" in request:  # NaN and Infinity sent as the literals Python reads back
        request["content"] = json.dumps(request.pop("json"), allow_nan=True).encode()
        request["headers"] = {"Content-Type": "application/json"}
    started = time.monotonic()
    reply = server.client.post(path, timeout=TIMEOUT + 20, **request)
    elapsed = time.monotonic() - started
    assert reply.status_code < 500, (path, reply.status_code, reply.text[:300])
    assert elapsed < TIMEOUT + 5, (path, elapsed)
    assert "error" in reply.json() if reply.status_code >= 400 else True
    answered.append(reply.status_code)
    return reply.status_code


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
DATATYPES = st.sampled_from(
    ["BYTES", "FP32", "FP16", "INT64", "UINT8", "BOOL", "bytes", "", "STRING"]
)
DIMS = st.lists(st.integers(-3, 2**62) | st.sampled_from([0, 1, 2, 192, 2**31]), max_size=5)


@CASES
@given(
    datatype=DATATYPES,
    shape=DIMS,
    size=st.integers(-5, 10**9) | st.none(),
    blob=st.binary(max_size=200),
    split=st.integers(-10, 400) | st.none(),
    prefix=st.integers(0, 2**32 - 1),
)
@example(
    datatype="BYTES",
    shape=[1],
    size=8,
    blob=struct.pack("<I", 10**6) + b"abcd",
    split=None,
    prefix=0,
)  # a length past the end
@example(datatype="BYTES", shape=[1], size=10**9, blob=b"ab", split=None, prefix=0)
@example(datatype="BYTES", shape=[2**62, 2**62], size=None, blob=b"", split=None, prefix=0)
@example(datatype="BYTES", shape=[1], size=8, blob=b"", split=999999, prefix=5)
def test_v2_binary_bodies(server, datatype, shape, size, blob, split, prefix):
    parameters = {} if size is None else {"binary_data_size": size}
    header = json.dumps(
        {
            "inputs": [
                {"name": "image", "datatype": datatype, "shape": shape, "parameters": parameters}
            ]
        }
    ).encode()
    body = header + struct.pack("<I", prefix) + blob
    length = len(header) if split is None else split
    _send(
        server,
        "/v2/models/tiny/infer",
        content=body,
        headers={"Inference-Header-Content-Length": str(length)},
    )


@CASES
@given(inputs=JSON, outputs=JSON, parameters=JSON)
@example(
    inputs=[{"name": "image", "datatype": "BYTES", "shape": [1], "data": [5]}],
    outputs=None,
    parameters=None,
)
@example(
    inputs=[{"name": "image", "datatype": "BYTES", "shape": [-1], "data": [B64]}],
    outputs=[{"name": "saliency", "parameters": {"binary_data": "yes"}}],
    parameters={"top_k": "x"},
)
def test_v2_json_bodies(server, inputs, outputs, parameters):
    body = {"inputs": inputs, "outputs": outputs, "parameters": parameters}
    _send(server, "/v2/models/tiny/infer", json=body)


@CASES
@given(shape=DIMS, data=JSON, datatype=DATATYPES)
@example(shape=[2**40, 3, 8, 8], data=[1.0], datatype="FP32")
@example(shape=[1, 3, 8, 8], data=["a"] * 192, datatype="FP32")
def test_v2_tensor_model(server, shape, data, datatype):
    body = {"inputs": [{"name": "input", "datatype": datatype, "shape": shape, "data": data}]}
    _send(server, "/v2/models/tiny-classifier/infer", json=body)


@CASES
@given(instances=JSON, parameters=JSON, route=st.sampled_from([":predict", ":explain"]))
@example(instances=[{"b64": 5}], parameters={"top_k": [1]}, route=":explain")
@example(instances=[{"b64": B64, "target": {"a": 1}}], parameters=None, route=":explain")
def test_v1_instances(server, instances, parameters, route):
    _send(
        server, f"/v1/models/tiny{route}", json={"instances": instances, "parameters": parameters}
    )


SETTINGS = st.sampled_from(
    [
        "method",
        "preset",
        "target",
        "top_k",
        "channels",
        "samples",
        "batch_size",
        "gaussian",
        "map_size",
        "model",
    ]
)


@CASES
@given(
    query=st.dictionaries(
        SETTINGS, st.text(max_size=12) | st.integers(-5, 10**30).map(str), max_size=4
    )
)
@example(query={"channels": "99999999999999999999"})
@example(query={"map_size": "65536", "batch_size": "1024"})
@example(query={"samples": "-1", "top_k": "1.5"})
def test_query_settings(server, query):
    _send(server, "/explain", params=query, content=PNG)


@CASES
@given(
    body=st.binary(max_size=300),
    boundary=st.text(
        alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=0, max_size=20
    ),
    field=st.sampled_from(["image", "file", ""]),
)
@example(body=b"abc", boundary="", field="image")
def test_multipart_uploads(server, body, boundary, field):
    form = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
            f'filename="a.png"\r\n\r\n'
        ).encode()
        + body
        + f"\r\n--{boundary}--".encode()
    )
    _send(
        server,
        "/explain",
        content=form,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100000 + b"]" * 100000,
        b'{"instances":' + b"[" * 50000 + b"]" * 50000 + b"}",
        b'{"a":' * 30000 + b"1" + b"}" * 30000,
        b'{"inputs": "' + b"x" * (3 * 2**20) + b'"}',
    ],
)
@pytest.mark.parametrize("path", ["/v2/models/tiny/infer", "/v1/models/tiny:predict"])
def test_nested_or_huge_json(server, body, path):
    status = _send(server, path, content=body)
    assert status in (400, 413)


def test_after_all_of_them_memory_is_bounded_and_a_good_request_is_right(server):
    """Runs last in this module: the cases above did not grow the server's memory past a
    bound, and it still answers correctly."""
    assert len(answered) > 200 and max(answered) < 500
    rss = _rss_mib(server)
    for _ in range(20):
        _send(server, "/v2/models/tiny/infer", content=b"[" * 1000 + b"]" * 1000)
    assert _rss_mib(server) - rss < 50
    assert rss < 1500
    want = Explainer(server.bundle, Runtime(provider="cpu")).explain_one(PNG)
    got = server.client.post("/explain", content=PNG).json()
    assert got["class_id"] == want.class_id
    saliency = np.frombuffer(base64.b64decode(got["saliency"]["b64"]), "<f4").reshape(
        got["saliency"]["shape"]
    )
    assert np.array_equal(saliency, want.saliency)
    statuses = {s: answered.count(s) for s in sorted(set(answered))}
    print(f"fuzzed requests: {len(answered)}, statuses: {statuses}")
