"""Unlearning metrics, each with its definition (docs/metrics.md) in its module's docstring.

- :mod:`.probability`: ``P(a|q)^{1/|a|}`` and the correct option's share (TOFU)
- :mod:`.rouge`: ROUGE-L recall (TOFU) and F1 (MUSE), via ``rouge-score``
- :mod:`.truth_ratio`: TOFU's truth ratio and its forget / utility summaries
- :mod:`.forget_quality`: KS-test p-value against the retain-only model (``scipy``)
- :mod:`.model_utility`: harmonic mean of the utility values (``scipy``)
- :mod:`.memorization`: MUSE VerbMem and KnowMem
- :mod:`.privleak`: Min-K % membership AUC (``scikit-learn``) and MUSE PrivLeak
- :mod:`.mcq`: zero-shot multiple-choice accuracy through lm-eval-harness (WMDP, MMLU)
- :mod:`.qa`: the three TOFU scores of a QA set in one batched pass
- :mod:`.scoring`: the batched model calls they all share
"""

from .forget_quality import forget_quality, read_reference_truth_ratios
from .model_utility import model_utility
from .privleak import mia_auc, min_k_score, privleak
from .probability import normalized_probability, option_share
from .rouge import rouge_l_f1, rouge_l_recall
from .truth_ratio import forget_truth_score, truth_ratio, utility_truth_score

__all__ = [
    "forget_quality", "read_reference_truth_ratios", "model_utility", "mia_auc", "min_k_score", "privleak",
    "normalized_probability", "option_share", "rouge_l_f1", "rouge_l_recall", "forget_truth_score",
    "truth_ratio", "utility_truth_score",
]
