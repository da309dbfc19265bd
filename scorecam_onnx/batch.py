"""Explaining many image files: safe output names, atomic outputs, resumable runs.

One bad image never stops the others: its error is recorded and the run goes on.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import cv2
import numpy as np
from numpy.typing import NDArray

from .errors import ImageError, ScoreCamError
from .explainer import Explainer, Explanation
from .fileio import write_atomic, write_text_atomic
from .images import find_images
from .render import write_overlay_png
from .request import ExplainRequest

THUMB_HEIGHT = 224
# The contact sheet shows the first this many images (its thumbnails stay in memory).
SHEET_ROWS = 64


@dataclass(frozen=True)
class ExplainJob:
    """What to explain (image files, folders or globs), how (one request for every image),
    and where the outputs go."""

    inputs: list[str]
    out: Path
    request: ExplainRequest = field(default_factory=ExplainRequest)
    sheet: bool = False
    skip_existing: bool = False

    @property
    def per_class(self) -> bool:
        """Whether outputs are written once per class (classes or top-k asked for)."""
        return self.request.target.per_class


@dataclass
class ItemResult:
    """The outcome for one input image."""

    source: Path
    name: str
    # What was explained, per class (Explanation.summary(): no arrays, so that a long run
    # keeps nothing per image but these few numbers).
    summaries: list[dict[str, object]] = field(default_factory=list)
    error: str | None = None
    skipped: bool = False
    thumbnail: NDArray[np.uint8] | None = None
    thumb_saliency: NDArray[np.float32] | None = None


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def output_names(paths: list[Path]) -> dict[Path, str]:
    """A distinct, file-system-safe name per input; never a path, so it cannot leave --out.

    The file stem is used when unique; clashing stems get their parent folders prefixed,
    then a counter.
    """

    def clean(text: str) -> str:
        return _UNSAFE.sub("_", text).strip("._") or "image"

    stems = [clean(p.stem) for p in paths]
    names: dict[Path, str] = {}
    taken: set[str] = set()
    for path, stem in zip(paths, stems, strict=True):
        name = stem
        if stems.count(stem) > 1:
            parents = [clean(part) for part in path.resolve().parent.parts[-2:]]
            name = "_".join([*parents, stem])
        base, n = name, 1
        while name in taken:
            n += 1
            name = f"{base}_{n}"
        taken.add(name)
        names[path] = name
    return names


def explain_files(
    explainer: Explainer,
    job: ExplainJob,
    on_start: Callable[[ItemResult], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    on_done: Callable[[ItemResult], None] | None = None,
    on_problem: Callable[[str], None] | None = None,
) -> tuple[list[ItemResult], list[str]]:
    """Explain every image of `job.inputs` and write its outputs under `job.out`.

    Returns the per-image results and the problems found while expanding the inputs
    (missing files, folders without images), which also go to `on_problem` first.
    """
    paths, problems = find_images(job.inputs)
    if on_problem is not None:
        for problem in problems:
            on_problem(problem)
    names = output_names(paths)
    if paths:
        job.out.mkdir(parents=True, exist_ok=True)
        remove_stale_parts(job.out)
    results: list[ItemResult] = []
    thumbnails = 0
    for path in paths:
        item = ItemResult(path, names[path])
        if on_start is not None:
            on_start(item)
        if job.skip_existing and (job.out / f"{item.name}.json").is_file():
            item.skipped = True
        else:
            _explain_one(explainer, job, item, on_progress, job.sheet and thumbnails < SHEET_ROWS)
            thumbnails += item.thumbnail is not None
        results.append(item)
        if on_done is not None:
            on_done(item)
    return results, problems


def _explain_one(
    explainer: Explainer,
    job: ExplainJob,
    item: ItemResult,
    on_progress: Callable[[int, int], None] | None,
    keep_thumbnail: bool,
) -> None:
    try:
        picture = explainer.read(item.source, job.request.options.frame)
        found = explainer.run(picture, job.request, on_progress)
        rgb = explainer.display(picture)
        write_outputs(job.out, item.name, item.source, rgb, found, job.per_class)
    except (ScoreCamError, ValueError, TypeError, OSError) as exc:
        item.error = failure_reason(exc)
        return
    item.summaries = [exp.summary() for exp in found]
    if keep_thumbnail:
        width = max(1, round(rgb.shape[1] * THUMB_HEIGHT / rgb.shape[0]))
        size = (width, THUMB_HEIGHT)
        item.thumbnail = np.asarray(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), np.uint8)
        item.thumb_saliency = np.asarray(
            cv2.resize(found[0].saliency, size, interpolation=cv2.INTER_LINEAR), np.float32
        )


def failure_reason(exc: BaseException) -> str:
    """An error's message without the image's name (callers print the name once)."""
    return exc.reason if isinstance(exc, ImageError) else str(exc)


def remove_stale_parts(out: Path) -> None:
    """Delete temporary files left behind by a run that was killed while writing."""
    for part in out.glob(".*.part"):
        part.unlink(missing_ok=True)


def write_outputs(
    out: Path,
    name: str,
    source: Path,
    rgb: NDArray[np.uint8],
    explanations: list[Explanation],
    per_class: bool,
) -> None:
    """Write overlay PNG, saliency NPY and JSON per class (for a detector, per detection:
    `<name>.d<i>`, its box drawn on the overlay), then `<name>.json` last.

    Every file is written atomically; `<name>.json` appears only once the rest exist, so
    its presence marks a complete set (used by --skip-existing).
    """
    detector = bool(explanations) and explanations[0].box is not None
    per_class = per_class or detector
    entries = []
    for index, exp in enumerate(explanations):
        base = (
            (f"{name}.d{index}" if detector else f"{name}.c{exp.class_id}") if per_class else (name)
        )
        caption = f"{exp.label} {exp.score:.2f}" if detector else ""
        write_overlay_png(out / f"{base}.png", rgb, exp.saliency, box=exp.box, caption=caption)
        write_atomic(out / f"{base}.npy", functools.partial(_save_npy, exp.saliency))
        entry = {
            "image": str(source),
            **exp.summary(),
            "files": {"overlay": f"{base}.png", "saliency": f"{base}.npy"},
        }
        if per_class:
            write_text_atomic(out / f"{base}.json", json.dumps(entry, indent=2) + "\n")
        entries.append(entry)
    key = "detections" if detector else "classes"
    summary = entries[0] if not per_class else {"image": str(source), key: entries}
    write_text_atomic(out / f"{name}.json", json.dumps(summary, indent=2) + "\n")


def _save_npy(array: NDArray[np.float32], handle: IO[bytes]) -> None:
    np.save(handle, array)
