"""`compare` (methods side by side in a report) and `sanity` (do the maps depend on the
model's parameters?)."""

from __future__ import annotations

from pathlib import Path

import click

from ..methods import METHODS
from .common import checked_request, comma_list, request_of, run_options, setting_options
from .evaluation import (
    finished,
    image_paths,
    plan_of,
    plan_options,
    run_sanity,
    tracked,
    written_to,
)

SANITY_METHODS = "scorecam,faster-scorecam,eigencam,reciprocam"


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@run_options
@plan_options("scorecam,faster-scorecam,cluster-scorecam,reciprocam,rise")
@click.option(
    "--height",
    type=click.IntRange(32, 2048),
    default=224,
    show_default=True,
    help="Height in pixels of each picture in the report.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default="out/compare",
    show_default=True,
    help="Folder for report.html (self-contained), the pictures as PNG, report.json and report.md.",
)
def compare(
    inputs,
    model_dir,
    runtime,
    quiet,
    methods,
    step,
    metric_names,
    road_noise,
    height,
    out,
    **settings,
) -> None:
    """Compare methods on images in one report: overlays side by side, cost, faithfulness."""
    from ..evaluation.comparison import compare as run_compare
    from ..evaluation.faithfulness import EvaluationCallbacks
    from ..evaluation.report_html import markdown, write_comparison
    from ..explainer import Explainer

    paths, problems = image_paths(inputs)
    explainer = Explainer(model_dir, runtime)
    plan = plan_of(explainer, methods, (), step, metric_names, road_noise, settings)
    found, failed = tracked(
        paths,
        quiet,
        lambda bar, on_error: run_compare(
            explainer, paths, plan, EvaluationCallbacks(bar.step, bar.update, on_error), height
        ),
    )
    written = written_to(out, lambda: write_comparison(found, Path(out)))
    click.echo(markdown(found), nl=False)
    finished(written, problems + failed, "compared")


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@run_options
@click.option(
    "--methods",
    callback=comma_list("method", list(METHODS)),
    default=SANITY_METHODS,
    show_default=True,
    help="Comma-separated methods to check.",
)
@setting_options(["channels", "samples"])
@click.option(
    "--steps",
    type=click.IntRange(min=0),
    default=8,
    show_default=True,
    help="Randomisation steps, from the top layer alone to every layer (0: every layer).",
)
@click.option(
    "--modes",
    callback=comma_list("mode", ["cascading", "independent"]),
    default="cascading,independent",
    show_default=True,
    help="Cascading (the top k layers) and/or independent (one layer at a time).",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Seed of the random weights.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default="out/sanity",
    show_default=True,
    help="Folder for sanity.json, sanity.md and sanity.png.",
)
def sanity(inputs, model_dir, runtime, quiet, methods, steps, modes, seed, out, **settings) -> None:
    """Randomise the model layer by layer: does each method's map change, as it should?"""
    from ..evaluation.sanity_checks import SanityPlan
    from ..explainer import Explainer

    paths, problems = image_paths(inputs)
    explainer = Explainer(model_dir, runtime)
    requests = [request_of({**settings, "method": name}) for name in methods]
    for request in requests:
        checked_request(explainer, request)
    chosen = [r.method for r in requests]
    plan = SanityPlan(chosen, steps or None, modes, seed, requests[0].options)
    written, failed = run_sanity(explainer, paths, plan, out, quiet)
    finished(written, problems + failed, "checked")
