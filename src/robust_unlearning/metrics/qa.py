"""TOFU's three scores of a question-answering set, in one batched pass (docs/metrics.md#tofu).

Each item has a prompt (the formatted question), the answer, a paraphrased answer ``ã`` and
perturbed (wrong) answers ``â_k``. Every answer row of the whole set is scored in one
:func:`~.scoring.answer_logprobs` call (batched, sorted by length) and every prompt is answered in
one batched greedy generation, so there is no Python loop over model calls per example.

- probability: ``P(a|q)^{1/|a|}`` (:mod:`.probability`), or with ``option_share=True`` the correct
  answer's share among ``{a} ∪ {â_k}`` (TOFU's real-authors / world-facts sets);
- ROUGE-L recall of the greedy answer against ``a`` (:mod:`.rouge`);
- truth ratio ``R`` per item (:mod:`.truth_ratio`) and its forget / utility summaries.

Answers are scored with a final end-of-sequence token (``add_eos=True``, as TOFU scores them);
labels are placed by position, so the end token counts even when the pad token is the same id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import fmean

import torch

from .probability import normalized_probability, option_share
from .rouge import rouge_l_recall
from .scoring import answer_logprobs, greedy_generate
from .truth_ratio import forget_truth_score, truth_ratio, utility_truth_score


@dataclass
class QAItem:
    prompt: str
    answer: str
    paraphrased: str | None = None  # defaults to the answer
    perturbed: list[str] = field(default_factory=list)


def score_qa(model, tokenizer, items: list[QAItem], *, generate: bool = True, share: bool = False,
             add_eos: bool = True, perturbed_mean: str = "geometric", max_new_tokens: int = 64,
             batch_size: int = 32, max_length: int = 512, keep_generations: bool = False) -> dict:
    if not items:
        raise ValueError("score_qa on an empty set")
    n = len(items)
    prompts = [it.prompt for it in items] * 2
    answers = [it.answer for it in items] + [it.paraphrased or it.answer for it in items]
    owner: list[int] = []
    for i, it in enumerate(items):
        for p in it.perturbed:
            prompts.append(it.prompt)
            answers.append(p)
            owner.append(i)
    sums, counts = answer_logprobs(model, tokenizer, prompts, answers, add_eos=add_eos,
                                   batch_size=batch_size, max_length=max_length)
    lp = sums / counts.clamp(min=1)  # log P^{1/|a|}
    para_lp = lp[n:2 * n]
    out: dict = {}
    kmax = max((len(it.perturbed) for it in items), default=0)
    if kmax:
        pert = torch.zeros(n, kmax, dtype=torch.float64)
        mask = torch.zeros(n, kmax, dtype=torch.bool)
        slot = [0] * n
        for j, i in enumerate(owner):
            pert[i, slot[i]] = lp[2 * n + j]
            mask[i, slot[i]] = True
            slot[i] += 1
    prob = normalized_probability(sums[:n], counts[:n])
    if share:
        if not kmax or not bool(mask.any(-1).all()):
            raise ValueError("the option share needs perturbed answers for every item")
        prob = option_share(prob, (torch.exp(pert) * mask).double())
    out["probability"] = prob.mean().item()
    out["probabilities"] = prob.tolist()
    if kmax:
        if not bool(mask.any(-1).all()):
            raise ValueError("every item needs at least one perturbed answer for the truth ratio")
        r = truth_ratio(para_lp, pert, perturbed_mean, mask)
        out["truth_ratio"] = r.mean().item()
        out["truth_ratio_forget_score"] = forget_truth_score(r)
        out["truth_ratio_utility_score"] = utility_truth_score(r)
        out["truth_ratios"] = r.tolist()
    if generate:
        gens = greedy_generate(model, tokenizer, [it.prompt for it in items], max_new_tokens, batch_size,
                               max_length)
        scores = rouge_l_recall(gens, [it.answer.strip() for it in items])
        out["rougeL_recall"] = fmean(scores)
        out["rouge_scores"] = scores
        if keep_generations:
            out["generations"] = gens
    return out
