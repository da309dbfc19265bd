"""Forwards sent from inside a Triton Python-backend model to another model of the same server,
through Business Logic Scripting (BLS): a `Runner` for the library's engine.

The served model's inputs, outputs and maximum batch size are read from its folder in the
model repository (`config.pbtxt` with Triton's own model-config protobuf from tritonclient; an
ONNX graph where the config leaves them to Triton's auto-completion), since BLS offers no
metadata call and may not run while models load.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_all
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import BundleError, ScoreCamError

# Triton's --backend-config default-max-batch-size, used when it auto-completes a config.
AUTO_MAX_BATCH = 4
NUMPY = {
    "FP32": np.float32,
    "FP16": np.float16,
    "FP64": np.float64,
    "INT64": np.int64,
    "INT32": np.int32,
    "UINT8": np.uint8,
    "BOOL": np.bool_,
}
ONNX_TYPES = {
    1: "FP32",
    10: "FP16",
    11: "FP64",
    7: "INT64",
    6: "INT32",
    2: "UINT8",
    9: "BOOL",
    8: "BYTES",
}


class BlsError(ScoreCamError):
    """A model called through BLS answered with an error."""


@dataclass(frozen=True)
class ServedModel:
    """A model of the repository as a caller sees it: names → (datatype, shape with the
    batch dimension as -1 when it batches), and its maximum batch size (0: none)."""

    name: str
    inputs: dict[str, tuple[str, list[int]]]
    outputs: dict[str, tuple[str, list[int]]]
    max_batch: int


def read_served_model(repository: Path, name: str) -> ServedModel:
    """The inputs, outputs and maximum batch size of the model `name` of `repository`."""
    folder = Path(repository) / name
    if not folder.is_dir():
        raise BundleError(f"model {name!r}: no such folder in the model repository {repository}")
    config = _config(folder)
    max_batch = int(config.max_batch_size)
    if config.input and config.output:
        lead = [-1] if max_batch > 0 else []

        def table(items: Any) -> dict[str, tuple[str, list[int]]]:
            return {
                i.name: (_datatype(i.data_type), lead + [int(d) for d in i.dims]) for i in items
            }

        return ServedModel(name, table(config.input), table(config.output), max_batch)
    return _from_onnx(folder, name, config, max_batch)


def _config(folder: Path) -> Any:
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError as exc:
        raise BundleError(
            f"reading Triton model configs needs tritonclient: pip install "
            f"'scorecam-onnx[triton]' ({exc})"
        ) from None
    config = model_config_pb2.ModelConfig()
    path = folder / "config.pbtxt"
    if path.is_file():
        try:
            text_format.Parse(path.read_text(encoding="utf-8"), config)
        except text_format.ParseError as exc:
            raise BundleError(f"{path}: {exc}") from None
    return config


def _datatype(code: int) -> str:
    from tritonclient.grpc import model_config_pb2

    name = model_config_pb2.DataType.Name(code).removeprefix("TYPE_")
    return "BYTES" if name == "STRING" else name


def _from_onnx(folder: Path, name: str, config: Any, max_batch: int) -> ServedModel:
    """Inputs and outputs of the ONNX graph Triton would load, for a config that lists none."""
    import onnx

    versions = sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit())
    filename = config.default_model_filename or "model.onnx"
    graph_path = folder / str(versions[-1]) / filename if versions else None
    if graph_path is None or not graph_path.is_file():
        raise BundleError(
            f"model {name!r}: its config.pbtxt lists no inputs and outputs and "
            f"there is no ONNX graph to read them from; list them in the config"
        )
    graph = onnx.load(str(graph_path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    batch = max_batch if max_batch > 0 else AUTO_MAX_BATCH

    def table(items: Any) -> dict[str, tuple[str, list[int]]]:
        found = {}
        for item in items:
            if item.name in initializers:
                continue
            t = item.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
            found[item.name] = (
                ONNX_TYPES.get(t.elem_type, str(t.elem_type)),
                [-1, *dims[1:]] if dims else dims,
            )
        return found

    return ServedModel(name, table(graph.input), table(graph.output), batch)


class BlsRunner:
    """A `Runner` whose forwards run on another model of the same Triton server (BLS).

    Batches larger than the model's maximum are split; `submit` sends a batch from a worker
    thread and returns at once, so that the engine builds the next batch meanwhile (and the
    callee's dynamic batcher may gather concurrent batches). Use it only while Triton runs
    the calling model's `execute`.

    Args:
        pb_utils: the `triton_python_backend_utils` module of the calling model.
        served: the callee (see `read_served_model`).
        in_flight: BLS requests running at once (a batch split to the callee's maximum
            batch size is several).
        timeout: seconds one BLS request may take (None: no limit).
    """

    def __init__(
        self, pb_utils: Any, served: ServedModel, in_flight: int = 2, timeout: float | None = None
    ) -> None:
        if in_flight < 1:
            raise ValueError(f"in_flight must be at least 1, got {in_flight}")
        self.pb = pb_utils
        self.served = served
        self.in_flight = in_flight
        self.timeout = timeout
        self.provider = "triton"
        self.path = f"Triton model {served.name!r}"
        self._pool = ThreadPoolExecutor(in_flight, thread_name_prefix=f"bls-{served.name}")
        self._sent: list[Future] = []
        self._lock = threading.Lock()

    def shapes(self, kind: str) -> dict[str, list[int | str | None]]:
        """Names and shapes of the model's inputs or outputs (-1 as "N")."""
        table = self.served.inputs if kind == "input" else self.served.outputs
        return {n: ["N" if d < 0 else d for d in shape] for n, (_, shape) in table.items()}

    def datatype(self, kind: str, name: str) -> str:
        return (self.served.inputs if kind == "input" else self.served.outputs)[name][0]

    def run(self, outputs: list[str], feed: dict[str, NDArray[np.float32]]) -> list[NDArray]:
        return self.submit(outputs, feed)()

    def submit(
        self, outputs: list[str], feed: dict[str, NDArray[np.float32]]
    ) -> Callable[[], list[NDArray]]:
        """Send a feed now; the returned function waits for its outputs."""
        pieces = [feed]
        if self.served.max_batch > 0:
            total = next(iter(feed.values())).shape[0]
            step = self.served.max_batch
            pieces = [{k: v[i : i + step] for k, v in feed.items()} for i in range(0, total, step)]
        futures: list[Future] = [self._pool.submit(self._exec, outputs, p) for p in pieces]
        with self._lock:
            self._sent = [f for f in self._sent if not f.done()] + futures

        def wait() -> list[NDArray]:
            results = [f.result() for f in futures]
            return [np.concatenate([r[j] for r in results]) for j in range(len(outputs))]

        return wait

    def settle(self) -> None:
        """Drop the requests not sent yet and wait for those running, so that no BLS call
        outlives the `execute` that made it (after a failure or a cancellation)."""
        with self._lock:
            sent, self._sent = self._sent, []
        for future in sent:
            future.cancel()
        wait_all(sent)

    def _exec(self, outputs: list[str], feed: dict[str, NDArray]) -> list[NDArray]:
        pb = self.pb
        tensors = []
        for name, array in feed.items():
            datatype = self.served.inputs.get(name, ("FP32", []))[0]
            tensors.append(
                pb.Tensor(name, np.ascontiguousarray(array, dtype=NUMPY.get(datatype, np.float32)))
            )
        options: dict[str, Any] = {}
        if self.timeout:
            options["timeout"] = int(self.timeout * 1e6)  # microseconds
        if hasattr(pb, "PreferredMemory"):  # outputs in CPU memory, even from a GPU model
            options["preferred_memory"] = pb.PreferredMemory(pb.TRITONSERVER_MEMORY_CPU, 0)
        request = pb.InferenceRequest(
            model_name=self.served.name, inputs=tensors, requested_output_names=outputs, **options
        )
        response = request.exec()
        if response.has_error():
            message = " ".join(str(response.error().message()).split())
            raise BlsError(f"{self.path}: {message}")
        arrays = []
        for name in outputs:
            tensor = pb.get_output_tensor_by_name(response, name)
            if tensor is None:
                raise BlsError(f"{self.path}: the answer has no output {name!r}")
            arrays.append(np.asarray(tensor.as_numpy(), dtype=np.float32))
        return arrays

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
