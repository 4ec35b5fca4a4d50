"""Tests that fail on wrong math: StableUN's inner step and feedback points, NPO away from the
reference, SimNPO's length normalisation and margin, RMU's steering target, each recomputed by hand
(autograd on a toy loss or on the tiny Llama, log-softmax / forward hooks for the objectives).

Mutations each test was seen to catch (source edited, this file run and seen failing, source
restored with ``git checkout -- src``):

  test_stableun_update_on_a_toy_loss[rule-case]  (toy: all 6 cases unless a case is named)
      θτ = θ; θτ = θ + α∇ℓ_f (inner sign flipped); α = 1 instead of lr; inner step along ∇L_u
      instead of ∇ℓ_f; remembering feedback at θ instead of θτ; ½ dropped from ∇L_u in g_f;
      λ_f/λ_r swapped; γ dropped from L_u; no projection (*-conflict); projection also when
      g_f·g_r ≥ 0 (*-agree); gap moved by −μ (gap-*); sap moved by −ρ (sap-*); hws without the
      outer-iterate history (hws-*)
  test_stableun_update_on_the_tiny_llama
      θτ = θ; inner sign flipped; α = 1; inner step along ∇L_u; feedback retain at θ; projection
      also when g_f·g_r ≥ 0; ½ dropped; λ swapped; γ dropped; gap moved by −μ
  test_stableun_feedback_losses_are_at_theta_tau
      θτ = θ; inner sign flipped; α = 1; inner step along ∇L_u; feedback retain at θ
  test_npo_away_from_the_reference
      mean instead of sum over answer tokens; sign flipped (S_ref − S_θ); prompt/padding tokens
      counted as targets; 1/β instead of 2/β; β·Δ without log σ
  test_simnpo_length_normalised_with_margin
      no length normalisation (S instead of S/n); +δ instead of −δ; pooled Σ S / Σ n over the
      batch; β·(NLL − δ) instead of β·NLL − δ; prompt/padding tokens counted as targets
  test_rmu_forget_and_retain_activations
      u not normalised (‖c·u‖ ≠ c); target u instead of c·u; hidden_states[layer] instead of
      [layer + 1]; padding inside the token mean; sum instead of mean over hidden units; retain
      MSE to the reference's last hidden state instead of layer ``layer``'s
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from robust_unlearning.data.collate import IGNORE, Collator
from robust_unlearning.objectives.base import OBJECTIVES
from robust_unlearning.reference import Reference
from robust_unlearning.strategies.base import STRATEGIES, Losses, MicroBatch, StepContext
from robust_unlearning.world.benchmark import unlearning_data


@pytest.fixture(autouse=True)
def _one_thread():
    """These models are tiny: one intra-op thread is as fast, and on a loaded machine two threads
    that wait for each other make every pass ~100× slower (seen: 2 s instead of 10 ms)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# -- StableUN on a toy loss (float64, exact) -------------------------------------------------------

X = torch.tensor([[1.0, -2.0, 0.5, 0.3], [0.2, 0.7, -1.1, 2.0], [-0.4, 0.1, 0.9, -0.6],
                  [1.5, 0.3, 0.2, -0.2]], dtype=torch.float64)
Y = torch.tensor([[0.3, 1.0, -0.5, 0.8], [-1.2, 0.4, 0.6, 0.1], [0.9, -0.7, 0.2, 1.3],
                  [0.1, 0.5, -1.4, -0.3]], dtype=torch.float64)
W0 = torch.tensor([0.3, -0.2, 0.5, 0.1], dtype=torch.float64)
W_PREV = torch.tensor([0.1, 0.4, -0.3, 0.6], dtype=torch.float64)  # an earlier outer iterate (hws)


def toy_forget(w, rows):
    """Non-quadratic: its gradient at θτ differs from the one at θ."""
    return F.softplus(X[rows] @ w).mean() + 0.25 * (w ** 4).sum()


def toy_retain(w, rows, sign):
    return sign * F.softplus(X[rows] @ w + Y[rows] @ w ** 2).mean() + 0.1 * ((w - 0.5) ** 2).sum()


def _g(fn, point):
    v = point.detach().clone().requires_grad_(True)
    return torch.autograd.grad(fn(v), v)[0]


TOY_RULES = [("gap", {"mu": 0.4}), ("sap", {"rho": 0.3}), ("hws", {"w": 3})]


@pytest.mark.parametrize("sign,conflict", [(-2.0, True), (1.0, False)], ids=["conflict", "agree"])
@pytest.mark.parametrize("rule,opts", TOY_RULES, ids=[r[0] for r in TOY_RULES])
def test_stableun_update_on_a_toy_loss(rule, opts, sign, conflict):
    """T = 1, M = 1, one deterministic rule: the update is the docstring's steps 1–5, by hand."""
    lr, gamma, lam_f, lam_r = 0.35, 0.5, 0.7, 0.4
    f0, f1 = {"rows": torch.tensor([0, 1])}, {"rows": torch.tensor([2, 3])}  # step batch, fresh batch
    r0, r1 = {"rows": torch.tensor([0, 2])}, {"rows": torch.tensor([1, 3])}
    w = torch.nn.Parameter(W_PREV.clone() if rule == "hws" else W0.clone())
    ctx = StepContext(
        model=None, params=[w], micro=[MicroBatch(f0, r0)],
        losses=Losses(lambda b: toy_forget(w, b["rows"]), lambda b: toy_retain(w, b["rows"], sign),
                      next_forget=lambda: f1, next_retain=lambda: r1),
        gamma=gamma, lr=lr, step=0)
    strat = STRATEGIES.build("stableun", {"rules": [rule], "T": 1, "M": 1, "lambda_f": lam_f,
                                          "lambda_r": lam_r, **opts})
    strat.setup([w])  # hws: θ_0 = W_PREV enters the history
    if rule == "hws":
        w.data.copy_(W0)
        strat.after_step(ctx)  # the outer step moved θ to W0: history [W_PREV, W0]
    strat.compute(ctx)
    assert torch.equal(w.detach(), W0)

    def lf(rows):
        return lambda v: toy_forget(v, rows)

    def lr_(rows):
        return lambda v: toy_retain(v, rows, sign)

    theta = W0
    g_f0 = _g(lf(f0["rows"]), theta)
    grad_u = g_f0 + gamma * _g(lr_(r0["rows"]), theta)  # ∇L_u = ∇(ℓ_f + γ ℓ_r) at θ
    tau = theta - lr * g_f0  # 1. inner step
    if rule == "gap":
        point = tau + opts["mu"] * _g(lf(f1["rows"]), tau)
    elif rule == "sap":
        d = _g(lf(f1["rows"]), tau)
        point = tau + opts["rho"] * d / d.norm()
    else:
        point = (tau + W_PREV + W0) / 3
    g_fb = _g(lf(f1["rows"]), point)  # 2. forgetting feedback at the rule's point
    g_fb2 = _g(lr_(r1["rows"]), tau)  # 3. remembering feedback at θτ
    gf = 0.5 * grad_u + lam_f * g_fb  # 4.
    gr = 0.5 * grad_u + lam_r * g_fb2
    assert bool(gf @ gr < 0) == conflict  # the case this parametrisation is meant to cover
    if gf @ gr < 0:  # 5. one-sided projection
        gf = gf - (gf @ gr) / (gr @ gr) * gr
    expected = gr + gf
    assert torch.allclose(w.grad, expected, rtol=1e-12, atol=1e-14), (w.grad, expected)
    assert ctx.stats["projected"] == float(conflict)
    assert ctx.stats["feedback_forget"] == pytest.approx(float(toy_forget(point, f1["rows"])), rel=1e-12)
    assert ctx.stats["feedback_retain"] == pytest.approx(float(toy_retain(tau, r1["rows"], sign)), rel=1e-12)


# -- the tiny Llama ---------------------------------------------------------------------------------

def _batches(tok, world, n=4, k=2):
    forget, retain = unlearning_data(world)
    collate = Collator(tok)
    return ([collate(forget[i * n:(i + 1) * n]) for i in range(k)],
            [collate(retain[i * n:(i + 1) * n]) for i in range(k)])


def _stableun_step(model, obj, opts, fb, rb, lr, gamma):
    params = list(model.parameters())
    ctx = StepContext(
        model=model, params=params, micro=[MicroBatch(fb[0], rb[0])],
        losses=Losses(lambda b: obj.forget_loss(model, b, None), lambda b: obj.retain_loss(model, b, None),
                      next_forget=lambda: fb[1], next_retain=lambda: rb[1]),
        gamma=gamma, lr=lr, step=0)
    strat = STRATEGIES.build("stableun", opts)
    strat.setup(params)
    strat.compute(ctx)
    return ctx, [p.grad.detach().clone() for p in params]


class _At:
    """Losses and gradients of the tiny model at given weights (a separate copy of the model)."""

    def __init__(self, model, obj):
        self.model, self.obj = copy.deepcopy(model), obj
        self.params = list(self.model.parameters())

    def _set(self, point):
        with torch.no_grad():
            for p, v in zip(self.params, point, strict=True):
                p.copy_(v)

    def forget(self, point, batch):
        self._set(point)
        return self.obj.forget_loss(self.model, batch, None)

    def retain(self, point, batch):
        self._set(point)
        return self.obj.retain_loss(self.model, batch, None)

    def grad(self, kind, point, batch):
        loss = getattr(self, kind)(point, batch)
        gs = torch.autograd.grad(loss, self.params, allow_unused=True)
        return [g if g is not None else torch.zeros_like(p) for g, p in zip(gs, self.params, strict=True)]


def _rel(a, b):
    num = sum((x - y).pow(2).sum() for x, y in zip(a, b, strict=True)).sqrt()
    return float(num / sum(y.pow(2).sum() for y in b).sqrt())


def test_stableun_update_on_the_tiny_llama(tiny_model, tiny_tokenizer, tiny_world):
    """GradDiff + StableUN(gap, T = 1, M = 1) on the tiny Llama: ``.grad`` is the hand-made update."""
    lr, gamma, mu, lam_f, lam_r = 0.5, 1.5, 0.05, 0.7, 0.4
    model = tiny_model.double()
    obj = OBJECTIVES.build("graddiff", {})
    fb, rb = _batches(tiny_tokenizer, tiny_world)
    theta = [p.detach().clone() for p in model.parameters()]
    ctx, got = _stableun_step(model, obj, {"rules": ["gap"], "T": 1, "M": 1, "mu": mu, "lambda_f": lam_f,
                                           "lambda_r": lam_r}, fb, rb, lr, gamma)
    assert all(torch.equal(p.detach(), t) for p, t in zip(model.parameters(), theta, strict=True))

    at = _At(model, obj)
    g_f0 = at.grad("forget", theta, fb[0])
    g_r0 = at.grad("retain", theta, rb[0])
    grad_u = [a + gamma * b for a, b in zip(g_f0, g_r0, strict=True)]
    tau = [t - lr * g for t, g in zip(theta, g_f0, strict=True)]
    d = at.grad("forget", tau, fb[1])
    point = [t + mu * x for t, x in zip(tau, d, strict=True)]
    g_fb = at.grad("forget", point, fb[1])
    g_fb2 = at.grad("retain", tau, rb[1])
    gf = [0.5 * u + lam_f * x for u, x in zip(grad_u, g_fb, strict=True)]
    gr = [0.5 * u + lam_r * x for u, x in zip(grad_u, g_fb2, strict=True)]
    fr = sum((a * b).sum() for a, b in zip(gf, gr, strict=True))
    rr = sum((b * b).sum() for b in gr)
    if fr < 0:
        gf = [a - fr / rr * b for a, b in zip(gf, gr, strict=True)]
    expected = [a + b for a, b in zip(gf, gr, strict=True)]
    assert ctx.stats["projected"] == float(fr < 0)
    # the cross-entropy is taken in float32 (objectives/base.py): agreement to ~1e-7
    assert _rel(got, expected) < 1e-5, _rel(got, expected)
    # the same update with θτ = θ is far from it: the test can tell the two apart
    g_fb_at_theta = at.grad("forget", [t + mu * x for t, x in
                                       zip(theta, at.grad("forget", theta, fb[1]), strict=True)], fb[1])
    assert _rel(g_fb_at_theta, g_fb) > 1e-2


def test_stableun_feedback_losses_are_at_theta_tau(tiny_model, tiny_tokenizer, tiny_world):
    """sap with ρ = 0 leaves the feedback point at θτ: the logged feedback losses are ℓ_f(θτ) on the
    fresh forget batch and ℓ_r(θτ) on the fresh retain batch, θτ = θ − lr·∇ℓ_f(θ)."""
    lr = 0.5
    model = tiny_model.double()
    obj = OBJECTIVES.build("graddiff", {})
    fb, rb = _batches(tiny_tokenizer, tiny_world)
    theta = [p.detach().clone() for p in model.parameters()]
    ctx, _ = _stableun_step(model, obj, {"rules": ["sap"], "T": 1, "M": 1, "rho": 0.0}, fb, rb, lr, 1.0)
    at = _At(model, obj)
    tau = [t - lr * g for t, g in zip(theta, at.grad("forget", theta, fb[0]), strict=True)]
    want_f, want_r = at.forget(tau, fb[1]).item(), at.retain(tau, rb[1]).item()
    assert ctx.stats["feedback_forget"] == pytest.approx(want_f, rel=1e-6)
    assert ctx.stats["feedback_retain"] == pytest.approx(want_r, rel=1e-6)
    assert ctx.stats["forget_loss"] == pytest.approx(at.forget(theta, fb[0]).item(), rel=1e-6)
    # at θ the same losses differ far beyond the tolerance
    assert abs(at.forget(theta, fb[1]).item() - want_f) > 1e-3 * abs(want_f)
    assert abs(at.retain(theta, rb[1]).item() - want_r) > 1e-3 * abs(want_r)


# -- NPO / SimNPO: sequences whose numbers of target tokens differ ------------------------------------

def _mixed_batch(tok, world):
    """QA records (prompt tokens are not targets) with short and long answers, and a text record."""
    forget, _ = unlearning_data(world)
    bio = world.biography(world.forget_persons[0])
    records = [forget[0], forget[1], {"question": forget[2]["question"], "answer": " " + bio[:80]},
               {"text": bio[:60]}]
    batch = Collator(tok)(records)
    n = (batch["labels"][:, 1:] != IGNORE).sum(1)
    assert len(set(n.tolist())) == len(records), n  # all lengths differ
    return batch


def _summed_nll(logits, labels):
    """Σ over target tokens of −log p(token | prefix), per sequence, and the number of targets:
    the token at position t + 1 is predicted by the logits at position t."""
    logp = torch.log_softmax(logits.double(), -1)[:, :-1]
    target = labels[:, 1:]
    is_target = target != IGNORE
    picked = logp.gather(-1, torch.where(is_target, target, 0).unsqueeze(-1)).squeeze(-1)
    return -(picked * is_target).sum(1), is_target.sum(1).double()


def _reference(model):
    def forward(batch, hidden):
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                     output_hidden_states=hidden)

    return Reference(forward)


def _moved_copy(model, scale=0.05, seed=1):
    ref = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale)
    return ref.eval()


def test_npo_away_from_the_reference(tiny_model, tiny_tokenizer, tiny_world):
    """ℓ_f = −(2/β)·mean log σ(β(S_θ − S_ref)), S the *summed* answer-token NLL; its gradient is
    −(2/N)·Σ_i (1 − σ(βΔ_i))·∇S_θ(x_i): descending it raises every sequence's NLL."""
    beta = 0.1
    model = tiny_model.double()
    ref_model = _moved_copy(model, scale=0.3)
    batch = _mixed_batch(tiny_tokenizer, tiny_world)
    obj = OBJECTIVES.build("npo", {"beta": beta})
    loss = obj.forget_loss(model, batch, _reference(ref_model))

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    s_theta, _ = _summed_nll(logits, batch["labels"])
    with torch.no_grad():
        s_ref, _ = _summed_nll(ref_model(input_ids=batch["input_ids"],
                                         attention_mask=batch["attention_mask"]).logits, batch["labels"])
    delta = s_theta - s_ref
    assert delta.detach().abs().min() > 2  # θ is well away from θ_ref
    want = -(2.0 / beta) * F.logsigmoid(beta * delta).mean()
    assert loss.item() == pytest.approx(want.item(), rel=1e-5)

    params = list(model.parameters())
    got = torch.autograd.grad(loss, params, allow_unused=True)
    weights = (2.0 / len(delta)) * (1 - torch.sigmoid(beta * delta.detach()))
    grad_s = torch.autograd.grad((weights * s_theta).sum(), params, allow_unused=True)
    got = [g if g is not None else torch.zeros_like(p) for g, p in zip(got, params, strict=True)]
    expected = [-g if g is not None else torch.zeros_like(p) for g, p in zip(grad_s, params, strict=True)]
    assert _rel(got, expected) < 1e-5
    # direction: a small step against the gradient raises the summed NLL of the batch
    assert sum((g * e).sum() for g, e in zip(got, grad_s, strict=True) if e is not None) < 0


def test_simnpo_length_normalised_with_margin(tiny_model, tiny_tokenizer, tiny_world):
    """ℓ_f = −(2/β)·mean log σ(β·S/n − δ), S/n each sequence's own per-token mean NLL."""
    beta, delta = 0.5, 3.5  # β·NLL − δ near 0 on this model: log σ is far from saturated
    model = _moved_copy(tiny_model.double(), scale=0.3)  # per-token NLLs differ between sequences
    batch = _mixed_batch(tiny_tokenizer, tiny_world)
    obj = OBJECTIVES.build("simnpo", {"beta": beta, "delta": delta})
    loss = obj.forget_loss(model, batch, None)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        s, n = _summed_nll(logits, batch["labels"])
    want = -(2.0 / beta) * F.logsigmoid(beta * s / n - delta).mean()
    assert loss.item() == pytest.approx(want.item(), rel=1e-5)
    # the mutations this pins are far from it on this batch
    for wrong in (F.logsigmoid(beta * s - delta), F.logsigmoid(beta * s / n + delta),
                  F.logsigmoid(beta * s.sum() / n.sum() - delta + 0 * s)):
        assert abs(float(-(2.0 / beta) * wrong.mean()) - want.item()) > 1e-2


# -- RMU: steering at the chosen layer --------------------------------------------------------------

def test_rmu_forget_and_retain_activations(tiny_model, tiny_tokenizer, tiny_world):
    """ℓ_f = mean over (unpadded) tokens of mean over units (h − c·u)², h the output of decoder layer
    ``layer``, u = U[0,1)^d drawn from the seed, normalised; ℓ_r = same with h_ref (frozen model).

    Layer 0 of the 2-layer model: for the *last* layer the implementation's hidden_states[layer + 1]
    is the final-normed state, not the decoder layer's output (a known gap, see the issue)."""
    c, seed, layer = 6.5, 3, 0
    model = tiny_model.double()
    ref_model = _moved_copy(model)
    obj = OBJECTIVES.build("rmu", {"layer": layer, "steering": c, "seed": seed})
    obj.setup(model)
    forget, retain = unlearning_data(tiny_world)
    bio = {"text": tiny_world.biography(tiny_world.persons[0])}
    fb = Collator(tiny_tokenizer)([forget[0], forget[5], bio])
    rb = Collator(tiny_tokenizer)([retain[0], retain[7], retain[9]])
    assert (fb["attention_mask"] == 0).any()  # padding present: it must not enter the mean

    def layer_out(m, batch):
        out = {}
        hook = m.model.layers[layer].register_forward_hook(
            lambda mod, a, o: out.__setitem__("h", o[0] if isinstance(o, tuple) else o))
        try:
            m(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        finally:
            hook.remove()
        return out["h"]

    u = torch.rand(model.config.hidden_size, generator=torch.Generator().manual_seed(seed)).double()
    target = c * u / u.norm()
    assert float(obj._control.norm()) == pytest.approx(c, rel=1e-6)

    def masked_mse(diff, mask):
        per_token = diff.pow(2).mean(-1)
        return (per_token * mask).sum() / mask.sum()

    ref = _reference(ref_model)
    got_f = obj.forget_loss(model, fb, ref)
    want_f = masked_mse(layer_out(model, fb) - target, fb["attention_mask"])
    assert got_f.item() == pytest.approx(want_f.item(), rel=1e-6)
    with torch.no_grad():
        h_ref = layer_out(ref_model, rb)
    got_r = obj.retain_loss(model, rb, ref)
    want_r = masked_mse(layer_out(model, rb) - h_ref, rb["attention_mask"])
    assert want_r.item() > 1e-4  # θ ≠ θ_ref
    assert got_r.item() == pytest.approx(want_r.item(), rel=1e-6)
