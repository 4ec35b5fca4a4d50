"""Metrics against values worked out by hand or with scipy / sklearn / rouge-score directly."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from scipy.stats import hmean, ks_2samp
from sklearn.metrics import roc_auc_score

from robust_unlearning.errors import UnlearnError
from robust_unlearning.metrics import (
    forget_quality,
    forget_truth_score,
    mia_auc,
    min_k_score,
    model_utility,
    normalized_probability,
    option_share,
    privleak,
    read_reference_truth_ratios,
    rouge_l_f1,
    rouge_l_recall,
    truth_ratio,
    utility_truth_score,
)
from robust_unlearning.metrics.qa import QAItem, score_qa
from robust_unlearning.metrics.scoring import answer_logprobs, greedy_generate, text_token_logprobs

# -- pure metrics ---------------------------------------------------------------------------------


def test_normalized_probability_is_geometric_mean_token_probability():
    # two answers: tokens with p = 0.5, 0.5 -> 0.5; and p = 0.1, 0.4, 0.25 -> (0.01)^(1/3)
    sums = torch.tensor([2 * math.log(0.5), math.log(0.1) + math.log(0.4) + math.log(0.25)],
                        dtype=torch.float64)
    counts = torch.tensor([2.0, 3.0], dtype=torch.float64)
    got = normalized_probability(sums, counts)
    assert got.tolist() == pytest.approx([0.5, 0.01 ** (1 / 3)])


def test_option_share():
    got = option_share(torch.tensor([0.5, 0.1]), torch.tensor([[0.25, 0.25], [0.3, 0.6]]))
    assert got.tolist() == pytest.approx([0.5, 0.1])


def test_truth_ratio_arithmetic_and_geometric_by_hand():
    para = torch.log(torch.tensor([0.5], dtype=torch.float64))
    pert = torch.log(torch.tensor([[0.1, 0.4]], dtype=torch.float64))
    # TOFU's code (default): sqrt(0.1 * 0.4) / 0.5 = 0.4 ; arithmetic: mean(0.1, 0.4) / 0.5 = 0.5
    assert truth_ratio(para, pert).item() == pytest.approx(0.4)
    assert truth_ratio(para, pert, "geometric").item() == pytest.approx(0.4)
    assert truth_ratio(para, pert, "arithmetic").item() == pytest.approx(0.5)
    with pytest.raises(ValueError):
        truth_ratio(para, pert, "median")


def test_truth_ratio_ragged_mask():
    para = torch.log(torch.tensor([0.5, 0.2], dtype=torch.float64))
    pert = torch.log(torch.tensor([[0.1, 0.4, 0.7], [0.3, 0.9, 0.9]], dtype=torch.float64))
    mask = torch.tensor([[True, True, True], [True, False, False]])
    r = truth_ratio(para, pert, mask=mask, perturbed_mean="arithmetic")
    assert r.tolist() == pytest.approx([0.4 / 0.5, 0.3 / 0.2])
    r = truth_ratio(para, pert, mask=mask)  # geometric mean of the existing entries only
    assert r.tolist() == pytest.approx([(0.1 * 0.4 * 0.7) ** (1 / 3) / 0.5, 0.3 / 0.2])


def test_truth_ratio_summaries():
    r = torch.tensor([0.5, 2.0, 1.0, 0.25], dtype=torch.float64)
    assert forget_truth_score(r) == pytest.approx((0.5 + 0.5 + 1 + 0.25) / 4)
    assert utility_truth_score(r) == pytest.approx((0.5 + 0 + 0 + 0.75) / 4)


def test_forget_quality_is_ks_pvalue():
    a = [0.1, 0.4, 0.35, 0.8, 0.9, 0.15]
    b = [0.5, 0.55, 0.6, 0.95, 1.2, 0.7, 0.65]
    assert forget_quality(a, b) == pytest.approx(ks_2samp(a, b).pvalue)
    assert forget_quality(a, a) == pytest.approx(1.0)
    # disjoint samples of 5: exact p-value 2 / C(10, 5) = 2/252
    assert forget_quality([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]) == pytest.approx(2 / 252)
    with pytest.raises(ValueError):
        forget_quality([], b)


def test_reference_truth_ratio_files(tmp_path):
    ours = tmp_path / "ours.json"
    ours.write_text(json.dumps({"model": "m", "forget": {"truth_ratios": [0.5, 0.25]}}))
    assert read_reference_truth_ratios(ours) == [0.5, 0.25]
    bare = tmp_path / "bare.json"
    bare.write_text("[1.0, 2.0]")
    assert read_reference_truth_ratios(bare) == [1.0, 2.0]
    # TOFU's eval_log_forget.json: R = exp(para_loss - mean(pert_loss))
    tofu = tmp_path / "eval_log_forget.json"
    tofu.write_text(json.dumps({"avg_paraphrased_loss": {"0": 1.0, "1": 2.0},
                                "average_perturb_loss": {"0": [1.5, 2.5], "1": [1.0, 1.0]}}))
    assert read_reference_truth_ratios(tofu) == pytest.approx([math.exp(-1.0), math.exp(1.0)])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"forget": {"truth_ratios": [0.5, "x"]}}))
    with pytest.raises(UnlearnError, match="bad.json"):
        read_reference_truth_ratios(bad)
    with pytest.raises(UnlearnError, match="not found"):
        read_reference_truth_ratios(tmp_path / "missing.json")
    (tmp_path / "empty.json").write_text("{}")
    with pytest.raises(UnlearnError, match="no truth ratios"):
        read_reference_truth_ratios(tmp_path / "empty.json")


def test_model_utility_harmonic_mean():
    assert model_utility([1.0, 2.0, 4.0]) == pytest.approx(3 / (1 + 0.5 + 0.25))
    vals = {f"v{i}": v for i, v in enumerate([0.9, 0.5, 0.3, 0.8, 0.7, 0.2, 0.6, 0.4, 0.55])}
    assert model_utility(vals) == pytest.approx(hmean(list(vals.values())))
    assert model_utility([0.5, 0.0, 0.9]) == 0.0
    with pytest.raises(ValueError):
        model_utility([])


def test_rouge_l_by_hand():
    pred, ref = "the cat sat", "the cat sat on the mat"
    # LCS = 3 words; recall 3/6, precision 3/3, F1 = 2 * 0.5 * 1 / 1.5
    assert rouge_l_recall([pred], [ref]) == pytest.approx([0.5])
    assert rouge_l_f1([pred], [ref]) == pytest.approx([2 / 3])
    assert rouge_l_recall(["mat the on"], [ref]) == pytest.approx([2 / 6])  # LCS "the on"
    assert rouge_l_recall([""], [ref]) == [0.0]


def test_min_k_auc_privleak_by_hand():
    lp = torch.tensor([-1.0, -2.0, -3.0, -4.0, -5.0])
    assert min_k_score(lp, 0.4) == pytest.approx(-4.5)  # floor(0.4*5)=2 lowest: -5, -4
    assert min_k_score(lp[:4], 0.4) == pytest.approx(-4.0)  # floor(1.6)=1 lowest (MUSE rounds down)
    assert min_k_score(lp, 1.0) == pytest.approx(-3.0)
    assert min_k_score(lp, 0.01) == pytest.approx(-5.0)
    assert mia_auc([3, 4], [1, 2]) == 1.0
    assert mia_auc([1, 3], [2]) == 0.5
    m, h = [0.2, 0.9, 0.4, 0.7], [0.1, 0.5, 0.3]
    assert mia_auc(m, h) == pytest.approx(roc_auc_score([1, 1, 1, 1, 0, 0, 0], m + h))
    assert privleak(0.6, 0.5) == pytest.approx(20.0)
    assert privleak(0.45, 0.5) == pytest.approx(-10.0)


# -- batched model calls --------------------------------------------------------------------------


def _manual_logp(model, ids: list[int], first_target: int) -> tuple[float, int]:
    """Unbatched reference: sum of log P(ids[t] | ids[:t]) for t >= first_target."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].float()
    logp = torch.log_softmax(logits, -1)
    total = sum(logp[t - 1, ids[t]].item() for t in range(first_target, len(ids)))
    return total, len(ids) - first_target


def test_answer_logprobs_batched_matches_unbatched_and_scores_eos_when_pad_is_eos(tiny_model, tiny_tokenizer):
    tok = copy.deepcopy(tiny_tokenizer)
    tok.pad_token = tok.eos_token  # pad == eos: the real end token must still be scored
    assert tok.pad_token_id == tok.eos_token_id
    prompts = ["Question: Where was Alder born?\nAnswer:", "Q:",
               "Question: What pet does Rhea keep?\nAnswer:"]
    answers = [" Veloria", " a long answer with several words in it", " parrot"]
    sums, counts = answer_logprobs(tiny_model, tok, prompts, answers, add_eos=True, batch_size=2)
    for i, (p, a) in enumerate(zip(prompts, answers, strict=True)):
        pids = [tok.bos_token_id] + tok(p, add_special_tokens=False)["input_ids"]
        aids = tok(a, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        want, n = _manual_logp(tiny_model, pids + aids, len(pids))
        assert counts[i].item() == n == len(aids)
        assert sums[i].item() == pytest.approx(want, abs=1e-4)
    s2, c2 = answer_logprobs(tiny_model, tok, prompts, answers, add_eos=False, batch_size=3)
    assert (c2 == counts - 1).all()


def test_text_token_logprobs_matches_unbatched(tiny_model, tiny_tokenizer):
    texts = ["Alder Brisk was born in Veloria.", "Rhea plays the cello and keeps a parrot as a pet."]
    got = text_token_logprobs(tiny_model, tiny_tokenizer, texts, batch_size=2)
    for t, lp in zip(texts, got, strict=True):
        ids = [tiny_tokenizer.bos_token_id] + tiny_tokenizer(t, add_special_tokens=False)["input_ids"]
        want, n = _manual_logp(tiny_model, ids, 1)
        assert lp.numel() == n
        assert lp.sum().item() == pytest.approx(want, abs=1e-4)


def test_greedy_generate_left_padded_batch_matches_one_by_one(tiny_model, tiny_tokenizer, tiny_world):
    prompts = [f.prompt for f in tiny_world.retain_eval[:3]] + ["Question: Hi?\nAnswer:"]
    batched = greedy_generate(tiny_model, tiny_tokenizer, prompts, max_new_tokens=6, batch_size=4)
    single = [greedy_generate(tiny_model, tiny_tokenizer, [p], max_new_tokens=6)[0] for p in prompts]
    assert batched == single
    assert all("<pad>" not in t and "</s>" not in t for t in batched)


def test_score_qa_matches_metric_functions(tiny_model, tiny_tokenizer):
    items = [QAItem("Question: Where was Alder born?\nAnswer:", " Veloria", " Alder was born in Veloria.",
                    [" Alder was born in Quessa.", " Alder was born in Drysk."]),
             QAItem("Question: What pet?\nAnswer:", " parrot", None, [" ferret", " gecko", " pony"])]
    out = score_qa(tiny_model, tiny_tokenizer, items, generate=True, max_new_tokens=4)
    # recompute with the primitives, one item at a time
    trs, probs = [], []
    for it in items:
        s, c = answer_logprobs(tiny_model, tiny_tokenizer, [it.prompt] * (2 + len(it.perturbed)),
                               [it.answer, it.paraphrased or it.answer, *it.perturbed], add_eos=True)
        lp = s / c
        probs.append(math.exp(lp[0].item()))
        # TOFU: exp(paraphrased loss - mean perturbed loss)
        trs.append(math.exp(lp[2:].mean().item() - lp[1].item()))
    assert out["probabilities"] == pytest.approx(probs, rel=1e-5)
    assert out["truth_ratios"] == pytest.approx(trs, rel=1e-5)
    assert out["truth_ratio"] == pytest.approx(sum(trs) / 2, rel=1e-5)
    assert 0 <= out["rougeL_recall"] <= 1 and len(out["rouge_scores"]) == 2
    shared = score_qa(tiny_model, tiny_tokenizer, items, generate=False, share=True)
    assert "rougeL_recall" not in shared
    assert all(0 < p < 1 for p in shared["probabilities"])
