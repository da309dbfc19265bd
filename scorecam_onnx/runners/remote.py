"""Forwards sent to a model served over the Open Inference Protocol (Triton, KServe,
MLServer, or this package's own service), with tritonclient's HTTP or gRPC client (extra
``remote``).

    http://HOST:PORT/v2/models/NAME[/versions/V]    (binary tensor data where the server
                                                     lists the extension, else JSON)
    grpc://HOST:PORT/v2/models/NAME[/versions/V]    (raw_input_contents)
    https:// and grpcs:// with TLS

At construction the server must be live and the model ready; the model's inputs and outputs
(and, where the server states it, its maximum batch size) are read from its metadata. A batch
larger than that maximum is split; the engine keeps `in_flight` batches on the server at once
(`submit`), building the next while earlier ones run. Unavailable
servers, 503s and dropped connections are retried with bounded backoff; any other failure
is a `RemoteError` with one line.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from numpy.typing import NDArray

from ..errors import ScoreCamError

SCHEMES = {
    "http": ("http", False),
    "https": ("http", True),
    "grpc": ("grpc", False),
    "grpcs": ("grpc", True),
}
# Retried: the server is starting, draining, overloaded, or dropped the connection.
RETRIED = (
    "503",
    "UNAVAILABLE",
    "Connection reset",
    "Connection refused",
    "RESOURCE_EXHAUSTED",
    "Broken pipe",
    "EOF",
    "Service Unavailable",
)
DATATYPES = {"FP32": np.float32, "FP16": np.float16, "FP64": np.float64}


class RemoteError(ScoreCamError):
    """The served model could not be reached or did not answer as expected."""


@dataclass(frozen=True)
class ModelUrl:
    """A parsed model URL."""

    protocol: str  # "http" or "grpc"
    ssl: bool
    address: str  # HOST:PORT
    model: str
    version: str

    @classmethod
    def parse(cls, url: str) -> ModelUrl:
        parts = urlsplit(url)
        if parts.scheme not in SCHEMES or not parts.netloc:
            raise RemoteError(
                f"model URL {url!r}: use http(s):// or grpc(s)://HOST:PORT/v2/"
                "models/NAME[/versions/V]"
            )
        path = [p for p in parts.path.split("/") if p]
        ok = (
            len(path) in (3, 5)
            and path[:2] == ["v2", "models"]
            and (len(path) == 3 or path[3] == "versions")
        )
        if not ok:
            raise RemoteError(
                f"model URL {url!r}: the path must be /v2/models/NAME or /v2/models/NAME/versions/V"
            )
        protocol, ssl = SCHEMES[parts.scheme]
        port = "" if parts.port else (":443" if ssl else ":80" if protocol == "http" else "")
        if protocol == "grpc" and not parts.port:
            raise RemoteError(f"model URL {url!r}: a gRPC URL needs a port")
        return cls(protocol, ssl, parts.netloc + port, path[2], path[4] if len(path) == 5 else "")


def import_client(protocol: str) -> ModuleType:
    """tritonclient.http or tritonclient.grpc, or say which extra installs them."""
    try:
        if protocol == "http":
            import tritonclient.http as client
        else:
            import tritonclient.grpc as client
    except ImportError as exc:
        raise RemoteError(
            f"remote forwards need the 'remote' extra: pip install 'scorecam-onnx[remote]' ({exc})"
        ) from None
    return client


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _retried(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}"
    return isinstance(exc, ConnectionError | TimeoutError) or any(r in text for r in RETRIED)


class RemoteRunner:
    """A `Runner` whose forwards run on a served model.

    Args:
        url: the model's URL (see the module's docstring).
        timeout: seconds a request may take (each try), and connecting.
        in_flight: batches the engine keeps on the server at once (each split to the
            server's maximum batch size when it states one).
        retries: extra tries for a retried failure, with backoff 0.2 s, 0.4 s, …
    """

    def __init__(
        self, url: str, timeout: float = 60.0, in_flight: int = 2, retries: int = 3
    ) -> None:
        if in_flight < 1:
            raise ValueError(f"in_flight must be at least 1, got {in_flight}")
        self.url = url
        self.target = ModelUrl.parse(url)
        self.timeout = timeout
        self.in_flight = in_flight
        self.retries = retries
        self.provider = "remote"
        self.path = url
        self.sent_bytes = 0
        self._client_module = import_client(self.target.protocol)
        self._local = threading.local()
        self._check_ready()
        metadata = self._call(self._metadata, "read the model's metadata")
        self.inputs = {
            i["name"]: (i["datatype"], [int(d) for d in i["shape"]]) for i in metadata["inputs"]
        }
        self.outputs = {
            o["name"]: (o["datatype"], [int(d) for d in o["shape"]]) for o in metadata["outputs"]
        }
        self.input_names = list(self.inputs)
        self.output_names = list(self.outputs)
        self.max_batch = self._max_batch()
        self.binary = self.target.protocol == "http" and self._binary_extension()

    # set-up ----------------------------------------------------------------------------------
    @property
    def client(self) -> Any:
        """This thread's client: tritonclient's HTTP client runs on gevent, whose loop belongs
        to one thread, so each thread that sends forwards gets its own."""
        client = getattr(self._local, "client", None)
        if client is None:
            t = self.target
            try:
                if t.protocol == "http":
                    client = self._client_module.InferenceServerClient(
                        t.address,
                        ssl=t.ssl,
                        concurrency=self.in_flight,
                        connection_timeout=self.timeout,
                        network_timeout=self.timeout,
                    )
                else:
                    client = self._client_module.InferenceServerClient(t.address, ssl=t.ssl)
            except Exception as exc:  # noqa: BLE001 - the client raises assorted errors
                raise RemoteError(f"{self.url}: cannot connect: {_reason(exc)}") from None
            self._local.client = client
        return client

    def _check_ready(self) -> None:
        t = self.target
        try:
            ready = self.client.is_server_live() and self.client.is_model_ready(t.model, t.version)
        except Exception as exc:  # noqa: BLE001
            raise RemoteError(f"{self.url}: the server does not answer: {_reason(exc)}") from None
        if not ready:
            raise RemoteError(f"{self.url}: the model {t.model!r} is not ready on the server")

    def _binary_extension(self) -> bool:
        """Whether the HTTP server takes tensors as binary data (the extension Triton and
        this package's service list; MLServer's REST API takes JSON only)."""
        server = self._call(self.client.get_server_metadata, "read the server's metadata")
        return "binary_tensor_data" in (server.get("extensions") or [])

    def _metadata(self) -> dict[str, Any]:
        t = self.target
        if t.protocol == "http":
            return self.client.get_model_metadata(t.model, t.version)
        return self.client.get_model_metadata(t.model, t.version, as_json=True)

    def _max_batch(self) -> int:
        """The server's maximum batch size (Triton's model config), or 0 for none stated."""
        t = self.target
        try:
            if t.protocol == "http":
                config = self.client.get_model_config(t.model, t.version)
            else:
                config = self.client.get_model_config(t.model, t.version, as_json=True)["config"]
        except Exception:  # noqa: BLE001 - a server without the config extension states none
            return 0
        return int(config.get("max_batch_size", 0) or 0)

    def _call(self, fn: Any, what: str) -> Any:
        """`fn()`, retried on transient failures; a `RemoteError` naming `what` otherwise."""
        for attempt in range(self.retries + 1):
            try:
                return fn()
            except Exception as exc:  # noqa: BLE001 - tritonclient raises its own types
                if attempt < self.retries and _retried(exc):
                    time.sleep(0.2 * 2**attempt)
                    continue
                raise RemoteError(f"{self.url}: could not {what}: {_reason(exc)}") from None
        raise AssertionError("unreachable")

    # forwards --------------------------------------------------------------------------------
    def shapes(self, kind: str) -> dict[str, list[int | str | None]]:
        """Names and shapes of the model's inputs or outputs (-1 as "N")."""
        table = self.inputs if kind == "input" else self.outputs
        return {n: ["N" if d < 0 else d for d in shape] for n, (_, shape) in table.items()}

    def datatype(self, kind: str, name: str) -> str:
        """The served datatype of an input or output ("FP32"…)."""
        return (self.inputs if kind == "input" else self.outputs)[name][0]

    def run(self, outputs: list[str], feed: dict[str, NDArray[np.float32]]) -> list[NDArray]:
        """The outputs for a feed (see `submit`)."""
        return self.submit(outputs, feed)()

    def submit(
        self, outputs: list[str], feed: dict[str, NDArray[np.float32]]
    ) -> Callable[[], list[NDArray]]:
        """Send a feed now and return a function that waits for its outputs. When the server
        states a maximum batch size, the arrays (sharing dimension 0) are split to it and
        the pieces sent at once. The feed's arrays must stay as they are until `wait` returns
        (a retried piece is sent again)."""
        pieces = [feed]
        if self.max_batch:
            total = next(iter(feed.values())).shape[0]
            pieces = [
                {k: v[i : i + self.max_batch] for k, v in feed.items()}
                for i in range(0, total, self.max_batch)
            ]
        handles = [(piece, self._send(outputs, piece)) for piece in pieces]

        def wait() -> list[NDArray]:
            results = [self._receive(outputs, piece, handle) for piece, handle in handles]
            return [np.concatenate([r[j] for r in results]) for j in range(len(outputs))]

        return wait

    def _inputs(self, feed: dict[str, NDArray]) -> list[Any]:
        made = []
        for name, array in feed.items():
            datatype = self.inputs[name][0] if name in self.inputs else "FP32"
            data = np.ascontiguousarray(array, dtype=DATATYPES.get(datatype, np.float32))
            item = self._client_module.InferInput(name, list(data.shape), datatype)
            if self.target.protocol == "http":
                item.set_data_from_numpy(data, binary_data=self.binary)
            else:
                item.set_data_from_numpy(data)
            self.sent_bytes += data.nbytes
            made.append(item)
        return made

    def _requested(self, outputs: list[str]) -> list[Any]:
        if self.target.protocol == "http":
            return [
                self._client_module.InferRequestedOutput(n, binary_data=self.binary)
                for n in outputs
            ]
        return [self._client_module.InferRequestedOutput(n) for n in outputs]

    def _send(self, outputs: list[str], feed: dict[str, NDArray]) -> Any:
        t = self.target
        inputs, requested = self._inputs(feed), self._requested(outputs)
        if t.protocol == "http":
            return self.client.async_infer(
                t.model, inputs, model_version=t.version, outputs=requested
            )
        box: queue.Queue = queue.Queue(maxsize=1)
        self.client.async_infer(
            t.model,
            inputs,
            lambda result, error: box.put((result, error)),
            model_version=t.version,
            outputs=requested,
            client_timeout=self.timeout,
        )
        return box

    def _receive(self, outputs: list[str], feed: dict[str, NDArray], handle: Any) -> list[NDArray]:
        try:
            result = self._wait(handle)
        except Exception as exc:  # noqa: BLE001 - tritonclient raises its own types
            if not _retried(exc) or self.retries == 0:
                raise RemoteError(f"{self.url}: could not run a forward: {_reason(exc)}") from None
            result = self._call(lambda: self._blocking(outputs, feed), "run a forward")
        arrays = []
        for name in outputs:
            array = result.as_numpy(name)
            if array is None:
                raise RemoteError(f"{self.url}: the answer has no output {name!r}")
            arrays.append(np.asarray(array, dtype=np.float32))
        return arrays

    def _wait(self, handle: Any) -> Any:
        if isinstance(handle, queue.Queue):
            result, error = handle.get(timeout=self.timeout + 5)
            if error is not None:
                raise error
            return result
        return handle.get_result()

    def _blocking(self, outputs: list[str], feed: dict[str, NDArray]) -> Any:
        return self._wait(self._send(outputs, feed))

    def close(self) -> None:
        """Close this thread's client."""
        client = getattr(self._local, "client", None)
        if client is not None:
            client.close()
            self._local.client = None
