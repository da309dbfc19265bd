"""Side-by-side measurements of the engine against its floor: the model's own forwards.

Everything is measured in one run on the same sessions, repeated, and reported as medians
with their spread: machines are noisy, and only ratios measured together mean much.
"""

from __future__ import annotations

import functools
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

import numpy as np

from ..cam.engine import PRESETS
from ..explainer import Explainer
from ..images import ImageLike
from ..methods import AblationCam, FasterScoreCam, ReciproCam, ScoreCam
from ..pictures import Picture, model_input
from ..targets import TopK

T = TypeVar("T")

SWEEP = (1, 2, 4, 8, 16, 32, 64)


@dataclass
class Timing:
    """Median and spread (min, max) of repeated measurements, in seconds."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, samples: Sequence[float]) -> Timing:
        return cls(statistics.median(samples), min(samples), max(samples))


@dataclass
class PresetBench:
    """Score-CAM with one preset against the floor of the same forwards."""

    preset: str
    channels: int
    masks_run: int
    forwards: int
    scorecam: Timing
    floor: Timing
    overhead: float  # median over repeats of Score-CAM time ÷ floor time
    cpu_overhead: float  # the same ratio in process CPU time (steadier on a busy host)
    top5: Timing
    top5_ratio: float  # median over repeats of top-5 time ÷ top-1 time
    peak_mib: float  # arrays the engine allocates (tracemalloc)
    rss_peak_mib: float | None  # rise of the process's peak RSS, ONNX Runtime included


@dataclass
class BenchReport:
    """Everything `scorecam-onnx bench` prints."""

    provider: str
    batch_size: int
    threads: int
    repeats: int
    import_seconds: float
    features: Timing
    presets: list[PresetBench] = field(default_factory=list)
    sweep: dict[int, float] = field(default_factory=dict)
    best_batch: int = 0
    faster: dict[str, float] = field(default_factory=dict)
    # Tail-graph methods against one plain forward and exact Score-CAM (bundles with a tail).
    tail: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _threads(explainer: Explainer) -> int:
    """The intra-op threads of the features session."""
    session = getattr(explainer.forwards.features, "session", None)
    return int(session.get_session_options().intra_op_num_threads) if session else 0


def _timed(run: Callable[[], T], repeats: int) -> tuple[Timing, T]:
    samples: list[float] = []
    result: Any = None
    for _ in range(repeats):
        started = time.perf_counter()
        result = run()
        samples.append(time.perf_counter() - started)
    return Timing.of(samples), result


def floor_seconds(explainer: Explainer, forwards: int, batch_size: int, seed: int = 0) -> float:
    """Time of `forwards` pure ONNX Runtime forwards in batches of `batch_size`."""
    if forwards == 0:
        return 0.0
    m = explainer.bundle.manifest.input
    batch = (
        np.random.default_rng(seed)
        .standard_normal((min(batch_size, forwards), m.channels, m.height, m.width))
        .astype(np.float32)
    )
    started = time.perf_counter()
    done = 0
    while done < forwards:
        n = min(batch_size, forwards - done)
        explainer.forwards.forward(batch[:n])
        done += n
    return time.perf_counter() - started


def import_seconds() -> float:
    """Wall time of `import scorecam_onnx` in a fresh interpreter."""
    code = (
        "import time; t = time.perf_counter(); import scorecam_onnx; print(time.perf_counter() - t)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(done.stdout.strip())


def peak_numpy_mib(run: Callable[[], object]) -> float:
    """Peak of memory allocated through Python and NumPy while `run` runs, in MiB.

    ONNX Runtime's own arena is not counted: this measures what the engine adds.
    """
    tracemalloc.start()
    try:
        run()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 2**20


def peak_rss_growth_mib(run: Callable[[], object]) -> float | None:
    """How far the process's peak resident memory rises above its current size during `run`.

    Counts everything, ONNX Runtime's arena included. Linux only (the peak is reset through
    /proc/self/clear_refs); None elsewhere.
    """

    def status(key: str) -> float:
        with open("/proc/self/status") as handle:
            line = next(x for x in handle if x.startswith(key))
        return float(line.split()[1]) / 1024.0

    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        before = status("VmRSS:")
    except (OSError, StopIteration):
        return None
    run()
    return max(0.0, status("VmHWM:") - before)


def bench(
    explainer: Explainer,
    image: ImageLike,
    presets: Sequence[str] = tuple(PRESETS),
    repeats: int = 3,
    sweep: Sequence[int] = SWEEP,
    faster_channels: int = 64,
    on_step: Callable[[str], None] | None = None,
) -> BenchReport:
    """Measure the engine on one image; see `BenchReport` for what is reported."""
    say = on_step or (lambda text: None)
    picture = explainer.read(image)
    x = model_input(picture, explainer.forwards.input)
    report = BenchReport(
        explainer.provider,
        explainer.batch_size,
        _threads(explainer),
        repeats,
        import_seconds(),
        Timing.of([0.0]),
    )
    explainer.explain(picture, method=FasterScoreCam(channels=8))  # warm-up
    say("features forward")
    report.features, _ = _timed(lambda: explainer.forwards.activations(x), max(5, repeats))
    for preset in presets:
        say(f"score-cam, preset {preset}")
        report.presets.append(preset_bench(explainer, picture, preset, repeats))
    say("faster score-cam")
    exact_time = (
        next((p.scorecam.median for p in report.presets if p.preset == "paper"), None)
        or _timed(lambda: explainer.explain(picture), 1)[0].median
    )
    report.faster = faster_bench(explainer, picture, exact_time, faster_channels, repeats)
    if explainer.forwards.tail is not None:
        say("tail-graph methods")
        report.tail = tail_bench(explainer, picture, x, exact_time, repeats)
    say("batch-size sweep")
    count = 64
    for size in sweep:
        samples = [floor_seconds(explainer, count, size, seed=i) / count for i in range(repeats)]
        report.sweep[size] = statistics.median(samples)
    report.best_batch = min(report.sweep, key=lambda size: report.sweep[size], default=0)
    return report


def preset_bench(explainer: Explainer, picture: Picture, preset: str, repeats: int) -> PresetBench:
    """Exact Score-CAM with one preset against its floor (the same forwards in plain ONNX
    Runtime), top-5 against top-1, and its memory. Each repeat times Score-CAM, its floor and
    top-5 back to back, so that a machine whose speed drifts affects the three alike; ratios
    are taken within a repeat."""
    method, k = ScoreCam(preset=preset), min(5, explainer.classes)
    res = explainer.explain_one(picture, method=method)
    runs, floors, tops, cpu_ratios = [], [], [], []
    for i in range(repeats):
        cpu = time.process_time()
        runs.append(_timed(lambda: explainer.explain(picture, method=method), 1)[0].median)
        cpu_run = time.process_time() - cpu
        cpu = time.process_time()
        floors.append(floor_seconds(explainer, res.forwards - 1, explainer.batch_size, i))
        cpu_ratios.append(cpu_run / max(time.process_time() - cpu, 1e-9))
        tops.append(_timed(lambda: explainer.explain(picture, TopK(k), method), 1)[0].median)
    return PresetBench(
        preset=preset,
        channels=int(res.weights.size),
        masks_run=res.masks,
        forwards=res.forwards,
        scorecam=Timing.of(runs),
        floor=Timing.of(floors),
        overhead=statistics.median(r / f for r, f in zip(runs, floors, strict=True) if f),
        cpu_overhead=statistics.median(cpu_ratios),
        top5=Timing.of(tops),
        top5_ratio=statistics.median(t / r for t, r in zip(tops, runs, strict=True)),
        peak_mib=peak_numpy_mib(lambda: explainer.explain(picture, method=method)),
        rss_peak_mib=peak_rss_growth_mib(lambda: explainer.explain(picture, method=method)),
    )


def faster_bench(
    explainer: Explainer, picture: Picture, exact_seconds: float, channels: int, repeats: int
) -> dict[str, float]:
    """Faster Score-CAM's time, speed-up over exact Score-CAM and the maps' correlation."""
    exact = explainer.explain_one(picture)
    fast_time, fast = _timed(
        lambda: explainer.explain_one(picture, method=FasterScoreCam(channels=channels)), repeats
    )
    return {
        "channels": channels,
        "seconds": fast_time.median,
        "speedup": exact_seconds / fast_time.median,
        "correlation": float(np.corrcoef(exact.saliency.ravel(), fast.saliency.ravel())[0, 1]),
    }


def tail_bench(
    explainer: Explainer, picture: Picture, x: np.ndarray, exact_seconds: float, repeats: int
) -> dict[str, dict[str, float]]:
    """ReciproCAM and Ablation-CAM per image, each repeat timed beside one plain forward of
    the full model; ratios against that forward and against exact Score-CAM."""
    methods = {
        "reciprocam": ReciproCam(),
        "reciprocam --gaussian": ReciproCam(gaussian=True),
        "ablationcam": AblationCam(),
    }
    times: dict[str, list[float]] = {name: [] for name in methods}
    ratios: dict[str, list[float]] = {name: [] for name in methods}
    forwards: dict[str, int] = {}
    for name, method in methods.items():  # warm up each path once
        forwards[name] = explainer.explain_one(picture, method=method).forwards
    plain: list[float] = []
    for _ in range(max(repeats, 5)):
        forward = _timed(lambda: explainer.forwards.scores(x), 3)[0].median
        plain.append(forward)
        for name, method in methods.items():
            run = functools.partial(explainer.explain, picture, method=method)
            seconds = _timed(run, 1)[0].median
            times[name].append(seconds)
            ratios[name].append(seconds / forward)
    out = {"model forward": {"seconds": statistics.median(plain)}}
    for name in methods:
        seconds = statistics.median(times[name])
        out[name] = {
            "seconds": seconds,
            "forwards": forwards[name],
            "per_forward": statistics.median(ratios[name]),
            "speedup": exact_seconds / seconds,
        }
    return out


def format_report(report: BenchReport) -> str:
    """The report as a plain-text table."""
    ms = 1000.0
    lines = [
        f"provider {report.provider}, batch size {report.batch_size}, intra-op threads "
        f"{report.threads or 'auto'}, {report.repeats} repeats (median [min–max])",
        f"import scorecam_onnx: {report.import_seconds:.3f} s",
        f"features forward: {report.features.median * ms:.1f} ms",
        "",
        f"{'preset':<18}{'channels':>9}{'masks run':>10}{'score-cam s':>22}{'floor s':>22}"
        f"{'overhead':>10}{'cpu ovh.':>9}{'top-5 / top-1':>15}{'peak MiB':>10}"
        f"{'rss+ MiB':>10}",
    ]
    for p in report.presets:
        lines.append(
            f"{p.preset:<18}{p.channels:>9}{p.masks_run:>10}"
            f"{_span(p.scorecam):>22}{_span(p.floor):>22}{p.overhead:>10.3f}"
            f"{p.cpu_overhead:>9.3f}"
            f"{p.top5_ratio:>15.3f}{p.peak_mib:>10.1f}"
            f"{_mib(p.rss_peak_mib):>10}"
        )
    if report.faster:
        f = report.faster
        lines += [
            "",
            f"faster-scorecam ({f['channels']} channels): {f['seconds']:.2f} s, "
            f"{f['speedup']:.1f}× faster than exact, correlation {f['correlation']:.4f}",
        ]
    if report.tail:
        forward = report.tail["model forward"]["seconds"]
        lines += [
            "",
            f"tail-graph methods (one plain model forward: {forward * ms:.1f} ms)",
            f"{'method':<24}{'ms':>9}{'forwards':>10}{'÷ forward':>11}"
            f"{'× faster than score-cam':>25}",
        ]
        for name, t in report.tail.items():
            if name != "model forward":
                lines.append(
                    f"{name:<24}{t['seconds'] * ms:>9.1f}{int(t['forwards']):>10}"
                    f"{t['per_forward']:>11.2f}{t['speedup']:>25.1f}"
                )
    if report.sweep:
        lines += ["", "batch size  ms / image"]
        for size, seconds in report.sweep.items():
            mark = "  <- best" if size == report.best_batch else ""
            lines.append(f"{size:>10}  {seconds * ms:>9.2f}{mark}")
    return "\n".join(lines)


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _span(t: Timing) -> str:
    return f"{t.median:.3f} [{t.low:.3f}–{t.high:.3f}]"
