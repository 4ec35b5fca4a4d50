"""Membership-inference attacks, forget set (members) against a holdout set (non-members), scored by
the AUC of ``sklearn.metrics.roc_auc_score`` (:func:`.privleak.mia_auc`): the probability that a
forget item scores as more member-like than a holdout item (ties one half). About 0.5 after ideal
unlearning when the holdout set is from the same distribution; near 1 when the forget set is still
recognisably trained on. Same convention as open-unlearning's ``mia_*`` metrics (its ``auc``); MUSE's
PrivLeak uses 1 − this (:mod:`.privleak`).

Every score is oriented so that *higher = more member-like*; with n scored tokens of an item,
log p_t = log p_θ(x_t | x_<t):

- ``loss`` (Yeom et al. 2018): (1/n) Σ_t log p_t, minus the mean NLL.
- ``zlib`` (Carlini et al. 2021): (1/n) Σ_t log p_t / zlib(x), zlib(x) the length in bytes of the
  zlib-compressed UTF-8 target text (the answer of a QA item), minus open-unlearning's loss/zlib.
- ``reference`` (Carlini et al. 2021): (1/n) Σ_t log p_t − (1/n) Σ_t log p_ref,t, a reference model's
  calibration (the model before unlearning, or any model that never saw the forget set).
- ``min_k`` (Shi et al. 2023, "Detecting Pretraining Data from Large Language Models"): the mean of
  the lowest ⌊k·n⌋ (at least one) log p_t, :func:`.privleak.min_k_score`; k = 0.2 (the paper's).
- ``min_k_plus_plus`` (Zhang et al. 2024, "Min-K%++: Improved Baseline for Detecting Pre-Training
  Data from Large Language Models"): the same over the normalised scores
  (log p_t − μ_t) / σ_t, μ_t = E_{z~p_θ(·|x_<t)} log p_θ(z | x_<t), σ_t² its variance (clamped at
  1e-6 as open-unlearning).
- ``gradnorm`` (as open-unlearning has it; its source cites arXiv 2402.17012): minus the mean over
  parameter tensors of the p-norm (p = 2) of the gradient of the item's mean NLL; members sit in flat
  minima. Computed in eval mode (no dropout), one backward per item, without touching ``.grad``.
"""

from __future__ import annotations

import zlib
from statistics import fmean
from typing import Sequence

import torch

from ..errors import UnlearnError
from .privleak import mia_auc, min_k_score
from .scoring import model_device
from .token_stats import TokenStats, encode_item, target_text, token_stats

ATTACKS = ("loss", "zlib", "reference", "min_k", "min_k_plus_plus", "gradnorm")
DEFAULT_ATTACKS = ("loss", "zlib", "min_k", "min_k_plus_plus")


def loss_score(logp: torch.Tensor) -> float:
    return logp.double().mean().item()


def zlib_score(logp: torch.Tensor, text: str) -> float:
    return loss_score(logp) / len(zlib.compress(text.encode("utf-8")))


def reference_score(logp: torch.Tensor, ref_logp: torch.Tensor) -> float:
    return loss_score(logp) - loss_score(ref_logp)


def min_k_plus_plus_score(logp: torch.Tensor, mu: torch.Tensor, var: torch.Tensor, k: float = 0.2) -> float:
    z = (logp.double() - mu.double()) / var.double().clamp(min=1e-6).sqrt()
    return min_k_score(z, k)


def gradnorm_scores(model, tokenizer, items: Sequence[dict], p: float = 2.0,
                    max_length: int = 512) -> list[float]:
    if p not in (1, 2, float("inf")):
        raise UnlearnError(f"gradnorm p must be 1, 2 or inf, got {p}")
    params = list(model.parameters())
    flags = [q.requires_grad for q in params]
    was_training = model.training
    device = model_device(model)
    model.eval()
    scores = []
    try:
        for q in params:
            q.requires_grad_(True)
        for item in items:
            enc = encode_item(tokenizer, item, max_length)
            ids = torch.tensor([enc.input_ids], device=device)
            labels = torch.tensor([enc.labels], device=device)
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[:, :-1].float()
            target = labels[:, 1:]
            mask = target != -100
            logq = torch.log_softmax(logits, -1).gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            loss = -(logq[mask]).mean()
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            norms = [g.detach().double().norm(p) for g in grads if g is not None]
            scores.append(-torch.stack(norms).mean().item())
    finally:
        for q, f in zip(params, flags, strict=True):
            q.requires_grad_(f)
        model.train(was_training)
    return scores


def attack_scores(attack: str, stats: Sequence[TokenStats], items: Sequence[dict], k: float = 0.2,
                  ref_stats: Sequence[TokenStats] | None = None) -> list[float]:
    if attack == "loss":
        return [loss_score(s.logp) for s in stats]
    if attack == "zlib":
        return [zlib_score(s.logp, target_text(it)) for s, it in zip(stats, items, strict=True)]
    if attack == "reference":
        if ref_stats is None:
            raise UnlearnError("the reference attack needs a reference model")
        return [reference_score(s.logp, r.logp) for s, r in zip(stats, ref_stats, strict=True)]
    if attack == "min_k":
        return [min_k_score(s.logp, k) for s in stats]
    if attack == "min_k_plus_plus":
        return [min_k_plus_plus_score(s.logp, s.mu, s.var, k) for s in stats]
    raise UnlearnError(f"unknown membership attack {attack!r}; known: {', '.join(ATTACKS)}")


def mia_report(model, tokenizer, forget: Sequence[dict], holdout: Sequence[dict],
               attacks: Sequence[str] = DEFAULT_ATTACKS, k: float = 0.2, reference_model=None,
               p: float = 2.0, batch_size: int = 16, max_length: int = 512) -> dict:
    """``{attack: {"auc", "forget_mean", "holdout_mean"}}`` for each attack, forget vs holdout."""
    unknown = sorted(set(attacks) - set(ATTACKS))
    if unknown:
        raise UnlearnError(f"unknown membership attack(s) {', '.join(unknown)}; known: {', '.join(ATTACKS)}")
    if not forget or not holdout:
        raise UnlearnError("membership inference needs forget and holdout items")
    if "reference" in attacks and reference_model is None:
        raise UnlearnError("the reference attack needs a reference model")
    sets = {"forget": list(forget), "holdout": list(holdout)}
    stats = {n: token_stats(model, tokenizer, its, batch_size, max_length) for n, its in sets.items()}
    ref = {n: None for n in sets}
    if "reference" in attacks:
        ref = {n: token_stats(reference_model, tokenizer, its, batch_size, max_length)
               for n, its in sets.items()}
    report = {}
    for attack in attacks:
        if attack == "gradnorm":
            scores = {n: gradnorm_scores(model, tokenizer, its, p, max_length) for n, its in sets.items()}
        else:
            scores = {n: attack_scores(attack, stats[n], sets[n], k, ref[n]) for n in sets}
        report[attack] = {"auc": mia_auc(scores["forget"], scores["holdout"]),
                          "forget_mean": fmean(scores["forget"]), "holdout_mean": fmean(scores["holdout"])}
    return report
