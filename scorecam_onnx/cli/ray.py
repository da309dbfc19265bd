"""`scorecam-onnx explain --ray`: the same outputs, table and failure lines as a local run,
computed by an actor pool on a Ray cluster (a local one when no address is given)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ..batch import ExplainJob, ItemResult, output_names
from ..bundle import Bundle
from ..images import find_images
from ..runtime import Runtime


def explain_on_ray(
    job: ExplainJob,
    address: str,
    bundle: str | Bundle | None,
    runtime: Runtime,
    *,
    actors: int,
    gpus_per_actor: float,
    on_done: Callable[[ItemResult], None],
    on_problem: Callable[[str], None],
) -> tuple[list[ItemResult], list[str]]:
    """Run `job` on Ray; returns per-image results and input problems, as `explain_files`."""
    from ..distributed.dataset import RayPool, explain_dataset, import_ray

    paths, problems = find_images(job.inputs)
    for problem in problems:
        on_problem(problem)
    results: list[ItemResult] = []
    if not paths:
        return results, problems
    names = output_names(paths)
    for path in paths:
        if job.skip_existing and (job.out / f"{names[path]}.json").is_file():
            results.append(ItemResult(path, names[path], skipped=True))
            on_done(results[-1])
    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        ray.init(
            address=None if address == "local" else address,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.ERROR,
            configure_logging=True,
        )
    _quiet(ray)
    try:
        rows = explain_dataset(
            [str(p) for p in paths],
            bundle,
            job.request,
            replace(runtime, threads=max(runtime.threads, 1)),
            RayPool(actors, gpus_per_actor),
            out=job.out,
            skip_existing=job.skip_existing,
        )
        for batch in rows.iter_batches(batch_size=1, batch_format="numpy"):
            for i in range(len(batch["path"])):
                item = ItemResult(Path(str(batch["path"][i])), str(batch["name"][i]))
                if batch["error"][i]:
                    item.error = str(batch["error"][i])
                else:
                    item.summaries = [
                        {
                            "class_id": int(batch["class_id"][i]),
                            "label": str(batch["label"][i]),
                            "score": float(batch["score"][i]),
                            "forwards": int(batch["forwards"][i]),
                            "seconds": {"total": float(batch["seconds"][i])},
                        }
                    ]
                results.append(item)
                on_done(item)
    finally:
        if started:
            ray.shutdown()
    return results, problems


def _quiet(ray) -> None:
    """No progress bars or INFO lines from Ray Data on the user's terminal."""
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    if hasattr(context, "enable_operator_progress_bars"):
        context.enable_operator_progress_bars = False
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
