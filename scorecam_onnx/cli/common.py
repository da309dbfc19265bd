"""Options, callbacks and progress shown on stderr, shared by the command modules."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Sequence
from typing import Any

import click

from ..bundle.manifest import DECODERS, RESIZE_POLICIES
from ..images import DEFAULT_MAX_PIXELS

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def key_values(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]):
    """KEY=VALUE pairs into a dict (None when there are none)."""
    pairs = {}
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {value!r}")
        pairs[key] = text
    return pairs or None


def provider_name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """'auto', a short provider name or a full one; availability is checked when used."""
    from ..runners.ort import PROVIDERS

    if value == "auto" or value.lower() in PROVIDERS or value.endswith("ExecutionProvider"):
        return value
    raise click.BadParameter(
        f"unknown provider {value!r}: use auto, a short name "
        f"({', '.join(PROVIDERS)}) or a full ONNX Runtime name"
    )


def provider_libraries(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> dict[str, str] | None:
    """NAME=PATH pairs, each registered with ONNX Runtime as a plugin provider library."""
    from ..errors import ProviderError
    from ..runners.ort import register_provider_library

    libraries = key_values(ctx, param, values) or {}
    for name, path in libraries.items():
        try:
            register_provider_library(name, path)
        except ProviderError as exc:
            raise click.BadParameter(str(exc)) from None
    return libraries or None


def numbers(ctx: click.Context, param: click.Parameter, value: str | None):
    """'a,b,…' into floats, one or more (None stays None)."""
    if value is None:
        return None
    try:
        return tuple(float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(
            "expected comma-separated numbers such as 0.5 or 0.5,0.5"
        ) from None


def number_pair(ctx: click.Context, param: click.Parameter, value: str | None):
    """'a,b' into two floats (None stays None)."""
    parts = numbers(ctx, param, value)
    if parts is not None and len(parts) != 2:
        raise click.BadParameter(f"expected two comma-separated numbers, got {value!r}")
    return parts


def band_triple(ctx: click.Context, param: click.Parameter, value: str | None):
    """'r,g,b' into three band indices (None stays None)."""
    if value is None:
        return None
    try:
        parts = tuple(int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter("expected three band indices such as 2,1,0") from None
    if len(parts) != 3 or min(parts) < 0:
        raise click.BadParameter("expected three band indices (0 or more) such as 2,1,0")
    return parts


def size_pair(ctx: click.Context, param: click.Parameter, value: str | None):
    """'N' or 'HxW' into (height, width) (None stays None)."""
    if value is None:
        return None
    text = value.lower().replace("×", "x")
    try:
        parts = [int(v) for v in text.split("x")] if "x" in text else [int(text)] * 2
    except ValueError:
        raise click.BadParameter("expected N or HxW, such as 224 or 224x224") from None
    if len(parts) != 2 or min(parts) < 1:
        raise click.BadParameter("expected N or HxW with positive sizes")
    return tuple(parts)


def run_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--model, --provider, --threads, --batch-size, --quiet, --max-pixels, --model-url,
    --remote-timeout: shared by running commands."""
    options: list[Decorator] = [
        click.option(
            "--model",
            "model_dir",
            type=click.Path(exists=True),
            help="Bundle folder, or a plain .onnx classifier (for --method rise) "
            "or detector (drise; preprocessing from the options below). "
            "Default: the shipped EfficientNet-Lite0.",
        ),
        click.option(
            "--input-size",
            callback=size_pair,
            help="A plain .onnx model's input size: N or HxW. Default: the graph's, else 224.",
        ),
        click.option(
            "--mean",
            callback=numbers,
            help="A plain .onnx model's per-channel mean on [0, 1] RGB. Default: ImageNet's.",
        ),
        click.option(
            "--std",
            callback=numbers,
            help="A plain .onnx model's per-channel std on [0, 1] RGB. Default: ImageNet's.",
        ),
        click.option(
            "--layout",
            type=click.Choice(["NCHW", "NHWC"]),
            default=None,
            help="A plain .onnx model's input layout. Default: from its shape.",
        ),
        click.option(
            "--resize",
            type=click.Choice(RESIZE_POLICIES),
            default=None,
            help="A plain .onnx model's resize policy. Default: stretch "
            "(letterbox for a YOLO detector).",
        ),
        click.option(
            "--decoder",
            type=click.Choice(DECODERS),
            default=None,
            help="A plain .onnx detector's output layout. Default: recognised from its outputs.",
        ),
        click.option(
            "--provider",
            default="auto",
            show_default=True,
            callback=provider_name,
            help="ONNX Runtime execution provider: auto, cpu, cuda, openvino, "
            "tensorrt, dml, coreml, qnn… or a full name ('providers' lists "
            "this installation's).",
        ),
        click.option(
            "--provider-option",
            "provider_options",
            multiple=True,
            callback=key_values,
            metavar="KEY=VALUE",
            help="An option for the provider (repeatable).",
        ),
        click.option(
            "--provider-library",
            "provider_libraries",
            multiple=True,
            callback=provider_libraries,
            metavar="NAME=PATH",
            expose_value=False,
            is_eager=True,
            help="Register a plugin provider library first (ONNX Runtime ≥ 1.23).",
        ),
        click.option(
            "--threads",
            type=click.IntRange(min=0),
            default=0,
            help="ONNX Runtime intra-op threads (0: one per core).",
        ),
        setting_options(["batch_size"]),
        click.option("--quiet", "-q", is_flag=True, help="No progress bars."),
        click.option(
            "--max-pixels",
            type=click.IntRange(min=1),
            default=DEFAULT_MAX_PIXELS,
            show_default=True,
            help="Refuse larger images before decoding them (decompression bombs).",
        ),
        click.option(
            "--model-url",
            metavar="URL",
            help="Send the full-model forwards to this served model: http(s):// or "
            "grpc(s)://HOST:PORT/v2/models/NAME (needs the 'remote' extra).",
        ),
        click.option(
            "--remote-timeout",
            type=click.FloatRange(min=0, min_open=True),
            default=60.0,
            show_default=True,
            help="Seconds a request to --model-url may take.",
        ),
    ]
    resolving = _resolves_model(func)
    for option in reversed(options):
        resolving = option(resolving)
    return resolving


RUNTIME_FLAGS = (
    "provider",
    "provider_options",
    "threads",
    "batch_size",
    "max_pixels",
    "model_url",
    "remote_timeout",
)


def _resolves_model(func: Callable[..., Any]) -> Callable[..., Any]:
    """Pass the command `model_dir` (a plain .onnx file as a loaded model-only bundle, built
    from the preprocessing options) and `runtime`, one `Runtime` from the runtime flags."""

    @functools.wraps(func)
    def command(**kwargs: Any) -> Any:
        given = {
            key: kwargs.pop(key)
            for key in ("input_size", "mean", "std", "layout", "resize", "decoder")
        }
        kwargs["model_dir"] = resolve_model(kwargs["model_dir"], **given)
        kwargs["runtime"] = runtime_from({key: kwargs.pop(key) for key in RUNTIME_FLAGS})
        return func(**kwargs)

    return command


def runtime_from(flags: dict[str, Any]) -> Any:
    """The `Runtime` of the runtime flags' values."""
    from ..runtime import Runtime

    return Runtime(**{k: v for k, v in flags.items() if v is not None})


def setting_options(
    names: Sequence[str] | None = None, helps: dict[str, str] | None = None
) -> Decorator:
    """The flags of the explanation settings (`scorecam_onnx.request.SETTINGS`; all, or
    those in `names`), each checked by its setting as a request parameter is."""
    from ..request import SETTINGS

    chosen = [s for s in SETTINGS if names is None or s.name in names]

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        for setting in reversed(chosen):
            func = _setting_option(setting, (helps or {}).get(setting.name))(func)
        return func

    return decorate


def _setting_option(setting: Any, help_text: str | None) -> Decorator:
    """One setting as a click option: its flag, help and default; its value checked by the
    setting (click only splits the words)."""
    from ..errors import ImageError
    from ..request import SettingError

    def check(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        try:
            if setting.kind == "mask" and value is not None:
                return _read_mask(value)
            return setting.parse(value)
        except (SettingError, ImageError) as exc:
            raise click.BadParameter(getattr(exc, "reason", str(exc))) from None

    extra: dict[str, Any] = {"callback": check, "help": help_text or setting.help}
    if setting.kind == "bool":
        extra["is_flag"] = True
    elif setting.kind == "mask":
        extra["type"] = click.Path(exists=True, dir_okay=False)
    elif setting.kind in ("int", "ids"):
        extra["type"] = click.INT
    elif setting.kind == "choice":
        extra["metavar"] = f"[{'|'.join(setting.choices)}]"
    if setting.repeat:
        extra["multiple"] = True
    if setting.default is not None and setting.kind != "bool":
        extra.update(default=setting.default, show_default=True)
    return click.option(setting.flag, setting.name, **extra)


def _read_mask(path: str) -> Any:
    """A mask image file as a boolean array (its non-zero pixels)."""
    from pathlib import Path

    from ..images import decode_mask, read_file

    return decode_mask(read_file(Path(path)), path)


def request_of(values: dict[str, Any]) -> Any:
    """The `ExplainRequest` of the setting flags' values; a bad combination is a usage
    error."""
    from ..request import request_from

    try:
        return request_from({k: v for k, v in values.items() if v is not None})
    except (ValueError, TypeError) as exc:
        raise click.UsageError(str(exc)) from None


def checked_request(explainer_or_bundle: Any, request: Any) -> None:
    """Refuse, before any image, a request the bundle cannot run: a missing graph is an
    error (exit 1), settings that do not fit the bundle a usage error (exit 2)."""
    from ..bundle import Bundle
    from ..errors import BundleError
    from ..options import check_request

    bundle = (
        explainer_or_bundle
        if isinstance(explainer_or_bundle, Bundle)
        else (explainer_or_bundle.bundle)
    )
    try:
        check_request(bundle.manifest, bundle.path, request.method, request.target, request.options)
    except BundleError as exc:
        raise click.ClickException(str(exc)) from None
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def resolve_model(
    model_dir: str | None,
    input_size: tuple[int, int] | None = None,
    mean: tuple[float, float, float] | None = None,
    std: tuple[float, float, float] | None = None,
    layout: str | None = None,
    resize: str | None = None,
    decoder: str | None = None,
) -> Any:
    """A bundle folder as given, or a plain .onnx file opened as a model-only `Bundle`; the
    preprocessing settings it assumes are said in one line on stderr."""
    from pathlib import Path

    from ..bundle import open_model
    from ..bundle.detector import is_detector
    from ..bundle.graphs import load_model
    from ..bundle.model_only import assumed_line, preprocessing_for
    from ..errors import ScoreCamError

    flags = {"input size": input_size, "mean": mean, "std": std, "layout": layout, "resize": resize}
    path = Path(model_dir) if model_dir else None
    if path is None or not path.is_file():
        given = [
            f"--{name.replace(' ', '-')}"
            for name, v in {**flags, "decoder": decoder}.items()
            if v is not None
        ]
        if given:
            raise click.UsageError(
                f"{', '.join(given)}: only for a plain .onnx model; a bundle "
                "keeps its preprocessing in its manifest"
            )
        return model_dir
    try:
        graph = load_model(path, load_weights=False)
        if decoder is not None or is_detector(graph):
            return _open_detector(path, graph, flags, decoder)
        prep, assumed = preprocessing_for(graph, input_size, mean, std, layout, resize)
        if assumed:
            click.echo(f"note: {assumed_line(path, prep, assumed)}", err=True)
        return open_model(path, prep, quiet=True)
    except ScoreCamError as exc:
        raise click.ClickException(str(exc)) from None


def _open_detector(path: Any, graph: Any, flags: dict[str, Any], decoder: str | None) -> Any:
    """A plain detector, its exporter's preprocessing changed by the flags given (a note on
    stderr when none is)."""
    from ..bundle.detector import assumed_note, open_detector, overrides_of

    overrides = overrides_of({k.replace(" ", "_"): v for k, v in flags.items()})
    bundle = open_detector(path, graph, decoder=decoder, quiet=True, overrides=overrides)
    decoder_spec = bundle.manifest.decoder
    if not overrides and decoder_spec is not None:
        note = assumed_note(path, decoder_spec.kind, bundle.manifest.input)
        click.echo(f"note: {note}", err=True)
    return bundle


def comma_list(noun: str, allowed: Sequence[str]) -> Callable[..., list[str]]:
    """A click callback turning 'a,b' into a list (each item once), each one of `allowed`."""

    def parse(ctx: click.Context, param: click.Parameter, value: str) -> list[str]:
        names = list(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))
        unknown = [n for n in names if n not in allowed]
        if unknown or not names:
            raise click.BadParameter(
                f"unknown {noun} {', '.join(unknown) or '(none)'}: choose from {', '.join(allowed)}"
            )
        return names

    return parse


class StepBar:
    """A progress bar on stderr per step (an image, or a method on an image).

    Shown only when stderr is a terminal; elsewhere the step labels are echoed if asked.
    """

    def __init__(self, quiet: bool, echo_labels: bool = True) -> None:
        self.live = not quiet and sys.stderr.isatty()
        self.echo_labels = echo_labels and not quiet and not self.live
        self.label = ""
        self.bar: Any = None  # click's progress bar, once a total is known

    def __enter__(self) -> StepBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def problem(self, text: str) -> None:
        """One line on stderr for an input that failed, as it happens."""
        self.close()
        click.echo(f"error: {text}", err=True)

    def step(self, label: str) -> None:
        self.close()
        self.label = label
        if self.echo_labels:
            click.echo(label, err=True)

    def update(self, done: int, total: int) -> None:
        if not self.live:
            return
        if self.bar is None:
            self.bar = click.progressbar(length=total, label=self.label, file=sys.stderr)
            self.bar.__enter__()
        self.bar.update(done - self.bar.pos)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None
