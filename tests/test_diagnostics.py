"""Sharpness diagnostics and loss landscapes: known answers on toy losses, invariants on a tiny LM."""

from __future__ import annotations

import pytest
import torch

from robust_unlearning.diagnostics.common import forget_batch, forget_loss_fn, parameters
from robust_unlearning.diagnostics.landscape import (
    LandscapeConfig,
    filter_normalized_direction,
    landscape,
    landscape_1d,
)
from robust_unlearning.diagnostics.sharpness import (
    SharpnessConfig,
    random_sharpness,
    sharpness,
    top_hessian_eigenvalue,
    worst_case_decrease,
)


class Quadratic(torch.nn.Module):
    """loss(x) = ½ xᵀAx + bᵀx with a known spectrum."""

    def __init__(self, eigs, b=None, seed=0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(len(eigs), len(eigs), generator=gen, dtype=torch.float64))
        self.register_buffer("A", q @ torch.diag(torch.tensor(eigs, dtype=torch.float64)) @ q.T)
        self.register_buffer("b", torch.zeros(len(eigs), dtype=torch.float64) if b is None else b)
        self.x = torch.nn.Parameter(torch.randn(len(eigs), generator=gen, dtype=torch.float64))

    def forward(self):
        return 0.5 * self.x @ self.A @ self.x + self.b @ self.x


def test_top_eigenvalue_of_a_quadratic():
    q = Quadratic([5.0, 3.0, 1.0, 0.5, -0.2, 0.1])
    out = top_hessian_eigenvalue(q, [q.x], iters=200, tol=1e-10)
    assert out["top_eigenvalue"] == pytest.approx(5.0, rel=1e-4)
    assert out["converged"]
    # the dominant eigenvalue is the largest in magnitude, with its sign
    neg = Quadratic([-4.0, 1.0, 0.5])
    out = top_hessian_eigenvalue(neg, [neg.x], iters=300, tol=1e-10)
    assert out["top_eigenvalue"] == pytest.approx(-4.0, rel=1e-3)


def test_pgd_finds_the_exact_worst_case_of_a_linear_loss():
    q = Quadratic([0.0, 0.0, 0.0], b=torch.tensor([3.0, -4.0, 0.0], dtype=torch.float64))
    rho = 0.1
    x0 = q.x.detach().clone()
    out = worst_case_decrease(q, [q.x], rho, steps=3)
    assert out["pgd_decrease"] == pytest.approx(rho * 5.0, rel=1e-6)  # ρ‖∇‖
    assert torch.equal(q.x.detach(), x0)  # weights restored
    rnd = random_sharpness(q, [q.x], rho, n_dirs=8)
    assert rnd["random_change_mean"] == pytest.approx(0.0, abs=1e-9)  # ±d cancel a linear loss
    assert rnd["random_decrease_max"] <= out["pgd_decrease"] + 1e-12


def test_random_sharpness_measures_curvature():
    rho = 0.2
    flat, sharp = Quadratic([0.1] * 4), Quadratic([10.0] * 4)
    c_flat = random_sharpness(flat, [flat.x], rho, n_dirs=4)["random_change_mean"]
    c_sharp = random_sharpness(sharp, [sharp.x], rho, n_dirs=4)["random_change_mean"]
    assert c_flat == pytest.approx(0.5 * 0.1 * rho ** 2, rel=1e-6)  # isotropic A: ½λρ² exactly
    assert c_sharp == pytest.approx(0.5 * 10.0 * rho ** 2, rel=1e-6)


def test_sharpness_on_a_language_model(tiny_model, tiny_tokenizer, tiny_world):
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    tiny_model.lm_head.weight.requires_grad_(False)  # flags must come back as they were
    out = sharpness(tiny_model, tiny_tokenizer, tiny_world,
                    SharpnessConfig(rho=0.05, pgd_steps=2, random_dirs=2, power_iters=3, max_samples=8))
    assert out["pgd_decrease"] > 0
    assert out["pgd_decrease"] >= out["random_decrease_max"]
    assert out["power_iters"] >= 2 and out["top_eigenvalue"] == out["top_eigenvalue"]  # finite, not NaN
    assert all(torch.equal(v, before[k]) for k, v in tiny_model.state_dict().items())
    assert not tiny_model.lm_head.weight.requires_grad
    assert tiny_model.config._attn_implementation == "sdpa"


def test_filter_normalised_directions(tiny_model):
    params = parameters(tiny_model)
    d = filter_normalized_direction(params, torch.Generator().manual_seed(0))
    for p, di in zip(params, d, strict=True):
        if p.dim() < 2:
            assert not di.any()
        else:
            w = p.detach().reshape(p.shape[0], -1).norm(dim=1)
            assert torch.allclose(di.reshape(p.shape[0], -1).norm(dim=1), w, rtol=1e-4)


def test_landscape_is_centred_on_the_model(tiny_model, tiny_tokenizer, tiny_world):
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    out = landscape(tiny_model, tiny_tokenizer, tiny_world,
                    LandscapeConfig(span=0.5, points_1d=5, points_2d=3, max_samples=8))
    one, two = out["one_d"], out["two_d"]
    batch = forget_batch(tiny_tokenizer, tiny_world, 8)
    with torch.no_grad():
        base = forget_loss_fn(tiny_model, batch)().item()
    assert one["alphas"][2] == pytest.approx(0.0, abs=1e-6)
    assert one["losses"][2] == pytest.approx(base, rel=1e-5)
    assert two["losses"][1][1] == pytest.approx(base, rel=1e-5)
    assert len(two["losses"]) == 3 and len(two["losses"][0]) == 3
    assert max(one["losses"]) > base  # moving away from a (random) model changes the loss
    assert all(torch.equal(v, before[k]) for k, v in tiny_model.state_dict().items())


def test_landscape_of_a_quadratic_is_a_parabola():
    q = Quadratic([2.0, 1.0])
    q.x.data.zero_()
    q.x.data = q.x.data.view(1, 2)  # a 2-D "weight" with one filter, so it is perturbed

    def loss():
        x = q.x.view(-1)
        return 0.5 * x @ q.A @ x

    out = landscape_1d(loss, [q.x], span=1.0, points=5)
    ls = out["losses"]
    assert ls[2] == 0.0 and ls[0] == pytest.approx(ls[4]) and ls[1] == pytest.approx(ls[3])


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match="rho"):
        SharpnessConfig(rho=0)
    with pytest.raises(ValueError, match="2 points"):
        LandscapeConfig(points_1d=1)
