"""The explainer model of a Triton repository (`NAME-explain/1/model.py` runs this): the
bundle's features (and tail) graph in this process, every full-model and masked forward
through BLS to the classifier or the masked scorers beside it, and each request answered as
the service's V2 explanation model answers (`protocol`).

The model's `config.pbtxt` parameters say which models to call and the defaults:
``classifier``, ``masked`` (comma-separated masked scorers), ``forwards`` (``masked`` or
``classifier``: where the masked batches go), ``repository`` (where those models' folders
are; default: the explainer's own repository), ``method``, ``preset``, ``batch_size``,
``in_flight``, ``threads``, ``max_pixels``, ``timeout`` (seconds per request and per BLS
call).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..bundle import Bundle
from ..errors import ScoreCamError
from ..explainer import Explainer
from ..images import DEFAULT_MAX_PIXELS
from ..protocol import OUTPUTS, ApiError, Cancelled, ModelService, Ticket, parse_params
from ..runtime import Runtime
from .bls import BlsRunner, read_served_model
from .repository import BUNDLE_FOLDER

INPUT = "image"
GPU_BATCH = 64


class RequestTicket(Ticket):
    """A ticket that also stops the work once Triton marks the request cancelled."""

    def __init__(self, request: Any, timeout: float | None) -> None:
        super().__init__(timeout)
        self.request = request

    @property
    def cancelled(self) -> bool:
        gone = getattr(self.request, "is_cancelled", None)
        return super().cancelled or bool(gone and gone())


class ExplainAdapter:
    """One instance of the explainer model.

    Args:
        args: the `args` Triton passes to `initialize`.
        pb_utils: the `triton_python_backend_utils` module.
    """

    def __init__(self, args: Mapping[str, str], pb_utils: Any) -> None:
        self.pb = pb_utils
        config = json.loads(args["model_config"])
        self.name = config["name"]
        settings = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        here = Path(args["model_repository"])
        bundle = Bundle.load(here / args["model_version"] / BUNDLE_FOLDER)
        in_flight = _int(settings, "in_flight", 2)
        timeout = settings.get("timeout", "")
        self.timeout = float(timeout) if timeout else None
        # the models it calls are read from this repository (its own, unless the config
        # names another: several --model-repository roots, or a copied cloud repository)
        repository = Path(settings.get("repository") or here.parent)
        if not settings.get("classifier"):
            raise ScoreCamError(
                "config.pbtxt has no 'classifier' parameter naming the model to call"
            )
        classifier = BlsRunner(
            pb_utils, read_served_model(repository, settings["classifier"]), in_flight, self.timeout
        )
        masked = []
        if settings.get("forwards", "masked") == "masked":
            masked = [
                BlsRunner(
                    pb_utils, read_served_model(repository, n.strip()), in_flight, self.timeout
                )
                for n in settings.get("masked", "").split(",")
                if n.strip()
            ]
        gpu = args.get("model_instance_kind") == "GPU"
        options = {"device_id": args.get("model_instance_device_id", "0")} if gpu else None
        max_pixels = _int(settings, "max_pixels", DEFAULT_MAX_PIXELS)
        # masked images per BLS request when they go to the classifier: 8 measured best on
        # CPU (as in process); a GPU classifier wants larger batches
        batch_size = _int(settings, "batch_size", 0) or (GPU_BATCH if gpu and not masked else None)
        runtime = Runtime(
            provider="cuda" if gpu else "cpu",
            batch_size=batch_size,
            threads=_int(settings, "threads", 0),
            max_pixels=max_pixels,
            provider_options=options,
        )
        self.explainer = Explainer(bundle, runtime, runner=classifier, masked_runners=masked)
        self.runners = [classifier, *masked]
        self.service = ModelService(self.name, self.explainer, max_pixels)
        try:
            self.defaults = parse_params(settings, self.explainer.classes)
        except ApiError as exc:
            raise ScoreCamError(f"{self.name}: config.pbtxt parameter: {exc.message}") from None

    def execute(self, requests: Sequence[Any]) -> list[Any]:
        """One response per request; a failed request does not affect the others."""
        return [self._answer(request) for request in requests]

    def _answer(self, request: Any) -> Any:
        pb = self.pb
        try:
            outputs = self._compute(request)
        except ApiError as exc:
            code = pb.TritonError.INVALID_ARG if exc.status < 500 else pb.TritonError.UNAVAILABLE
            return self._error(exc.message, code)
        except Cancelled:
            return self._error("the request was cancelled or timed out", pb.TritonError.CANCELLED)
        except ScoreCamError as exc:
            return self._error(str(exc), pb.TritonError.INTERNAL)
        except Exception as exc:  # noqa: BLE001 - one request's failure, not the instance's
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            return self._error(f"{type(exc).__name__}: {reason}", pb.TritonError.INTERNAL)
        finally:
            for runner in self.runners:  # no BLS call outlives this request
                runner.settle()
        return pb.InferenceResponse(
            output_tensors=[
                pb.Tensor(n, np.ascontiguousarray(outputs[n])) for n in OUTPUTS if n in outputs
            ]
        )

    def _compute(self, request: Any) -> dict[str, Any]:
        tensor = self.pb.get_input_tensor_by_name(request, INPUT)
        if tensor is None:
            raise ApiError(400, f"input {INPUT!r} is missing")
        images = [bytes(item) for item in tensor.as_numpy().reshape(-1)]
        if not images:
            raise ApiError(400, f"input {INPUT!r} holds no image")
        try:
            raw = json.loads(request.parameters() or "{}")
        except json.JSONDecodeError as exc:
            raise ApiError(400, f"request parameters: {exc}") from None
        params = parse_params(raw, self.explainer.classes, self.defaults)
        wanted = [n for n in OUTPUTS if n in set(request.requested_output_names())] or list(
            self.service.outputs
        )
        return self.service.infer(images, params, wanted, RequestTicket(request, self.timeout))

    def _error(self, message: str, code: Any) -> Any:
        pb = self.pb
        line = " ".join(message.split())
        return pb.InferenceResponse(output_tensors=[], error=pb.TritonError(line, code))

    def finalize(self) -> None:
        for runner in self.runners:
            runner.close()


def _int(settings: Mapping[str, str], name: str, default: int) -> int:
    value = settings.get(name, "")
    try:
        return int(value) if value else default
    except ValueError:
        raise ScoreCamError(
            f"config.pbtxt parameter {name}: expected an integer, got {value!r}"
        ) from None
