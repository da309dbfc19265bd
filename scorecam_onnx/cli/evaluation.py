"""`evaluate` (faithfulness of the methods) and `bench` (the engine against its floor)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..cam.engine import PRESETS
from ..cam.methods import METHODS
from ..errors import ScoreCamError
from ..metrics import DEFAULT_METRICS, METRICS
from .common import StepBar, comma_list, run_options
from .explain import check_method


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@run_options
@click.option("--methods", callback=comma_list("method", METHODS), show_default=True,
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
              help="Copies per mask for sscam (default 35) and iscam (default 10); random "
                   "masks for rise (default 4000).")
@click.option("--metrics", "metric_names", default=",".join(DEFAULT_METRICS),
              show_default=True, callback=comma_list("metric", METRICS),
              help="Comma-separated metrics; road (RemOve And Debias, needs the 'metrics' "
                   "extra) solves a sparse system per percentile and image.")
@click.option("--road-noise", type=click.FloatRange(min=0), default=0.01, show_default=True,
              help="ROAD's imputation noise (seeded per image).")
@click.option("--aug-smooth", is_flag=True,
              help="Explain with aug_smooth (six times the forwards).")
@click.option("--eigen-smooth", is_flag=True,
              help="Explain with eigen_smooth (methods that weigh activations).")
@click.option("--fuse", type=click.Choice(["mean", "max"]), default=None,
              help="How a multi-layer bundle's maps are fused. Default: the preset's.")
@click.option("--out", type=click.Path(file_okay=False), default="out/evaluation",
              show_default=True, help="Folder for report.json, report.md and curves.png.")
def evaluate(inputs, model_dir, provider, provider_options, threads, batch_size, quiet,
             max_pixels, model_url, remote_timeout, methods,
             baselines, boxes, step, channels, samples, metric_names, road_noise, aug_smooth,
             eigen_smooth, fuse, out) -> None:
    """Compare methods on images: Average Drop, Increase, Deletion, Insertion (+ pointing)."""
    from ..batch import failure_reason
    from ..evaluation.faithfulness import BASELINES, write_report
    from ..evaluation.faithfulness import evaluate as run_evaluation
    from ..explainer import Explainer
    from ..images import find_images

    paths, problems = find_images(list(inputs))
    for problem in problems:
        click.echo(f"error: {problem}", err=True)
    if not paths:
        raise click.ClickException("no images to evaluate")
    box_list = _boxes_for(paths, boxes) if boxes else None
    explainer = Explainer(model_dir, provider=provider, batch_size=batch_size, threads=threads,
                          max_pixels=max_pixels, provider_options=provider_options,
                          model_url=model_url, remote_timeout=remote_timeout)
    for method in methods:
        check_method(explainer.bundle, method)
    failed: list[str] = []

    def on_error(index: int, exc: ScoreCamError) -> None:
        failed.append(str(paths[index]))
        bar.problem(f"{paths[index]}: {failure_reason(exc)}")

    with StepBar(quiet) as bar:
        try:
            report = run_evaluation(explainer, paths, methods, BASELINES if baselines else (),
                                    box_list, step, channels, samples, bar.step, bar.update,
                                    on_error, metric_names, road_noise, aug_smooth,
                                    eigen_smooth, fuse)
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


@click.command()
@click.argument("image", type=click.Path(exists=True, dir_okay=False))
@run_options
@click.option("--presets", default=",".join(PRESETS), show_default=True,
              callback=comma_list("preset", list(PRESETS)),
              help="Comma-separated presets to measure.")
@click.option("--repeat", type=click.IntRange(min=1), default=3, show_default=True,
              help="Repetitions of each measurement (median and spread are reported).")
@click.option("--no-sweep", is_flag=True, help="Skip the batch-size sweep.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def bench(image, model_dir, provider, provider_options, threads, batch_size, quiet,
          max_pixels, model_url, remote_timeout, presets, repeat,
          no_sweep, as_json) -> None:
    """Measure Score-CAM against its floor (the same forwards in plain ONNX Runtime)."""
    from ..evaluation.bench import SWEEP, format_report
    from ..evaluation.bench import bench as run_bench
    from ..explainer import Explainer

    explainer = Explainer(model_dir, provider=provider, batch_size=batch_size, threads=threads,
                          max_pixels=max_pixels, provider_options=provider_options,
                          model_url=model_url, remote_timeout=remote_timeout)
    check_method(explainer.bundle, "scorecam")
    report = run_bench(explainer, image, presets, repeat, () if no_sweep else SWEEP,
                       on_step=None if quiet else lambda text: click.echo(text, err=True))
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else format_report(report))
