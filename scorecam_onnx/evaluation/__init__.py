"""Measuring explanations: faithfulness against baselines, and benchmarks of the engine."""

from .faithfulness import evaluate

__all__ = ["evaluate"]
