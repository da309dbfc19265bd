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
from .bundle import Bundle
from .cli_bundle import export, info, layers, quantize, split
from .cli_common import key_values, provider_libraries, provider_name
from .cli_serve import serve
from .engine import PRESETS
from .errors import ScoreCamError
from .explainer import default_bundle
from .images import DEFAULT_MAX_PIXELS
from .methods import METHODS, TAIL_METHODS

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


def run_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--model, --provider, --threads, --batch-size, --quiet: shared by running commands."""
    options: list[Decorator] = [
        click.option("--model", "model_dir", type=click.Path(file_okay=False),
                     help="Bundle folder. Default: the shipped EfficientNet-Lite0."),
        click.option("--provider", default="auto", show_default=True, callback=provider_name,
                     help="ONNX Runtime execution provider: auto, cpu, cuda, openvino, "
                          "tensorrt, dml, coreml, qnn… or a full name ('providers' lists "
                          "this installation's)."),
        click.option("--provider-option", "provider_options", multiple=True,
                     callback=key_values, metavar="KEY=VALUE",
                     help="An option for the provider (repeatable)."),
        click.option("--provider-library", "provider_libraries", multiple=True,
                     callback=provider_libraries, metavar="NAME=PATH", expose_value=False,
                     is_eager=True,
                     help="Register a plugin provider library first (ONNX Runtime ≥ 1.23)."),
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
def explain(inputs, model_dir, provider, provider_options, threads, batch_size, quiet,
            max_pixels, out, preset,
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
                job, ray_address, model_dir, provider=provider,
                provider_options=provider_options, threads=threads,
                batch_size=batch_size, max_pixels=max_pixels, actors=actors,
                gpus_per_actor=gpus_per_actor, on_done=progress.done,
                on_problem=progress.problem)
    else:
        explainer = Explainer(model_dir, provider=provider, batch_size=batch_size,
                              threads=threads, max_pixels=max_pixels,
                              provider_options=provider_options)
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
def evaluate(inputs, model_dir, provider, provider_options, threads, batch_size, quiet,
             max_pixels, methods,
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
                          max_pixels=max_pixels, provider_options=provider_options)
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
def bench(image, model_dir, provider, provider_options, threads, batch_size, quiet,
          max_pixels, presets, repeat,
          no_sweep, as_json) -> None:
    """Measure Score-CAM against its floor (the same forwards in plain ONNX Runtime)."""
    from .bench import SWEEP, format_report
    from .bench import bench as run_bench
    from .explainer import Explainer

    explainer = Explainer(model_dir, provider=provider, batch_size=batch_size, threads=threads,
                          max_pixels=max_pixels, provider_options=provider_options)
    report = run_bench(explainer, image, presets, repeat, () if no_sweep else SWEEP,
                       on_step=None if quiet else lambda text: click.echo(text, err=True))
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else format_report(report))


@main.command()
@click.option("--provider-library", "provider_libraries", multiple=True,
              callback=provider_libraries, metavar="NAME=PATH", expose_value=False,
              help="Register a plugin provider library first (ONNX Runtime ≥ 1.23).")
def providers() -> None:
    """List the execution providers this ONNX Runtime installation offers."""
    from .runtime import available_providers, full_name, import_onnxruntime, plugin_devices

    ort = import_onnxruntime()
    click.echo(f"onnxruntime {ort.__version__}; --provider auto picks cuda when a CUDA session "
               "starts, else cpu")
    for name in available_providers():
        click.echo(f"{name:<10} {full_name(name)}")
    for device in plugin_devices():
        if device.ep_name not in ort.get_available_providers():
            click.echo(f"{device.ep_name} (plugin) on {device.device.type.name}")


for command in (export, split, layers, info, quantize, serve):
    main.add_command(command)


if __name__ == "__main__":  # pragma: no cover
    main()
