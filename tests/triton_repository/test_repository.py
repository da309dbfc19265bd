"""The Triton model repository writer: config.pbtxt read back with Triton's own model-config
protobuf (so a mistyped field fails here, even for the onnxruntime backend that cannot run
on this machine), and the files each backend needs."""

from __future__ import annotations

import pytest
from conftest import DEFAULT_BUNDLE
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from scorecam_onnx import Bundle, BundleError
from scorecam_onnx.triton import write_repository


@pytest.mark.parametrize("backend", ["onnxruntime", "python"])
def test_the_classifiers_config_parses_as_triton_reads_it(tmp_path, backend):
    folder = write_repository(DEFAULT_BUNDLE, tmp_path, "lite0", backend=backend, max_batch=32,
                              instances=2, kind="gpu")
    config = text_format.Parse((folder / "config.pbtxt").read_text(),
                               model_config_pb2.ModelConfig())
    m = Bundle.load(DEFAULT_BUNDLE).manifest
    assert (config.name, config.backend, config.max_batch_size) == ("lite0", backend, 32)
    (inp,), (out,) = config.input, config.output
    assert (inp.name, list(inp.dims), inp.data_type) == (
        m.input.name, [3, 224, 224], model_config_pb2.TYPE_FP32)
    assert (out.name, list(out.dims)) == (m.output.name, [1000])
    assert config.HasField("dynamic_batching")
    (group,) = config.instance_group
    assert (group.count, group.kind) == (2, model_config_pb2.ModelInstanceGroup.KIND_GPU)
    files = sorted(p.name for p in (folder / "1").iterdir())
    assert files == (["model.onnx", "model.py", "weights.bin"] if backend == "python"
                     else ["model.onnx", "weights.bin"])


def test_an_existing_model_is_kept_unless_forced(tmp_path):
    write_repository(DEFAULT_BUNDLE, tmp_path, "lite0")
    with pytest.raises(BundleError, match="exists"):
        write_repository(DEFAULT_BUNDLE, tmp_path, "lite0")
    write_repository(DEFAULT_BUNDLE, tmp_path, "lite0", backend="onnxruntime", force=True)
    assert not (tmp_path / "lite0" / "1" / "model.py").exists()
    with pytest.raises(BundleError, match="backend 'tensorflow'"):
        write_repository(DEFAULT_BUNDLE, tmp_path, "other", backend="tensorflow")
