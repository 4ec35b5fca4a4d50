"""The whole evaluation protocol on the embedded world, in one command (docs/protocol.md).

    python benchmarks/world_protocol.py --workers 14 --out benchmarks/results/frontier
    python benchmarks/world_protocol.py --smoke --out /tmp/protocol-smoke      # tiny worlds, seconds

1. **Worlds**: trains the full and gold models of the tuning world and of every evaluation world
   (cached; one process per model).
2. **Attack calibration, on the tuning world only** (item "a world where relearning bites"): vanilla
   NPO at its recipe and the gold model are attacked with each candidate attack below, weakest
   first; the first attack under which NPO recovers ≥ 40 % of what it forgot at the largest budget
   while gold moves by ≤ 0.05 is used for everything after. If none does, the one with the largest
   NPO recovery among those that move gold by ≤ 0.05 is used, and the results say so.
3. **Sweep** (``robust_unlearning.sweep``): every candidate of every method of the plan on the tuning
   world, selection there, every candidate on the evaluation worlds over the seeds.
4. **Summary**: summary.json / summary.md / frontier.png plus calibration.json in ``--out``.

Rows are appended as jobs finish, so a run cut short still leaves its finished jobs analysable
(``unlearn sweep PLAN --phase analyze --out DIR``).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# candidate attacks, weakest first (largest budget last in each): (lr, budgets)
ATTACKS = [
    {"lr": 1e-3, "budgets": [[20, 10], [40, 10], [40, 40]]},
    {"lr": 3e-3, "budgets": [[20, 10], [40, 10], [40, 40]]},
    {"lr": 1e-3, "budgets": [[20, 10], [40, 40], [40, 100]]},
    {"lr": 3e-3, "budgets": [[20, 10], [40, 40], [40, 100]]},
]
SMOKE_ATTACKS = [{"lr": 1e-3, "budgets": [[2, 1], [4, 2]]}, {"lr": 3e-3, "budgets": [[2, 1], [4, 2]]}]


def _train_one(args: tuple[str, str, int]) -> tuple[str, str, float]:
    name, which, threads = args
    from robust_unlearning.benchmarks.world import world_spec
    from robust_unlearning.world.model import train_one

    t = time.perf_counter()
    train_one(world_spec(name), False, which, threads)
    return name, which, time.perf_counter() - t


def _calibrate_one(args: tuple[str, dict, str, int, int]) -> dict:
    world_name, attack, target, draws, threads = args
    import torch

    torch.set_num_threads(threads)
    os.environ.setdefault("ROBUST_UNLEARNING_QUIET", "1")
    from robust_unlearning.attacks.relearn import RelearnConfig, relearn_attack
    from robust_unlearning.benchmarks.world import world_bundle
    from robust_unlearning.config import build_config
    from robust_unlearning.io import load_model
    from robust_unlearning.loop import unlearn
    from robust_unlearning.recipes import load_recipe, method_config
    from robust_unlearning.world.benchmark import evaluate, unlearning_data

    bundle = world_bundle(world_name)
    full, tok = load_model(bundle.full_dir)
    original = evaluate(full, tok, bundle.world)["forget_acc"]
    if target == "gold":
        model, _ = load_model(bundle.gold_dir)
    else:
        forget, retain = unlearning_data(bundle.world)
        data = method_config(target, load_recipe("world"))
        data.setdefault("train", {})["seed"] = 0
        model = unlearn(copy.deepcopy(full), tok, forget, retain, build_config(data)).export()
    pre = evaluate(model, tok, bundle.world)["forget_acc"]
    cfg = RelearnConfig(budgets=attack["budgets"], lr=attack["lr"], batch_size=8, seeds=list(range(draws)))
    rows = relearn_attack(model, tok, bundle.world, cfg)
    last = tuple(attack["budgets"][-1])
    post = statistics.fmean(r["forget_acc"] for r in rows if (r["samples"], r["steps"]) == last)
    return {
        "target": target,
        "attack": attack,
        "original": original,
        "pre": pre,
        "post": post,
        "moved": post - pre,
        "recovery": (post - pre) / (original - pre) if original - pre > 1e-9 else None,
    }


def calibrate(world_name: str, attacks: list[dict], workers: int, draws: int, log) -> dict:
    jobs = [(world_name, a, t, draws, 1) for a in attacks for t in ("npo", "gold")]
    with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=get_context("spawn")) as pool:
        results = list(pool.map(_calibrate_one, jobs))
    table = []
    for i, a in enumerate(attacks):
        npo, gold = results[2 * i], results[2 * i + 1]
        table.append(
            {
                "attack": a,
                "npo_pre": npo["pre"],
                "npo_post": npo["post"],
                "npo_recovery": npo["recovery"],
                "gold_pre": gold["pre"],
                "gold_post": gold["post"],
                "gold_moved": gold["moved"],
                "original": npo["original"],
            }
        )
        log(
            f"attack {a}: NPO {npo['pre']:.3f} -> {npo['post']:.3f} (recovery {npo['recovery']}), "
            f"gold moved {gold['moved']:+.3f}"
        )
    ok = [t for t in table if (t["npo_recovery"] or 0) >= 0.4 and t["gold_moved"] <= 0.05]
    if ok:
        chosen, reached = ok[0], True
    else:
        fair = [t for t in table if t["gold_moved"] <= 0.05] or table
        chosen, reached = max(fair, key=lambda t: t["npo_recovery"] or 0), False
    return {
        "world": world_name,
        "rule": "first attack (weakest first) with NPO recovery >= 0.4 and gold moved "
        "<= 0.05; else the largest recovery with gold moved <= 0.05",
        "table": table,
        "chosen": chosen["attack"],
        "goal_reached_on_tuning_world": reached,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--plan", default=str(ROOT / "configs" / "world" / "frontier.yaml"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "frontier"))
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    ap.add_argument("--smoke", action="store_true", help="tiny worlds and a tiny plan: checks the pipeline")
    ap.add_argument("--methods", default=None, help="comma-separated subset of the plan's methods")
    ap.add_argument("--skip-calibration", action="store_true", help="use the plan's attack as it is")
    ap.add_argument(
        "--budget",
        type=float,
        default=None,
        help="wall-clock seconds for the whole run: no sweep job starts after it (minus 20 s for "
        "the summary); the summary covers the jobs that finished",
    )
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    os.environ.setdefault("ROBUST_UNLEARNING_QUIET", "1")
    from robust_unlearning.io import write_json_atomic
    from robust_unlearning.sweep import load_plan, run_sweep

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plan = load_plan(args.plan)
    attacks = ATTACKS
    if args.smoke:
        plan.update(
            tuning_world="world-tiny-tune",
            eval_worlds=["world-tiny", "world-tiny:seed=2"],
            seeds=[0, 1],
            attack={"budgets": [[2, 1], [4, 2]], "lr": 1e-3, "batch_size": 4, "draws": 2},
        )
        plan["methods"] = {
            k: {
                **v,
                "candidates": [
                    {**(c or {}), "train": {**((c or {}).get("train") or {}), "steps": 3}}
                    for c in v["candidates"][:2]
                ],
            }
            for k, v in plan["methods"].items()
            if k in ("npo", "npo+sam", "npo+stableun")
        }
        attacks = SMOKE_ATTACKS
    if args.methods:
        keep = args.methods.split(",")
        plan["methods"] = {k: v for k, v in plan["methods"].items() if k in keep}

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    t0 = time.perf_counter()
    worlds = [plan["tuning_world"], *plan["eval_worlds"]]
    with ProcessPoolExecutor(min(args.workers, 2 * len(worlds)), mp_context=get_context("spawn")) as pool:
        threads = max(1, args.workers // (2 * len(worlds)))
        for name, which, sec in pool.map(
            _train_one, [(w, m, threads) for w in worlds for m in ("full", "gold")]
        ):
            log(f"world {name} {which}: {sec:.0f}s")
    t_worlds = time.perf_counter() - t0
    cal_path = out / "calibration.json"
    if args.skip_calibration:
        calibration = {"chosen": plan["attack"], "skipped": True}
    elif cal_path.exists():
        calibration = json.loads(cal_path.read_text())
    else:
        calibration = calibrate(
            plan["tuning_world"], attacks, args.workers, plan["attack"].get("draws", 3), log
        )
        write_json_atomic(cal_path, calibration)
    plan["attack"] = {**plan["attack"], **calibration["chosen"]}
    import yaml

    (out / "plan.yaml").write_text(yaml.safe_dump(plan, sort_keys=False))  # what the sweep ran
    t_cal = time.perf_counter() - t0 - t_worlds
    deadline = None if args.budget is None else max(0.0, args.budget - (time.perf_counter() - t0) - 20)
    summary = run_sweep(
        plan, out, ("tune", "eval"), workers=args.workers, threads=1, log=log, deadline=deadline
    )
    import torch

    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "workers": args.workers,
        "smoke": args.smoke,
        "seconds": {
            "worlds": round(t_worlds, 1),
            "calibration": round(t_cal, 1),
            "total": round(time.perf_counter() - t0, 1),
        },
        "plan": plan,
        "calibration": calibration,
    }
    write_json_atomic(out / "run.json", meta)
    log(f"done in {time.perf_counter() - t0:.0f}s; {len(summary['table'])} methods summarised")


if __name__ == "__main__":
    main()
