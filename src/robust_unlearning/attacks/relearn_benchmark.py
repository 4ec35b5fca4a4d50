"""The relearning attack on a standard benchmark (TOFU, MUSE, WMDP) or on the user's own forget data.

The recipe of Hu et al. 2024 (docs/attacks.md#on-tofu-muse-wmdp-or-your-own-data): fine-tune the
unlearned model on k records drawn from the forget set (AdamW, lr 1e-5, batch 4 by default — real models,
not the world's tiny one)
for s steps, over several draws, and score after each budget:

- ``heldout_forget_nll``: the mean per-token NLL of forget records the attacker did *not* draw (the
  first ``heldout_max`` of them, in the data's order). Lower = more of the forgotten text is back.
  Every source has it, the user's own JSONL included; ``drawn_forget_nll`` is the same on the drawn
  records (how well the attacker fit what it saw).
- with ``metrics`` on, the benchmark's own summary (:meth:`Benchmark.evaluate`), with the drawn
  records left out of its forget evaluation where they are part of it (TOFU drops the relearned
  questions, :meth:`Benchmark.excluding`). WMDP scores MCQ questions and MUSE its QA sets, which are
  not the relearned corpus text; MUSE's VerbMem prompts are excerpts of the forget texts, so VerbMem
  after relearning includes text the attacker saw.

Step 0, the unattacked model, is scored for every sample count. A floor comes from attacking a model
that never learnt the forget set (``gold``: TOFU's retain-only model, MUSE's retrain model) the same
way.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from ..metrics.scoring import mean_token_nll
from .relearn import RelearnSettings, relearn_runs


@dataclass
class BenchmarkRelearnConfig(RelearnSettings):
    budgets: list[tuple[int, int]] = field(default_factory=lambda: [(20, 10), (20, 30), (40, 30)])
    lr: float = 1e-5
    batch_size: int = 4
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    heldout_max: int = 256  # forget records scored for the held-out NLL
    metrics: bool = True  # also the benchmark's own summary after every budget
    max_length: int = 512
    eval_batch_size: int = 8

    def __post_init__(self):
        super().__post_init__()
        if self.heldout_max < 1:
            raise ValueError(f"heldout_max must be at least 1, not {self.heldout_max}")
        # step 0 of every sample count, the unattacked model on that draw's held-out records: where
        # every recovery curve starts
        self.budgets = sorted({*self.budgets, *((k, 0) for k, _ in self.budgets)})

    def check_pool(self, n_forget: int, what: str = "the forget set") -> None:
        """Every draw must leave forget records the attacker did not see."""
        if not n_forget:
            raise ValueError(f"{what} is empty: nothing to relearn from")
        largest = max(k for k, _ in self.budgets)
        if largest >= n_forget:
            raise ValueError(f"relearn budget of {largest} samples leaves no held-out forget record "
                             f"({what} has {n_forget})")


def relearn_benchmark(model, tokenizer, forget: list[dict], cfg: BenchmarkRelearnConfig,
                      benchmark=None, desc: str = "relearn") -> list[dict]:
    """One row per (seed, samples, steps) with ``heldout_forget_nll``, ``drawn_forget_nll`` and, with
    a ``benchmark`` and ``cfg.metrics``, its summary metrics."""
    cfg.check_pool(len(forget))

    def draw(seed: int, k: int) -> tuple[list[dict], random.Random]:
        rng = random.Random(f"{seed}-{k}")
        return rng.sample(forget, k), rng

    def score(attacked, drawn: list[dict]) -> dict:
        ids = {id(r) for r in drawn}
        heldout = [r for r in forget if id(r) not in ids][: cfg.heldout_max]
        row = {"heldout_forget_nll": mean_token_nll(attacked, tokenizer, heldout, cfg.eval_batch_size,
                                                    cfg.max_length),
               "drawn_forget_nll": mean_token_nll(attacked, tokenizer, drawn, cfg.eval_batch_size,
                                                  cfg.max_length)}
        if benchmark is not None and cfg.metrics:
            row.update(benchmark.excluding(drawn).scores(attacked, tokenizer))
        attacked.train()
        return row

    return relearn_runs(model, tokenizer, cfg, draw, score, desc, cfg.max_length)
