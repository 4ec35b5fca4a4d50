"""Tuning sweep for the robust strategies on the world (the record is configs/world/README.md).

Every method gets the same budget: the candidate configs listed in ``configs/world/sweep.yaml``
(4 for the vanilla and for each robust variant), each run once on the tuning seed (100: not one of
the evaluation seeds 0, 1, 2), unlearned, evaluated, and attacked with the recipe's relearning attack
at its largest budget (the recipe's draws of the relearn set, averaged).

Selection rule, fixed before looking at results: the reference is the vanilla objective's recipe
config (candidate ``{}`` of ``npo`` for ``npo+…``, of ``graddiff`` for ``graddiff+…``). Among a
method's candidates whose retain accuracy is at least the reference's minus 0.02 and whose forget
accuracy before the attack is no higher than the reference's, pick the lowest post-attack forget
accuracy. A method with no eligible candidate keeps its first candidate, and the record says so.

    python configs/world/tune.py run [--quick] [--methods npo,npo+sam] [--seed 100] [--out FILE]
    python configs/world/tune.py select [--out FILE]      # prints the choice as recipe YAML

``run`` appends one JSON line per (method, candidate) to ``--out`` (default
``configs/world/sweep-results.jsonl``) and skips pairs already there, so an interrupted sweep resumes.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import yaml

HERE = Path(__file__).parent


def _rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


def run(args) -> None:
    import torch

    from robust_unlearning.attacks.relearn import RelearnConfig, relearn_attack
    from robust_unlearning.config import build_config, deep_merge
    from robust_unlearning.io import load_model
    from robust_unlearning.loop import unlearn
    from robust_unlearning.recipes import load_recipe, method_config
    from robust_unlearning.world.benchmark import evaluate, unlearning_data
    from robust_unlearning.world.model import DEFAULT_SPEC, QUICK_SPEC, build_world

    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = load_recipe("world")
    sweep = yaml.safe_load(Path(args.sweep).read_text())
    att = dict(recipe["attack"])
    if args.quick:
        att.update(recipe.get("quick_attack") or {})
    budget = max(att["budgets"], key=lambda b: (b[0], b[1]))
    world_name = "quick" if args.quick else "default"
    done = {(r["method"], r["candidate"], r["seed"], r["world"]) for r in _rows(Path(args.out))}
    bundle = build_world(QUICK_SPEC if args.quick else DEFAULT_SPEC)
    full, tok = load_model(bundle.full_dir)
    gold, _ = load_model(bundle.gold_dir)
    forget, retain = unlearning_data(bundle.world)
    world = bundle.world
    seed = args.seed

    def attack_cfg() -> RelearnConfig:
        return RelearnConfig(budgets=[tuple(budget)], lr=att["lr"], batch_size=att["batch_size"],
                             seeds=[seed * 1000 + s for s in att["seeds"]])

    rows = relearn_attack(gold, tok, world, attack_cfg())
    gold_after = sum(r["forget_acc"] for r in rows) / len(rows)
    methods = args.methods.split(",") if args.methods else list(sweep)
    with open(args.out, "a") as fh:
        for method in methods:
            for i, cand in enumerate(sweep[method]):
                if (method, i, seed, world_name) in done:
                    continue
                data = deep_merge(method_config(method, recipe), cand or {})
                data.setdefault("train", {})["seed"] = seed
                t = time.perf_counter()
                res = unlearn(copy.deepcopy(full), tok, forget, retain, build_config(data))
                model = res.export()
                scores = evaluate(model, tok, world)
                rows = relearn_attack(model, tok, world, attack_cfg())
                after = sum(r["forget_acc"] for r in rows) / len(rows)
                fh.write(json.dumps({
                    "method": method, "candidate": i, "config": cand, "seed": seed, "world": world_name,
                    "forget_acc": scores["forget_acc"], "retain_acc": scores["retain_acc"],
                    "after": after, "gold_after": gold_after, "gap": after - gold_after,
                    "budget": list(budget), "seconds": round(time.perf_counter() - t, 1)}) + "\n")
                fh.flush()
                print(f"{method} #{i} {cand}: forget {scores['forget_acc']:.3f} retain "
                      f"{scores['retain_acc']:.3f} after {after:.3f} gap {after - gold_after:+.3f}",
                      file=sys.stderr, flush=True)


def select(args) -> dict:
    rows = _rows(Path(args.out))
    sweep = yaml.safe_load(Path(args.sweep).read_text())
    by = {(r["method"], r["candidate"]): r for r in rows}
    chosen: dict = {}
    for method in sweep:
        base = method.split("+")[0]
        ref = by.get((base, 0))
        cands = [by[(method, i)] for i in range(len(sweep[method])) if (method, i) in by]
        if ref is None or not cands:
            continue
        ok = [r for r in cands if r["retain_acc"] >= ref["retain_acc"] - 0.02
              and r["forget_acc"] <= ref["forget_acc"]]
        pick = min(ok, key=lambda r: r["after"]) if ok else cands[0]
        chosen[method] = {"candidate": pick["candidate"], "config": pick["config"] or {},
                          "eligible": len(ok), "of": len(cands), "forget_acc": pick["forget_acc"],
                          "retain_acc": pick["retain_acc"], "after": round(pick["after"], 4),
                          "gap": round(pick["gap"], 4)}
    print(yaml.safe_dump(chosen, sort_keys=False, width=110))
    return chosen


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["run", "select"])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--methods", default=None)
    ap.add_argument("--seed", type=int, default=100)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--sweep", default=str(HERE / "sweep.yaml"))
    ap.add_argument("--out", default=str(HERE / "sweep-results.jsonl"))
    args = ap.parse_args()
    run(args) if args.cmd == "run" else select(args)


if __name__ == "__main__":
    main()
