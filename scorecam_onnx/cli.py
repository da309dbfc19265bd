"""The `scorecam-onnx` command line, a thin layer over the Python API.

Exit codes: 0 success; 1 an error, or some inputs failed (the others are still done);
2 a usage error (bad flag or value).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from . import __version__
from .bundle import Bundle, Preprocessing
from .cli_serve import serve
from .engine import PRESETS
from .errors import ScoreCamError
from .explainer import default_bundle
from .images import DEFAULT_MAX_PIXELS
from .methods import METHODS, TAIL_METHODS
from .runtime import PROVIDER_CHOICES

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


class _Group(click.Group):
    """Turns library errors into one-line messages (exit 1) instead of tracebacks."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ScoreCamError as exc:
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="scorecam-onnx")
def main() -> None:
    """Explain image classifiers with Score-CAM on ONNX Runtime (no PyTorch needed)."""


def _triple(ctx: click.Context, param: click.Parameter, value: str | None):
    if value is None:
        return None
    try:
        parts = tuple(float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter("expected three numbers such as 0.485,0.456,0.406") from None
    if len(parts) != 3:
        raise click.BadParameter("expected three comma-separated numbers")
    return parts


def _size(ctx: click.Context, param: click.Parameter, value: str | None):
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


def preprocessing_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--input-size, --mean, --std, --color, --layout, --interpolation."""
    options: list[Decorator] = [
        click.option("--input-size", callback=_size, help="Model input size: N or HxW."),
        click.option("--mean", callback=_triple,
                     help="Per-channel mean on [0, 1] RGB (default ImageNet's)."),
        click.option("--std", callback=_triple,
                     help="Per-channel std on [0, 1] RGB (default ImageNet's)."),
        click.option("--color", type=click.Choice(["RGB", "BGR"]), default=None,
                     help="Channel order the model expects. Default: RGB."),
        click.option("--layout", type=click.Choice(["NCHW", "NHWC"]), default=None,
                     help="Tensor layout of the input and activations. Default: NCHW."),
        click.option("--interpolation", type=click.Choice(["area", "linear", "cubic",
                                                           "nearest"]),
                     default=None, help="How images are resized to the input. Default: area."),
        click.option("--resize", type=click.Choice(["stretch", "crop"]), default=None,
                     help="Whole image to the input size (stretch), or scaled to cover it "
                          "and cut at the centre (crop). Default: stretch."),
        click.option("--labels", type=click.Path(exists=True, dir_okay=False),
                     help="Text file with one class name per line."),
        click.option("--out", required=True, type=click.Path(file_okay=False),
                     help="Bundle folder to write."),
        click.option("--force", is_flag=True, help="Replace the bundle folder if it exists."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _preprocessing(base: Preprocessing | None, input_size, mean, std, color, layout,
                   interpolation, resize) -> Preprocessing:
    base = base or Preprocessing()
    return Preprocessing(
        height=input_size[0] if input_size else base.height,
        width=input_size[1] if input_size else base.width,
        layout=layout or base.layout,
        color=color or base.color,
        mean=mean or base.mean,
        std=std or base.std,
        interpolation=interpolation or base.interpolation,
        resize=resize or base.resize,
    )


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
        click.option("--tokens", callback=_tokens, metavar="P:GHxGW",
                     help="A token target (N×L×C): P leading tokens, then a GH×GW patch grid. "
                          "Default: inferred when only one reading fits."),
        click.option("--activation-layout", type=click.Choice(["NCHW", "NHWC"]),
                     default=None,
                     help="Layout of a 4-D target tensor. Default: the input's layout."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _read_labels(path: str | None) -> list[str] | None:
    if path is None:
        return None
    return Path(path).read_text(encoding="utf-8").splitlines()


@main.command()
@click.option("--model", "model_spec", default="efficientnet-lite0", show_default=True,
              help="'efficientnet-lite0' (built in, pretrained) or MODULE:CALLABLE.")
@click.option("--weights", type=click.Path(exists=True, dir_okay=False),
              help="State-dict file to load into the model (weights_only).")
@click.option("--model-kwargs", "model_kwargs", default=None, metavar="JSON",
              help='Keyword arguments for MODULE:CALLABLE, e.g. \'{"weights": null}\'.')
@click.option("--layer", help="Target module (NAME, or NAME#K for its K-th call). "
                              "Default: the last module with a 4-D output.")
@token_options
@preprocessing_options
def export(model_spec, weights, model_kwargs, layer, tokens, activation_layout, input_size,
           mean, std, color, layout, interpolation, resize, labels, out, force) -> None:
    """Export a PyTorch classifier into a bundle (needs the 'export' extra)."""
    try:
        from scorecam_onnx_export import export_bundle, load_model
    except ImportError as exc:
        raise click.ClickException(
            f"export needs PyTorch: install the 'export' extra ({exc})") from None
    if layout == "NHWC":
        raise click.UsageError("PyTorch models are NCHW; --layout NHWC is for 'split'")
    kwargs = _json_object(model_kwargs, "--model-kwargs") if model_kwargs else None
    loaded = load_model(model_spec, weights, kwargs)
    prep = _preprocessing(loaded.preprocessing, input_size, mean, std, color, layout,
                          interpolation, resize)
    report = export_bundle(loaded, out, layer, prep, _read_labels(labels), force, tokens,
                           activation_layout)
    m = report.bundle.manifest
    click.echo(f"wrote {out}: layer {report.layer.label} ({_activation(m)}), "
               f"{m.output.classes} classes, {_bundle_bytes(report.bundle) / 1e6:.1f} MB")
    click.echo(f"verified against PyTorch: max difference {report.activation_diff:.2g} "
               f"(activations), {report.logits_diff:.2g} (logits); export "
               f"{report.export_seconds:.1f} s, verification {report.verify_seconds:.1f} s")


@main.command()
@click.argument("onnx_file", type=click.Path(dir_okay=False))
@click.option("--layer", help="Target tensor name. Default: the suggested one ('layers').")
@click.option("--output", help="Class-score output name. Default: the graph's only output.")
@token_options
@preprocessing_options
def split(onnx_file, layer, output, tokens, activation_layout, input_size, mean, std, color,
          layout, interpolation, resize, labels, out, force) -> None:
    """Cut an existing ONNX classifier into a bundle (no PyTorch needed)."""
    from . import graphs
    from .bundle import write_bundle

    model = graphs.load_model(Path(onnx_file))
    prep = _preprocessing(None, input_size, mean, std, color, layout, interpolation, resize)
    output = output or _only_output(model)
    tensor = layer or graphs.suggested_layer(model, output, prep.layout)
    bundle = write_bundle(model, out, tensor, output, prep, labels=_read_labels(labels),
                          source={"framework": "onnx", "model": Path(onnx_file).name},
                          force=force, tokens=tokens, activation_layout=activation_layout)
    m = bundle.manifest
    click.echo(f"wrote {out}: layer {tensor} ({_activation(m)}), "
               f"{m.output.classes} classes, {_bundle_bytes(bundle) / 1e6:.1f} MB")


def _activation(m) -> str:
    """'1280×7×7', or for tokens '384 channels of 1 + 14×14 tokens'."""
    a = m.activation
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
    from . import graphs

    try:
        return graphs.only_output(model)
    except ScoreCamError as exc:
        raise click.UsageError(str(exc)) from None


@main.command()
@click.argument("onnx_file", type=click.Path(dir_okay=False))
@click.option("--output", help="Class-score output name. Default: the graph's only output.")
@click.option("--layout", type=click.Choice(["NCHW", "NHWC"]), default="NCHW",
              show_default=True)
def layers(onnx_file, output, layout) -> None:
    """List the tensors of an ONNX classifier that can be the target (4-D maps, tokens)."""
    from . import graphs

    model = graphs.load_model(Path(onnx_file), load_weights=False)
    found = graphs.candidate_layers(model, output or _only_output(model), layout)
    if not found:
        raise click.ClickException("no 4-D tensor with a spatial size above 1, and no token "
                                   "tensor, feeds the output")
    width = max(len(c.name) for c in found)
    for c in found:
        shape = "×".join("?" if d is None else str(d) for d in c.shape)
        mark = "  <- suggested" if c.suggested else ""
        click.echo(f"{c.name:<{width}}  {shape:<20} {c.op_type}{mark}")


@main.command()
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
        ("source", ", ".join(f"{k} {v}" for k, v in m.source.items()) or "-"),
        ("input", f"{i.name}: {i.layout} {i.height}×{i.width} {i.color}, "
                  f"(x·{i.scale:.4g} − {list(i.mean)}) / {list(i.std)}, {i.resize} "
                  f"({i.interpolation})"),
        ("layer", f"{m.layer} → {a.name}: {_activation(m)}"),
        ("output", f"{m.output.name}: {m.output.classes} {m.output.kind}"),
        ("tail", f"{m.tail} (for reciprocam, ablationcam)" if m.tail else
                 f"none: {m.tail_missing}"),
        ("labels", f"{len(bundle.labels)} names" if bundle.labels else "none"),
        ("size", f"{_bundle_bytes(bundle) / 1e6:.1f} MB"),
    ]
    for key, value in rows:
        click.echo(f"{key:<8} {value}")


def _bundle_bytes(bundle: Bundle) -> int:
    return sum(p.stat().st_size for p in bundle.path.iterdir() if p.is_file())


def run_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--model, --provider, --threads, --batch-size, --quiet: shared by running commands."""
    options: list[Decorator] = [
        click.option("--model", "model_dir", type=click.Path(file_okay=False),
                     help="Bundle folder. Default: the shipped EfficientNet-Lite0."),
        click.option("--provider", type=click.Choice(PROVIDER_CHOICES), default="auto",
                     show_default=True, help="ONNX Runtime execution provider."),
        click.option("--threads", type=click.IntRange(min=0), default=0,
                     help="ONNX Runtime intra-op threads (0: one per core)."),
        click.option("--batch-size", type=click.IntRange(min=1),
                     help="Masked inputs per model call. Default: 8 on CPU, 64 on CUDA."),
        click.option("--quiet", "-q", is_flag=True, help="No progress bars."),
        click.option("--max-pixels", type=click.IntRange(min=1), default=DEFAULT_MAX_PIXELS,
                     show_default=True,
                     help="Refuse larger images before decoding them (decompression bombs)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@run_options
@click.option("--out", type=click.Path(file_okay=False), default="out", show_default=True,
              help="Folder for the outputs.")
@click.option("--preset", type=click.Choice(list(PRESETS)), default=None,
              help="Score-CAM convention. Default: the method's own (paper for scorecam).")
@click.option("--method", type=click.Choice(METHODS), default="scorecam", show_default=True)
@click.option("--channels", type=click.IntRange(min=1), default=64, show_default=True,
              help="Channels kept by faster-scorecam.")
@click.option("--samples", type=click.IntRange(min=1),
              help="Copies per mask for sscam (default 35) and iscam (default 10).")
@click.option("--class", "classes", type=click.IntRange(min=0), multiple=True,
              help="Class id to explain (repeatable). Default: the top-1 class.")
@click.option("--top-k", type=click.IntRange(min=1), help="Explain the k most likely classes.")
@click.option("--gaussian", is_flag=True,
              help="reciprocam: spread each position over its 3×3 neighbourhood.")
@click.option("--sheet", is_flag=True,
              help="Also write sheet.png: photo | heatmap | overlay (first 64 images).")
@click.option("--skip-existing", is_flag=True,
              help="Skip images whose outputs are all present (resume a run).")
@click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None,
              metavar="[ADDRESS]",
              help="Run on a Ray cluster (a local one without ADDRESS); needs the 'ray' extra.")
@click.option("--actors", type=click.IntRange(min=1), default=2, show_default=True,
              help="With --ray: actors, each holding one model.")
@click.option("--gpus-per-actor", type=click.FloatRange(min=0), default=0.0,
              help="With --ray: GPUs each actor reserves.")
def explain(inputs, model_dir, provider, threads, batch_size, quiet, max_pixels, out, preset,
            method, channels, samples, classes, top_k, gaussian, sheet, skip_existing,
            ray_address, actors, gpus_per_actor) -> None:
    """Explain images (files, folders or globs); write <name>.png/.npy/.json per image.

    With --class or --top-k, one set per class: <name>.c<ID>.png/.npy/.json.
    """
    from .batch import ExplainJob, explain_files
    from .explainer import Explainer

    if classes and top_k:
        raise click.UsageError("give either --class or --top-k, not both")
    job = ExplainJob(
        inputs=list(inputs), out=Path(out), preset=preset, method=method, channels=channels,
        samples=samples, classes=list(classes), top_k=top_k, sheet=sheet,
        skip_existing=skip_existing, gaussian=gaussian,
    )
    if ray_address is not None:
        if sheet:
            raise click.UsageError("--sheet is not available with --ray")
        manifest = Bundle.load(model_dir or default_bundle(), verify=False).manifest
        if method in TAIL_METHODS and manifest.tail is None:
            raise click.ClickException(f"{method} needs the bundle's tail graph, and this "
                                       f"bundle has none: {manifest.tail_missing}")
        try:
            from .cli_ray import explain_on_ray
            from .distributed.dataset import import_ray

            import_ray()
        except ImportError as exc:
            raise click.ClickException(str(exc)) from None
        with _Progress(quiet) as progress:
            results, problems = explain_on_ray(
                job, ray_address, model_dir, provider=provider, threads=threads,
                batch_size=batch_size, max_pixels=max_pixels, actors=actors,
                gpus_per_actor=gpus_per_actor, on_done=progress.done,
                on_problem=progress.problem)
    else:
        explainer = Explainer(model_dir, provider=provider, batch_size=batch_size,
                              threads=threads, max_pixels=max_pixels)
        if method in TAIL_METHODS and explainer.tail is None:
            raise click.ClickException(f"{method} needs the bundle's tail graph, and this "
                                       f"bundle has none: {explainer.bundle.manifest.tail_missing}")
        with _Progress(quiet) as progress:
            results, problems = explain_files(explainer, job, progress.start, progress.update,
                                              progress.done, progress.problem)
    failed = [r for r in results if r.error]
    thumbs = [r for r in results if r.thumbnail is not None]
    if sheet and thumbs:
        from .fileio import write_bytes_atomic
        from .render import contact_sheet, encode_png

        rows = [(r.thumbnail, r.thumb_saliency, _caption(r)) for r in thumbs]
        write_bytes_atomic(Path(out) / "sheet.png", encode_png(contact_sheet(rows)))
    done = sum(1 for r in results if r.summaries)
    skipped = sum(1 for r in results if r.skipped)
    click.echo(f"{done} explained, {skipped} skipped, {len(failed) + len(problems)} failed; "
               f"outputs in {out}/" + (f" (contact sheet: {out}/sheet.png)" if thumbs else ""),
               err=True)
    if failed or problems or not results:
        reason = "no images found" if not results else "some inputs failed"
        raise click.ClickException(f"{reason}; see the messages above")


def _caption(item) -> str:
    best = item.summaries[0]
    return f"{item.name}: {best['label']} ({best['score']:.2f})"


class _StepBar:
    """A progress bar on stderr per step (an image, or a method on an image).

    Shown only when stderr is a terminal; elsewhere the step labels are echoed if asked.
    """

    def __init__(self, quiet: bool, echo_labels: bool = True) -> None:
        self.live = not quiet and sys.stderr.isatty()
        self.echo_labels = echo_labels and not quiet and not self.live
        self.label = ""
        self.bar = None

    def __enter__(self) -> _StepBar:
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


class _Progress(_StepBar):
    """Per-image progress over masked batches on stderr, a result row per image on stdout.

    Stdout carries results only: the table's header is printed with its first row. Each
    failure is one line on stderr as it happens, naming the input once.
    """

    def __init__(self, quiet: bool) -> None:
        super().__init__(quiet, echo_labels=False)
        self.header = False

    def __enter__(self) -> _Progress:
        return self

    def start(self, item) -> None:
        self.step(f"{item.name:<24}")

    def row(self, text: str) -> None:
        if not self.header:
            self.header = True
            click.echo(f"{'image':<24} {'class':>5}  {'label':<24} {'score':>6} "
                       f"{'forwards':>8} {'seconds':>7}")
        click.echo(text)

    def done(self, item) -> None:
        self.close()
        if item.error:
            self.problem(f"{item.source}: {item.error}")
        elif item.skipped:
            self.row(f"{item.name:<24} (outputs exist, skipped)")
        for exp in item.summaries:
            self.row(f"{item.name[:24]:<24} {exp['class_id']:>5}  {exp['label'][:24]:<24} "
                       f"{exp['score']:>6.3f} {exp['forwards']:>8} "
                       f"{exp['seconds']['total']:>7.2f}")


def _comma_list(noun: str, allowed: Sequence[str]) -> Callable[..., list[str]]:
    """A click callback turning 'a,b' into a list, each item one of `allowed`."""
    def parse(ctx: click.Context, param: click.Parameter, value: str) -> list[str]:
        names = [v.strip() for v in value.split(",") if v.strip()]
        unknown = [n for n in names if n not in allowed]
        if unknown or not names:
            raise click.BadParameter(f"unknown {noun} {', '.join(unknown) or '(none)'}: "
                                     f"choose from {', '.join(allowed)}")
        return names

    return parse


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@run_options
@click.option("--methods", callback=_comma_list("method", METHODS), show_default=True,
              default="scorecam,faster-scorecam,sscam,iscam,eigencam",
              help="Comma-separated methods to compare.")
@click.option("--baselines/--no-baselines", default=True, show_default=True,
              help="Also score a random map and a centred Gaussian.")
@click.option("--boxes", type=click.Path(exists=True, dir_okay=False),
              help="JSON {image file name: [[x0, y0, x1, y1], ...]} for the pointing game.")
@click.option("--step", type=click.FloatRange(0, 1, min_open=True), default=0.01,
              show_default=True, help="Share of pixels per deletion/insertion step.")
@click.option("--channels", type=click.IntRange(min=1), default=64, show_default=True,
              help="Channels kept by faster-scorecam.")
@click.option("--samples", type=click.IntRange(min=1),
              help="Copies per mask for sscam (default 35) and iscam (default 10).")
@click.option("--out", type=click.Path(file_okay=False), default="out/evaluation",
              show_default=True, help="Folder for report.json, report.md and curves.png.")
def evaluate(inputs, model_dir, provider, threads, batch_size, quiet, max_pixels, methods,
             baselines, boxes, step, channels, samples, out) -> None:
    """Compare methods on images: Average Drop, Increase, Deletion, Insertion (+ pointing)."""
    from .batch import failure_reason
    from .evaluate import BASELINES, write_report
    from .evaluate import evaluate as run_evaluation
    from .explainer import Explainer
    from .images import find_images

    paths, problems = find_images(list(inputs))
    for problem in problems:
        click.echo(f"error: {problem}", err=True)
    if not paths:
        raise click.ClickException("no images to evaluate")
    box_list = _boxes_for(paths, boxes) if boxes else None
    explainer = Explainer(model_dir, provider=provider, batch_size=batch_size, threads=threads,
                          max_pixels=max_pixels)
    failed: list[str] = []

    def on_error(index: int, exc: ScoreCamError) -> None:
        failed.append(str(paths[index]))
        bar.problem(f"{paths[index]}: {failure_reason(exc)}")

    with _StepBar(quiet) as bar:
        try:
            report = run_evaluation(explainer, paths, methods, BASELINES if baselines else (),
                                    box_list, step, channels, samples, bar.step, bar.update,
                                    on_error)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
    written = write_report(report, Path(out))
    click.echo(report.markdown(), nl=False)
    click.echo(f"wrote {', '.join(str(p) for p in written)}", err=True)
    if problems or failed:
        raise click.ClickException(f"{len(problems) + len(failed)} inputs were not evaluated; "
                                   "see the messages above")


def _boxes_for(paths: list[Path], boxes_file: str) -> list[list[list[float]] | None]:
    try:
        data = json.loads(Path(boxes_file).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise click.ClickException(f"{boxes_file}: cannot read boxes: {exc}") from None
    if not isinstance(data, dict):
        raise click.ClickException(f"{boxes_file}: expected an object of image name → boxes")
    return [data.get(str(p), data.get(p.name)) for p in paths]


@main.command()
@click.argument("image", type=click.Path(exists=True, dir_okay=False))
@run_options
@click.option("--presets", default=",".join(PRESETS), show_default=True,
              callback=_comma_list("preset", list(PRESETS)),
              help="Comma-separated presets to measure.")
@click.option("--repeat", type=click.IntRange(min=1), default=3, show_default=True,
              help="Repetitions of each measurement (median and spread are reported).")
@click.option("--no-sweep", is_flag=True, help="Skip the batch-size sweep.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def bench(image, model_dir, provider, threads, batch_size, quiet, max_pixels, presets, repeat,
          no_sweep, as_json) -> None:
    """Measure Score-CAM against its floor (the same forwards in plain ONNX Runtime)."""
    from .bench import SWEEP, format_report
    from .bench import bench as run_bench
    from .explainer import Explainer

    explainer = Explainer(model_dir, provider=provider, batch_size=batch_size, threads=threads,
                          max_pixels=max_pixels)
    report = run_bench(explainer, image, presets, repeat, () if no_sweep else SWEEP,
                       on_step=None if quiet else lambda text: click.echo(text, err=True))
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else format_report(report))


main.add_command(serve)


if __name__ == "__main__":  # pragma: no cover
    main()
