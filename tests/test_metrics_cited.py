"""Exact memorization, extraction strength, the membership-inference family with AUC, TOFU's holdout
and open-unlearning's eval JSON as the forget-quality reference: hand-computed values, the papers'
formulas recomputed from a forward pass, and behaviour on the trained tiny model.

Mutations seen caught: ES with open-unlearning's no-match 1/n (k stops at n − 1); ES from the first
miss instead of the last; Min-K%++ without σ, or without μ; μ a plain mean over the vocabulary;
ZLib over the character length instead of the compressed one; gradnorm summed instead of averaged
over tensors; AUC labels swapped; value_by_index read in string order.
"""

from __future__ import annotations

import copy
import json
import math
import zlib

import pytest
import torch
from scipy.stats import ks_2samp

from robust_unlearning.errors import UnlearnError
from robust_unlearning.metrics.extraction import exact_memorization, extraction_strength, memorization_report
from robust_unlearning.metrics.forget_quality import forget_quality, read_reference_truth_ratios
from robust_unlearning.metrics.mia import (
    gradnorm_scores,
    loss_score,
    mia_report,
    min_k_plus_plus_score,
    reference_score,
    zlib_score,
)
from robust_unlearning.metrics.privleak import mia_auc, min_k_score
from robust_unlearning.metrics.scoring import answer_logprobs, text_token_logprobs
from robust_unlearning.metrics.token_stats import token_stats
from robust_unlearning.world.benchmark import unlearning_data

T, F_ = True, False


# -- EM and ES by hand ---------------------------------------------------------------------------------

@pytest.mark.parametrize("hits, em, es", [
    ([T, T, T, T], 1.0, 1.0),             # the whole answer from the prompt alone: k* = 0
    ([F_, T, F_, T, T], 3 / 5, 1 - 3 / 5),  # last miss at index 2: a prefix of 3 tokens is needed
    ([T, T, T, F_], 3 / 4, 0.0),          # the last token is missed: nothing is extracted
    ([F_, T, T, T], 3 / 4, 1 - 1 / 4),
])
def test_em_and_es_by_hand(hits, em, es):
    h = torch.tensor(hits)
    assert exact_memorization(h) == pytest.approx(em)
    assert extraction_strength(h) == pytest.approx(es)


def test_em_es_refuse_empty_items():
    with pytest.raises(ValueError):
        extraction_strength(torch.tensor([], dtype=torch.bool))
    with pytest.raises(ValueError):
        exact_memorization(torch.tensor([], dtype=torch.bool))


# -- MIA scores by hand --------------------------------------------------------------------------------

def test_loss_zlib_reference_min_k_by_hand():
    lp = torch.tensor([-1.0, -3.0, -2.0, -4.0])
    assert loss_score(lp) == pytest.approx(-2.5)
    text = "the cat sat on the mat, the cat sat on the mat"
    assert zlib_score(lp, text) == pytest.approx(-2.5 / len(zlib.compress(text.encode())))
    assert len(zlib.compress(text.encode())) < len(text)  # the compressed length, not the text's
    assert reference_score(lp, torch.tensor([-2.0, -2.0])) == pytest.approx(-0.5)
    assert min_k_score(lp, 0.5) == pytest.approx(-3.5)  # the two lowest: −4, −3
    assert min_k_score(lp, 0.2) == pytest.approx(-4.0)  # ⌊0.8⌋ = 0 → the lowest one


def test_min_k_plus_plus_is_zhang_et_al_by_hand():
    """Per token (log p(x_t) − μ)/σ over the next-token distribution, then the mean of the lowest k."""
    dists = [([0.5, 0.3, 0.2], 1), ([0.7, 0.2, 0.1], 2), ([0.25, 0.25, 0.5], 2)]
    zs, lps, mus, vs = [], [], [], []
    for p, x in dists:
        mu = sum(q * math.log(q) for q in p)
        var = sum(q * math.log(q) ** 2 for q in p) - mu ** 2
        zs.append((math.log(p[x]) - mu) / math.sqrt(var))
        lps.append(math.log(p[x]))
        mus.append(mu)
        vs.append(var)
    got = min_k_plus_plus_score(torch.tensor(lps), torch.tensor(mus), torch.tensor(vs), k=0.67)
    assert got == pytest.approx(sum(sorted(zs)[:2]) / 2)  # ⌊0.67·3⌋ = 2 lowest
    # not Min-K% on the raw log-probs: the normalisation changes which tokens are lowest here
    assert abs(got - min_k_score(torch.tensor(lps), 0.67)) > 0.1


def test_auc_convention_by_hand():
    # members (forget) [3, 1], non-members (holdout) [2, 0]: 3 of the 4 pairs rank the member higher
    assert mia_auc([3.0, 1.0], [2.0, 0.0]) == pytest.approx(0.75)
    assert mia_auc([1.0], [1.0]) == pytest.approx(0.5)  # ties count one half


# -- from a forward pass on the tiny model ----------------------------------------------------------------

def test_token_stats_agree_with_a_direct_forward(tiny_model, tiny_tokenizer, tiny_world):
    forget, _ = unlearning_data(tiny_world)
    text = tiny_world.biography(tiny_world.persons[0])[:80]
    items = [{"text": text}, {"prompt": forget[0]["question"], "answer": forget[0]["answer"]}]
    stats = token_stats(tiny_model, tiny_tokenizer, items)
    direct = text_token_logprobs(tiny_model, tiny_tokenizer, [text])[0]
    assert torch.allclose(stats[0].logp, direct, atol=1e-5)
    s, n = answer_logprobs(tiny_model, tiny_tokenizer, [forget[0]["question"]], [forget[0]["answer"]])
    assert stats[1].logp.sum().item() == pytest.approx(s.item(), abs=1e-4) and len(stats[1].logp) == n.item()
    # hit, μ and σ² at every text position, from the logits
    ids = [tiny_tokenizer.bos_token_id] + tiny_tokenizer(text, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = tiny_model(input_ids=torch.tensor([ids])).logits[0, :-1].double()
    q = torch.softmax(logits, -1)
    mu = (q * q.log()).sum(-1)
    assert torch.equal(stats[0].hit, logits.argmax(-1) == torch.tensor(ids[1:]))
    assert torch.allclose(stats[0].mu, mu, atol=1e-9)
    assert torch.allclose(stats[0].var, (q * (q.log() - mu[:, None]) ** 2).sum(-1), atol=1e-9)


def test_gradnorm_is_the_mean_tensor_norm(tiny_model, tiny_tokenizer, tiny_world):
    forget, _ = unlearning_data(tiny_world)
    item = {"prompt": forget[0]["question"], "answer": forget[0]["answer"]}
    (got,) = gradnorm_scores(tiny_model, tiny_tokenizer, [item])
    s, n = answer_logprobs(tiny_model, tiny_tokenizer, [item["prompt"]], [item["answer"]])
    # recompute: mean NLL of the answer tokens, its gradient, the mean of the per-tensor 2-norms
    from robust_unlearning.metrics.scoring import encode_pair

    enc = encode_pair(tiny_tokenizer, item["prompt"], item["answer"])
    ids, labels = torch.tensor([enc.input_ids]), torch.tensor([enc.labels])
    logits = tiny_model(input_ids=ids).logits[0, :-1]
    tgt = labels[0, 1:]
    nll = -torch.log_softmax(logits, -1)[tgt != -100].gather(-1, tgt[tgt != -100][:, None]).mean()
    assert nll.item() == pytest.approx(-(s / n).item(), rel=1e-5)
    grads = torch.autograd.grad(nll, list(tiny_model.parameters()))
    want = -torch.stack([g.norm() for g in grads]).mean().item()
    assert got == pytest.approx(want, rel=1e-4)
    assert all(p.grad is None for p in tiny_model.parameters())  # .grad untouched


def test_trained_facts_are_members(trained_tiny, tiny_tokenizer, tiny_world):
    """The tiny model trained on the world's facts: its QA pairs against the same questions with
    another person's answer (never trained on). Every attack tells them apart; the reference attack
    against the model itself carries no signal."""
    forget, _ = unlearning_data(tiny_world)
    members = [{"prompt": r["question"], "answer": r["answer"]} for r in forget[:12]]
    holdout = [{"prompt": m["prompt"], "answer": forget[(i + 5) % len(forget)]["answer"]}
               for i, m in enumerate(members)]
    assert all(m["answer"] != h["answer"] for m, h in zip(members, holdout, strict=True))
    rep = mia_report(trained_tiny, tiny_tokenizer, members, holdout,
                     attacks=["loss", "zlib", "min_k", "min_k_plus_plus", "gradnorm"])
    for attack, r in rep.items():
        assert r["auc"] > 0.8, (attack, r)
        assert r["forget_mean"] > r["holdout_mean"], attack
    ref = mia_report(trained_tiny, tiny_tokenizer, members, holdout, attacks=["reference"],
                     reference_model=copy.deepcopy(trained_tiny))
    assert ref["reference"]["auc"] == pytest.approx(0.5)
    mem = memorization_report(trained_tiny, tiny_tokenizer, members)
    assert mem["exact_memorization"] > 0.3 and 0 <= mem["extraction_strength"] <= 1
    assert mem["exact_memorization"] > memorization_report(trained_tiny, tiny_tokenizer, holdout)[
        "exact_memorization"]


def test_mia_bad_inputs(tiny_model, tiny_tokenizer):
    item = [{"text": "a b c"}]
    with pytest.raises(UnlearnError, match="unknown membership attack"):
        mia_report(tiny_model, tiny_tokenizer, item, item, attacks=["bogus"])
    with pytest.raises(UnlearnError, match="reference model"):
        mia_report(tiny_model, tiny_tokenizer, item, item, attacks=["reference"])
    with pytest.raises(UnlearnError, match="forget and holdout"):
        mia_report(tiny_model, tiny_tokenizer, item, [], attacks=["loss"])
    with pytest.raises(UnlearnError, match="'text', or 'prompt'"):
        mia_report(tiny_model, tiny_tokenizer, [{"q": 1}], item, attacks=["loss"])


# -- forget quality from open-unlearning's eval JSON ---------------------------------------------------------

def test_forget_quality_reads_open_unlearnings_eval_json(tmp_path):
    scores = {"0": 0.9, "1": 0.2, "2": 1.4, "10": 0.05, "3": 0.7}
    doc = {"forget_quality": {"agg_value": 0.1},
           "forget_truth_ratio": {"agg_value": 0.5,
                                  "value_by_index": {k: {"score": v} for k, v in scores.items()}}}
    path = tmp_path / "TOFU_EVAL.json"
    path.write_text(json.dumps(doc))
    got = read_reference_truth_ratios(path)
    assert got == [0.9, 0.2, 1.4, 0.7, 0.05]  # index order: 0 1 2 3 10
    ours = [0.3, 0.8, 0.95, 1.1]
    assert forget_quality(ours, got) == pytest.approx(ks_2samp(ours, got).pvalue)
    doc["forget_truth_ratio"]["value_by_index"]["4"] = {"avg_loss": 1.0}
    path.write_text(json.dumps(doc))
    with pytest.raises(UnlearnError, match="score"):
        read_reference_truth_ratios(path)


# -- TOFU holdout ---------------------------------------------------------------------------------

def test_tofu_memorization_and_mia_on_holdout(tmp_path, tiny_model, tiny_tokenizer):
    from test_benchmarks_tofu import AUTHORS, write_tofu

    from robust_unlearning.benchmarks import build_benchmark

    root = write_tofu(tmp_path / "tofu")
    holdout = [{"question": f"Where did {AUTHORS[i]} study?", "answer": f"At University{i}."}
               for i in range(3)]
    (root / "holdout10.json").write_text("".join(json.dumps(r) + "\n" for r in holdout))
    bench = build_benchmark("tofu", path=root, split="forget10",
                            options={"memorization": True, "mia": ["loss", "min_k_plus_plus"],
                                     "generate": False})
    rep = bench.evaluate(tiny_model, tiny_tokenizer)
    s = rep["summary"]
    for key in ("forget_exact_memorization", "forget_extraction_strength", "mia_loss_auc",
                "mia_min_k_plus_plus_auc"):
        assert 0 <= s[key] <= 1 and key in rep["directions"], key
    # the same AUC as computed directly on the forget and holdout items
    rows = [json.loads(ln) for ln in (root / "forget10.json").read_text().splitlines()]
    forget = [{"prompt": bench.template.format(question=r["question"]), "answer": " " + r["answer"]}
              for r in rows]
    hold = [{"prompt": bench.template.format(question=r["question"]), "answer": " " + r["answer"]}
            for r in holdout]
    direct = mia_report(tiny_model, tiny_tokenizer, forget, hold, attacks=["loss"])
    assert s["mia_loss_auc"] == pytest.approx(direct["loss"]["auc"])
    with pytest.raises(UnlearnError, match="reference"):
        build_benchmark("tofu", path=root, options={"mia": ["reference"], "generate": False}).evaluate(
            tiny_model, tiny_tokenizer)


def test_muse_memorization_and_mia(tmp_path, tiny_model, tiny_tokenizer):
    from test_benchmarks_muse import MUSE_SETS, write_muse

    from robust_unlearning.benchmarks import build_benchmark

    root = write_muse(tmp_path / "news")
    bench = build_benchmark("muse-news", root, options={"memorization": True, "mia": ["zlib", "min_k"]})
    rep = bench.evaluate(tiny_model, tiny_tokenizer)
    s = rep["summary"]
    forget = [{"text": r["text"]} for r in MUSE_SETS[("privleak", "forget")]]
    hold = [{"text": r["text"]} for r in MUSE_SETS[("privleak", "holdout")]]
    direct = mia_report(tiny_model, tiny_tokenizer, forget, hold, attacks=["zlib", "min_k"], k=0.4)
    assert s["mia_zlib_auc"] == pytest.approx(direct["zlib"]["auc"])
    assert s["mia_min_k_auc"] == pytest.approx(direct["min_k"]["auc"])
    # Min-K at k = 0.4 against holdout is MUSE's own AUC turned round (1 − MUSE's convention)
    assert s["mia_min_k_auc"] == pytest.approx(1 - s["mink_auc"])
    vm = [{"prompt": r["prompt"], "answer": r["gt"]} for r in MUSE_SETS[("verbmem", "forget")]]
    want = memorization_report(tiny_model, tiny_tokenizer, vm)
    assert s["forget_exact_memorization"] == pytest.approx(want["exact_memorization"])
    assert s["forget_extraction_strength"] == pytest.approx(want["extraction_strength"])
