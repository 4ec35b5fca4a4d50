"""plain: the ordinary step, ∇ℓ_f(θ) + γ∇ℓ_r(θ). One forward/backward pass per loss."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .base import STRATEGIES, StepContext, Strategy, accumulate_forget, accumulate_retain


@STRATEGIES.register("plain")
@dataclass
class Plain(Strategy):
    supports_deepspeed: ClassVar[bool] = True  # touches no global sum: runs on partitioned gradients
    supports_fsdp: ClassVar[bool] = True
    def compute(self, ctx: StepContext) -> None:
        ctx.stats["forget_loss"] = accumulate_forget(ctx)
        ctx.stats["retain_loss"] = accumulate_retain(ctx)
