"""The folder `mlserver start DIR` serves: `settings.json`, a `model-settings.json` per model
(the explainer, and the bundle's model as a tensor model), the bundle copied beside them,
and a README with the start command."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from ..bundle import Bundle
from ..errors import BundleError
from ..fileio import staged_folder, write_text_atomic
from ..triton.repository import check_model_name

RUNTIME = "scorecam_onnx.mlserver.runtime"
BUNDLE_FOLDER = "bundle"


def write_mlserver(
    bundle: Bundle | str | Path,
    out: str | Path,
    name: str = "model",
    infer_uri: str | None = None,
    parallel_workers: int = 1,
    host: str = "127.0.0.1",
    http_port: int = 8080,
    grpc_port: int = 8081,
    defaults: dict[str, Any] | None = None,
    force: bool = False,
) -> Path:
    """Write `out/`: `settings.json` (host, ports, workers, 64 MiB gRPC messages, no metrics
    server), `out/NAME/` (the explainer: the bundle copied, its forwards in process or sent
    to `infer_uri`) and `out/NAME-classifier/` (the bundle's model as a tensor model, which
    another explainer's `infer_uri` can name). `defaults` are request settings used when a
    request gives none (method, preset…). Returns `out`."""
    bundle = bundle if isinstance(bundle, Bundle) else Bundle.load(Path(bundle))
    bundle.require_folder("an MLServer folder")
    check_model_name(name)
    out = Path(out)
    if out.exists() and not force:
        raise BundleError(f"{out}: already exists (use --force to replace it)")
    if parallel_workers < 0:
        raise BundleError("parallel workers must be 0 or more")
    extra = {**(defaults or {}), **({"infer_uri": infer_uri} if infer_uri else {})}
    with staged_folder(out) as staging:
        staging.mkdir(parents=True)
        shutil.copytree(bundle.path, staging / name / BUNDLE_FOLDER)
        _settings(staging / name, name, "ExplainRuntime", extra, explainer_tensors(bundle))
        (staging / f"{name}-classifier").mkdir()
        _settings(
            staging / f"{name}-classifier",
            f"{name}-classifier",
            "ClassifierRuntime",
            {},
            classifier_tensors(bundle),
            f"../{name}/{BUNDLE_FOLDER}",
        )
        write_text_atomic(
            staging / "settings.json",
            json.dumps(
                {
                    "debug": False,
                    "host": host,
                    "http_port": http_port,
                    "grpc_port": grpc_port,
                    "parallel_workers": parallel_workers,
                    "metrics_endpoint": None,
                    "grpc_max_message_length": 64 * 1024 * 1024,
                },
                indent=2,
            )
            + "\n",
        )
        write_text_atomic(staging / "README.md", _readme(name, out, infer_uri))
    return out


def _settings(
    folder: Path,
    name: str,
    runtime: str,
    extra: dict[str, Any],
    tensors: dict[str, list[dict[str, Any]]],
    uri: str = BUNDLE_FOLDER,
) -> None:
    """A model's `model-settings.json`; its inputs and outputs are what MLServer answers
    as the model's metadata."""
    settings = {
        "name": name,
        "implementation": f"{RUNTIME}.{runtime}",
        **tensors,
        "parameters": {"uri": f"./{uri}", "extra": extra},
    }
    write_text_atomic(folder / "model-settings.json", json.dumps(settings, indent=2) + "\n")


def _tensor(name: str, datatype: str, shape: list[int]) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape}


def explainer_tensors(bundle: Bundle) -> dict[str, list[dict[str, Any]]]:
    """The explainer's V2 input and outputs (a detector's, or a classifier's)."""
    m = bundle.manifest
    maps = _tensor("saliency", "FP32", [-1, -1, m.input.height, m.input.width])
    first = (
        _tensor("boxes", "FP32", [-1, -1, 4])
        if m.decoder
        else _tensor("probabilities", "FP32", [-1, m.output.classes])
    )
    return {
        "inputs": [_tensor("image", "BYTES", [-1])],
        "outputs": [
            first,
            _tensor("class_id", "INT64", [-1, -1]),
            _tensor("score", "FP32", [-1, -1]),
            maps,
        ],
    }


def classifier_tensors(bundle: Bundle) -> dict[str, list[dict[str, Any]]]:
    """The bundle's model as a tensor model: its image input and its outputs."""
    m = bundle.manifest
    image = [m.input.channels, m.input.height, m.input.width]
    o = m.output
    outputs = (
        [_tensor(n, "FP32", [-1, -1]) for n in m.decoder.outputs]
        if m.decoder
        else [
            _tensor(
                o.name,
                "FP32",
                [-1, o.classes, o.height, o.width] if o.segmentation else [-1, o.columns],
            )
        ]
    )
    return {"inputs": [_tensor(m.input.name, "FP32", [-1, *image])], "outputs": outputs}


def _readme(name: str, out: Path, infer_uri: str | None) -> str:
    where = (
        f"sent to the served model at {infer_uri}" if infer_uri else "run in process (ONNX Runtime)"
    )
    return f"""# An MLServer folder written by scorecam-onnx

Start it from an environment with the `mlserver` extra (MLServer 1.7 and `uvloop<0.22`):

    mlserver start {out}

- `{name}`: explains images (V2 input `image`, BYTES: base64 strings over REST, raw bytes over
  gRPC) with the outputs and request parameters of scorecam-onnx's own V2 model. Its
  full-model forwards are {where}.
- `{name}-classifier`: the bundle's model as a tensor model (FP32 N×C×H×W in, the model's
  outputs out), for another explainer's `infer_uri`.

Readiness is `/v2/models/{name}/ready` (MLServer answers `/v2/health/ready` only once every
model loaded, and drops a model that failed to load).
"""
