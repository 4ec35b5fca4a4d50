"""What makes relearning bite? An exploration on the *tuning* world only (docs/protocol.md, issue
"honest robustness evidence", item 7).

The protocol asks for a world where vanilla NPO, at its chosen setting, recovers at least 40 % of what
it forgot under the largest relearning attack, (post − pre) / (original − pre) ≥ 0.4, while gold moves
by at most 0.05. The attack calibration (benchmarks/results/frontier/calibration.json) reached 0.19–0.33
on the default tuning world by varying the attack's lr and budget. This script varies what it did not:

- **the world model's size**: the quick world's model (hidden 96, 3 layers), a wider one (hidden 256)
  and a deeper one (8 layers), each trained from scratch on the same tuning world;
- **how long the world model is trained**: to the MCQ bar (the default: it stops there) or for every
  epoch of its schedule (the "60 epochs" variants), facts learnt past the bar;
- **unlearning strength**: NPO at the recipe's lr for fewer or more steps, or at a lower lr for more
  steps (``--steps 600@1e-4``: a gentler NPO);
- **the attack's form**: QA pairs or the biography sentences stating the same facts;
- **the attack itself** (``--attack-lrs``, ``--budgets``, ``--attack-lora-rank``): a gentler lr run
  for longer, or LoRA adapters, which can undo a suppression without overwriting as much.

Every cell: NPO unlearned once per unlearning seed (``--seeds``, default 0), then NPO's model and
gold attacked with the same draws (``--draws``) at each budget (gold once per attack setting);
recovery at the largest budget and how far gold moved. Results (``results.json``, ``report.md``) go
to ``--out``. Nothing here reads an evaluation world, except with ``--check-on-evaluation-world``:
that reruns given cells (settings already chosen on the tuning world) on evaluation world 1, to
report whether what bit on the tuning world bites there too; nothing is chosen from it.

    python benchmarks/relearn_bite.py --out benchmarks/results/relearn-bite
    python benchmarks/relearn_bite.py --smoke --out /tmp/bite-smoke         # tiny world, a minute
    python benchmarks/relearn_bite.py --models "deep (96 x 8)" --steps 200 --forms qa \
        --check-on-evaluation-world --out benchmarks/results/relearn-bite/eval-deep
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

# model variants on the quick tuning world (hidden, intermediate, layers, heads)
MODELS = {
    "quick (96 x 3)": {"hidden_size": 96, "intermediate_size": 256, "num_hidden_layers": 3,
                       "num_attention_heads": 4},
    "wide (256 x 3)": {"hidden_size": 256, "intermediate_size": 768, "num_hidden_layers": 3,
                       "num_attention_heads": 4},
    "deep (96 x 8)": {"hidden_size": 96, "intermediate_size": 256, "num_hidden_layers": 8,
                      "num_attention_heads": 4},
    "deeper (96 x 16)": {"hidden_size": 96, "intermediate_size": 256, "num_hidden_layers": 16,
                         "num_attention_heads": 4},
    # trained for every epoch of the schedule (60) instead of stopping once the MCQ bar is reached:
    # do facts learnt past the bar survive unlearning in a form that relearning brings back? (A bar
    # of 2.0, no accuracy reaches it: the world name option stop=end, the same cached models.)
    "quick 60 epochs (96 x 3)": {"pretrain": {"target_acc": 2.0}},
    "deep 60 epochs (96 x 8)": {"hidden_size": 96, "intermediate_size": 256, "num_hidden_layers": 8,
                                 "num_attention_heads": 4, "pretrain": {"target_acc": 2.0}},
}
# the same three on the tiny world of --smoke (seconds)
SMOKE_MODELS = {"quick (96 x 3)": {}, "wide (256 x 3)": {"hidden_size": 64, "intermediate_size": 128},
                "quick 60 epochs (96 x 3)": {"pretrain": {"target_acc": 2.0}},
                "deep 60 epochs (96 x 8)": {"num_hidden_layers": 4, "pretrain": {"target_acc": 2.0}},
                "deep (96 x 8)": {"num_hidden_layers": 4}, "deeper (96 x 16)": {"num_hidden_layers": 6}}
STEPS = [50, 100, 200]  # NPO steps at the recipe's lr (the world recipe's NPO: 200)
ATTACK = {"lr": 1e-3, "batch_size": 8, "budgets": [[20, 10], [20, 40], [20, 100]]}
FORMS = ["qa", "bio"]


def build(spec, log):
    from robust_unlearning.world.model import build_world

    t = time.perf_counter()
    bundle = build_world(spec)
    log(f"world {spec.key()} ready ({time.perf_counter() - t:.0f} s)")
    return bundle


def variant_spec(base, label: str, smoke: bool = False):
    """The world spec of the model variant ``label`` (MODELS, or SMOKE_MODELS with ``smoke``) on the
    world of ``base``."""
    shape = dict((SMOKE_MODELS if smoke else MODELS)[label])
    pretrain = shape.pop("pretrain", {})
    return dataclasses.replace(base, model=dataclasses.replace(base.model, **shape),
                               pretrain=dataclasses.replace(base.pretrain, **pretrain))


def run_cell(bundle, full, gold, tok, steps: int, form: str, attack: dict, draws: int, smoke: bool,
             cache: dict | None = None, npo_lr: float | None = None, seed: int = 0) -> dict:
    """One cell. ``cache`` (kept across the cells of one model) holds each unlearned model and its
    scores, by (steps, lr, seed), the full and gold models' scores, and gold's attack rows, by attack
    setting, so none of them is computed twice."""
    from robust_unlearning.attacks.relearn import RelearnConfig, relearn_attack
    from robust_unlearning.config import build_config
    from robust_unlearning.loop import unlearn
    from robust_unlearning.metrics.knowledge import recovery
    from robust_unlearning.recipes import load_recipe, method_config
    from robust_unlearning.world.benchmark import evaluate, unlearning_data

    world = bundle.world
    forget, retain = unlearning_data(world)
    data = method_config("npo", load_recipe("world"))
    data.setdefault("train", {}).update({"seed": seed, "steps": steps})
    if npo_lr is not None:
        data["train"]["lr"] = npo_lr
    npo_lr = data["train"]["lr"]  # the recipe's, defaults merged in, unless given
    if smoke:
        data["train"]["batch_size"] = 4
    cache = {} if cache is None else cache
    if (steps, npo_lr, seed) not in cache:
        t = time.perf_counter()
        done = unlearn(copy.deepcopy(full), tok, forget, retain, build_config(data)).export()
        cache[steps, npo_lr, seed] = (done, time.perf_counter() - t, evaluate(done, tok, world))
    model, unlearn_s, scores = cache[steps, npo_lr, seed]
    if "original" not in cache:
        cache["original"] = evaluate(full, tok, world)["forget_acc"]
        cache["gold_pre"] = evaluate(gold, tok, world)["forget_acc"]
    original, gold_pre = cache["original"], cache["gold_pre"]
    cfg = RelearnConfig(budgets=[tuple(b) for b in attack["budgets"]], lr=attack["lr"],
                        batch_size=attack["batch_size"], seeds=list(range(draws)), form=form,
                        lora_rank=attack.get("lora_rank", 0))
    t = time.perf_counter()
    rows_npo = relearn_attack(model, tok, world, cfg)
    gold_key = ("gold", form, attack["lr"], attack.get("lora_rank", 0), tuple(map(tuple, attack["budgets"])),
                draws)
    if gold_key not in cache:  # gold is the same model for every NPO setting: attack it once
        cache[gold_key] = relearn_attack(gold, tok, world, cfg)
    rows_gold = cache[gold_key]
    attack_s = time.perf_counter() - t
    out = {"steps": steps, "npo_lr": npo_lr, "seed": seed, "form": form, "attack": dict(attack),
           "original": original, "pre": scores["forget_acc"],
           "retain_acc": scores["retain_acc"], "gold_pre": gold_pre, "budgets": [],
           "seconds": {"unlearn": round(unlearn_s, 1), "attack": round(attack_s, 1)}}
    for b in cfg.budgets:
        post = [r["forget_acc"] for r in rows_npo if (r["samples"], r["steps"]) == tuple(b)]
        gpost = [r["forget_acc"] for r in rows_gold if (r["samples"], r["steps"]) == tuple(b)]
        mean = statistics.fmean(post)
        out["budgets"].append({
            "budget": list(b), "post": mean, "post_draws": post, "gold_post": statistics.fmean(gpost),
            "gold_moved": statistics.fmean(gpost) - gold_pre,
            "recovery": recovery(scores["forget_acc"], mean, original),
            # |mean over draws − gold's mean|: not the protocol's gap (the mean over draws of the
            # per-draw |acc − gold|, metrics/knowledge.py); this exploration reads recovery
            "gap": abs(mean - statistics.fmean(gpost)),
        })
    return out


def render(results: dict) -> str:
    att = results["attack"]
    check = results.get("evaluation_world_check")
    lines = [
        "# What makes relearning bite" + (": a check on evaluation world "
                                          f"{results['world']['seed']} of settings chosen on the tuning world"
                                          if check else " (tuning world only)"), "",
        f"World: {results['world']['n_persons']} persons, {'evaluation' if check else 'tuning'} seed "
        f"{results['world']['seed']}, relearn "
        f"pool {results['world']['relearn_pool']}; NPO for the given steps at the given lr "
        "(the world recipe's: 1e-3; one unlearning seed per row); attack AdamW, batch "
        f"{att['batch_size']}, {results['draws']} draws "
        f"per budget (the same for NPO and gold). Recovery = (post − pre) / (original − pre) at the "
        f"largest budget {att['budgets'][-1][0]}×{att['budgets'][-1][1]}; the goal is ≥ 0.40 with gold "
        "moving ≤ 0.05.", "",
        "| model | params | NPO steps @ lr | seed | form | attack lr | attack budget | original | NPO pre "
        "| retain | post | recovery | gold pre → post | \\|mean post − gold's\\| |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in results["models"]:
        for c in m["cells"]:
            last = c["budgets"][-1]
            rec = "–" if last["recovery"] is None else f"{last['recovery']:.2f}"
            a = c.get("attack", att)
            lr = f"{a['lr']:g}" + (f", LoRA r {a['lora_rank']}" if a.get("lora_rank") else "")
            lines.append(
                f"| {m['label']} | {m['parameters'] / 1e6:.1f} M | "
                f"{c['steps']} @ {c.get('npo_lr', 1e-3):g} | {c.get('seed', 0)} | "
                f"{c['form']} | {lr} | "
                f"{last['budget'][0]}×{last['budget'][1]} | "
                f"{c['original']:.3f} | {c['pre']:.3f} | {c['retain_acc']:.3f} | {last['post']:.3f} | "
                f"{rec} | {c['gold_pre']:.3f} → {last['gold_post']:.3f} | {last['gap']:.3f} |")
    groups: dict = {}
    for m in results["models"]:
        for c in m["cells"]:
            a = c.get("attack", att)
            key = (m["label"], f"{c['steps']} @ {c.get('npo_lr', 1e-3):g}", c["form"], f"{a['lr']:g}")
            groups.setdefault(key, []).append(c)
    several = {k: v for k, v in groups.items() if len(v) > 1}
    if several:
        lines += ["", "Over unlearning seeds (mean ± std at the largest budget; each seed's value is "
                  "the mean over its draws):", "",
                  "| model | NPO steps @ lr | form | attack lr | seeds | NPO pre | retain | post | recovery "
                  "| gold moved |", "|---|---|---|---|---|---|---|---|---|---|"]
        for (label, npo, form, lr), cells in several.items():
            def ms(xs):
                return f"{statistics.fmean(xs):.3f} ± {statistics.stdev(xs):.3f}"
            last = [c["budgets"][-1] for c in cells]
            lines.append(f"| {label} | {npo} | {form} | {lr} | {len(cells)} | "
                         f"{ms([c['pre'] for c in cells])} | "
                         f"{ms([c['retain_acc'] for c in cells])} | {ms([b['post'] for b in last])} | "
                         f"{ms([b['recovery'] for b in last if b['recovery'] is not None])} | "
                         f"{ms([b['gold_moved'] for b in last])} |")
    lines += ["", f"Machine: {results['environment']['machine']}; {results['date']}; total "
              f"{results['seconds']} s.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="benchmarks/results/relearn-bite")
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated labels of MODELS")
    ap.add_argument("--steps", default=",".join(map(str, STEPS)),
                    help="NPO steps, comma-separated; STEPS@LR for another lr than the recipe's")
    ap.add_argument("--forms", default=",".join(FORMS))
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--seeds", default="0", help="NPO unlearning seeds, comma-separated (one cell each)")
    ap.add_argument("--attack-lrs", default=str(ATTACK["lr"]),
                    help="comma-separated attack lrs (one cell each)")
    ap.add_argument("--budgets", default=",".join(f"{k}x{s}" for k, s in ATTACK["budgets"]),
                    help="attack budgets, samples x steps, comma-separated (recovery is read at the last)")
    ap.add_argument("--attack-lora-rank", type=int, default=0, help="attack with LoRA adapters of this rank")
    ap.add_argument("--smoke", action="store_true", help="the tiny tuning world, one cell per model")
    ap.add_argument("--check-on-evaluation-world", action="store_true",
                    help="run the given cells on evaluation world 1 instead of the tuning world (a check of "
                         "settings chosen on the tuning world; choose nothing from it)")
    args = ap.parse_args(argv)

    import torch

    from robust_unlearning.io import load_model, write_json_atomic, write_text_atomic
    from robust_unlearning.world.generator import EVAL_SEEDS, TUNING_SEED
    from robust_unlearning.world.model import QUICK_SPEC, TINY_SPEC

    os.environ.setdefault("ROBUST_UNLEARNING_QUIET", "1")
    t0 = time.perf_counter()

    def log(msg):
        print(f"[{time.perf_counter() - t0:6.0f} s] {msg}", flush=True)

    base = TINY_SPEC if args.smoke else QUICK_SPEC
    world_seed = EVAL_SEEDS[0] if args.check_on_evaluation_world else TUNING_SEED
    base = dataclasses.replace(base, world=dataclasses.replace(base.world, seed=world_seed))
    labels = [x.strip() for x in args.models.split(",") if x.strip()]
    for label in labels:
        if label not in MODELS:
            sys.exit(f"unknown model {label!r}; known: {', '.join(MODELS)}")
    steps = [(int(x.split("@")[0]), float(x.split("@")[1]) if "@" in x else None)
             for x in args.steps.split(",")]
    forms = [x.strip() for x in args.forms.split(",")]
    attack = ({"lr": 1e-3, "batch_size": 4, "budgets": [[4, 2], [4, 5]]} if args.smoke
              else {**ATTACK, "budgets": [[int(x) for x in b.split("x")] for b in args.budgets.split(",")]})
    attack["lora_rank"] = args.attack_lora_rank
    lrs = [float(x) for x in args.attack_lrs.split(",")]
    if args.smoke:
        steps, forms = steps[:1], forms[:1]
    results = {"world": dataclasses.asdict(base.world),
               "evaluation_world_check": args.check_on_evaluation_world,
               "attack": attack, "draws": args.draws,
               "date": time.strftime("%Y-%m-%d"), "smoke": args.smoke,
               "environment": {"machine": f"{platform.machine()}, {os.cpu_count()} cores, torch "
                               f"{torch.__version__}, {torch.get_num_threads()} threads"},
               "models": []}
    out = Path(args.out)
    for label in labels:
        spec = variant_spec(base, label, args.smoke)
        bundle = build(spec, log)
        full, tok = load_model(bundle.full_dir)
        gold, _ = load_model(bundle.gold_dir)
        entry = {"label": label, "model": dataclasses.asdict(spec.model),
                 "pretrain_config": dataclasses.asdict(spec.pretrain),
                 "parameters": sum(p.numel() for p in full.parameters()),
                 "pretrain": json.loads((bundle.full_dir / "world_meta.json").read_text()).get("history"),
                 "cells": []}
        results["models"].append(entry)
        cache: dict = {}  # one unlearning per NPO setting and seed, one gold attack per attack setting
        seeds = [int(x) for x in args.seeds.split(",")]
        for (s, npo_lr), form, lr, seed in [(s, f, lr, sd) for s in steps for f in forms for lr in lrs
                                            for sd in seeds]:
            cell = run_cell(bundle, full, gold, tok, s, form, {**attack, "lr": lr}, args.draws, args.smoke,
                            cache, npo_lr, seed)
            entry["cells"].append(cell)
            last = cell["budgets"][-1]
            log(f"{label} npo {s} steps at lr {cell['npo_lr']:g} seed {seed}, {form}, attack lr {lr:g}: "
                f"pre {cell['pre']:.3f} "
                f"retain {cell['retain_acc']:.3f} "
                f"-> post {last['post']:.3f} (recovery {last['recovery']}); gold {cell['gold_pre']:.3f} "
                f"-> {last['gold_post']:.3f}")
            results["seconds"] = round(time.perf_counter() - t0, 1)
            write_json_atomic(out / "results.json", results)  # a run cut short keeps its cells
    results["seconds"] = round(time.perf_counter() - t0, 1)
    write_json_atomic(out / "results.json", results)
    write_text_atomic(out / "report.md", render(results))
    print(render(results))
    return results


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    main()
