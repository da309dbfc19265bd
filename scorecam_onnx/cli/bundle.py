"""Bundle commands of `scorecam-onnx`: export, split, layers, info."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from ..bundle import Bundle, Preprocessing
from ..bundle.manifest import DECODERS, HEADS, RESIZE_POLICIES
from ..errors import ScoreCamError
from ..explainer import default_bundle
from .common import band_triple, number_pair, numbers, size_pair

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


# Flags of how raw pixel values become inputs, given to the command as `pixel_values`.
VALUE_FLAGS = ("input_range", "window", "voi_lut", "display_bands")


def preprocessing_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--input-size, --mean, --std, --color, --layout, --interpolation, --resize,
    --crop-fraction, the pixel-value flags (as one `pixel_values` argument), --labels,
    --out, --force."""

    @functools.wraps(func)
    def gathered(*args: Any, **kwargs: Any) -> Any:
        values = {key: kwargs.pop(key) for key in VALUE_FLAGS}
        kwargs["pixel_values"] = {k: v for k, v in values.items() if v not in (None, False)}
        if len(set(kwargs["pixel_values"]) - {"display_bands"}) > 1:
            raise click.UsageError("give one of --input-range, --window and --voi-lut")
        return func(*args, **kwargs)

    options: list[Decorator] = [
        click.option("--input-size", callback=size_pair, help="Model input size: N or HxW."),
        click.option(
            "--mean",
            callback=numbers,
            help="Per-channel mean of unit values: one, or one per channel (default "
            "ImageNet's for 3 channels, 0 otherwise).",
        ),
        click.option(
            "--std",
            callback=numbers,
            help="Per-channel std of unit values: one, or one per channel (default "
            "ImageNet's for 3 channels, 1 otherwise).",
        ),
        click.option(
            "--input-range",
            callback=number_pair,
            metavar="LOW,HIGH",
            help="Raw values LOW and HIGH become 0 and 1 (clipped). Default: the bit "
            "depth's range (255, 65535; floats as they are).",
        ),
        click.option(
            "--window",
            callback=number_pair,
            metavar="CENTER,WIDTH",
            help="A DICOM-style linear window on raw (DICOM: rescaled) values, such "
            "as 40,400 for soft tissue in Hounsfield units.",
        ),
        click.option(
            "--voi-lut",
            is_flag=True,
            help="Apply each DICOM file's own VOI LUT or window.",
        ),
        click.option(
            "--display-bands",
            callback=band_triple,
            metavar="R,G,B",
            help="Of a multi-band input, the bands overlays are drawn on. Default: 0,1,2.",
        ),
        click.option(
            "--color",
            type=click.Choice(["RGB", "BGR"]),
            default=None,
            help="Channel order the model expects. Default: RGB.",
        ),
        click.option(
            "--layout",
            type=click.Choice(["NCHW", "NHWC"]),
            default=None,
            help="Tensor layout of the input and activations. Default: split reads it "
            "off the input's shape (channels last when that axis alone can hold them); "
            "NCHW for export.",
        ),
        click.option(
            "--interpolation",
            type=click.Choice(["area", "linear", "cubic", "nearest"]),
            default=None,
            help="How images are resized to the input. Default: area.",
        ),
        click.option(
            "--resize",
            type=click.Choice(RESIZE_POLICIES),
            default=None,
            help="Whole image to the input size (stretch), or scaled to cover it "
            "and cut at the centre (crop). Default: stretch.",
        ),
        click.option(
            "--crop-fraction",
            type=click.FloatRange(0, 1, min_open=True),
            default=None,
            help="Resize to the input size ÷ F first, then cut the centre (timm's "
            "crop_pct). Default: 1.",
        ),
        click.option(
            "--labels",
            type=click.Path(exists=True, dir_okay=False),
            help="Text file with one class name per line.",
        ),
        click.option(
            "--out", required=True, type=click.Path(file_okay=False), help="Bundle folder to write."
        ),
        click.option("--force", is_flag=True, help="Replace the bundle folder if it exists."),
    ]
    command: Callable[..., Any] = gathered
    for option in reversed(options):
        command = option(command)
    return command


# Preprocessing settings, each with the flags that set it.
_FLAGS = {
    "input size": ("input_size",),
    "mean": ("mean",),
    "std": ("std",),
    "interpolation": ("interpolation",),
    "resize": ("resize", "crop_fraction"),
}


def _preprocessing(
    base: Preprocessing | None,
    input_size,
    mean,
    std,
    color,
    layout,
    interpolation,
    resize,
    crop_fraction=None,
    values: dict[str, Any] | None = None,
) -> Preprocessing:
    base = replace(base or Preprocessing(), **(values or {}))
    return Preprocessing(
        height=input_size[0] if input_size else base.height,
        width=input_size[1] if input_size else base.width,
        layout=layout or base.layout,
        color=color or base.color,
        mean=mean or base.mean,
        std=std or base.std,
        interpolation=interpolation or base.interpolation,
        resize=resize or base.resize,
        crop_fraction=crop_fraction or base.crop_fraction,
        **{k: getattr(base, k) for k in VALUE_FLAGS},
    )


def _origins(given: dict[str, Any], zoo: str | None, sets: tuple[str, ...]) -> str:
    """'input size, mean: timm pretrained_cfg; std: --std' — where each setting came from:
    a flag, else the zoo when it gives that setting, else the defaults."""
    by_origin: dict[str, list[str]] = {}
    for setting, flags in _FLAGS.items():
        flag = next((f for f in flags if given.get(f) is not None), None)
        origin = (
            f"--{flag.replace('_', '-')}"
            if flag
            else zoo
            if zoo and setting in sets
            else "defaults"
        )
        by_origin.setdefault(origin, []).append(setting)
    return "; ".join(f"{', '.join(names)}: {origin}" for origin, names in by_origin.items())


def _tokens(ctx: click.Context, param: click.Parameter, value: str | None):
    if value is None:
        return None
    prefix, _, grid = value.partition(":")
    try:
        gh, _, gw = grid.lower().replace("×", "x").partition("x")
        parsed = (int(prefix), int(gh), int(gw))
    except ValueError:
        raise click.BadParameter("expected P:GHxGW, such as 1:14x14") from None
    if parsed[0] < 0 or parsed[1] < 1 or parsed[2] < 1:
        raise click.BadParameter("expected P ≥ 0 and a grid of positive sizes")
    return parsed


def token_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--tokens and --activation-layout: how the target tensor is read."""
    options: list[Decorator] = [
        click.option(
            "--tokens",
            callback=_tokens,
            metavar="P:GHxGW",
            help="A token target (N×L×C): P leading tokens, then a GH×GW patch grid. "
            "Default: inferred when only one reading fits.",
        ),
        click.option(
            "--activation-layout",
            type=click.Choice(["NCHW", "NHWC"]),
            default=None,
            help="Layout of a 4-D target tensor. Default: the input's layout.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


# --background, for export and split: a segmentation model's class that is never explained.
head_option: Decorator = click.option(
    "--head",
    type=click.Choice(HEADS),
    default=None,
    help="What the class scores mean: softmax (exclusive classes), multi-label (a sigmoid "
    "per label) or binary (one logit). Default: read off the graph (a trailing Sigmoid: "
    "multi-label; one column: binary; else softmax).",
)

decoder_option: Decorator = click.option(
    "--decoder",
    type=click.Choice(DECODERS),
    default=None,
    help="A detector's output layout. Default: recognised from its outputs.",
)

background_option: Decorator = click.option(
    "--background",
    type=click.IntRange(min=0),
    help="A segmentation model (N×C×H×W output): the background class, never chosen as the "
    "one to explain.",
)


def _read_labels(path: str | None) -> list[str] | None:
    if path is None:
        return None
    return Path(path).read_text(encoding="utf-8").splitlines()


@click.command()
@click.option(
    "--model",
    "model_spec",
    default="efficientnet-lite0",
    show_default=True,
    help="'efficientnet-lite0' (built in, pretrained), hf:PATH (a Hugging Face "
    "folder or hub name) or MODULE:CALLABLE (timm, torchvision, your code).",
)
@click.option(
    "--weights",
    type=click.Path(exists=True, dir_okay=False),
    help="State-dict file to load into the model (weights_only).",
)
@click.option(
    "--model-kwargs",
    "model_kwargs",
    default=None,
    metavar="JSON",
    help="Keyword arguments for MODULE:CALLABLE, e.g. '{\"weights\": null}'.",
)
@click.option(
    "--weights-enum",
    metavar="ENUM.MEMBER",
    help="A torchvision weights enum (ViT_B_16_Weights.IMAGENET1K_V1) whose "
    "transforms and categories give the preprocessing and labels.",
)
@click.option(
    "--layer",
    "layers",
    multiple=True,
    help="Target module output (NAME, NAME#K for its K-th call) or input "
    "(NAME:input); repeat it for a multi-layer bundle. Default: chosen from "
    "the model's shapes.",
)
@head_option
@background_option
@token_options
@preprocessing_options
def export(
    model_spec,
    weights,
    model_kwargs,
    weights_enum,
    layers,
    head,
    background,
    tokens,
    activation_layout,
    input_size,
    mean,
    std,
    color,
    layout,
    interpolation,
    resize,
    crop_fraction,
    pixel_values,
    labels,
    out,
    force,
) -> None:
    """Export a PyTorch classifier into a bundle (needs the 'export' extra)."""
    try:
        from scorecam_onnx_export import export_bundle, load_model
    except ImportError as exc:
        raise click.ClickException(
            f"export needs PyTorch: install the 'export' extra ({exc})"
        ) from None
    if layout == "NHWC":
        raise click.UsageError("PyTorch models are NCHW; --layout NHWC is for 'split'")
    kwargs = _json_object(model_kwargs, "--model-kwargs") if model_kwargs else None
    loaded = load_model(model_spec, weights, kwargs, weights_enum)
    given = {
        "input_size": input_size,
        "mean": mean,
        "std": std,
        "color": color,
        "layout": layout,
        "interpolation": interpolation,
        "resize": resize,
        "crop_fraction": crop_fraction,
    }
    prep = _preprocessing(loaded.preprocessing, **given, values=pixel_values)
    label_names = _read_labels(labels)
    notes = {
        "preprocessing": _origins(given, loaded.preprocessing_from, loaded.preprocessing_sets),
        "labels": "--labels" if label_names is not None else loaded.labels_from or "none",
    }
    report = export_bundle(
        loaded,
        out,
        list(layers) or None,
        prep,
        label_names,
        force,
        tokens,
        activation_layout,
        notes,
        background,
        head,
    )
    m = report.bundle.manifest
    click.echo(f"layer {report.layer.label}: {report.layer.reason}; {_activation(m)}")
    for more in m.layers[1:]:
        click.echo(f"layer {more.layer}: given with --layer; {_spec(more.activation)}")
    click.echo(
        f"wrote {out}: {m.output.classes} classes, preprocessing from "
        f"{notes['preprocessing']}, labels from {notes['labels']}, "
        f"{_bundle_bytes(report.bundle) / 1e6:.1f} MB"
    )
    click.echo(
        f"verified against PyTorch: max difference {report.activation_diff:.2g} "
        f"(activations), {report.logits_diff:.2g} (logits); export "
        f"{report.export_seconds:.1f} s, verification {report.verify_seconds:.1f} s"
    )


@click.command()
@click.argument("onnx_file", type=click.Path(dir_okay=False))
@click.option(
    "--layer",
    "layers",
    multiple=True,
    help="Target tensor name; repeat it for a multi-layer bundle. Default: the "
    "suggested one ('layers').",
)
@click.option(
    "--no-layer",
    is_flag=True,
    help="No target layer: a model-only bundle (the classifier and its "
    "preprocessing) for --method rise.",
)
@click.option("--output", help="Class-score output name. Default: the graph's only output.")
@head_option
@decoder_option
@background_option
@token_options
@preprocessing_options
def split(
    onnx_file,
    layers,
    no_layer,
    output,
    head,
    decoder,
    background,
    tokens,
    activation_layout,
    input_size,
    mean,
    std,
    color,
    layout,
    interpolation,
    resize,
    crop_fraction,
    pixel_values,
    labels,
    out,
    force,
) -> None:
    """Cut an existing ONNX classifier or object detector into a bundle (no PyTorch
    needed)."""
    from ..bundle import graphs, write_bundle
    from ..bundle.detector import is_detector
    from ..bundle.model_only import graph_layout

    model = graphs.load_model(Path(onnx_file))
    given = {
        "input_size": input_size,
        "mean": mean,
        "std": std,
        "color": color,
        "layout": layout,
        "interpolation": interpolation,
        "resize": resize,
        "crop_fraction": crop_fraction,
    }
    if decoder is not None or (output is None and is_detector(model)):
        if pixel_values:
            raise click.UsageError(
                f"--{next(iter(pixel_values)).replace('_', '-')} is for classifiers "
                "and segmentation models; detectors read RGB photos"
            )
        _split_detector(
            model, onnx_file, [] if no_layer else list(layers), decoder, given, labels, out, force
        )
        return
    prep = _preprocessing(
        None, **{**given, "layout": layout or graph_layout(model)}, values=pixel_values
    )
    output = output or _only_output(model)
    if no_layer:
        _split_model_only(
            model,
            onnx_file,
            layers or tokens or activation_layout,
            output,
            prep,
            {"input size": input_size, "mean": mean, "std": std, "resize": resize},
            labels,
            out,
            force,
            head,
        )
        return
    tensor = list(layers) or graphs.suggested_layer(model, output, prep.layout)
    bundle = write_bundle(
        model,
        out,
        tensor,
        output,
        prep,
        labels=_read_labels(labels),
        source={"framework": "onnx", "model": Path(onnx_file).name},
        force=force,
        tokens=tokens,
        activation_layout=activation_layout,
        background=background,
        head=head,
    )
    m = bundle.manifest
    shown = "; ".join(f"{name} ({_spec(a)})" for name, a in m.targets)
    click.echo(
        f"wrote {out}: layer{'s' * (len(m.targets) > 1)} {shown}, "
        f"{m.output.classes} classes, {_bundle_bytes(bundle) / 1e6:.1f} MB"
    )


def _split_detector(
    model,
    onnx_file: str,
    layers: list[str],
    decoder: str | None,
    given: dict[str, Any],
    labels: str | None,
    out: str,
    force: bool,
) -> None:
    """A detector bundle: the detector and, at the layers given (or the last backbone stage
    its neck upsamples), a features graph."""
    from ..bundle.detector import overrides_of, suggested_layer, write_detector_bundle

    chosen = layers or [t for t in [suggested_layer(model)] if t is not None]
    bundle = write_detector_bundle(
        model,
        Path(onnx_file),
        out,
        chosen,
        overrides=overrides_of(given),
        decoder=decoder,
        labels=_read_labels(labels),
        force=force,
    )
    m = bundle.manifest
    kind = m.decoder.kind if m.decoder is not None else "?"
    shown = "; ".join(f"{name} ({_spec(a)})" for name, a in m.targets) or (
        "none (model only, for --method drise)"
    )
    click.echo(
        f"wrote {out}: a {kind} detector, layer{'s' * (len(m.targets) > 1)} "
        f"{shown}, {m.output.classes} classes, {_bundle_bytes(bundle) / 1e6:.1f} MB"
    )


def _split_model_only(
    model,
    onnx_file: str,
    layer_given: object,
    output: str,
    prep: Preprocessing,
    flags: dict[str, Any],
    labels: str | None,
    out: str,
    force: bool,
    head: str | None = None,
) -> None:
    from ..bundle import write_model_bundle
    from ..bundle.model_only import assumed_line, graph_size

    if layer_given:
        raise click.UsageError(
            "--no-layer writes a bundle with no target layer: drop "
            "--layer, --tokens and --activation-layout"
        )
    bundle = write_model_bundle(
        model,
        out,
        output,
        prep,
        labels=_read_labels(labels),
        source={"framework": "onnx", "model": Path(onnx_file).name},
        force=force,
        head=head,
    )
    m = bundle.manifest
    fixed = graph_size(model, m.input.layout) is not None
    assumed = [
        name
        for name, value in flags.items()
        if value is None and not (name == "input size" and fixed)
    ]
    if assumed:
        built = Preprocessing(
            m.input.height,
            m.input.width,
            layout=m.input.layout,
            mean=m.input.mean,
            std=m.input.std,
            resize=m.input.resize,
        )
        hint = "set them with --input-size, --mean, --std, --resize"
        click.echo(f"note: {assumed_line(onnx_file, built, assumed, hint)}", err=True)
    click.echo(
        f"wrote {out}: no layer (model only, for --method rise), "
        f"{m.output.classes} classes, {_bundle_bytes(bundle) / 1e6:.1f} MB"
    )


def _activation(m) -> str:
    """'1280×7×7', or for tokens '384 channels of 1 + 14×14 tokens'."""
    if m.activation is None:
        return "none (a model-only bundle, for --method rise)"
    return _spec(m.activation)


def _spec(a) -> str:
    if a.layout == "NLC":
        return f"{a.channels} channels of {a.prefix} + {a.height}×{a.width} tokens"
    return f"{a.channels}×{a.height}×{a.width}" + (" NHWC" if a.layout == "NHWC" else "")


def _json_object(text: str, option: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint=option) from None
    if not isinstance(value, dict):
        raise click.BadParameter("expected a JSON object", param_hint=option)
    return value


def _only_output(model) -> str:
    """The graph's single output; several are a usage error (--output chooses)."""
    from ..bundle import graphs

    try:
        return graphs.only_output(model)
    except ScoreCamError as exc:
        raise click.UsageError(str(exc)) from None


@click.command()
@click.argument("onnx_file", type=click.Path(dir_okay=False))
@click.option("--output", help="Class-score output name. Default: the graph's only output.")
@click.option("--layout", type=click.Choice(["NCHW", "NHWC"]), default="NCHW", show_default=True)
def layers(onnx_file, output, layout) -> None:
    """List the tensors of an ONNX classifier that can be the target (4-D maps, tokens)."""
    from ..bundle import graphs

    model = graphs.load_model(Path(onnx_file), load_weights=False)
    found = _candidates(model, output, layout)
    if not found:
        raise click.ClickException(
            "no 4-D tensor with a spatial size above 1, and no token tensor, feeds the output"
        )
    width = max(len(c.name) for c in found)
    for c in found:
        shape = "×".join("?" if d is None else str(d) for d in c.shape)
        mark = "  <- suggested" if c.suggested else ""
        click.echo(f"{c.name:<{width}}  {shape:<20} {c.op_type}{mark}")


def _candidates(model, output: str | None, layout: str) -> list:
    """A classifier's candidate layers; a detector's (those feeding its first output), the
    one `split` chooses by itself marked."""
    from dataclasses import replace

    from ..bundle import graphs
    from ..bundle.detector import is_detector, suggested_layer

    if output is not None or not is_detector(model):
        return graphs.candidate_layers(model, output or _only_output(model), layout)
    chosen = suggested_layer(model)
    return [
        replace(c, suggested=c.name == chosen)
        for c in graphs.candidate_layers(model, model.graph.output[0].name, layout)
    ]


def _values(i: Any) -> str:
    """How raw values become unit values u, in words."""
    if i.window is not None:
        return f"u from the window {i.window[0]:g},{i.window[1]:g}"
    if i.input_range is not None:
        return f"u from the range {i.input_range[0]:g}–{i.input_range[1]:g}"
    return "u from each DICOM file's VOI LUT" if i.voi_lut else "u from the bit depth"


@click.command()
@click.argument("bundle_dir", type=click.Path(file_okay=False), required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
def info(bundle_dir, as_json) -> None:
    """Describe a bundle (default: the shipped EfficientNet-Lite0)."""
    bundle = Bundle.load(bundle_dir or default_bundle())
    m = bundle.manifest
    if as_json:
        click.echo(m.dumps(), nl=False)
        return
    i, a = m.input, m.activation
    rows = [
        ("bundle", str(bundle.path)),
        (
            "source",
            ", ".join(
                f"{k} {v}" for k, v in m.source.items() if k not in ("preprocessing", "labels")
            )
            or "-",
        ),
        (
            "input",
            f"{i.name}: {i.layout} {i.height}×{i.width} "
            + (f"{i.color}, " if i.channels == 3 else f"{i.channels} channels, ")
            + f"{_values(i)}, (u·255·{i.scale:.4g} − {list(i.mean)}) / {list(i.std)}, "
            f"{i.resize} ({i.interpolation})"
            + (f", centre {i.crop_fraction:.4g}" if i.crop_fraction < 1 else "")
            + (f"; from {m.source['preprocessing']}" if "preprocessing" in m.source else ""),
        ),
        *(
            (("layer", f"{name} → {spec.name}: {_spec(spec)}") for name, spec in m.targets)
            if a
            else [("layer", _activation(m))]
        ),
        (
            "output",
            f"{m.output.name}: {m.output.classes} {m.output.kind}"
            if not m.decoder
            else f"{', '.join(m.decoder.outputs)}: a {m.decoder.kind} detector, "
            f"{m.output.classes} classes"
            + (f", NMS at IoU {m.decoder.iou:g}" if m.decoder.kind in ("yolov8", "yolov5") else ""),
        ),
        (
            "tail",
            f"{m.tail} (for reciprocam, ablationcam)" if m.tail else f"none: {m.tail_missing}",
        ),
        (
            "labels",
            (f"{len(bundle.labels)} names" if bundle.labels else "none")
            + (f" (from {m.source['labels']})" if bundle.labels and "labels" in m.source else ""),
        ),
        ("size", f"{_bundle_bytes(bundle) / 1e6:.1f} MB"),
    ]
    fidelity = bundle.path / "fidelity.json"
    if fidelity.is_file():
        f = json.loads(fidelity.read_text(encoding="utf-8"))
        rows.append(
            (
                "fidelity",
                f"{f['mode']}: top-1 agreement {f['top1_agreement']:.2f}, "
                f"map correlation {f['correlation_mean']:.4f} (worst "
                f"{f['correlation_worst']:.4f}), forward time ×"
                f"{f['forward_ratio']:.2f}, size ×{f['size_ratio']:.2f}",
            )
        )
    for key, value in rows:
        click.echo(f"{key:<8} {value}")


def _bundle_bytes(bundle: Bundle) -> int:
    return sum(p.stat().st_size for p in bundle.path.iterdir() if p.is_file())


@click.command()
@click.argument("bundle_dir", type=click.Path(file_okay=False))
@click.option(
    "--out", required=True, type=click.Path(file_okay=False), help="The new bundle folder."
)
@click.option("--int8", "mode", flag_value="int8", help="INT8 (static, QDQ, per-channel).")
@click.option("--fp16", "mode", flag_value="fp16", help="FP16 weights and compute (GPUs).")
@click.option(
    "--calibrate",
    multiple=True,
    metavar="PATH",
    help="Calibration images: an image, a folder or a glob, once per flag "
    "(repeatable; INT8; 16 images or more advised).",
)
@click.option(
    "--check",
    multiple=True,
    metavar="PATH",
    help="More images for the fidelity report only (repeatable, as --calibrate).",
)
@click.option(
    "--graphs",
    default="model",
    show_default=True,
    help="Graphs to convert, comma-separated: model, features, tail.",
)
@click.option(
    "--method", default="scorecam", show_default=True, help="Method whose maps the report compares."
)
@click.option("--force", is_flag=True, help="Replace the output folder if it exists.")
def quantize(bundle_dir, out, mode, calibrate, check, graphs, method, force) -> None:
    """Write an INT8 or FP16 copy of a bundle with a measured fidelity report."""
    from ..images import find_images
    from ..quantize import format_fidelity, quantize_bundle

    if mode is None:
        raise click.UsageError("choose --int8 or --fp16")
    if mode == "int8" and not calibrate:
        raise click.UsageError(
            "--int8 needs --calibrate PATH (an image, a folder or a glob; repeatable)"
        )
    found = {}
    for role, given in (("calibrate", calibrate), ("check", check)):
        paths, problems = find_images(list(given))
        if problems:
            raise click.ClickException(f"--{role}: {'; '.join(problems)}")
        found[role] = paths
    try:
        report = quantize_bundle(
            bundle_dir,
            out,
            mode,
            found["calibrate"],
            found["check"],
            [g.strip() for g in graphs.split(",") if g.strip()],
            method,
            force,
            on_step=lambda text: click.echo(text, err=True),
        )
    except (ValueError, ImportError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(format_fidelity(report))
    click.echo(f"wrote {out} ({report['bytes'][mode] / 1e6:.1f} MB)", err=True)
