"""The one-process collectives: the logged gradient norm (distributed.Collectives)."""

import math

import torch

from robust_unlearning.distributed import ONE_PROCESS


def test_grad_norm_is_the_global_l2_norm():
    a, b, c = torch.zeros(2, requires_grad=True), torch.zeros(1, requires_grad=True), torch.zeros(3)
    a.grad, b.grad = torch.tensor([3.0, 0.0]), torch.tensor([4.0])  # c has no gradient
    assert ONE_PROCESS.grad_norm([a, b, c]) == 5.0
    assert ONE_PROCESS.grad_norm([c]) == 0.0
    a.grad = torch.tensor([float("nan"), 1.0])
    assert math.isnan(ONE_PROCESS.grad_norm([a, b]))
