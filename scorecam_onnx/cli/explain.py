"""`explain`: images, folders and globs in; overlays, maps and metadata out."""

from __future__ import annotations

from pathlib import Path

import click

from ..bundle import Bundle
from ..request import SETTINGS
from ..runtime import default_bundle
from .common import StepBar, checked_request, request_of, run_options, setting_options


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@run_options
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default="out",
    show_default=True,
    help="Folder for the outputs.",
)
@setting_options([s.name for s in SETTINGS if s.name != "batch_size"])
@click.option(
    "--sheet",
    is_flag=True,
    help="Also write sheet.png: photo, heatmap and overlay side by side (first 64 images).",
)
@click.option(
    "--skip-existing",
    is_flag=True,
    help="Skip images whose outputs are all present (resume a run).",
)
@click.option(
    "--ray",
    "ray_address",
    is_flag=False,
    flag_value="local",
    default=None,
    metavar="[ADDRESS]",
    help="Run on a Ray cluster (a local one without ADDRESS); needs the 'ray' extra.",
)
@click.option(
    "--actors",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="With --ray: actors, each holding one model.",
)
@click.option(
    "--gpus-per-actor",
    type=click.FloatRange(min=0),
    default=0.0,
    help="With --ray: GPUs each actor reserves.",
)
def explain(
    inputs,
    model_dir,
    runtime,
    quiet,
    out,
    sheet,
    skip_existing,
    ray_address,
    actors,
    gpus_per_actor,
    **settings,
) -> None:
    """Explain images (files, folders or globs); write <name>.png/.npy/.json per image.

    With --class or --top-k, one set per class: <name>.c<ID>.png/.npy/.json. For an object
    detector, one set per detection, its box drawn: <name>.d<I>.png/.npy/.json.
    """
    from ..batch import ExplainJob, explain_files
    from ..explainer import Explainer

    if settings["target"] and settings["top_k"]:
        raise click.UsageError("give either --class or --top-k, not both")
    settings["batch_size"] = runtime.batch_size  # a run's batch size is the request's
    job = ExplainJob(list(inputs), Path(out), request_of(settings), sheet, skip_existing)
    if ray_address is not None:
        if sheet:
            raise click.UsageError("--sheet is not available with --ray")
        bundle = (
            model_dir
            if isinstance(model_dir, Bundle)
            else Bundle.load(model_dir or default_bundle(), verify=False)
        )
        checked_request(bundle, job.request)
        with Progress(quiet) as progress:
            results, problems = _on_ray(
                job, ray_address, model_dir, runtime, actors, gpus_per_actor, progress
            )
    else:
        explainer = Explainer(model_dir, runtime)
        checked_request(explainer, job.request)
        with Progress(quiet) as progress:
            results, problems = explain_files(
                explainer, job, progress.start, progress.update, progress.done, progress.problem
            )
    _finish(results, problems, sheet, out)


def _on_ray(job, address, model_dir, runtime, actors, gpus_per_actor, progress):
    try:
        from ..distributed.dataset import import_ray
        from .ray import explain_on_ray

        import_ray()
    except ImportError as exc:
        raise click.ClickException(str(exc)) from None
    return explain_on_ray(
        job,
        address,
        model_dir,
        runtime,
        actors=actors,
        gpus_per_actor=gpus_per_actor,
        on_done=progress.done,
        on_problem=progress.problem,
    )


def _finish(results, problems, sheet: bool, out: str) -> None:
    """The contact sheet, the closing line, and a failure exit when something failed."""
    failed = [r for r in results if r.error]
    thumbs = [r for r in results if r.thumbnail is not None]
    if sheet and thumbs:
        from ..fileio import write_bytes_atomic
        from ..render import contact_sheet, encode_png

        rows = [(r.thumbnail, r.thumb_saliency, _caption(r)) for r in thumbs]
        write_bytes_atomic(Path(out) / "sheet.png", encode_png(contact_sheet(rows)))
    done = sum(1 for r in results if r.summaries)
    skipped = sum(1 for r in results if r.skipped)
    click.echo(
        f"{done} explained, {skipped} skipped, {len(failed) + len(problems)} failed; "
        f"outputs in {out}/" + (f" (contact sheet: {out}/sheet.png)" if thumbs else ""),
        err=True,
    )
    if failed or problems or not results:
        reason = "no images found" if not results else "some inputs failed"
        raise click.ClickException(f"{reason}; see the messages above")


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
            click.echo(
                f"{'image':<24} {'class':>5}  {'label':<24} {'score':>6} "
                f"{'forwards':>8} {'seconds':>7}"
            )
        click.echo(text)

    def done(self, item) -> None:
        self.close()
        if item.error:
            self.problem(f"{item.source}: {item.error}")
        elif item.skipped:
            self.row(f"{item.name:<24} (outputs exist, skipped)")
        for exp in item.summaries:
            self.row(
                f"{item.name[:24]:<24} {exp['class_id']:>5}  {exp['label'][:24]:<24} "
                f"{exp['score']:>6.3f} {exp['forwards']:>8} "
                f"{exp['seconds']['total']:>7.2f}"
            )
