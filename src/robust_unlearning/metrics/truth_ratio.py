"""Truth ratio (docs/metrics.md#truth-ratio, TOFU; docs/conventions.md).

Definition (TOFU's evaluation code, ``locuslab/tofu`` ``evaluate_util.py`` / ``aggregate_eval_stat.py``,
and open-unlearning's ``truth_ratio``): with ``L̄`` the per-token NLL of an answer given the question,
``ã`` the paraphrased answer and ``â_k`` the perturbed (wrong) answers,
``R = exp(L̄(ã) - mean_k L̄(â_k)) = geomean_k P(â_k|q)^{1/|â_k|} / P(ã|q)^{1/|ã|}``: the perturbed
answers' losses are averaged, i.e. their normalised probabilities enter by their *geometric* mean.
A model that knows the answer has ``R`` well below 1.

``perturbed_mean="geometric"`` (default) is that definition. ``"arithmetic"`` takes the arithmetic
mean of the perturbed probabilities instead (the formula as the TOFU paper writes it); published
TOFU numbers use the geometric mean.

Summaries: on the forget split TOFU reports ``mean(min(R, 1/R))``; on utility sets (retain, real
authors, world facts) it reports ``mean(max(0, 1 - R))``.
"""

from __future__ import annotations

import torch


def truth_ratio(paraphrased_logp: torch.Tensor, perturbed_logp: torch.Tensor,
                perturbed_mean: str = "geometric", mask: torch.Tensor | None = None) -> torch.Tensor:
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
