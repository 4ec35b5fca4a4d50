"""The relearning attack through LoRA adapters (peft): same rows, only adapters train."""

from __future__ import annotations

import torch

from robust_unlearning.attacks.relearn import RelearnConfig, _attacker, relearn_attack


def test_lora_attacker_trains_only_adapters(tiny_model):
    attacked = _attacker(tiny_model, RelearnConfig(lora_rank=4))
    names = [n for n, p in attacked.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names)
    full = _attacker(tiny_model, RelearnConfig())
    assert all(p.requires_grad for p in full.parameters())


def test_lora_relearning_rows_and_model_untouched(tiny_model, tiny_tokenizer, tiny_world):
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    cfg = RelearnConfig(budgets=[(4, 2)], seeds=[0], lr=1e-2, batch_size=4, lora_rank=4)
    rows = relearn_attack(tiny_model, tiny_tokenizer, tiny_world, cfg)
    assert [(r["samples"], r["steps"], r["seed"]) for r in rows] == [(4, 2, 0)]
    keys = {"samples", "steps", "seed", "forget_acc", "retain_acc", "forget_probs"}
    assert all(set(r) == keys for r in rows)
    assert all(torch.equal(v, before[k]) for k, v in tiny_model.state_dict().items())
