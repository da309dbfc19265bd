"""The explanation service, over real HTTP to a real server process on a loopback port."""

from __future__ import annotations

import base64
import json
import struct
import threading
import time
import zlib

import cv2
import httpx
import numpy as np
import pytest
from builders import save, tiny_model, webp_bomb
from conftest import DEFAULT_BUNDLE, SAMPLES, TINY_PREP
from dicom_files import grey_bundle, write_dicom
from serving import Server

from scorecam_onnx import (
    Explainer,
    ExplainOptions,
    FasterScoreCam,
    Rise,
    Runtime,
    ScoreCam,
    TopK,
    load_image,
    overlay,
    write_bundle,
)
from scorecam_onnx.render import encode_png

pytestmark = pytest.mark.serve

CHELSEA = (SAMPLES / "chelsea.png").read_bytes()
COFFEE = (SAMPLES / "coffee.png").read_bytes()
B64 = base64.b64encode(CHELSEA).decode()
MODEL = "efficientnet-lite0"


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    bundle = write_bundle(
        tiny_model(),
        tmp_path_factory.mktemp("serve") / "tiny",
        "feat",
        preprocessing=TINY_PREP,
        labels=[f"label{i}" for i in range(4)],
    )
    return bundle.path


@pytest.fixture(scope="module")
def grey_path(tmp_path_factory):
    """A 1-channel model that applies each DICOM file's window."""
    return grey_bundle(tmp_path_factory.mktemp("serve") / "grey").path


@pytest.fixture(scope="module")
def plain_path(tmp_path_factory):
    return save(tiny_model(), tmp_path_factory.mktemp("serve") / "plain.onnx")


@pytest.fixture(scope="module")
def server(tiny_path, plain_path, grey_path):
    srv = Server(
        "--model",
        f"{MODEL}={DEFAULT_BUNDLE}",
        "--model",
        f"tiny={tiny_path}",
        "--model",
        f"grey={grey_path}",
        "--model",
        str(plain_path),
    )
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def local(default_explainer):
    return default_explainer


def _saliency(payload: dict) -> np.ndarray:
    info = payload["saliency"]
    assert info["dtype"] == "float32"
    return np.frombuffer(base64.b64decode(info["b64"]), "<f4").reshape(info["shape"])


def _png_header(width: int, height: int) -> bytes:
    """The start of a PNG announcing width×height (a valid IHDR; nothing to decode behind)."""
    ihdr = b"IHDR" + struct.pack(">II", width, height) + b"\x08\x02\x00\x00\x00"
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", 13)
        + ihdr
        + struct.pack(">I", zlib.crc32(ihdr))
        + struct.pack(">I", 64)
        + b"IDAT"
        + b"\0" * 64
    )


# Listing, health, metadata ------------------------------------------------------------------
def test_v1_models_and_readiness(server):
    assert server.client.get("/v1/models").json() == {"models": [MODEL, "tiny", "grey", "plain"]}
    assert server.client.get(f"/v1/models/{MODEL}").json() == {"name": MODEL, "ready": True}
    missing = server.client.get("/v1/models/nope")
    assert missing.status_code == 404 and "unknown model 'nope'" in missing.json()["error"]


def test_v2_health_and_metadata(server, local):
    c = server.client
    assert c.get("/v2/health/live").status_code == 200
    assert c.get("/v2/health/ready").status_code == 200
    assert c.get(f"/v2/models/{MODEL}/ready").status_code == 200
    assert c.get(f"/v2/models/{MODEL}/versions/1/ready").status_code == 200
    assert c.get("/v2/models/nope/ready").status_code == 404
    server_meta = c.get("/v2").json()
    assert server_meta["name"] == "scorecam-onnx"
    assert "binary_tensor_data" in server_meta["extensions"]
    meta = c.get(f"/v2/models/{MODEL}").json()
    spec = local.bundle.manifest.input
    assert meta["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1]}]
    assert {o["name"]: (o["datatype"], o["shape"]) for o in meta["outputs"]} == {
        "probabilities": ("FP32", [-1, local.classes]),
        "class_id": ("INT64", [-1, -1]),
        "score": ("FP32", [-1, -1]),
        "saliency": ("FP32", [-1, -1, spec.height, spec.width]),
    }


def test_ops_endpoints(server):
    assert "scorecam_requests_total" in server.client.get("/metrics").text
    assert server.client.get("/docs").status_code == 200
    paths = server.client.get("/openapi.json").json()["paths"]
    assert "/v2/models/{name}/infer" in paths and "/v1/models/{name}:explain" in paths


# KServe V1 ------------------------------------------------------------------------------------
def test_v1_predict_matches_the_model(server, local):
    reply = server.client.post(
        f"/v1/models/{MODEL}:predict",
        json={"instances": [{"b64": B64}, {"b64": base64.b64encode(COFFEE).decode()}]},
    )
    assert reply.status_code == 200
    predictions = reply.json()["predictions"]
    for data, p in zip((CHELSEA, COFFEE), predictions, strict=True):
        probs = local.forwards.probabilities(local.preprocess(data)[1])[0]
        order = np.argsort(-probs)[:5]
        assert p["class_id"] == int(order[0])
        assert p["label"] == local.bundle.label(int(order[0]))
        assert [row[0] for row in p["top"]] == [int(i) for i in order]
        assert np.allclose([row[2] for row in p["top"]], probs[order], rtol=1e-6)
    assert predictions[0]["label"] == "Egyptian cat"


def test_v1_explain_maps_equal_in_process_maps(server, local):
    body = {
        "instances": [{"b64": B64}, {"image": {"b64": B64}, "target": [281, 285]}],
        "parameters": {"method": "faster-scorecam", "channels": 16},
    }
    reply = server.client.post(f"/v1/models/{MODEL}:explain", json=body)
    assert reply.status_code == 200, reply.text
    first, second = reply.json()["explanations"]
    want = local.explain_one(CHELSEA, method=FasterScoreCam(channels=16))
    assert first["class_id"] == want.class_id and first["forwards"] == want.forwards
    assert _saliency(first).tobytes() == want.saliency.tobytes()
    pair = local.explain(CHELSEA, [281, 285], FasterScoreCam(channels=16))
    assert [e["class_id"] for e in second] == [281, 285]
    for got, exp in zip(second, pair, strict=True):
        assert _saliency(got).tobytes() == exp.saliency.tobytes()
        assert got["score"] == pytest.approx(exp.score, rel=1e-9)


def test_a_plain_model_is_explained_with_rise_and_refuses_layer_methods(server, plain_path):
    image = np.random.default_rng(5).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    b64 = base64.b64encode(encode_png(image)).decode()
    body = {"instances": [{"b64": b64}], "parameters": {"method": "rise", "samples": 40}}
    reply = server.client.post("/v1/models/plain:explain", json=body)
    assert reply.status_code == 200, reply.text
    (got,) = reply.json()["explanations"]
    with pytest.warns(UserWarning, match="assumed mean"):
        local = Explainer(plain_path, Runtime(provider="cpu"))
    want = local.explain_one(image, method=Rise(samples=40))
    assert got["class_id"] == want.class_id and got["forwards"] == 41
    assert _saliency(got).tobytes() == want.saliency.tobytes()
    refused = server.client.post("/v1/models/plain:explain", json={"instances": [{"b64": b64}]})
    assert refused.status_code == 422
    assert (
        "needs a target layer" in refused.json()["error"]
        and "method rise" in (refused.json()["error"])
    )
    assert "assumed mean" in server.stderr()


def test_smoothing_and_layers_through_v1(server, tiny_path):
    image = np.random.default_rng(8).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    b64 = base64.b64encode(encode_png(image)).decode()
    params = {
        "preset": "pytorch-grad-cam",
        "aug_smooth": True,
        "eigen_smooth": "true",
        "layers": "feat",
        "fuse": "max",
    }
    reply = server.client.post(
        "/v1/models/tiny:explain", json={"instances": [{"b64": b64}], "parameters": params}
    )
    assert reply.status_code == 200, reply.text
    (got,) = reply.json()["explanations"]
    want = Explainer(tiny_path, Runtime(provider="cpu")).explain_one(
        image,
        method=ScoreCam(preset="pytorch-grad-cam"),
        options=ExplainOptions(aug_smooth=True, eigen_smooth=True, layers=("feat",), fuse="max"),
    )
    assert got["forwards"] == want.forwards
    assert _saliency(got).tobytes() == want.saliency.tobytes()


# Open Inference Protocol V2 ------------------------------------------------------------------
def test_v2_infer_json_outputs_equal_in_process(server, local):
    body = {
        "id": "r1",
        "parameters": {"method": "faster-scorecam", "channels": 8, "top_k": 2},
        "inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [B64]}],
    }
    reply = server.client.post(f"/v2/models/{MODEL}/infer", json=body)
    assert reply.status_code == 200, reply.text
    result = reply.json()
    assert result["model_name"] == MODEL and result["id"] == "r1"
    out = {o["name"]: o for o in result["outputs"]}
    exps = local.explain(CHELSEA, TopK(2), FasterScoreCam(channels=8))
    assert out["class_id"]["shape"] == [1, 2]
    assert out["class_id"]["data"] == [e.class_id for e in exps]
    assert out["score"]["data"] == pytest.approx([e.score for e in exps], rel=1e-6)
    saliency = np.asarray(out["saliency"]["data"], np.float32).reshape(out["saliency"]["shape"])
    assert saliency.shape == (1, 2, *exps[0].saliency_input.shape)
    for t, exp in enumerate(exps):
        assert saliency[0, t].tobytes() == exp.saliency_input.tobytes()
    probs = local.forwards.probabilities(local.preprocess(CHELSEA)[1])
    assert (
        np.asarray(out["probabilities"]["data"], np.float32).tobytes()
        == probs.astype(np.float32).tobytes()
    )


def test_v2_stock_client_binary_round_trip(server, local):
    from tritonclient import http as triton

    client = triton.InferenceServerClient(server.url.removeprefix("http://").rstrip("/"))
    assert client.is_server_live() and client.is_model_ready(MODEL)
    image = triton.InferInput("image", [2], "BYTES")
    image.set_data_from_numpy(np.array([CHELSEA, COFFEE], dtype=object), binary_data=True)
    outputs = [
        triton.InferRequestedOutput(n, binary_data=True) for n in ("class_id", "score", "saliency")
    ]
    result = client.infer(
        MODEL, [image], outputs=outputs, parameters={"method": "faster-scorecam", "channels": 8}
    )
    saliency = result.as_numpy("saliency")
    assert saliency.dtype == np.float32 and saliency.shape[:2] == (2, 1)
    for n, data in enumerate((CHELSEA, COFFEE)):
        exp = local.explain_one(data, method=FasterScoreCam(channels=8))
        assert result.as_numpy("class_id")[n, 0] == exp.class_id
        assert saliency[n, 0].tobytes() == exp.saliency_input.tobytes()
    client.close()


def test_v2_binary_output_on_request_parameter(server, tiny_path):
    local = Explainer(tiny_path, Runtime(provider="cpu"))
    img = np.random.default_rng(1).integers(0, 256, (8, 8, 3), np.uint8)
    data = encode_png(img)
    header = {
        "inputs": [
            {
                "name": "image",
                "datatype": "BYTES",
                "shape": [1],
                "parameters": {"binary_data_size": 4 + len(data)},
            }
        ],
        "outputs": [{"name": "probabilities"}],
        "parameters": {"binary_data_output": True},
    }
    head = json.dumps(header).encode()
    reply = server.client.post(
        "/v2/models/tiny/infer",
        content=head + struct.pack("<I", len(data)) + data,
        headers={
            "Inference-Header-Content-Length": str(len(head)),
            "Content-Type": "application/octet-stream",
        },
    )
    assert reply.status_code == 200, reply.text
    split = int(reply.headers["inference-header-content-length"])
    meta = json.loads(reply.content[:split])
    (out,) = meta["outputs"]
    assert out["name"] == "probabilities" and out["shape"] == [1, 4]
    assert out["parameters"]["binary_data_size"] == 16 == len(reply.content) - split
    got = np.frombuffer(reply.content[split:], "<f4")
    want = local.forwards.probabilities(local.preprocess(data)[1])[0].astype(np.float32)
    assert got.tobytes() == want.tobytes()


def test_probabilities_alone_run_no_masked_forward(server):
    before = server.metric("scorecam_forwards_total", model=MODEL)
    body = {
        "inputs": [{"name": "image", "datatype": "BYTES", "shape": [2], "data": [B64, B64]}],
        "outputs": [{"name": "probabilities"}],
    }
    reply = server.client.post(f"/v2/models/{MODEL}/infer", json=body)
    assert reply.status_code == 200
    assert [o["name"] for o in reply.json()["outputs"]] == ["probabilities"]
    assert server.metric("scorecam_forwards_total", model=MODEL) - before == 2


# /explain ----------------------------------------------------------------------------------
def test_explain_upload_raw_and_png(server, local):
    want = local.explain_one(CHELSEA, method=FasterScoreCam(channels=8))
    query = {"model": MODEL, "method": "faster-scorecam", "channels": "8"}
    upload = server.client.post(
        "/explain", params=query, files={"image": ("chelsea.png", CHELSEA, "image/png")}
    )
    raw = server.client.post("/explain", params=query, content=CHELSEA)
    for reply in (upload, raw):
        assert reply.status_code == 200, reply.text
        got = reply.json()
        assert got["label"] == "Egyptian cat" and len(got["top"]) == 5
        assert _saliency(got).tobytes() == want.saliency.tobytes()
    png = server.client.post(
        "/explain", params=query, content=CHELSEA, headers={"Accept": "image/png"}
    )
    assert png.headers["content-type"] == "image/png"
    assert png.content == encode_png(overlay(load_image(CHELSEA), want.saliency))
    several = server.client.post(
        "/explain", params=[*query.items(), ("target", "281"), ("target", "285")], content=CHELSEA
    )
    assert [e["class_id"] for e in several.json()] == [281, 285]


def test_dicom_16_bit_and_npy_uploads_are_read_as_the_api_reads_them(server, grey_path, tmp_path):
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 4096, (3, 24, 32))
    write_dicom(tmp_path / "m.dcm", frames, WindowCenter=2000.0, WindowWidth=1500.0)
    cv2.imwrite(str(tmp_path / "g.png"), rng.integers(0, 65536, (24, 32), dtype=np.uint16))
    np.save(tmp_path / "a.npy", rng.uniform(0, 1, (24, 32)).astype(np.float32))
    local = Explainer(grey_path, Runtime(provider="cpu"))
    for name, frame in (("m.dcm", 0), ("m.dcm", 2), ("g.png", 0), ("a.npy", 0)):
        data = (tmp_path / name).read_bytes()
        reply = server.client.post(
            "/explain",
            params={"model": "grey", "frame": str(frame)},
            files={"image": (name, data, "application/octet-stream")},
        )
        assert reply.status_code == 200, reply.text
        [want] = local.explain(tmp_path / name, options=ExplainOptions(frame=frame))
        assert _saliency(reply.json()).tobytes() == want.saliency.tobytes(), (name, frame)
        assert reply.json()["score"] == want.score
    picture = server.client.post(
        "/picture",
        params={"model": "grey", "frame": "2"},
        content=(tmp_path / "m.dcm").read_bytes(),
    )
    assert picture.status_code == 200 and picture.headers["x-image-size"] == "24x32"
    assert picture.content == encode_png(local.preprocess(tmp_path / "m.dcm", 2)[0])
    write_dicom(tmp_path / "empty.dcm", frames[0], with_pixels=False)
    for route in ("/explain", "/picture"):
        bad = server.client.post(
            route, params={"model": "grey"}, content=(tmp_path / "empty.dcm").read_bytes()
        )
        assert bad.status_code == 400
        assert bad.json()["error"] == "image 0: a DICOM file with no pixel data"
    too_far = server.client.post(
        "/explain",
        params={"model": "grey", "frame": "3"},
        content=(tmp_path / "m.dcm").read_bytes(),
    )
    assert too_far.status_code == 400 and "no frame 3: the file has 3" in too_far.text


def test_explain_maps_sized_for_their_clients(server, local):
    want = local.explain_one(CHELSEA, method=FasterScoreCam(channels=8))  # 451×300
    query = {"model": MODEL, "method": "faster-scorecam", "channels": "8"}

    def ask(size, **extra):
        reply = server.client.post(
            "/explain", params={**query, "map_size": size}, content=CHELSEA, **extra
        )
        assert reply.status_code == 200, reply.text
        return reply

    got = ask("input").json()
    assert got["saliency"]["size"] == "input"
    assert _saliency(got).tobytes() == want.saliency_input.tobytes()
    got = ask("100").json()
    assert got["saliency"]["size"] == "capped" and got["saliency"]["shape"] == [67, 100]
    oracle = cv2.resize(want.saliency, (100, 67), interpolation=cv2.INTER_AREA)
    assert _saliency(got).tobytes() == oracle.tobytes()
    got = ask("1000").json()  # never enlarged
    assert got["saliency"]["size"] == "original"
    assert _saliency(got).tobytes() == want.saliency.tobytes()
    assert (
        server.client.post("/explain", params=query, content=CHELSEA).json()["saliency"]["size"]
        == "original"
    )
    png = ask("100", headers={"Accept": "image/png"})
    small = cv2.resize(load_image(CHELSEA), (100, 67), interpolation=cv2.INTER_AREA)
    assert png.content == encode_png(overlay(small, want.saliency))


# Bad requests ------------------------------------------------------------------------------
def _v2(**changes) -> dict:
    spec = {"name": "image", "datatype": "BYTES", "shape": [1], "data": [B64], **changes}
    return {"inputs": [spec]}


BAD_REQUESTS = {
    "malformed JSON": (
        "POST",
        f"/v1/models/{MODEL}:predict",
        {"content": b"{nope"},
        400,
        "malformed JSON",
    ),
    "not an object": (
        "POST",
        f"/v1/models/{MODEL}:predict",
        {"json": [1, 2]},
        400,
        "must be a JSON object",
    ),
    "no instances": (
        "POST",
        f"/v1/models/{MODEL}:predict",
        {"json": {"instances": []}},
        400,
        "'instances' must be a non-empty list",
    ),
    "bad base64": (
        "POST",
        f"/v1/models/{MODEL}:predict",
        {"json": {"instances": [{"b64": "%%%"}]}},
        400,
        "not valid base64",
    ),
    "undecodable image": (
        "POST",
        f"/v1/models/{MODEL}:predict",
        {"json": {"instances": [{"b64": base64.b64encode(b"text").decode()}]}},
        400,
        "image 0: not an image OpenCV can decode",
    ),
    "empty image": ("POST", "/explain", {"content": b""}, 400, "image 0: empty file"),
    "wrong datatype": (
        "POST",
        f"/v2/models/{MODEL}/infer",
        {"json": _v2(datatype="FP32")},
        400,
        "must be BYTES",
    ),
    "wrong shape": (
        "POST",
        f"/v2/models/{MODEL}/infer",
        {"json": _v2(shape=[2])},
        400,
        "has shape [2] but holds 1 elements",
    ),
    "unknown input": (
        "POST",
        f"/v2/models/{MODEL}/infer",
        {"json": _v2(name="pixels")},
        400,
        "unknown input 'pixels'",
    ),
    "unknown output": (
        "POST",
        f"/v2/models/{MODEL}/infer",
        {"json": {**_v2(), "outputs": [{"name": "logits"}]}},
        400,
        "unknown output 'logits'",
    ),
    "bad binary header": (
        "POST",
        f"/v2/models/{MODEL}/infer",
        {"content": b"{}", "headers": {"Inference-Header-Content-Length": "99"}},
        400,
        "does not fit",
    ),
    "unknown model": (
        "POST",
        "/v1/models/nope:predict",
        {"json": {"instances": []}},
        404,
        "unknown model 'nope'",
    ),
    "unknown path": ("GET", "/v3/anything", {}, 404, "no such path: /v3/anything"),
    "bad method": (
        "POST",
        "/explain",
        {"params": {"method": "gradcam"}, "content": CHELSEA},
        422,
        "method: unknown value 'gradcam'",
    ),
    "bad top_k": (
        "POST",
        "/explain",
        {"params": {"top_k": "0"}, "content": CHELSEA},
        422,
        "top_k: must be between 1 and 20, got 0",
    ),
    "bad target": (
        "POST",
        f"/v1/models/{MODEL}:explain",
        {"json": {"instances": [{"b64": B64}], "parameters": {"target": 5000}}},
        422,
        "target: must be between 0 and 999, got 5000",
    ),
    "bad map_size": (
        "POST",
        "/explain",
        {"params": {"map_size": "huge"}, "content": CHELSEA},
        422,
        "map_size: expected original, input or a number of pixels",
    ),
    "zero map_size": (
        "POST",
        "/explain",
        {"params": {"map_size": "0"}, "content": CHELSEA},
        422,
        "map_size: must be between 1 and",
    ),
    "unknown fuse": (
        "POST",
        "/explain",
        {"params": {"fuse": "median"}, "content": CHELSEA},
        422,
        "fuse: unknown value 'median'",
    ),
    "unknown layer": (
        "POST",
        "/explain",
        {"params": {"layers": "nope"}, "content": CHELSEA},
        422,
        "unknown layer nope: this bundle's layers are",
    ),
    "eigen on reciprocam": (
        "POST",
        "/explain",
        {"params": {"method": "reciprocam", "eigen_smooth": "true"}, "content": CHELSEA},
        422,
        "eigen_smooth applies to methods that weigh the activations",
    ),
    "target and top_k": (
        "POST",
        "/explain",
        {"params": {"top_k": "2", "target": "3"}, "content": CHELSEA},
        422,
        "either target or top_k",
    ),
    "body too large": (
        "POST",
        "/explain",
        {"content": b"\0" * (21 * 1024 * 1024)},
        413,
        "above the limit of 20971520 bytes",
    ),
    "image too large": (
        "POST",
        "/explain",
        {"content": _png_header(60000, 60000)},
        413,
        "3600000000 pixels is above the limit of 100000000 pixels",
    ),
    "webp bomb": (
        "POST",
        "/explain",
        {"content": webp_bomb()},
        413,
        "256000000 pixels is above the limit of 100000000 pixels",
    ),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_request_is_a_one_line_json_error(server, case):
    method, path, kwargs, status, message = BAD_REQUESTS[case]
    reply = server.client.request(method, path, **kwargs)
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert list(body) == ["error"] and message in body["error"]
    assert "\n" not in body["error"] and "Traceback" not in body["error"]


def test_bad_requests_leave_no_native_messages_and_a_log_line_each(server):
    server.client.post("/explain", content=b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    reply = server.client.post(
        "/v1/models/tiny:predict",
        json={
            "instances": [
                {"b64": base64.b64encode(encode_png(np.zeros((8, 8, 3), np.uint8))).decode()}
            ]
        },
    )
    assert reply.status_code == 200
    log = server.stderr()
    assert "libpng" not in log and "Traceback" not in log
    assert "POST /v1/models/tiny:predict 200" in log
    line = next(s for s in log.splitlines() if s.startswith("POST /v1/models/tiny:predict 200"))
    assert line.endswith("model=tiny forwards=1") and "ms " in line


# Load, cancellation, shutdown --------------------------------------------------------------
def _wait_for(server: Server, running: int, waiting: int) -> None:
    """Until the server reports this many requests running and waiting (at most 60 s)."""
    for _ in range(3000):
        if (server.metric("scorecam_running"), server.metric("scorecam_waiting")) == (
            running,
            waiting,
        ):
            return
        time.sleep(0.02)
    raise AssertionError(f"the server never had {running} running and {waiting} waiting")


def test_disconnect_stops_the_work(server, local):
    before = server.metric("scorecam_forwards_total", model=MODEL)
    full = local.explain_one(CHELSEA, method="scorecam").forwards
    with pytest.raises(httpx.ReadTimeout), httpx.Client(base_url=server.url) as client:
        client.post("/explain", params={"method": "sscam"}, content=CHELSEA, timeout=0.7)
    after = server.settled(MODEL)
    assert 0 < after - before < full, "work went on after the client had gone"
    assert server.metric("scorecam_cancelled_total", reason="client gone") >= 1


def test_health_answers_promptly_while_two_explanations_run(server):
    replies: list[int] = []

    def explain() -> None:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            replies.append(
                client.post("/explain", params={"method": "scorecam"}, content=CHELSEA).status_code
            )

    workers = [threading.Thread(target=explain) for _ in range(2)]
    _wait_for(server, running=0, waiting=0)
    for w in workers:
        w.start()
    _wait_for(server, running=1, waiting=1)
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        assert server.client.get("/v2/health/ready").status_code == 200
        timings.append(time.perf_counter() - started)
    for w in workers:
        w.join()
    assert replies == [200, 200]
    assert sorted(timings)[2] < 0.1, f"health took {timings}"


@pytest.fixture(scope="module")
def small(tiny_path):
    # The timeout leaves a loaded machine time to see the pool full before anything expires.
    srv = Server(
        "--model",
        f"{MODEL}={DEFAULT_BUNDLE}",
        "--max-concurrency",
        "1",
        "--max-queue",
        "1",
        "--timeout",
        "8",
        "--grace",
        "60",
    )
    yield srv
    srv.stop()


def test_timeout_is_504_and_stops_the_work(small):
    before = small.metric("scorecam_forwards_total", model=MODEL)
    reply = small.client.post("/explain", params={"method": "sscam"}, content=CHELSEA)
    assert reply.status_code == 504 and reply.json() == {"error": "the request timed out"}
    after = small.settled(MODEL)
    # SS-CAM here is ~30,000 forwards; eight seconds run about 1,500.
    assert 0 < after - before < 5000
    assert small.metric("scorecam_cancelled_total", reason="timeout") >= 1


def test_full_queue_is_503_with_retry_after(small):
    replies: list[httpx.Response] = []

    def explain() -> None:
        with httpx.Client(base_url=small.url, timeout=120) as client:
            replies.append(client.post("/explain", params={"method": "sscam"}, content=CHELSEA))

    workers = [threading.Thread(target=explain) for _ in range(3)]
    _wait_for(small, running=0, waiting=0)  # the last test's requests have gone
    for w in workers[:2]:
        w.start()
    _wait_for(small, running=1, waiting=1)
    workers[2].start()
    for w in workers:
        w.join()
    statuses = sorted(r.status_code for r in replies)
    assert statuses == [503, 504, 504]
    busy = next(r for r in replies if r.status_code == 503)
    assert busy.headers["retry-after"] == "1" and "busy" in busy.json()["error"]


def test_predictions_do_not_wait_behind_explanations(small):
    replies: list[int] = []

    def explain() -> None:
        with httpx.Client(base_url=small.url, timeout=120) as client:
            replies.append(
                client.post("/explain", params={"method": "sscam"}, content=CHELSEA).status_code
            )

    workers = [threading.Thread(target=explain) for _ in range(2)]
    _wait_for(small, running=0, waiting=0)  # the last test's requests have gone
    for w in workers:
        w.start()
    _wait_for(small, running=1, waiting=1)  # one explaining, one waiting: full
    full = small.client.post("/explain", params={"method": "sscam"}, content=CHELSEA)
    predicted = small.client.post(f"/v1/models/{MODEL}:predict", json={"instances": [{"b64": B64}]})
    for w in workers:
        w.join()
    assert predicted.status_code == 200
    assert predicted.json()["predictions"][0]["label"] == "Egyptian cat"
    assert full.status_code == 503 and sorted(replies) == [504, 504]


def test_a_queued_request_whose_client_leaves_frees_its_slot_at_once(small):
    replies: list[int] = []

    def explain() -> None:
        with httpx.Client(base_url=small.url, timeout=120) as client:
            replies.append(
                client.post("/explain", params={"method": "sscam"}, content=CHELSEA).status_code
            )

    _wait_for(small, running=0, waiting=0)
    running = threading.Thread(target=explain)
    running.start()
    _wait_for(small, running=1, waiting=0)
    with pytest.raises(httpx.ReadTimeout), httpx.Client(base_url=small.url) as client:
        client.post("/explain", params={"method": "sscam"}, content=CHELSEA, timeout=1.0)
    _wait_for(small, running=1, waiting=0)  # freed while the first one still runs
    assert (
        small.client.post(
            "/explain", params={"method": "sscam"}, content=CHELSEA, timeout=120
        ).status_code
        == 504
    )
    running.join()
    assert replies == [504]


def test_sigterm_finishes_accepted_requests_then_exits_0(tiny_path):
    srv = Server("--model", f"{MODEL}={DEFAULT_BUNDLE}", "--grace", "60")
    replies: list[httpx.Response] = []

    def explain() -> None:
        with httpx.Client(base_url=srv.url, timeout=120) as client:
            replies.append(client.post("/explain", params={"method": "scorecam"}, content=CHELSEA))

    worker = threading.Thread(target=explain)
    worker.start()
    try:
        while srv.metric("scorecam_running") < 1:
            time.sleep(0.02)
        code = srv.stop()
    finally:
        worker.join()
    assert code == 0
    (reply,) = replies
    assert reply.status_code == 200 and reply.json()["label"] == "Egyptian cat"
    with pytest.raises(httpx.ConnectError):
        httpx.get(srv.url + "v2/health/live", timeout=5)
