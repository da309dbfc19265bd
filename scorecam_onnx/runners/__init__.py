"""Runners: where a graph's forwards run, behind one `Runner` protocol — ONNX Runtime in this
process (any execution provider), or a model served over the Open Inference Protocol."""
