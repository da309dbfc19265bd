"""Open Inference Protocol (V2) infer payloads, in JSON and with the binary tensor data
extension (a JSON header, then raw little-endian tensors; its length in the
``Inference-Header-Content-Length`` header; a BYTES element is a 4-byte length and its bytes).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .errors import ApiError

HEADER = "inference-header-content-length"
INPUT = "image"
_DATATYPES = {"FP32": "<f4", "INT64": "<i8"}


@dataclass
class InferRequest:
    """A parsed V2 infer request: the encoded images and what is asked of them."""

    images: list[bytes]
    parameters: dict[str, Any] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)  # empty: every output
    binary: set[str] = field(default_factory=set)  # outputs wanted in binary
    binary_all: bool = False
    id: str | None = None


def _split_body(body: bytes, header_length: str | None) -> tuple[dict[str, Any], bytes]:
    """The JSON header and the binary part of an infer request body."""
    blob = b""
    if header_length is not None:
        try:
            split = int(header_length)
        except ValueError:
            raise ApiError(
                400, f"Inference-Header-Content-Length is not a number: {header_length!r}"
            ) from None
        if not 0 < split <= len(body):
            raise ApiError(
                400,
                f"Inference-Header-Content-Length {split} does not fit a body of {len(body)} bytes",
            )
        body, blob = body[:split], body[split:]
    return json_object(body), blob


def parse_request(
    body: bytes, header_length: str | None, known_outputs: tuple[str, ...]
) -> InferRequest:
    """Read an infer request body; every malformed part is a 400 saying what is wrong."""
    request, blob = _split_body(body, header_length)
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise ApiError(400, "'inputs' must be a non-empty list")
    images: list[bytes] | None = None
    offset = 0
    for spec in inputs:
        if not isinstance(spec, dict):
            raise ApiError(400, "each input must be an object")
        name = spec.get("name")
        if name != INPUT:
            raise ApiError(
                400,
                f"unknown input {name!r}: this model takes one input "
                f"{INPUT!r} (BYTES, encoded image files)",
            )
        if images is not None:
            raise ApiError(400, f"input {INPUT!r} is given twice")
        images, offset = _read_images(spec, blob, offset)
    if offset != len(blob):
        raise ApiError(
            400, f"{len(blob) - offset} bytes of binary data are not claimed by any input"
        )
    return _with_outputs(request, InferRequest(images or []), known_outputs)


def _with_outputs(
    request: dict[str, Any], parsed: InferRequest, known_outputs: tuple[str, ...]
) -> InferRequest:
    """`parsed` with the request's parameters, id and requested outputs."""
    parameters = request.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise ApiError(400, "'parameters' must be an object")
    parsed.parameters = dict(parameters)
    parsed.binary_all = parameters.get("binary_data_output") is True
    outputs = request.get("outputs") or []
    if not isinstance(outputs, list):
        raise ApiError(400, "'outputs' must be a list")
    for out in outputs:
        name = out.get("name") if isinstance(out, dict) else None
        if name not in known_outputs:
            raise ApiError(400, f"unknown output {name!r}: choose from {', '.join(known_outputs)}")
        parsed.outputs.append(name)
        params = out.get("parameters") or {}
        if isinstance(params, dict) and params.get("binary_data") is True:
            parsed.binary.add(name)
    if request.get("id") is not None:
        parsed.id = str(request["id"])
    return parsed


def parse_tensor_request(
    body: bytes,
    header_length: str | None,
    name: str,
    shape: tuple[int, ...],
    known_outputs: tuple[str, ...],
) -> tuple[NDArray[np.float32], InferRequest]:
    """Read a request for a tensor model: one FP32 input `name` of shape [N, *shape], as JSON
    `data` or binary tensor data; returns the array and the rest of the request."""
    request, blob = _split_body(body, header_length)
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise ApiError(400, f"this model takes one input {name!r}")
    spec = inputs[0]
    if spec.get("name") != name or spec.get("datatype") != "FP32":
        raise ApiError(
            400, f"expected input {name!r} FP32, got {spec.get('name')!r} {spec.get('datatype')!r}"
        )
    dims = spec.get("shape")
    if (
        not isinstance(dims, list)
        or len(dims) != len(shape) + 1
        or not all(isinstance(d, int) and not isinstance(d, bool) for d in dims)
        or dims[0] < 1
        or tuple(dims[1:]) != tuple(shape)
    ):
        raise ApiError(
            400, f"input {name!r} must have shape [N, {', '.join(map(str, shape))}], got {dims!r}"
        )
    count = int(np.prod(dims))
    params = spec.get("parameters") or {}
    size = params.get("binary_data_size") if isinstance(params, dict) else None
    if size is not None:
        if size != count * 4 or size != len(blob):
            raise ApiError(
                400,
                f"input {name!r}: binary_data_size {size!r} does not match "
                f"shape {dims} ({count * 4} bytes) and the {len(blob)} sent",
            )
        array = np.frombuffer(blob, dtype="<f4").reshape(dims)
    else:
        try:
            array = np.asarray(_flatten(spec.get("data")), dtype=np.float32)
        except (TypeError, ValueError):
            raise ApiError(400, f"input {name!r}: 'data' must be numbers") from None
        if array.size != count:
            raise ApiError(400, f"input {name!r} has shape {dims} but holds {array.size} elements")
        array = array.reshape(dims)
    return np.ascontiguousarray(array, dtype=np.float32), _with_outputs(
        request, InferRequest([]), known_outputs
    )


def json_object(body: bytes) -> dict[str, Any]:
    """A request body's JSON object, or a 400 saying what is wrong with it."""
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, f"malformed JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, "malformed JSON: nested too deeply") from None
    if not isinstance(value, dict):
        raise ApiError(400, "the request must be a JSON object")
    return value


def _read_images(spec: dict[str, Any], blob: bytes, offset: int) -> tuple[list[bytes], int]:
    """The encoded images of the `image` input, and the new offset in the binary part."""
    if spec.get("datatype") != "BYTES":
        raise ApiError(
            400,
            f"input {INPUT!r} must be BYTES (encoded image files), got {spec.get('datatype')!r}",
        )
    shape = spec.get("shape")
    if (
        not isinstance(shape, list)
        or not 1 <= len(shape) <= 2
        or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape)
        or shape[0] < 1
        or (len(shape) == 2 and shape[1] != 1)
    ):
        raise ApiError(
            400, f"input {INPUT!r} must have shape [N] (or [N, 1]) with N ≥ 1, got {shape!r}"
        )
    count = shape[0]
    params = spec.get("parameters") or {}
    size = params.get("binary_data_size") if isinstance(params, dict) else None
    if size is not None:
        if (
            isinstance(size, bool)
            or not isinstance(size, int)
            or size < 0
            or offset + size > len(blob)
        ):
            raise ApiError(
                400,
                f"input {INPUT!r}: binary_data_size {size!r} does not fit the "
                f"{len(blob) - offset} bytes of binary data left",
            )
        images = _split_bytes(blob[offset : offset + size])
        offset += size
    else:
        images = [_base64(item, n) for n, item in enumerate(_flatten(spec.get("data")))]
    if len(images) != count:
        raise ApiError(400, f"input {INPUT!r} has shape {shape} but holds {len(images)} elements")
    return images, offset


def _split_bytes(chunk: bytes) -> list[bytes]:
    """BYTES elements of the binary extension: each a 4-byte little-endian length, then data."""
    items, i = [], 0
    while i < len(chunk):
        if i + 4 > len(chunk):
            raise ApiError(400, "binary BYTES data ends inside an element's length")
        n = int.from_bytes(chunk[i : i + 4], "little")
        if i + 4 + n > len(chunk):
            raise ApiError(400, "binary BYTES element is longer than the data sent")
        items.append(chunk[i + 4 : i + 4 + n])
        i += 4 + n
    return items


def _flatten(data: Any) -> list[Any]:
    if data is None:
        raise ApiError(400, f"input {INPUT!r} has no 'data' and no binary_data_size")
    if not isinstance(data, list):
        return [data]
    flat: list[Any] = []
    for item in data:
        flat.extend(_flatten(item) if isinstance(item, list) else [item])
    return flat


def _base64(item: Any, index: int) -> bytes:
    if not isinstance(item, str):
        raise ApiError(400, f"input {INPUT!r}: element {index} must be a base64 string")
    try:
        return base64.b64decode(item, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, f"input {INPUT!r}: element {index} is not valid base64") from None


def encode_response(
    model: str, request: InferRequest, outputs: dict[str, NDArray]
) -> tuple[bytes, dict[str, str]]:
    """The response body and its headers; outputs asked for in binary follow the JSON."""
    described, blobs = [], []
    for name, array in outputs.items():
        datatype = "FP32" if array.dtype.kind == "f" else "INT64"
        data = np.ascontiguousarray(array, dtype=_DATATYPES[datatype])
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(data.shape)}
        if request.binary_all or name in request.binary:
            raw = data.tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            entry["data"] = data.ravel().tolist()
        described.append(entry)
    head: dict[str, Any] = {"model_name": model, "model_version": "1", "outputs": described}
    if request.id is not None:
        head["id"] = request.id
    text = json.dumps(head, separators=(",", ":")).encode()
    if not blobs:
        return text, {"content-type": "application/json"}
    return text + b"".join(blobs), {
        "content-type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(text)),
    }
