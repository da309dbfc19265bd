"""`evaluate` (faithfulness of the methods) and `bench` (the engine against its floor)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import click

from ..errors import ScoreCamError
from ..methods import METHODS, PRESETS
from ..metrics import DEFAULT_METRICS, METRICS
from ..options import ExplainOptions
from ..request import ExplainRequest
from .common import (
    Decorator,
    StepBar,
    checked_request,
    comma_list,
    request_of,
    run_options,
    setting_options,
)


def plan_options(default_methods: str) -> Decorator:
    """--methods, --step, --channels, --samples, --metrics, --road-noise and the explain
    options: what `evaluate` and `compare` measure."""
    options: list[Decorator] = [
        click.option(
            "--methods",
            callback=comma_list("method", list(METHODS)),
            show_default=True,
            default=default_methods,
            help="Comma-separated methods to compare.",
        ),
        click.option(
            "--step",
            type=click.FloatRange(0, 1, min_open=True),
            default=0.01,
            show_default=True,
            help="Share of pixels per deletion/insertion step.",
        ),
        setting_options(["channels", "samples"]),
        click.option(
            "--metrics",
            "metric_names",
            default=",".join(DEFAULT_METRICS),
            show_default=True,
            callback=comma_list("metric", METRICS),
            help="Comma-separated metrics; road (RemOve And Debias, needs the 'metrics' "
            "extra) solves a sparse system per percentile and image.",
        ),
        click.option(
            "--road-noise",
            type=click.FloatRange(min=0),
            default=0.01,
            show_default=True,
            help="ROAD's imputation noise (seeded per image).",
        ),
        setting_options(
            [f.name for f in fields(ExplainOptions) if f.name != "batch_size"],
            {
                "aug_smooth": "Explain with aug_smooth (six times the forwards).",
                "eigen_smooth": "Explain with eigen_smooth (methods that weigh activations).",
                "fuse": "How a multi-layer bundle's maps are fused. Default: the preset's.",
            },
        ),
    ]

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


def plan_of(explainer, methods, baselines, step, metric_names, road_noise, settings):
    """The evaluation plan the flags describe, each method checked against the bundle."""
    from ..evaluation.faithfulness import EvaluationPlan

    requests = [request_of({**settings, "method": name}) for name in methods]
    plan = EvaluationPlan(
        [r.method for r in requests],
        baselines,
        metric_names,
        step,
        road_noise,
        requests[0].options,
    )
    for _, method, options in plan.runs():  # each method as it will run, up front
        checked_request(explainer, ExplainRequest(method, options=options))
    return plan


def image_paths(inputs) -> tuple[list[Path], list[str]]:
    """The images of the arguments; problems on stderr; none at all is an error."""
    from ..images import find_images

    paths, problems = find_images(list(inputs))
    for problem in problems:
        click.echo(f"error: {problem}", err=True)
    if not paths:
        raise click.ClickException("no images given could be found")
    return paths, problems


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@run_options
@plan_options("scorecam,faster-scorecam,sscam,iscam,eigencam")
@click.option(
    "--baselines/--no-baselines",
    default=True,
    show_default=True,
    help="Also score a random map and a centred Gaussian.",
)
@click.option(
    "--boxes",
    type=click.Path(exists=True, dir_okay=False),
    help="JSON {image file name: [[x0, y0, x1, y1], ...]} for the pointing game.",
)
@click.option(
    "--sanity",
    "with_sanity",
    is_flag=True,
    help="Also run the sanity checks (model-parameter randomisation) on the methods.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default="out/evaluation",
    show_default=True,
    help="Folder for report.json, report.md and curves.png (and sanity.*).",
)
def evaluate(
    inputs,
    model_dir,
    runtime,
    quiet,
    methods,
    step,
    metric_names,
    road_noise,
    baselines,
    boxes,
    with_sanity,
    out,
    **settings,
) -> None:
    """Compare methods on images: Average Drop, Increase, Deletion, Insertion (+ pointing)."""
    from ..evaluation.faithfulness import BASELINES, EvaluationCallbacks, write_report
    from ..evaluation.faithfulness import evaluate as run_evaluation
    from ..explainer import Explainer

    paths, problems = image_paths(inputs)
    box_list = _boxes_for(paths, boxes) if boxes else None
    explainer = Explainer(model_dir, runtime)
    plan = plan_of(
        explainer,
        methods,
        BASELINES if baselines else (),
        step,
        metric_names,
        road_noise,
        settings,
    )
    report, failed = tracked(
        paths,
        quiet,
        lambda bar, on_error: run_evaluation(
            explainer, paths, plan, box_list, EvaluationCallbacks(bar.step, bar.update, on_error)
        ),
    )
    written = written_to(out, lambda: write_report(report, Path(out)))
    click.echo(report.markdown(), nl=False)
    if with_sanity:
        from ..evaluation.sanity_checks import SanityPlan

        checked = [p for p in paths if str(p) not in failed]
        sane = SanityPlan([m for _, m, _ in plan.runs()], options=plan.options)
        written += run_sanity(explainer, checked, sane, out, quiet)[0]
    finished(written, problems + failed, "evaluated")


def tracked(paths, quiet, run):
    """`run(bar, on_error)` with progress on stderr: its result and the inputs that could
    not be read (each one line as it happens); a `ValueError` is one line (exit 1)."""
    from ..batch import failure_reason

    failed: list[str] = []
    with StepBar(quiet) as bar:

        def on_error(index: int, exc: ScoreCamError) -> None:
            failed.append(str(paths[index]))
            bar.problem(f"{paths[index]}: {failure_reason(exc)}")

        try:
            return run(bar, on_error), failed
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None


def finished(written, missed, verb) -> None:
    """Say what was written; exit 1 when some inputs were `missed`."""
    click.echo(f"wrote {', '.join(str(p) for p in written)}", err=True)
    if missed:
        raise click.ClickException(f"{len(missed)} inputs were not {verb}; see the messages above")


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
@click.option(
    "--presets",
    default=",".join(PRESETS),
    show_default=True,
    callback=comma_list("preset", list(PRESETS)),
    help="Comma-separated presets to measure.",
)
@click.option(
    "--repeat",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Repetitions of each measurement (median and spread are reported).",
)
@click.option("--no-sweep", is_flag=True, help="Skip the batch-size sweep.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def bench(image, model_dir, runtime, quiet, presets, repeat, no_sweep, as_json) -> None:
    """Measure Score-CAM against its floor (the same forwards in plain ONNX Runtime)."""
    from ..evaluation.bench import SWEEP, format_report
    from ..evaluation.bench import bench as run_bench
    from ..explainer import Explainer

    explainer = Explainer(model_dir, runtime)
    checked_request(explainer, request_of({}))
    report = run_bench(
        explainer,
        image,
        presets,
        repeat,
        () if no_sweep else SWEEP,
        on_step=None if quiet else lambda text: click.echo(text, err=True),
    )
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else format_report(report))


def run_sanity(explainer, paths, plan, out, quiet) -> tuple[list[Path], list[str]]:
    """The sanity checks of `plan` with progress on stderr, printed and written into `out`;
    the files written and the inputs that could not be checked."""
    from ..evaluation.sanity_checks import SanityCallbacks, write_sanity
    from ..evaluation.sanity_checks import sanity as run

    report, failed = tracked(
        paths,
        quiet,
        lambda bar, on_error: run(
            explainer, paths, plan, SanityCallbacks(bar.step, bar.update, on_error)
        ),
    )
    click.echo(report.markdown(), nl=False)
    return written_to(out, lambda: write_sanity(report, Path(out))), failed


def written_to(out, write):
    """`write()`'s paths; a folder that cannot be written is one line (exit 1)."""
    try:
        return write()
    except OSError as exc:
        raise click.ClickException(f"cannot write into {out}: {exc.strerror or exc}") from None
