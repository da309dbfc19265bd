"""The default bundle shipped with scorecam-onnx (data only)."""
