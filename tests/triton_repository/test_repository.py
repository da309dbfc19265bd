"""The Triton model repository writer: config.pbtxt read back with Triton's own model-config
protobuf (so a mistyped field fails here, even for the onnxruntime backend that cannot run
on this machine), and the files each backend needs."""

from __future__ import annotations

import pytest
from builders import nhwc_model
from click.testing import CliRunner
from conftest import DEFAULT_BUNDLE
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from scorecam_onnx import Bundle, BundleError, Preprocessing, write_bundle
from scorecam_onnx.cam.graph_masks import IMAGE, MAPS, MAPS_ALIGNED
from scorecam_onnx.cli import main
from scorecam_onnx.triton import write_explainer, write_repository
from scorecam_onnx.triton.bls import read_served_model


@pytest.mark.parametrize("backend", ["onnxruntime", "python"])
def test_the_classifiers_config_parses_as_triton_reads_it(tmp_path, backend):
    folder = write_repository(
        DEFAULT_BUNDLE, tmp_path, "lite0", backend=backend, max_batch=32, instances=2, kind="gpu"
    )
    config = text_format.Parse(
        (folder / "config.pbtxt").read_text(), model_config_pb2.ModelConfig()
    )
    m = Bundle.load(DEFAULT_BUNDLE).manifest
    assert (config.name, config.backend, config.max_batch_size) == ("lite0", backend, 32)
    (inp,), (out,) = config.input, config.output
    assert (inp.name, list(inp.dims), inp.data_type) == (
        m.input.name,
        [3, 224, 224],
        model_config_pb2.TYPE_FP32,
    )
    assert (out.name, list(out.dims)) == (m.output.name, [1000])
    assert config.HasField("dynamic_batching")
    (group,) = config.instance_group
    assert (group.count, group.kind) == (2, model_config_pb2.ModelInstanceGroup.KIND_GPU)
    files = sorted(p.name for p in (folder / "1").iterdir())
    assert files == (
        ["model.onnx", "model.py", "weights.bin"]
        if backend == "python"
        else ["model.onnx", "weights.bin"]
    )


def test_an_existing_model_is_kept_unless_forced(tmp_path):
    write_repository(DEFAULT_BUNDLE, tmp_path, "lite0")
    with pytest.raises(BundleError, match="exists"):
        write_repository(DEFAULT_BUNDLE, tmp_path, "lite0")
    write_repository(DEFAULT_BUNDLE, tmp_path, "lite0", backend="onnxruntime", force=True)
    assert not (tmp_path / "lite0" / "1" / "model.py").exists()
    with pytest.raises(BundleError, match="backend 'tensorflow'"):
        write_repository(DEFAULT_BUNDLE, tmp_path, "other", backend="tensorflow")


def _parse(path):
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def test_the_triton_command_writes_configs_triton_parses(tmp_path):
    repo = tmp_path / "repo"
    result = CliRunner().invoke(
        main,
        [
            "triton",
            str(DEFAULT_BUNDLE),
            "--out",
            str(repo),
            "--name",
            "lite0",
            "--instances",
            "2",
            "--kind",
            "gpu",
            "--method",
            "faster-scorecam",
            "--preset",
            "torchcam",
            "--execution-env",
            "$$TRITON_MODEL_DIRECTORY/env.tgz",
        ],
    )
    assert result.exit_code == 0, result.output
    m = Bundle.load(DEFAULT_BUNDLE).manifest
    assert sorted(p.name for p in repo.iterdir()) == [
        "README.md",
        "lite0",
        "lite0-explain",
        "lite0-masked",
        "lite0-masked-aligned",
    ]
    assert _parse(repo / "lite0" / "config.pbtxt").backend == "onnxruntime"
    for model in ("lite0", "lite0-masked", "lite0-masked-aligned", "lite0-explain"):
        (group,) = _parse(repo / model / "config.pbtxt").instance_group
        assert (group.count, group.kind) == (2, model_config_pb2.ModelInstanceGroup.KIND_GPU)
    for suffix, maps in (("masked", MAPS), ("masked-aligned", MAPS_ALIGNED)):
        config = _parse(repo / f"lite0-{suffix}" / "config.pbtxt")
        assert (config.backend, config.max_batch_size) == ("onnxruntime", 0)
        assert [(i.name, list(i.dims)) for i in config.input] == [
            (IMAGE, [1, 3, 224, 224]),
            (maps, [-1, m.activation.height, m.activation.width]),
        ]
        assert sorted(p.name for p in (repo / f"lite0-{suffix}" / "1").iterdir()) == [
            "model.onnx",
            "weights.bin",
        ]
    explain = _parse(repo / "lite0-explain" / "config.pbtxt")
    assert (explain.backend, explain.max_batch_size) == ("python", 0)
    (image,) = explain.input
    assert (image.name, image.data_type, list(image.dims)) == (
        "image",
        model_config_pb2.TYPE_STRING,
        [-1],
    )
    assert {o.name: list(o.dims) for o in explain.output} == {
        "probabilities": [-1, 1000],
        "class_id": [-1, -1],
        "score": [-1, -1],
        "saliency": [-1, -1, 224, 224],
    }
    (group,) = explain.instance_group
    assert (group.count, group.kind) == (2, model_config_pb2.ModelInstanceGroup.KIND_GPU)
    parameters = {k: v.string_value for k, v in explain.parameters.items()}
    assert parameters == {
        "classifier": "lite0",
        "masked": "lite0-masked,lite0-masked-aligned",
        "forwards": "masked",
        "method": "faster-scorecam",
        "preset": "torchcam",
        "EXECUTION_ENV_PATH": "$$TRITON_MODEL_DIRECTORY/env.tgz",
    }
    copied = Bundle.load(repo / "lite0-explain" / "1" / "bundle")  # checksums verified
    assert copied.manifest == m
    model_py = (repo / "lite0-explain" / "1" / "model.py").read_text()
    assert "ExplainAdapter(args, pb_utils)" in model_py and len(model_py.splitlines()) < 40
    readme = (repo / "README.md").read_text()
    assert 'client.infer("lite0-explain"' in readme and "{" + "explain}" not in readme


def test_an_existing_classifier_is_used_and_nothing_is_overwritten(tmp_path):
    write_repository(DEFAULT_BUNDLE, tmp_path, "mine")
    before = (tmp_path / "mine" / "config.pbtxt").read_text()
    written = write_explainer(
        DEFAULT_BUNDLE, tmp_path, "lite0", classifier="mine", forwards="classifier"
    )
    assert [p.name for p in written] == ["lite0-explain"]
    assert not (tmp_path / "lite0").exists() and not (tmp_path / "lite0-masked").exists()
    assert (tmp_path / "mine" / "config.pbtxt").read_text() == before
    parameters = _parse(tmp_path / "lite0-explain" / "config.pbtxt").parameters
    assert (parameters["classifier"].string_value, parameters["masked"].string_value) == (
        "mine",
        "",
    )
    result = CliRunner().invoke(
        main,
        [
            "triton",
            str(DEFAULT_BUNDLE),
            "--out",
            str(tmp_path),
            "--name",
            "lite0",
            "--classifier",
            "mine",
        ],
    )
    assert result.exit_code == 1 and "lite0-explain exists (use force" in result.output
    for flags, message in (
        (["--name", "a/b"], "a Triton model name"),
        (["--method", "gradcam"], "'gradcam' is not one of"),
    ):
        result = CliRunner().invoke(
            main, ["triton", str(DEFAULT_BUNDLE), "--out", str(tmp_path), *flags]
        )
        assert result.exit_code == 2 and message in result.output


def test_served_models_are_read_from_their_config_or_their_onnx_graph(tmp_path):
    write_repository(DEFAULT_BUNDLE, tmp_path, "lite0", max_batch=16, masked=True)
    m = Bundle.load(DEFAULT_BUNDLE).manifest
    served = read_served_model(tmp_path, "lite0")
    assert served.max_batch == 16
    assert served.inputs == {m.input.name: ("FP32", [-1, 3, 224, 224])}
    assert served.outputs == {m.output.name: ("FP32", [-1, 1000])}
    masked = read_served_model(tmp_path, "lite0-masked")
    assert masked.max_batch == 0 and masked.inputs[MAPS] == (
        "FP32",
        [-1, m.activation.height, m.activation.width],
    )
    # a config that leaves inputs and outputs to Triton's auto-completion: the ONNX graph's
    (tmp_path / "lite0" / "config.pbtxt").write_text('backend: "onnxruntime"\n')
    auto = read_served_model(tmp_path, "lite0")
    assert auto.inputs == served.inputs and auto.outputs == served.outputs
    assert auto.max_batch == 4  # Triton's default-max-batch-size
    with pytest.raises(BundleError, match="no such folder"):
        read_served_model(tmp_path, "absent")
    (tmp_path / "lite0" / "config.pbtxt").write_text("max_batch_size: [\n")
    with pytest.raises(BundleError, match="config.pbtxt"):
        read_served_model(tmp_path, "lite0")


def test_unsafe_names_and_values_are_refused(tmp_path):
    for name in (".", "..", "a/b", ""):
        with pytest.raises(BundleError, match="model name"):
            write_explainer(DEFAULT_BUNDLE, tmp_path, name)
    with pytest.raises(BundleError, match="quotes, backslashes"):
        write_explainer(DEFAULT_BUNDLE, tmp_path, "lite0", execution_env='a" } ]')
    with pytest.raises(BundleError, match="kind 'tpu'"):
        write_explainer(DEFAULT_BUNDLE, tmp_path, "lite0", kind="tpu")
    assert list(tmp_path.iterdir()) == []
    result = CliRunner().invoke(
        main, ["triton", str(DEFAULT_BUNDLE), "--out", str(tmp_path), "--name", "..", "--force"]
    )
    assert result.exit_code == 2 and "not only dots" in result.output


def test_an_nhwc_bundle_sends_masked_images_to_its_classifier(tmp_path):
    bundle = write_bundle(
        nhwc_model(), tmp_path / "nhwc", "feat_nhwc", preprocessing=Preprocessing(layout="NHWC")
    )
    size = bundle.manifest.input.height
    written = write_explainer(bundle, tmp_path / "repo", "n", backend="python")
    assert [p.name for p in written] == ["n", "n-explain"]
    parameters = _parse(tmp_path / "repo" / "n-explain" / "config.pbtxt").parameters
    assert parameters["forwards"].string_value == "classifier"
    readme = (tmp_path / "repo" / "README.md").read_text()
    assert f"| `n` | the classifier: FP32 N×{size}×{size}×3 in" in readme
    assert "n-masked" not in readme
    with pytest.raises(BundleError, match="input is NHWC"):
        write_repository(bundle, tmp_path / "other", "n", masked=True)
