"""`explain`: images, folders and globs in; overlays, maps and metadata out."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..bundle import Bundle
from ..cam.engine import PRESETS
from ..cam.methods import BLACK_BOX_METHODS, METHODS, TAIL_METHODS
from ..classifier import no_layer
from ..explainer import default_bundle
from .common import StepBar, run_options

if TYPE_CHECKING:
    from ..batch import ExplainJob


@click.command()
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
              help="Copies per mask for sscam (default 35) and iscam (default 10); random "
                   "masks for rise (default 4000).")
@click.option("--class", "classes", type=click.IntRange(min=0), multiple=True,
              help="Class id to explain (repeatable). Default: the top-1 class.")
@click.option("--top-k", type=click.IntRange(min=1), help="Explain the k most likely classes.")
@click.option("--gaussian", is_flag=True,
              help="reciprocam: spread each position over its 3×3 neighbourhood.")
@click.option("--aug-smooth", is_flag=True,
              help="Average six passes (flip × input times 0.9, 1, 1.1), as pytorch-grad-cam's "
                   "aug_smooth: six times the forwards.")
@click.option("--eigen-smooth", is_flag=True,
              help="The weighted activations' first principal component instead of their "
                   "sum (pytorch-grad-cam's eigen_smooth).")
@click.option("--layer", "layers", multiple=True,
              help="Of a multi-layer bundle, a layer to explain at (repeatable). Default: "
                   "all of them.")
@click.option("--fuse", type=click.Choice(["mean", "max"]), default=None,
              help="How several layers' maps are fused. Default: the preset's (max for "
                   "torchcam, mean otherwise).")
@click.option("--region", type=click.Path(exists=True, dir_okay=False),
              help="A segmentation model: explain the class over this mask image's non-zero "
                   "pixels (the image's or the output's size). Default: its argmax pixels.")
@click.option("--background", type=click.IntRange(min=0),
              help="A segmentation model: a class never chosen when no --class is given. "
                   "Default: the manifest's.")
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
            max_pixels, model_url, remote_timeout, out, preset,
            method, channels, samples, classes, top_k, gaussian, aug_smooth, eigen_smooth,
            layers, fuse, region, background, sheet, skip_existing,
            ray_address, actors, gpus_per_actor) -> None:
    """Explain images (files, folders or globs); write <name>.png/.npy/.json per image.

    With --class or --top-k, one set per class: <name>.c<ID>.png/.npy/.json.
    """
    from ..batch import ExplainJob, explain_files
    from ..explainer import Explainer

    if classes and top_k:
        raise click.UsageError("give either --class or --top-k, not both")
    job = ExplainJob(
        inputs=list(inputs), out=Path(out), preset=preset, method=method, channels=channels,
        samples=samples, classes=list(classes), top_k=top_k, sheet=sheet,
        skip_existing=skip_existing, gaussian=gaussian, aug_smooth=aug_smooth,
        eigen_smooth=eigen_smooth, layers=list(layers) or None, fuse=fuse,
        region=_read_region(region), background=background,
    )
    if ray_address is not None:
        if sheet:
            raise click.UsageError("--sheet is not available with --ray")
        bundle = model_dir if isinstance(model_dir, Bundle) else Bundle.load(
            model_dir or default_bundle(), verify=False)
        check_method(bundle, method, eigen_smooth, job)
        try:
            from ..distributed.dataset import import_ray
            from .ray import explain_on_ray

            import_ray()
        except ImportError as exc:
            raise click.ClickException(str(exc)) from None
        with Progress(quiet) as progress:
            results, problems = explain_on_ray(
                job, ray_address, model_dir, provider=provider,
                provider_options=provider_options, threads=threads,
                batch_size=batch_size, max_pixels=max_pixels, actors=actors,
                gpus_per_actor=gpus_per_actor, on_done=progress.done,
                on_problem=progress.problem, model_url=model_url,
                remote_timeout=remote_timeout)
    else:
        explainer = Explainer(model_dir, provider=provider, batch_size=batch_size,
                              threads=threads, max_pixels=max_pixels,
                              provider_options=provider_options, model_url=model_url,
                              remote_timeout=remote_timeout)
        check_method(explainer.bundle, method, eigen_smooth, job)
        with Progress(quiet) as progress:
            results, problems = explain_files(explainer, job, progress.start, progress.update,
                                              progress.done, progress.problem)
    failed = [r for r in results if r.error]
    thumbs = [r for r in results if r.thumbnail is not None]
    if sheet and thumbs:
        from ..fileio import write_bytes_atomic
        from ..render import contact_sheet, encode_png

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


def _read_region(path: str | None):
    """A region mask file as a boolean array (non-zero pixels), or a one-line error."""
    if path is None:
        return None
    from ..errors import ImageError
    from ..images import decode_mask, read_file

    try:
        return decode_mask(read_file(Path(path)), path)
    except ImageError as exc:
        raise click.ClickException(f"--region: {exc}") from None


def check_method(bundle: Bundle, method: str, eigen_smooth: bool = False,
                 job: ExplainJob | None = None) -> None:
    """Refuse, before any image, a method (or settings) the bundle cannot run."""
    from ..cam.methods import make_method

    m = bundle.manifest
    if job is not None:
        names = [name for name, _ in m.targets]
        unknown = [name for name in job.layers or [] if name not in names]
        if unknown:
            raise click.UsageError(f"--layer {unknown[0]}: this bundle's layers are "
                                   f"{', '.join(names) or 'none'}")
        if not m.output.segmentation and (job.region is not None
                                          or job.background is not None):
            raise click.UsageError("--region and --background are for segmentation models")
        if m.output.segmentation and (method in TAIL_METHODS or job.aug_smooth):
            raise click.UsageError(f"{'--aug-smooth' if job.aug_smooth else method} is for "
                                   "classifiers; this bundle is a segmentation model")
    if eigen_smooth and not make_method(method).weighs_activations:
        raise click.UsageError(f"--eigen-smooth applies to methods that weigh the "
                               f"activations, not {method}")
    if bundle.manifest.model_only and method not in BLACK_BOX_METHODS:
        raise click.ClickException(no_layer(bundle.path, method))
    if method in TAIL_METHODS and bundle.manifest.tail is None:
        raise click.ClickException(f"{method} needs the bundle's tail graph, and this "
                                   f"bundle has none: {bundle.manifest.tail_missing}")


def _caption(item) -> str:
    best = item.summaries[0]
    return f"{item.name}: {best['label']} ({best['score']:.2f})"


class Progress(StepBar):
    """Per-image progress over masked batches on stderr, a result row per image on stdout.

    Stdout carries results only: the table's header is printed with its first row. Each
    failure is one line on stderr as it happens, naming the input once.
    """

    def __init__(self, quiet: bool) -> None:
        super().__init__(quiet, echo_labels=False)
        self.header = False

    def __enter__(self) -> Progress:
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
