"""Where and how the forwards run: one `Runtime` settings object, and the one function that
builds a bundle's runners from it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .bundle import Bundle, open_bundle
from .cam.graph_masks import IMAGE, DeviceMasks, ServedMasks
from .errors import BundleError
from .forwards import Forwards
from .images import DEFAULT_MAX_PIXELS
from .runners.ort import ACCELERATORS, OrtRunner, Runner

__all__ = ["Runtime", "default_bundle", "open_forwards"]

# Masked inputs per model call when none is given: on the CPU provider the per-image time is
# flat from 2 to 16 and rises beyond; on CUDA larger batches keep the device busy.
DEFAULT_BATCH = {"cpu": 8, "cuda": 64, "remote": 64}
# Maps per request to a served masked scorer: each request carries the image once, so larger
# batches keep its share of the bytes small (256: under 1 % of sending masked images).
MASKED_BATCH = 256


def default_bundle() -> Path:
    """The EfficientNet-Lite0 bundle shipped with the package."""
    from importlib.resources import files

    return Path(str(files("scorecam_onnx_models") / "efficientnet-lite0"))


@dataclass(frozen=True, kw_only=True)
class Runtime:
    """Where the forwards run and how images are admitted; one object every surface passes on.

    Args:
        provider: "auto" (CUDA when it really starts, else CPU), or any execution provider
            of this ONNX Runtime build by short name ("cpu", "cuda", "openvino", "tensorrt",
            "dml", "coreml", "qnn"…) or full name.
        provider_options: options for that provider (e.g. {"device_type": "GPU"}).
        threads: ONNX Runtime intra-op threads (0: one per physical core).
        batch_size: masked inputs per model call; default per provider (8 on CPU, 64 on
            CUDA, 256 to served masked scorers).
        device_masks: build masked inputs inside ONNX Runtime (only low-resolution maps are
            sent, only scores come back). Default: on for CUDA, off elsewhere.
        model_url: send the full-model forwards (the unmasked one and every masked batch) to
            this model served over the Open Inference Protocol, `http(s)://` or
            `grpc(s)://HOST:PORT/v2/models/NAME[/versions/V]` (extra ``remote``); the
            features and tail graphs still run here.
        remote_timeout: seconds a remote request may take.
        in_flight: batches kept on a served model at once (the next is built meanwhile).
        max_pixels: images announcing more pixels are refused before decoding.
    """

    provider: str = "auto"
    provider_options: Mapping[str, str] | None = None
    threads: int = 0
    batch_size: int | None = None
    device_masks: bool | None = None
    model_url: str | None = None
    remote_timeout: float = 60.0
    in_flight: int = 2
    max_pixels: int = DEFAULT_MAX_PIXELS

    def __post_init__(self) -> None:
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.provider_options is not None:
            object.__setattr__(self, "provider_options", dict(self.provider_options))


def open_forwards(
    bundle: str | Path | Bundle | None,
    runtime: Runtime,
    runner: Runner | None = None,
    masked_runners: Sequence[Runner] = (),
) -> Forwards:
    """A bundle's graphs opened as `runtime` says.

    Args:
        bundle: a bundle folder (or a loaded `Bundle`), or a plain ``.onnx`` classifier
            (a model-only bundle); default: the shipped EfficientNet-Lite0.
        runtime: the settings.
        runner: send the full-model forwards to this `Runner` instead (for instance one
            over Triton's BLS): a classifier, or a masked scorer standing in for one.
        masked_runners: served masked scorers (one per upsampling convention) that score
            the low-resolution maps of their convention, so that only maps cross to them.
    """
    if runtime.model_url and runner is not None:
        raise ValueError("give either model_url or runner, not both")
    loaded = open_bundle(bundle if bundle is not None else default_bundle())
    _check_masked_scorers(loaded, runner, masked_runners)
    if runtime.model_url:
        from .runners.remote import RemoteRunner

        runner = RemoteRunner(runtime.model_url, runtime.remote_timeout, runtime.in_flight)
    features = _session(loaded.features_path, runtime, runtime.provider)
    model = _full_model(loaded, runtime, runner, features)
    provider = features.provider if features else model.provider
    tail = _session(loaded.tail_path, runtime, provider)
    served = _served(loaded, masked_runners, model)
    batch_size = runtime.batch_size or (
        MASKED_BATCH
        if served
        else DEFAULT_BATCH.get(
            model.provider, DEFAULT_BATCH["cuda" if model.provider in ACCELERATORS else "cpu"]
        )
    )
    forwards = Forwards(loaded, features, model, tail, batch_size, served, runtime.model_url)
    if served is None and _builds_masks_on_device(loaded, runtime, model, runner):
        forwards.maps_scorer = DeviceMasks(
            loaded.model_path,
            loaded.manifest.input.name,
            loaded.manifest.output.name,
            (loaded.manifest.input.height, loaded.manifest.input.width),
            model.provider,
            runtime.threads,
            pad_to=batch_size if model.provider == "cuda" else 0,
        )
    if model.provider == "cuda":
        forwards.warm_up()
    return forwards


def _session(path: Path | None, runtime: Runtime, provider: str) -> OrtRunner | None:
    if path is None:
        return None
    return OrtRunner(path, provider, runtime.threads, runtime.provider_options)


def _full_model(
    bundle: Bundle, runtime: Runtime, runner: Runner | None, features: OrtRunner | None
) -> Runner:
    """The runner of the full-model forwards: a served model (a masked scorer standing in
    for one is wrapped), else a session on the features graph's provider."""
    if runner is not None:
        if IMAGE in runner.shapes("input"):
            return ServedMasks(
                [runner],
                bundle.manifest.input.name,
                bundle.manifest.output.name,
                _maps_size(bundle),
            )
        return runner
    provider = features.provider if features else runtime.provider
    return OrtRunner(bundle.model_path, provider, runtime.threads, runtime.provider_options)


def _served(bundle: Bundle, masked_runners: Sequence[Runner], model: Runner) -> ServedMasks | None:
    if masked_runners:
        m = bundle.manifest
        return ServedMasks(masked_runners, m.input.name, m.output.name, _maps_size(bundle))
    return model if isinstance(model, ServedMasks) else None


def _maps_size(bundle: Bundle) -> tuple[int, int]:
    a = bundle.manifest.activation
    return (a.height, a.width) if a else (0, 0)


def _check_masked_scorers(
    bundle: Bundle, runner: Runner | None, masked_runners: Sequence[Runner]
) -> None:
    m = bundle.manifest
    if (m.output.segmentation or m.decoder is not None) and masked_runners:
        raise BundleError(
            "masked scorers score class outputs; this bundle is a "
            f"{'detector' if m.decoder else 'segmentation model'}"
        )
    if m.model_only and (masked_runners or (runner and IMAGE in runner.shapes("input"))):
        raise BundleError("masked scorers score a layer's maps; a model-only bundle has no layer")
    if masked_runners and m.input.layout == "NHWC":
        raise BundleError("masked scorers build NCHW images; this bundle's input is NHWC")


def _builds_masks_on_device(
    bundle: Bundle, runtime: Runtime, model: Runner, runner: Runner | None
) -> bool:
    """Whether masked inputs are built inside ONNX Runtime: asked for (by default on CUDA),
    and possible (NCHW image and maps, a local model, a classifier with a layer: not a
    segmentation model or a detector, whose masked scores need their outputs decoded)."""
    m = bundle.manifest
    wanted = (
        runtime.device_masks if runtime.device_masks is not None else (model.provider == "cuda")
    )
    nhwc = m.input.layout == "NHWC" or (m.activation is not None and m.activation.layout == "NHWC")
    return bool(wanted) and not (
        nhwc or runner is not None or m.model_only or m.output.segmentation or m.decoder is not None
    )
