"""Judging explanations: faithfulness metrics (`evaluate`), methods side by side in a report
(`compare`), sanity checks by model-parameter randomisation (`sanity`), benchmarks."""

from .comparison import Comparison, compare
from .faithfulness import Evaluation, EvaluationPlan, evaluate
from .report_html import write_comparison
from .sanity_checks import SanityPlan, SanityReport, sanity, write_sanity

__all__ = [
    "Comparison",
    "Evaluation",
    "EvaluationPlan",
    "SanityPlan",
    "SanityReport",
    "compare",
    "evaluate",
    "sanity",
    "write_comparison",
    "write_sanity",
]
