"""Every runtime setting reaches the explainers that Ray builds: `explain --ray` hands the
actors the command line's one `Runtime`, and `serve --ray` its replicas, provider options and
a served model's timeout included (they were once dropped on the way). The oracle is the
`Runtime` the flags describe, compared with what each explainer holds."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from conftest import DEFAULT_BUNDLE, SAMPLES

from scorecam_onnx.cli import main
from scorecam_onnx.runtime import Runtime

FLAGS = [
    "--provider",
    "cpu",
    "--provider-option",
    "arena_extend_strategy=kSameAsRequested",
    "--threads",
    "1",
    "--remote-timeout",
    "7.5",
    "--batch-size",
    "4",
]
EXPECTED = Runtime(
    provider="cpu",
    provider_options={"arena_extend_strategy": "kSameAsRequested"},
    threads=1,
    remote_timeout=7.5,
    batch_size=4,
)


def recorded_sessions(monkeypatch) -> list[tuple]:
    """The (provider, threads, options) of every ONNX Runtime session opened from now on."""
    import scorecam_onnx.runtime as runtime_module

    opened = []
    real = runtime_module.OrtRunner

    def recording(path, provider, threads, options):
        opened.append((provider, threads, options))
        return real(path, provider, threads, options)

    monkeypatch.setattr(runtime_module, "OrtRunner", recording)
    return opened


def test_explain_on_ray_gives_the_actors_the_whole_runtime(monkeypatch, tmp_path):
    import scorecam_onnx.cli.ray as ray_cli
    import scorecam_onnx.distributed.dataset as dataset

    seen = {}

    def capture(job, address, bundle, runtime, **kwargs):
        seen["runtime"] = runtime
        seen["request"] = job.request
        return [], []

    monkeypatch.setattr(ray_cli, "explain_on_ray", capture)
    CliRunner().invoke(
        main, ["explain", str(SAMPLES / "chelsea.png"), "--ray", "--out", str(tmp_path), *FLAGS]
    )
    assert seen["runtime"] == EXPECTED
    # an actor of the pool builds its explainer from exactly that runtime
    actor_class = type(
        "Actor",
        (dataset.ExplainActor,),
        {"config": (str(DEFAULT_BUNDLE), seen["request"], None, seen["runtime"])},
    )
    sessions = recorded_sessions(monkeypatch)
    actor = actor_class()
    assert actor.explainer.runtime == EXPECTED
    assert sessions == [("cpu", 1, EXPECTED.provider_options)] * 3  # features, model, tail


def test_serve_on_ray_gives_the_replicas_the_whole_runtime(monkeypatch):
    pytest.importorskip("fastapi")
    import scorecam_onnx.serve.on_ray as on_ray

    seen = {}

    def capture(models, limits, **kwargs):
        seen.update(kwargs, models=models, limits=limits)

    monkeypatch.setattr(on_ray, "run_on_ray", capture)
    result = CliRunner().invoke(main, ["serve", "--ray", "--model", str(DEFAULT_BUNDLE), *FLAGS])
    assert result.exit_code == 0, result.output
    assert seen["runtime"] == EXPECTED
    sessions = recorded_sessions(monkeypatch)
    app = on_ray.build_app(seen["models"], seen["limits"], seen["runtime"])
    [explainer] = [m.explainer for m in app.state.core.models.values()]
    assert explainer.runtime == EXPECTED
    assert sessions == [("cpu", 1, EXPECTED.provider_options)] * 3
    assert explainer.batch_size == 4
