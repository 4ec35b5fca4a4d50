"""full: fine-tune the model's own weights (all of them, or those matching ``trainable``).

``trainable``: a list of regular expressions over parameter names; ``None`` takes the objective's
default (RMU: a few MLP layers) or else every parameter. The reference model is a frozen copy of
the starting weights, made only when the objective needs one.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import UnlearnError
from ..reference import Reference
from .base import PARAMETERIZATIONS, Parameterization


@PARAMETERIZATIONS.register("full")
@dataclass
class Full(Parameterization):
    trainable: list[str] | None = None

    def prepare(self, model, objective):
        patterns = self.trainable if self.trainable is not None else objective.trainable_patterns(model)
        n = 0
        for name, p in model.named_parameters():
            on = patterns is None or any(re.search(pat, name) for pat in patterns)
            p.requires_grad_(on)
            n += on
        if n == 0:
            raise UnlearnError(f"no parameter matches trainable={patterns}")
        return model

    def reference(self, model) -> Reference:
        ref = copy.deepcopy(model).eval()
        for p in ref.parameters():
            p.requires_grad_(False)

        def forward(batch, hidden):
            return ref(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       output_hidden_states=hidden)

        return Reference(forward)

    def step_stats(self, model) -> dict[str, float]:
        return {}

    def save(self, model, tokenizer, out_dir: Path, merged: bool = True) -> None:
        model.save_pretrained(out_dir, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(out_dir)

