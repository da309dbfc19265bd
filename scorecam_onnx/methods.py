"""Explanation methods as objects that carry their own settings.

Four groups, by how a method attributes:

- `MaskedMaps`: each channel of the target layer, upsampled and normalised, masks the input
  and the masked input is scored (Score-CAM, Faster, clustered, SS-CAM, IS-CAM);
- `ActivationsOnly`: the map comes from the activations alone, no forward (EigenCAM);
- `TailPerturbation`: perturbed activations are scored by the bundle's tail graph
  (activations → output; ReciproCAM, Ablation-CAM);
- `InputMasks`: random masks over the input, no layer at all (RISE).

Each method builds its array engine (`scorecam_onnx.cam`) with `engine(batch_size)`; the
`Explainer` asks the method what it needs (`needs_layer`, `needs_tail`, `weighs_activations`).
`METHODS` maps the names used by the command line and the service to the classes, and
`method_from` builds one from those names and the wire parameters (`channels`, `samples`,
`gaussian`, `preset`).

Presets are the conventions a Score-CAM map can follow: ``paper`` (the authors' code: the
softmax probability, masks normalised after upsampling, raw scores as weights),
``pytorch-grad-cam`` (the logit, a softmax over channel scores, align-corners upsampling) and
``torchcam`` (the logit minus the unmasked logit, masks normalised before upsampling).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar

from .cam import engine as cam_engine
from .cam import methods as cam_methods
from .cam.engine import GRADCAM, PAPER, PRESETS, TORCHCAM, get_preset
from .cam.rise import DEFAULT_MASKS, DRISE_MASKS
from .cam.rise import Rise as RiseEngine
from .cam.tail import AblationCam as AblationEngine
from .cam.tail import ReciproCam as ReciproEngine

__all__ = [
    "METHODS",
    "PRESETS",
    "AblationCam",
    "ActivationsOnly",
    "ClusterScoreCam",
    "DRise",
    "EigenCam",
    "FasterScoreCam",
    "ISCam",
    "InputMasks",
    "MaskedMaps",
    "Method",
    "ReciproCam",
    "Rise",
    "SSCam",
    "ScoreCam",
    "TailPerturbation",
    "as_method",
    "method_from",
]


def _positive(name: str, value: int) -> None:
    """Refuse a count below 1 (or one that is not an integer), naming the setting."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")


@dataclass(frozen=True, kw_only=True)
class Method:
    """What every method has: a name, a preset, and what it needs from a bundle.

    Args:
        preset: "paper", "pytorch-grad-cam" or "torchcam". Default: the method's own
            (`default_preset`).
    """

    name: ClassVar[str] = ""
    default_preset: ClassVar[str] = PAPER
    needs_layer: ClassVar[bool] = True  # reads the target layer's activations
    needs_tail: ClassVar[bool] = False  # runs the tail graph instead of the model
    weighs_activations: ClassVar[bool] = True  # the map is a weighted sum of activations
    # Layers of one grid may share their masked forwards (identical masks run once): only
    # where every channel is scored on its own, with nothing drawn per channel.
    shares_layer_forwards: ClassVar[bool] = False
    # Masked inputs per call when the explainer's batch size is smaller (tail forwards are
    # cheap, so the per-call cost dominates): 0 keeps the explainer's.
    least_batch: ClassVar[int] = 0
    # Whether it explains object detectors (it needs no class output or tail graph), and
    # whether it explains nothing else.
    on_detectors: ClassVar[bool] = True
    detectors_only: ClassVar[bool] = False

    preset: str | None = None

    def __post_init__(self) -> None:
        if self.preset is not None:
            get_preset(self.preset)

    @property
    def preset_name(self) -> str:
        """The preset this method runs with."""
        return self.preset or self.default_preset

    def engine(self, batch_size: int) -> cam_engine.Attribution:
        """The array engine computing this method, `batch_size` inputs per forward."""
        raise NotImplementedError

    def batch_for(self, batch_size: int) -> int:
        """Inputs per call for this method, given the explainer's batch size."""
        return max(batch_size, self.least_batch)


class MaskedMaps(Method):
    """Methods that mask the input with the layer's upsampled channels and score it."""


class ActivationsOnly(Method):
    """Methods that form the map from the activations alone, with no forward."""


class TailPerturbation(Method):
    """Methods that perturb the activations and score them through the tail graph."""

    needs_tail = True
    least_batch = 64
    on_detectors = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.preset is not None and self.preset != self.default_preset:
            raise ValueError(
                f"{self.name} has its own convention ({self.default_preset}); "
                f"the {self.preset!r} preset does not apply"
            )


class InputMasks(Method):
    """Methods that mask the input at random, with no target layer."""

    needs_layer = False
    weighs_activations = False


@dataclass(frozen=True, kw_only=True)
class ScoreCam(MaskedMaps):
    """Score-CAM (Wang et al. 2020, arXiv 1910.01279): every channel scored on its own.
    Cost: one forward per distinct non-constant channel."""

    name: ClassVar[str] = "scorecam"
    shares_layer_forwards: ClassVar[bool] = True

    def engine(self, batch_size: int) -> cam_engine.Attribution:
        return cam_engine.ScoreCam(self.preset_name, batch_size)


@dataclass(frozen=True, kw_only=True)
class FasterScoreCam(MaskedMaps):
    """Faster Score-CAM: only the `channels` maps of largest spatial spread are scored.

    Args:
        channels: channels scored (forwards). Default: 64.
    """

    name: ClassVar[str] = "faster-scorecam"
    channels: int = 64

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive("channels", self.channels)

    def engine(self, batch_size: int) -> cam_engine.Attribution:
        return cam_methods.FasterScoreCam(self.preset_name, batch_size, self.channels)


@dataclass(frozen=True, kw_only=True)
class ClusterScoreCam(MaskedMaps):
    """Clustered Score-CAM: channels grouped by k-means weighted by their energy, one
    forward per cluster.

    Args:
        clusters: clusters (forwards). Default: 64.
        seed: k-means seeding. Default: 0.
    """

    name: ClassVar[str] = "cluster-scorecam"
    clusters: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive("clusters", self.clusters)

    def engine(self, batch_size: int) -> cam_engine.Attribution:
        return cam_methods.ClusterScoreCam(self.preset_name, batch_size, self.clusters, self.seed)


@dataclass(frozen=True, kw_only=True)
class SSCam(MaskedMaps):
    """SS-CAM (arXiv 2006.14255): each mask scored `samples` times with Gaussian noise.

    Args:
        samples: noisy copies per mask. Default: 35.
        sigma: the noise's standard deviation. Default: 2.0.
        seed: the noise's seed. Default: 0.
    """

    name: ClassVar[str] = "sscam"
    default_preset: ClassVar[str] = TORCHCAM
    samples: int = 35
    sigma: float = 2.0
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive("samples", self.samples)

    def engine(self, batch_size: int) -> cam_engine.Attribution:
        return cam_methods.SSCam(self.preset_name, batch_size, self.samples, self.sigma, self.seed)


@dataclass(frozen=True, kw_only=True)
class ISCam(MaskedMaps):
    """IS-CAM (arXiv 2010.03023): each mask scored at `samples` growing scales.

    Args:
        samples: scaled copies per mask. Default: 10.
    """

    name: ClassVar[str] = "iscam"
    default_preset: ClassVar[str] = TORCHCAM
    samples: int = 10

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive("samples", self.samples)

    def engine(self, batch_size: int) -> cam_engine.Attribution:
        return cam_methods.ISCam(self.preset_name, batch_size, self.samples)


@dataclass(frozen=True, kw_only=True)
class EigenCam(ActivationsOnly):
    """EigenCAM: the activations' first principal component, class-agnostic, no forward."""

    name: ClassVar[str] = "eigencam"
    weighs_activations: ClassVar[bool] = False

    def engine(self, batch_size: int) -> cam_engine.Attribution:
        return cam_methods.EigenCam(self.preset_name, batch_size)


@dataclass(frozen=True, kw_only=True)
class ReciproCam(TailPerturbation):
    """ReciproCAM (arXiv 2209.14074): one tail forward per position of the layer's grid.

    Args:
        gaussian: spread each position over its 3×3 neighbourhood. Default: False.
    """

    name: ClassVar[str] = "reciprocam"
    weighs_activations: ClassVar[bool] = False
    gaussian: bool = False

    def engine(self, batch_size: int) -> cam_engine.Attribution:
        return ReciproEngine(self.preset, batch_size, self.gaussian)


@dataclass(frozen=True, kw_only=True)
class AblationCam(TailPerturbation):
    """Ablation-CAM (WACV 2020), as pytorch-grad-cam: one tail forward per ablated channel."""

    name: ClassVar[str] = "ablationcam"
    default_preset: ClassVar[str] = GRADCAM

    def engine(self, batch_size: int) -> cam_engine.Attribution:
        return AblationEngine(self.preset, batch_size)


@dataclass(frozen=True, kw_only=True)
class Rise(InputMasks):
    """RISE (Petsiuk et al. 2018): random masks over the input, any classifier.

    Args:
        samples: random masks (forwards). Default: 4000.
        grid: cells per side of a mask. Default: 7.
        p: the probability that a cell is kept. Default: 0.5.
        seed: the masks' seed. Default: 0.
    """

    name: ClassVar[str] = "rise"
    samples: int = DEFAULT_MASKS
    grid: int = 7
    p: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive("samples", self.samples)
        _positive("grid", self.grid)
        if not 0.0 < self.p <= 1.0:
            raise ValueError(f"p must be in (0, 1], got {self.p!r}")

    def engine(self, batch_size: int) -> cam_engine.Attribution:
        return RiseEngine(self.preset_name, batch_size, self.samples, self.grid, self.p, self.seed)


@dataclass(frozen=True, kw_only=True)
class DRise(Rise):
    """D-RISE (Petsiuk et al. 2021): RISE's random masks on an object detector, each masked
    input weighted by how well its detections still find the target detection (IoU × cosine
    of the class vectors × objectness). Only the detector's input and outputs are needed.

    Args:
        samples: random masks (forwards). Default: 2000.
        grid: cells per side of a mask. Default: 16 (the paper's).
        p: the probability that a cell is kept. Default: 0.5 (the paper's).
        seed: the masks' seed. Default: 0.
    """

    name: ClassVar[str] = "drise"
    detectors_only: ClassVar[bool] = True
    samples: int = DRISE_MASKS
    grid: int = 16


# The names of the command line and the service, in the order they are listed.
METHODS: dict[str, type[Method]] = {
    cls.name: cls
    for cls in (
        ScoreCam,
        FasterScoreCam,
        ClusterScoreCam,
        SSCam,
        ISCam,
        EigenCam,
        ReciproCam,
        AblationCam,
        Rise,
        DRise,
    )
}

# Wire parameters of methods: parameter → {method name: the field it sets}.
WIRE_PARAMETERS: dict[str, dict[str, str]] = {
    "channels": {"faster-scorecam": "channels", "cluster-scorecam": "clusters"},
    "samples": {"sscam": "samples", "iscam": "samples", "rise": "samples", "drise": "samples"},
    "gaussian": {"reciprocam": "gaussian"},
}
# Wire parameters that must not be given to other methods (the others are ignored there).
STRICT_PARAMETERS = ("gaussian",)


def method_from(name: str, preset: str | None = None, **wire: Any) -> Method:
    """The method called `name` with the wire parameters that apply to it.

    `channels` sets Faster Score-CAM's channels and clustered Score-CAM's clusters;
    `samples` the copies per mask of SS-CAM and IS-CAM and RISE's masks; `gaussian`
    ReciproCAM's variant (an error elsewhere). None or False means the method's default.
    """
    cls = METHODS.get(name)
    if cls is None:
        raise ValueError(f"unknown method {name!r}: choose one of {', '.join(METHODS)}")
    chosen: dict[str, Any] = {}
    for parameter, value in wire.items():
        target = WIRE_PARAMETERS.get(parameter)
        if target is None:
            raise TypeError(f"unknown method parameter {parameter!r}")
        if value is None or value is False:
            continue
        if name in target:
            chosen[target[name]] = value
        elif parameter in STRICT_PARAMETERS:
            raise ValueError(f"{parameter} applies to {', '.join(target)} only")
    return cls(preset=preset, **chosen)


def as_method(method: Method | str) -> Method:
    """A method object, from an object or a method's name (with its defaults)."""
    if isinstance(method, Method):
        return method
    if isinstance(method, str):
        return method_from(method)
    raise TypeError(f"method must be a method object or name, got {method!r}")


def settings_of(method: Method) -> dict[str, Any]:
    """The method's settings by field name (its preset included)."""
    return {f.name: getattr(method, f.name) for f in fields(method)}
