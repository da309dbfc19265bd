"""`python -m scorecam_onnx` runs the command line."""

from .cli import main

main(prog_name="scorecam-onnx")
