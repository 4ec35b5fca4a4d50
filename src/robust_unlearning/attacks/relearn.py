"""The relearning attack (Hu et al. 2024; docs/attacks.md#relearning).

Fine-tune a copy of the model on k samples drawn from the world's relearn pool for s steps (AdamW),
then score forget-evaluation accuracy, i.e. on forget facts the attacker never saw, and retain
accuracy. Budgets are (samples, steps) pairs; for one sample count the attack trains once up to the
largest step count and is scored at every requested count on the way (a recovery curve for free).
Each budget is repeated over several draws of the relearn set (``seeds``).

``lora_rank > 0`` relearns through LoRA adapters (peft, ``target_modules="all-linear"``, the
parameter-efficient attacker of docs/attacks.md#relearning-what-the-papers-report, r 8) instead of
full fine-tuning.

Run on the gold model too: it never knew the forget facts, so its post-attack accuracy is the floor.
The *relearning gap* of a method at a budget is its post-attack forget accuracy minus gold's.
"""

from __future__ import annotations

import copy
import random
import statistics
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..data.collate import Collator
from ..metrics.scoring import model_device, target_nll
from ..progress import progress
from ..world.benchmark import evaluate, qa_records
from ..world.generator import World


@dataclass
class RelearnSettings:
    """What every relearning attack has: budgets (samples, steps), AdamW lr and batch, the draws
    (``seeds``), and full fine-tuning or LoRA adapters."""

    budgets: list[tuple[int, int]] = field(default_factory=lambda: [(20, 5), (20, 10), (40, 10)])
    lr: float = 1e-3
    batch_size: int = 8
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    lora_rank: int = 0  # > 0: relearn through LoRA adapters of this rank instead of all weights
    lora_alpha: float | None = None  # default 2 * rank

    def __post_init__(self):
        if self.lora_rank < 0:
            raise ValueError(f"relearn lora_rank must be >= 0, not {self.lora_rank}")
        self.budgets = [tuple(int(x) for x in b) for b in self.budgets]  # type: ignore[misc]
        for k, s in self.budgets:
            if k <= 0 or s < 0:
                raise ValueError(f"bad relearn budget ({k}, {s})")


@dataclass
class RelearnConfig(RelearnSettings):
    """The world's relearning attack: on the relearn pool's QA pairs or their biography sentences."""

    form: str = "qa"  # "qa": relearn on QA pairs; "bio": on the forget persons' biographies


def _relearn_records(world: World, k: int, rng: random.Random, form: str) -> list[dict]:
    if k > len(world.relearn):
        raise ValueError(f"relearn budget of {k} samples exceeds the pool of {len(world.relearn)}")
    facts = rng.sample(world.relearn, k)
    if form == "qa":
        return qa_records(facts)
    if form == "bio":
        # the other surface form: the sentences stating the drawn facts
        return [{"text": f.sentence} for f in facts]
    raise ValueError(f"unknown relearn form {form!r}; known: qa, bio")


def _attacker(model, cfg: RelearnSettings):
    """A trainable copy of the model: every weight, or LoRA adapters on every linear layer."""
    attacked = copy.deepcopy(model)
    if cfg.lora_rank <= 0:
        for p in attacked.parameters():
            p.requires_grad_(True)
        return attacked
    from peft import LoraConfig, get_peft_model

    from ..parameterizations.lora import quiet_peft

    lora = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha or 2 * cfg.lora_rank, lora_dropout=0.0,
                      target_modules="all-linear", task_type="CAUSAL_LM")
    with quiet_peft():
        return get_peft_model(attacked, lora)


def relearn_attack(model, tokenizer, world: World, cfg: RelearnConfig = RelearnConfig(),
                   desc: str = "relearn") -> list[dict]:
    """Return one row per (seed, samples, steps): ``{samples, steps, seed}`` and the world's evaluation
    (``forget_acc``, ``retain_acc`` and the per-item ``forget_probs`` that the knowledge measures
    compare with gold's)."""

    def draw(seed: int, k: int) -> tuple[list[dict], random.Random]:
        rng = random.Random(f"{seed}-{k}")
        return _relearn_records(world, k, rng, cfg.form), rng

    return relearn_runs(model, tokenizer, cfg, draw,
                        lambda m, drawn: evaluate(m, tokenizer, world, details=True, utility=False), desc)


def relearn_runs(model, tokenizer, cfg: RelearnSettings,
                 draw: Callable[[int, int], tuple[list[dict], random.Random]],
                 score: Callable[[object, list[dict]], dict], desc: str = "relearn",
                 max_length: int = 256) -> list[dict]:
    """The attack's loop, whatever the data: for every seed and sample count k, ``draw(seed, k)``
    gives the k training records and the generator that then orders the batches; the attacked copy
    trains up to the largest step count of k and ``score(model, records)`` is recorded at every
    requested count. One row per (seed, samples, steps)."""
    collate = Collator(tokenizer, max_length)
    by_samples: dict[int, list[int]] = {}
    for k, s in cfg.budgets:
        by_samples.setdefault(k, []).append(s)
    rows = []
    total = len(cfg.seeds) * sum(max(v) for v in by_samples.values())
    bar = progress(total=total, desc=desc)
    for seed in cfg.seeds:
        for k, step_list in sorted(by_samples.items()):
            records, rng = draw(seed, k)
            torch.manual_seed(seed)
            attacked = _attacker(model, cfg)
            opt = torch.optim.AdamW([p for p in attacked.parameters() if p.requires_grad], lr=cfg.lr,
                                    weight_decay=0.0)
            checkpoints = sorted(set(step_list))
            if 0 in checkpoints:
                rows.append({"samples": k, "steps": 0, "seed": seed, **score(attacked, records)})
            done = 0
            attacked.train()
            device = model_device(attacked)
            for target in [c for c in checkpoints if c > 0]:
                while done < target:
                    order = rng.sample(records, min(cfg.batch_size, len(records)))
                    loss = target_nll(attacked, {k: v.to(device) for k, v in collate(order).items()})
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    done += 1
                    bar.update(1)
                attacked.eval()
                rows.append({"samples": k, "steps": target, "seed": seed, **score(attacked, records)})
                attacked.train()
            del attacked, opt
    bar.close()
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    """Mean and std (over attack draws) of every numeric metric, per (samples, steps): the world's
    ``forget_acc`` / ``retain_acc``, or a benchmark's metrics (:mod:`.relearn_benchmark`)."""
    groups: dict[tuple[int, int], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["samples"], r["steps"]), []).append(r)
    out = []
    for (k, s), rs in sorted(groups.items()):
        entry: dict = {"samples": k, "steps": s}
        for key in [key for key in rs[0] if key not in ("samples", "steps", "seed")]:
            vals = [r[key] for r in rs if isinstance(r.get(key), (int, float))]
            if vals:
                entry[key] = statistics.fmean(vals)
                entry[f"{key}_std"] = statistics.pstdev(vals) if len(vals) > 1 else 0.0
        entry["draws"] = len(rs)
        out.append(entry)
    return out
