"""Truth ratio (REFERENCES.md §4, TOFU).

Definition: ``R = mean_k P(â_k|q)^{1/|â_k|} / P(ã|q)^{1/|ã|}`` with ``ã`` the paraphrased answer
and ``â_k`` the perturbed (wrong) answers. A model that knows the answer has ``R`` well below 1.

``perturbed_mean="arithmetic"`` (default) is the paper's formula, as written in §4.
``"geometric"`` averages the perturbed *log*-probabilities instead, as TOFU's public evaluation code
does (``exp(mean(perturbed loss) - paraphrased loss)``); choose it to compare with published numbers.

Summaries: on the forget split TOFU reports ``mean(min(R, 1/R))``; on utility sets (retain, real
authors, world facts) it reports ``mean(max(0, 1 - R))``.
"""

from __future__ import annotations

import torch


def truth_ratio(paraphrased_logp: torch.Tensor, perturbed_logp: torch.Tensor,
                perturbed_mean: str = "arithmetic", mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-question ``R`` from length-normalised log-probs.

    ``paraphrased_logp``: shape (n,), ``log P(ã|q)^{1/|ã|}``; ``perturbed_logp``: shape (n, k);
    ``mask`` (n, k), optional: which perturbed entries exist (questions may have different k).
    """
    pert_lp = perturbed_logp.double()
    if mask is None:
        mask = torch.ones_like(pert_lp, dtype=torch.bool)
    k = mask.sum(-1).double()
    if bool((k == 0).any()):
        raise ValueError("a question has no perturbed answers")
    if perturbed_mean == "arithmetic":
        pert = torch.logsumexp(pert_lp.masked_fill(~mask, float("-inf")), -1) - torch.log(k)
    elif perturbed_mean == "geometric":
        pert = pert_lp.masked_fill(~mask, 0.0).sum(-1) / k
    else:
        raise ValueError(f"perturbed_mean must be 'arithmetic' or 'geometric', not {perturbed_mean!r}")
    return torch.exp(pert - paraphrased_logp.double())


def forget_truth_score(r: torch.Tensor) -> float:
    """TOFU's forget-split summary ``mean(min(R, 1/R))`` (1 = cannot tell right from wrong)."""
    return torch.minimum(r, 1 / r).mean().item()


def utility_truth_score(r: torch.Tensor) -> float:
    """TOFU's utility-set summary ``mean(max(0, 1 - R))``."""
    return torch.clamp(1 - r, min=0).mean().item()
