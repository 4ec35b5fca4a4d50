"""The cited objectives against hand computation: IdkDPO, IdkNLL, AltPO, WGA, SatImp, CE-U, UNDIAL.

The model is a bigram table (the logits after token a are row a), so every expected value below is
computed with ``math`` on a handful of floats, independently of the implementation (the objectives
compute in float32, hence rel 1e-6). Gradient checks
pin the stop-gradients (WGA/SatImp weights, CE-U's target).

Mutations seen caught (source edited, file run failing, restored): WGA weight not detached, β dropped
(p instead of p^β with β=2); SatImp β₁/β₂ swapped, (1−p) dropped; CE-U target not detached, the
first answer token kept, true token not removed; UNDIAL +β instead of −β, reference replaced by θ;
DPO win/lose swapped, 1/β instead of 2/β, per-token mean instead of sum; IdkNLL on the original answer.
"""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import pytest
import torch

from robust_unlearning.config import build_config
from robust_unlearning.data.collate import IGNORE, Collator
from robust_unlearning.data.idk import IDK_ANSWERS, idk_answer
from robust_unlearning.errors import UnlearnError
from robust_unlearning.loop import unlearn
from robust_unlearning.objectives.base import OBJECTIVES
from robust_unlearning.reference import Reference
from robust_unlearning.world.benchmark import unlearning_data

THETA = [[0.0, 1.0, 2.0, 0.5], [1.0, 0.0, -1.0, 0.3], [0.2, 0.4, 0.0, 1.0], [2.0, -1.0, 0.5, 0.0]]
REF = [[0.5, 0.0, 1.0, -0.5], [0.0, 1.5, 0.2, 0.3], [1.0, -0.4, 0.3, 0.0], [0.0, 0.7, -0.5, 1.2]]


class Bigram(torch.nn.Module):
    def __init__(self, table):
        super().__init__()
        self.table = torch.nn.Parameter(torch.tensor(table, dtype=torch.float64))

    def forward(self, input_ids, attention_mask=None, **kw):
        return SimpleNamespace(logits=self.table[input_ids])


def _ref(table):
    m = Bigram(table)
    return Reference(lambda b, hidden: m(b["input_ids"]))


def _batch(seqs):
    """seqs: (ids, number of prompt tokens); right-padded with token 0."""
    width = max(len(s) for s, _ in seqs)
    ids = torch.zeros(len(seqs), width, dtype=torch.long)
    labels = torch.full((len(seqs), width), IGNORE)
    mask = torch.zeros(len(seqs), width, dtype=torch.long)
    for i, (s, prompt) in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s)
        labels[i, prompt:len(s)] = torch.tensor(s[prompt:])
        mask[i, :len(s)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


# forget: prompt [0], answers 1 2 3 / prompt [0 2], answer 1;  idk answers: 3 3 / 2 0 1
FORGET = [([0, 1, 2, 3], 1), ([0, 2, 1], 2)]
IDK = [([0, 3, 3], 1), ([0, 2, 2, 0, 1], 2)]


def _forget_batch(with_idk=True, with_alt=False):
    b = _batch(FORGET)
    if with_idk:
        b.update({f"idk_{k}": v for k, v in _batch(IDK).items()})
    if with_alt:
        b.update({f"alt_{k}": v for k, v in _batch([([0, 2, 0], 1), ([0, 2, 3, 1], 2)]).items()})
    return b


def lp(table, a, b):
    """log p(b | a) under a bigram table."""
    row = table[a]
    return row[b] - math.log(sum(math.exp(z) for z in row))


def pairs(seqs):
    """Per sequence, its (previous token, target token) pairs."""
    return [[(s[t - 1], s[t]) for t in range(prompt, len(s))] for s, prompt in seqs]


def seq_mean(values):
    return sum(sum(v) / len(v) for v in values) / len(values)


def summed_nll(table, seqs):
    return [-sum(lp(table, a, b) for a, b in ps) for ps in pairs(seqs)]


def _loss(name, opts, batch, model=None, ref=REF):
    obj = OBJECTIVES.build(name, opts)
    model = model or Bigram(THETA)
    return obj.forget_loss(model, batch, _ref(ref)), model


# -- token-weighted gradient ascent ----------------------------------------------------------------

def test_wga_value_and_detached_weight():
    beta = 2.0
    loss, model = _loss("wga", {"beta": beta}, _forget_batch(False))
    want = -seq_mean([[math.exp(lp(THETA, a, b)) ** beta * -lp(THETA, a, b) for a, b in ps]
                      for ps in pairs(FORGET)])
    assert loss.item() == pytest.approx(want, rel=1e-6)
    # the gradient is that of −mean w·CE with w held constant
    (g,) = torch.autograd.grad(loss, [model.table])
    t = model.table
    expr = 0
    for ps in pairs(FORGET):
        terms = [math.exp(lp(THETA, a, b)) ** beta * -torch.log_softmax(t[a], -1)[b] for a, b in ps]
        expr = expr - sum(terms) / len(terms) / len(FORGET)
    (g_want,) = torch.autograd.grad(expr, [t])
    assert torch.allclose(g, g_want, atol=1e-6)


def test_satimp_value_and_detached_weight():
    b1, b2 = 3.0, 2.0
    loss, model = _loss("satimp", {"beta1": b1, "beta2": b2}, _forget_batch(False))

    def w(a, b):
        p = math.exp(lp(THETA, a, b))
        return p ** b1 * (1 - p) ** b2

    want = -seq_mean([[w(a, b) * -lp(THETA, a, b) for a, b in ps] for ps in pairs(FORGET)])
    assert loss.item() == pytest.approx(want, rel=1e-6)
    (g,) = torch.autograd.grad(loss, [model.table])
    t = model.table
    expr = 0
    for ps in pairs(FORGET):
        terms = [w(a, b) * -torch.log_softmax(t[a], -1)[b] for a, b in ps]
        expr = expr - sum(terms) / len(terms) / len(FORGET)
    (g_want,) = torch.autograd.grad(expr, [t])
    assert torch.allclose(g, g_want, atol=1e-6)


# -- bounded targets: CE-U and UNDIAL ----------------------------------------------------------------

def _ceu_term(a, b):
    """CE between q = softmax(row a without token b) and p_θ(· | a)."""
    row = THETA[a]
    others = [v for v in range(4) if v != b]
    z = sum(math.exp(row[v]) for v in others)
    return -sum(math.exp(row[v]) / z * lp(THETA, a, v) for v in others)


@pytest.mark.parametrize("ignore_first", [0, 1])
def test_ceu_value_and_detached_target(ignore_first):
    loss, model = _loss("ceu", {"ignore_first": ignore_first}, _forget_batch(False))
    kept = [ps[ignore_first:] for ps in pairs(FORGET)]
    want = sum(sum(_ceu_term(a, b) for a, b in ps) / max(len(ps), 1) for ps in kept) / len(kept)
    assert loss.item() == pytest.approx(want, rel=1e-6)
    # gradient: q constant, so ∂/∂z_a = (p − q) per kept position, scaled by the means
    (g,) = torch.autograd.grad(loss, [model.table])
    want_g = torch.zeros(4, 4, dtype=torch.float64)
    for ps in kept:
        for a, b in ps:
            p = torch.softmax(torch.tensor(THETA[a], dtype=torch.float64), -1)
            q = p.clone()
            q[b] = 0
            q = q / q.sum()
            want_g[a] += (p - q) / len(ps) / len(kept)
    assert torch.allclose(g, want_g, atol=1e-6)


def test_undial_distils_the_lowered_reference():
    beta = 1.5
    loss, _ = _loss("undial", {"beta": beta}, _forget_batch(False))

    def term(a, b):
        adj = [z - (beta if v == b else 0.0) for v, z in enumerate(REF[a])]
        zsum = sum(math.exp(z) for z in adj)
        return -sum(math.exp(z) / zsum * lp(THETA, a, v) for v, z in enumerate(adj))

    want = seq_mean([[term(a, b) for a, b in ps] for ps in pairs(FORGET)])
    assert loss.item() == pytest.approx(want, rel=1e-6)


# -- preference and "I don't know" objectives --------------------------------------------------------

def _dpo(win, lose, beta):
    s_w, r_w = summed_nll(THETA, win), summed_nll(REF, win)
    s_l, r_l = summed_nll(THETA, lose), summed_nll(REF, lose)
    return -(2 / beta) * sum(math.log(1 / (1 + math.exp(-beta * ((rw - sw) - (rl - sl)))))
                             for sw, rw, sl, rl in zip(s_w, r_w, s_l, r_l, strict=True)) / len(win)


def test_idkdpo_prefers_the_refusal():
    beta = 0.7
    loss, _ = _loss("idkdpo", {"beta": beta}, _forget_batch())
    assert loss.item() == pytest.approx(_dpo(IDK, FORGET, beta), rel=1e-6)
    assert abs(_dpo(FORGET, IDK, beta) - _dpo(IDK, FORGET, beta)) > 1e-3  # the swap is visible


def test_idknll_is_the_nll_of_the_refusal():
    loss, _ = _loss("idknll", {}, _forget_batch())
    want = seq_mean([[-lp(THETA, a, b) for a, b in ps] for ps in pairs(IDK)])
    assert loss.item() == pytest.approx(want, rel=1e-6)


def test_altpo_uses_alternates_and_falls_back_to_idk():
    beta, alpha = 0.3, 0.5
    alt = [([0, 2, 0], 1), ([0, 2, 3, 1], 2)]
    loss, _ = _loss("altpo", {"beta": beta, "alpha": alpha}, _forget_batch(with_alt=True))
    nll_alt = seq_mean([[-lp(THETA, a, b) for a, b in ps] for ps in pairs(alt)])
    assert loss.item() == pytest.approx(_dpo(alt, FORGET, beta) + alpha * nll_alt, rel=1e-6)
    with pytest.warns(UserWarning, match="alternate"):
        loss, _ = _loss("altpo", {"beta": beta}, _forget_batch())
    assert loss.item() == pytest.approx(_dpo(IDK, FORGET, beta), rel=1e-6)


@pytest.mark.parametrize("name", ["idkdpo", "idknll", "altpo"])
def test_alternate_objectives_refuse_text_forget_sets(name):
    with pytest.raises(UnlearnError, match="question/answer"):
        _loss(name, {}, _forget_batch(with_idk=False))


# -- the data pipeline -------------------------------------------------------------------------------

def test_idk_set_is_varied_and_deterministic():
    assert 20 <= len(IDK_ANSWERS) <= 50 and len(set(IDK_ANSWERS)) == len(IDK_ANSWERS)
    assert idk_answer("Who wrote it?") == idk_answer("Who wrote it?")
    assert len({idk_answer(f"question {i}") for i in range(200)}) > len(IDK_ANSWERS) // 2


def test_collator_pairs_each_question_with_its_refusal_and_alternate(tiny_tokenizer, tiny_world):
    forget, _ = unlearning_data(tiny_world)
    recs = [dict(forget[0], alternate=["x y", "z"]), dict(forget[1], alternate="w")]
    plain = Collator(tiny_tokenizer)(recs)
    assert not any(k.startswith(("idk_", "alt_")) for k in plain)  # off unless asked
    b = Collator(tiny_tokenizer, alternates=True)(recs)
    for i, r in enumerate(recs):
        ids, lab = b["idk_input_ids"][i], b["idk_labels"][i]
        n_prompt = int((plain["labels"][i] == IGNORE).long().cumprod(0).sum())
        # same prompt tokens as the original, the refusal as the only target
        assert torch.equal(ids[:n_prompt], plain["input_ids"][i, :n_prompt])
        target = lab[lab != IGNORE].tolist()
        assert idk_answer(r["question"]).replace(" ", "") in tiny_tokenizer.decode(target).replace(" ", "")
    assert "alt_input_ids" in b
    assert tiny_tokenizer.decode(b["alt_labels"][1][b["alt_labels"][1] != IGNORE].tolist()).strip() \
        .startswith("w")
    # text records: no alternates to make
    assert "idk_input_ids" not in Collator(tiny_tokenizer, alternates=True)([{"text": "a b"}])


# -- training: the objectives do what they are for -------------------------------------------------------

def _answer_nll(model, tok, records):
    from robust_unlearning.metrics.scoring import answer_logprobs

    s, n = answer_logprobs(model, tok, [r["question"] for r in records], [r["answer"] for r in records],
                           add_eos=True)
    return float(-(s / n).mean())


def test_idknll_teaches_the_refusals(trained_tiny, tiny_tokenizer, tiny_world):
    from robust_unlearning.config import build_config
    from robust_unlearning.loop import unlearn

    forget, retain = unlearning_data(tiny_world)
    idk = [{"question": r["question"], "answer": " " + idk_answer(r["question"])} for r in forget]
    before = _answer_nll(trained_tiny, tiny_tokenizer, idk)
    cfg = build_config({"method": "idknll", "train": {"steps": 8, "batch_size": 8, "lr": 3e-3}})
    out = unlearn(trained_tiny, tiny_tokenizer, forget, retain, cfg).export()
    assert _answer_nll(out, tiny_tokenizer, idk) < before - 0.5


def test_altpo_trains_on_generated_alternates(trained_tiny, tiny_tokenizer, tiny_world, recwarn):
    from robust_unlearning.data.alternates import generate_alternates

    forget, retain = unlearning_data(tiny_world)
    forget = forget[:6]
    alts = generate_alternates(trained_tiny, tiny_tokenizer, forget, n=2, max_new_tokens=8, seed=1)
    assert alts == generate_alternates(trained_tiny, tiny_tokenizer, forget, n=2, max_new_tokens=8, seed=1)
    for r, a in zip(forget, alts, strict=True):
        assert len(a["alternate"]) == 2 and all(x.strip() and x.strip() != r["answer"].strip()
                                                for x in a["alternate"])
    chosen = [{"question": a["question"], "answer": pick(a)} for a in alts]
    before_alt = _answer_nll(trained_tiny, tiny_tokenizer, chosen)
    before_true = _answer_nll(trained_tiny, tiny_tokenizer, forget)
    cfg = build_config({"method": "altpo", "objective": {"beta": 0.5},
                        "train": {"steps": 8, "batch_size": 6, "lr": 3e-3}})
    out = unlearn(trained_tiny, tiny_tokenizer, alts, retain, cfg).export()
    assert not [w for w in recwarn if "alternate" in str(w.message)]  # the alternates were used
    # preferred answers became likelier relative to the true ones
    margin_before = before_true - before_alt
    margin_after = _answer_nll(out, tiny_tokenizer, forget) - _answer_nll(out, tiny_tokenizer, chosen)
    assert margin_after > margin_before + 0.5


def pick(record):
    from robust_unlearning.data.idk import pick_alternate

    return pick_alternate(record["question"], record["alternate"])


# -- PDU: logit-margin flattening and the dual ascent on the retain constraint --------------------

def test_pdu_forget_loss_is_the_squared_logit_margin():
    loss, model = _loss("pdu", {}, _forget_batch(False))
    want = seq_mean([[(max(THETA[a]) - sum(THETA[a]) / 4) ** 2 for a, _ in ps] for ps in pairs(FORGET)])
    assert loss.item() == pytest.approx(want, rel=1e-6)
    # gradient: only the max and the mean carry it (d/dz_max = 2m(1 − 1/V), d/dz_other = −2m/V)
    (g,) = torch.autograd.grad(loss, [model.table])
    want_g = torch.zeros(4, 4, dtype=torch.float64)
    for ps in pairs(FORGET):
        for a, _ in ps:
            row = THETA[a]
            m = max(row) - sum(row) / 4
            d = torch.full((4,), -2 * m / 4, dtype=torch.float64)
            d[row.index(max(row))] += 2 * m
            want_g[a] += d / len(ps) / len(FORGET)
    assert torch.allclose(g, want_g, atol=1e-9)
    # a flat row has no margin: the loss is 0 at the uniform distribution
    flat, _ = _loss("pdu", {}, _forget_batch(False), model=Bigram([[0.7] * 4] * 4))
    assert flat.item() == 0.0


def test_pdu_dual_ascent_rule():
    """λ starts at γ, then λ ← max(0, λ + η(ℓ_r − ε)) after each step past the warm-up."""
    obj = OBJECTIVES.build("pdu", {"eps": 0.3, "dual_step": 5.0, "warmup_steps": 1})
    assert obj.retain_weight(2.0) == 2.0
    assert obj.after_step({"retain_loss": 0.9}) == {"retain_weight": 2.0}  # warm-up: frozen
    assert obj.after_step({"retain_loss": 0.5})["retain_weight"] == pytest.approx(2.0 + 5 * 0.2)
    assert obj.retain_weight(2.0) == pytest.approx(3.0)  # γ is only the start
    assert obj.after_step({"retain_loss": 0.0})["retain_weight"] == pytest.approx(1.5)
    assert obj.after_step({"retain_loss": 0.0})["retain_weight"] == 0.0  # clamped at 0
    state = obj.state_dict()
    other = OBJECTIVES.build("pdu", {"eps": 0.3, "dual_step": 5.0, "warmup_steps": 1})
    other.load_state_dict(state)
    assert other.retain_weight(2.0) == 0.0
    assert other.after_step({"retain_loss": 0.4})["retain_weight"] == pytest.approx(0.5)
    fixed = OBJECTIVES.build("pdu", {"primal_dual": False})
    fixed.retain_weight(3.0)
    assert fixed.after_step({"retain_loss": 9.0})["retain_weight"] == 3.0
    with pytest.raises(UnlearnError, match="dual_step"):
        OBJECTIVES.build("pdu", {"dual_step": -1.0})


def test_pdu_loop_steps_with_the_dual_weight(trained_tiny, tiny_tokenizer, tiny_world, monkeypatch):
    """In the loop: the logged λ follows the rule from the logged retain losses, and each step's
    strategy weighs the retain loss by λ after the step before (γ at the first)."""
    from robust_unlearning.strategies.plain import Plain

    seen = []
    orig = Plain.compute

    def spy(self, ctx):
        seen.append(ctx.gamma)
        orig(self, ctx)

    monkeypatch.setattr(Plain, "compute", spy)
    forget, retain = unlearning_data(tiny_world)
    cfg = build_config({"method": "pdu", "objective": {"eps": 0.5, "dual_step": 2.0, "warmup_steps": 1},
                        "train": {"steps": 4, "batch_size": 4, "lr": 1e-3, "gamma": 1.5}})
    log = unlearn(copy.deepcopy(trained_tiny), tiny_tokenizer, forget, retain, cfg).log
    lam, want = 1.5, []
    for i, e in enumerate(log):
        want.append(lam)
        if i >= 1:  # one warm-up step
            lam = max(0.0, lam + 2.0 * (e["retain_loss"] - 0.5))
        assert e["retain_weight"] == pytest.approx(lam, rel=1e-9)
    assert seen == pytest.approx(want, rel=1e-9)
    assert len(set(seen)) > 2  # the weight moved
