"""RMU (Li et al. 2024, WMDP), docs/methods.md#rmu:

    ℓ_f = mean over forget tokens ‖h_θ(x) − c·u‖²,      u a fixed random unit vector,
    ℓ_r = mean over retain tokens ‖h_θ(x) − h_ref(x)‖²,

with h the residual stream after decoder layer ``layer``. Under full fine-tuning RMU trains only the
MLPs of layers ``layer − 2 … layer`` (override with the parameterization's ``trainable`` option).

Choices: ``layer`` defaults to 22 % of the depth (layer 7 of 32 in the paper); ‖·‖² is the mean
squared error per hidden unit with target c·u of norm c (as the WMDP recipe does); u is uniform on
[0, 1)^d normalised, drawn from ``seed`` so runs reproduce.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import OBJECTIVES, Objective, forward


def num_layers(model) -> int:
    return int(model.config.num_hidden_layers)


@OBJECTIVES.register("rmu")
@dataclass
class RMU(Objective):
    layer: int | None = None
    steering: float = 6.0
    seed: int = 0
    needs_reference = True

    def setup(self, model) -> None:
        if self.layer is None:
            self.layer = max(0, round(0.22 * num_layers(model)))
        # hidden_states[layer + 1] is decoder layer ``layer``'s output for every layer but the last,
        # whose entry comes after the model's final norm: the last layer is refused
        if not 0 <= self.layer < num_layers(model) - 1:
            raise ValueError(f"rmu layer {self.layer} outside 0..{num_layers(model) - 2} (the last layer's "
                             "hidden state is taken after the final norm, not the layer's residual stream)")
        g = torch.Generator().manual_seed(self.seed)
        u = torch.rand(model.config.hidden_size, generator=g)
        self._control = self.steering * u / u.norm()

    def _hidden(self, model, batch):
        return forward(model, batch, output_hidden_states=True).hidden_states[self.layer + 1]

    @staticmethod
    def _masked_mse(diff: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        per_token = diff.float().pow(2).mean(-1)
        return (per_token * mask).sum() / mask.sum().clamp(min=1)

    def forget_loss(self, model, batch, reference):
        h = self._hidden(model, batch)
        target = self._control.to(h.device, h.dtype)
        return self._masked_mse(h - target, batch["attention_mask"])

    def retain_loss(self, model, batch, reference):
        h = self._hidden(model, batch)
        return self._masked_mse(h - reference.hidden(batch, self.layer + 1), batch["attention_mask"])

    def trainable_patterns(self, model) -> list[str]:
        layers = range(max(0, self.layer - 2), self.layer + 1)
        return [rf"(^|\.)layers\.{i}\.mlp\." for i in layers]
