"""Tuning sweep for the robust strategies on the world (record: configs/world/README.md).

Every method gets the same budget: the candidate configs listed in ``configs/world/sweep.yaml``
(same count for the vanilla and the robust variant), each run on the tuning seed, scored by the
relearning attack at the largest budget. Selection rule (fixed before looking at results):
among candidates whose retain accuracy is within 0.02 of the vanilla objective's default recipe and
whose forget accuracy before the attack is no higher than it, pick the lowest post-attack forget
accuracy.

    python configs/world/tune.py [--quick] [--methods npo,npo+sam] [--seeds 0] > configs/world/sweep-results.jsonl
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import yaml

from robust_unlearning.attacks.relearn import RelearnConfig, relearn_attack
from robust_unlearning.config import build_config, deep_merge
from robust_unlearning.io import load_model
from robust_unlearning.loop import unlearn
from robust_unlearning.recipes import load_recipe, method_config
from robust_unlearning.world.benchmark import evaluate, unlearning_data
from robust_unlearning.world.model import DEFAULT_SPEC, QUICK_SPEC, build_world


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--methods", default=None)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--sweep", default=str(Path(__file__).with_name("sweep.yaml")))
    args = ap.parse_args()
    recipe = load_recipe("world")
    sweep = yaml.safe_load(Path(args.sweep).read_text())
    att = dict(recipe["attack"])
    if args.quick:
        att.update(recipe.get("quick_attack") or {})
    budget = max(att["budgets"], key=lambda b: (b[0], b[1]))
    attack = RelearnConfig(budgets=[budget], lr=att["lr"], batch_size=att["batch_size"], seeds=att["seeds"])
    bundle = build_world(QUICK_SPEC if args.quick else DEFAULT_SPEC)
    full, tok = load_model(bundle.full_dir)
    gold, _ = load_model(bundle.gold_dir)
    forget, retain = unlearning_data(bundle.world)
    world = bundle.world
    seeds = [int(s) for s in args.seeds.split(",")]
    gold_acc = {}
    for seed in seeds:
        cfg = copy.deepcopy(attack)
        cfg.seeds = [seed * 1000 + s for s in attack.seeds]
        rows = relearn_attack(gold, tok, world, cfg)
        gold_acc[seed] = sum(r["forget_acc"] for r in rows) / len(rows)
    methods = args.methods.split(",") if args.methods else list(sweep)
    for method in methods:
        for i, cand in enumerate(sweep[method]):
            for seed in seeds:
                data = deep_merge(method_config(method, recipe), cand or {})
                data.setdefault("train", {})["seed"] = seed
                t = time.perf_counter()
                res = unlearn(copy.deepcopy(full), tok, forget, retain, build_config(data))
                model = res.export()
                scores = evaluate(model, tok, world)
                cfg = copy.deepcopy(attack)
                cfg.seeds = [seed * 1000 + s for s in attack.seeds]
                rows = relearn_attack(model, tok, world, cfg)
                after = sum(r["forget_acc"] for r in rows) / len(rows)
                print(json.dumps({"method": method, "candidate": i, "config": cand, "seed": seed,
                                  "world": "quick" if args.quick else "default", **scores,
                                  "after": after, "gap": after - gold_acc[seed], "budget": budget,
                                  "seconds": round(time.perf_counter() - t, 1)}), flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
