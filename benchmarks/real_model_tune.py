"""Calibrate the real-model run on the *tuning world*, never on the evaluation world (issue 12's protocol).

The world recipe's learning rates were chosen for a 1 M-parameter model trained from scratch; on
SmolLM2-135M the a priori ``lr 2e-5`` left NPO at 0.50 forget accuracy on the GPU run (chance 0.25),
and the attack's ``lr 1e-4`` recovered nothing. This script picks the two numbers the evaluation run
then uses unchanged — the unlearning learning rate (one value for every full-weight method) and the
relearning attack's learning rate — on a world with another seed (``TUNING_SEED``: other persons,
other facts), by rules fixed here before any run:

1. **unlearning lr**: vanilla NPO at each lr of ``LR_GRID`` (one seed). Eligible: held-out retain
   accuracy at least the fine-tuned model's minus ``UTILITY_DROP``. Chosen: the smallest eligible lr
   whose forget accuracy is at most gold's + ``FORGET_SLACK`` (removal, not over-forgetting); if none
   reaches it, the eligible lr with the lowest forget accuracy; if none is eligible, the smallest lr.
2. **attack lr**: each lr of ``ATTACK_LR_GRID`` attacks the chosen NPO model and gold at the run's
   largest budget. Chosen: the largest lr under which gold's forget accuracy moves by at most
   ``GOLD_MOVE`` (the attack restores what unlearning hid, it does not teach the evaluation facts).

Every method then gets the chosen lr (bounded-lora keeps its own adapter lr, scaled by the same
factor); the strategies' knobs stay at their a priori / paper settings. Output: ``tune.json``, read by
``real_model.py --tuned FILE``.

    python benchmarks/real_model_tune.py --cpu-reduced --out benchmarks/results/real-model-cpu
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import real_model as rm  # noqa: E402

LR_GRID = [2.0e-5, 5.0e-5, 1.0e-4]
ATTACK_LR_GRID = [1.0e-4, 3.0e-4]
UTILITY_DROP = 0.10
FORGET_SLACK = 0.05
GOLD_MOVE = 0.05


def choose_lr(full: dict, gold: dict, runs: list[dict]) -> dict:
    """Rule 1 of the module docstring; ``runs``: ``{"lr", "forget_acc", "retain_acc"}`` per lr."""
    floor = full["retain_acc"] - UTILITY_DROP
    ok = [r for r in runs if r["retain_acc"] >= floor - 1e-9]
    removed = [r for r in ok if r["forget_acc"] <= gold["forget_acc"] + FORGET_SLACK]
    if removed:
        pick, why = min(removed, key=lambda r: r["lr"]), "smallest eligible lr at gold's forget level"
    elif ok:
        pick, why = min(ok, key=lambda r: r["forget_acc"]), "no lr reached gold's level: lowest forget acc"
    else:
        pick, why = min(runs, key=lambda r: r["lr"]), "no lr kept utility: the smallest"
    return {"lr": pick["lr"], "why": why, "retain_floor": round(floor, 4),
            "forget_target": round(gold["forget_acc"] + FORGET_SLACK, 4)}


def choose_attack_lr(gold_before: float, runs: list[dict]) -> dict:
    """Rule 2; ``runs``: ``{"lr", "gold_after", "npo_after"}`` per attack lr (largest budget)."""
    ok = [r for r in runs if abs(r["gold_after"] - gold_before) <= GOLD_MOVE + 1e-9]
    if not ok:
        return {"lr": min(r["lr"] for r in runs), "why": "every lr moved gold: the smallest"}
    return {"lr": max(r["lr"] for r in ok), "why": f"largest lr moving gold by at most {GOLD_MOVE}"}


def main(argv: list[str] | None = None) -> dict:
    from robust_unlearning.attacks.relearn import RelearnConfig, relearn_attack
    from robust_unlearning.config import build_config
    from robust_unlearning.finetune import FinetuneConfig, build_real_world
    from robust_unlearning.io import load_model, write_json_atomic
    from robust_unlearning.loop import unlearn
    from robust_unlearning.models import ensure_model
    from robust_unlearning.recipes import method_config
    from robust_unlearning.world.benchmark import evaluate, unlearning_data
    from robust_unlearning.world.generator import TUNING_SEED

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cpu-reduced", action="store_true")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    preset = rm.PRESETS["smoke" if args.smoke else "cpu-reduced" if args.cpu_reduced else "gpu"]
    device, dtype = args.device, "bfloat16" if torch.device(args.device).type == "cuda" else "float32"
    log = rm.timestamped_log()
    t0 = time.perf_counter()
    ensure_model(rm.MODEL, log=log)
    world = rm.make_world(preset["persons"], preset["attributes"], preset["forget_fraction"],
                          preset["relearn_pool"], preset["retain_eval"], seed=TUNING_SEED)
    ft = FinetuneConfig(epochs=preset["ft_epochs"], batch_size=preset["ft_batch"])
    bundle = build_real_world(world, rm.MODEL, ft, device=device, dtype=dtype, log=log)
    full, tok = load_model(bundle.full_dir)
    gold, _ = load_model(bundle.gold_dir)
    full.to(device)
    gold.to(device)
    forget, retain = unlearning_data(world)
    s_full, s_gold = evaluate(full, tok, world), evaluate(gold, tok, world)
    log(f"tuning world seed {TUNING_SEED}: full forget {s_full['forget_acc']:.3f} retain "
        f"{s_full['retain_acc']:.3f}; gold forget {s_gold['forget_acc']:.3f}")

    runs, models = [], {}
    for lr in LR_GRID:
        data = method_config("npo", rm.RECIPE)
        batch = {"batch_size": preset["batch_size"]} if preset.get("batch_size") else {}
        data.setdefault("train", {}).update({"seed": 0, "steps": preset["steps"], "lr": lr, **batch})
        result = unlearn(copy.deepcopy(full), tok, forget, retain, build_config(data, "npo tune"),
                         desc=f"tune npo lr {lr:g}")
        models[lr] = result.export().to(device)
        s = evaluate(models[lr], tok, world)
        runs.append({"lr": lr, "forget_acc": s["forget_acc"], "retain_acc": s["retain_acc"],
                     "utility_nll": s["utility_nll"]})
        log(f"npo lr {lr:g}: forget {s['forget_acc']:.3f} retain {s['retain_acc']:.3f}")
    lr_pick = choose_lr(s_full, s_gold, runs)
    log(f"unlearning lr {lr_pick['lr']:g} ({lr_pick['why']})")

    budget = tuple(preset["budgets"][-1] if preset["budgets"] else rm.RECIPE["attack"]["budgets"][-1])
    attack_runs = []
    for alr in ATTACK_LR_GRID:
        cfg = RelearnConfig(budgets=[budget], lr=alr, batch_size=rm.RECIPE["attack"]["batch_size"],
                            seeds=[0])
        after = {}
        for name, model in (("gold", gold), ("npo", models[lr_pick["lr"]])):
            rows = relearn_attack(model, tok, world, cfg, desc=f"tune attack lr {alr:g} {name}")
            after[name] = [r for r in rows if r["steps"] == budget[1]][-1]["forget_acc"]
        attack_runs.append({"lr": alr, "budget": list(budget), "gold_after": after["gold"],
                            "npo_after": after["npo"]})
        log(f"attack lr {alr:g} at {budget}: gold {after['gold']:.3f} npo {after['npo']:.3f}")
    attack_pick = choose_attack_lr(s_gold["forget_acc"], attack_runs)
    log(f"attack lr {attack_pick['lr']:g} ({attack_pick['why']})")
    out = {"tuning_world_seed": TUNING_SEED, "preset": "smoke" if args.smoke else
           "cpu-reduced" if args.cpu_reduced else "gpu",
           "rules": {"lr_grid": LR_GRID, "attack_lr_grid": ATTACK_LR_GRID, "utility_drop": UTILITY_DROP,
                     "forget_slack": FORGET_SLACK, "gold_move": GOLD_MOVE},
           "full": s_full, "gold": s_gold, "finetune": bundle.history, "npo_runs": runs,
           "unlearning_lr": lr_pick, "attack_runs": attack_runs, "attack_lr": attack_pick,
           "seconds": round(time.perf_counter() - t0, 1)}
    write_json_atomic(Path(args.out) / "tune.json", out)
    return out


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
