"""Trainable parameters and peak memory of full fine-tuning vs LoRA vs bounded LoRA on the world model.

For each parameterization, GradDiff through the real loop (``robust_unlearning.loop.unlearn``: peft
wrapping, AdamW, clipping, per-step statistics) for a few steps on the world recipe's batch size:

* ``trainable_parameters``: what the optimizer updates.
* ``peak_mb``: peak of bytes allocated minus bytes freed during the whole run (wrapping, optimizer
  state, forward/backward, statistics) above what was allocated before it, from the allocator events
  recorded by the PyTorch profiler (``profile_memory=True``; CPU). The model's own weights are
  allocated before the run and are not counted; LoRA adds its adapters, their gradients and Adam
  state, plus activations; bounded LoRA also materialises each targeted ΔW = f(ω·BA) (out×in) and the
  ω·BA it needs for the backward pass, per module, each forward; by default (``recompute``) it
  rebuilds them in the backward pass instead of keeping them, the last row shows the difference.

Usage: ``python benchmarks/param_memory.py [--quick] [--steps 4]``; writes
``benchmarks/results/param_memory.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
from pathlib import Path

import torch

from robust_unlearning.config import build_config
from robust_unlearning.io import load_model
from robust_unlearning.loop import unlearn
from robust_unlearning.recipes import load_recipe
from robust_unlearning.world.benchmark import unlearning_data
from robust_unlearning.world.model import DEFAULT_SPEC, QUICK_SPEC, build_world

sys.path.insert(0, str(Path(__file__).resolve().parent))
from strategy_cost import peak_bytes  # noqa: E402  (one allocator-event peak for both scripts)

# (row label, parameterization, options on top of the world recipe's)
ROWS = [("full", "full", {}), ("lora", "lora", {}), ("bounded-lora", "bounded-lora", {}),
        ("bounded-lora recompute=off", "bounded-lora", {"recompute": False})]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="the quick world model (default: the full one)")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "param_memory.json"))
    args = ap.parse_args()
    torch.manual_seed(0)
    spec = QUICK_SPEC if args.quick else DEFAULT_SPEC
    bundle = build_world(spec)
    base, tokenizer = load_model(bundle.full_dir)
    forget, retain = unlearning_data(bundle.world)
    recipe = load_recipe("world")
    batch_size = recipe["defaults"]["train"]["batch_size"]
    n_params = sum(p.numel() for p in base.parameters())
    weights_mb = sum(p.numel() * p.element_size() for p in base.parameters()) / 2**20

    rows = {}
    for label, name, extra in ROWS:
        options = ((recipe.get("parameterizations") or {}).get(name) or {}).get("parameterization", {})
        options = {**options, **extra}
        cfg = build_config({"method": f"graddiff+{name}", "parameterization": options,
                            "train": {"steps": args.steps, "batch_size": batch_size, "lr": 1e-4}})
        out, model = {}, copy.deepcopy(base)
        peak = peak_bytes(lambda c=cfg, m=model, o=out: o.setdefault(
            "r", unlearn(m, tokenizer, forget, retain, c)))
        last = out["r"].log[-1]
        rows[label] = {
            "options": options,
            "trainable_parameters": out["r"].metrics["trainable_parameters"],
            "trainable_fraction": out["r"].metrics["trainable_parameters"] / n_params,
            "peak_mb": peak / 2**20,
            # fp32 gradients + AdamW's two moments: the part that scales with the trainable parameters
            "grad_and_adam_mb": 3 * 4 * out["r"].metrics["trainable_parameters"] / 2**20,
            "delta_w_max": last.get("delta_w_max"),
        }
    result = {
        "world": "quick" if args.quick else "default", "objective": "graddiff", "batch_size": batch_size,
        "steps": args.steps, "model_parameters": n_params,
        "model_weights_mb": weights_mb, "torch": torch.__version__, "machine": platform.machine(),
        "threads": torch.get_num_threads(), "memory_measure": "torch.profiler allocator events (CPU), "
        "peak above the state before the run, model weights excluded",
        "parameterizations": rows,
    }
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"world {result['world']}: {result['model_parameters']:,} parameters, "
          f"{weights_mb:.1f} MB of weights; graddiff, batch {batch_size}, {args.steps} steps")
    print(f"{'parameterization':26} {'trainable':>10} {'fraction':>9} {'peak MB':>8} {'grad+Adam MB':>12}")
    for name, r in rows.items():
        print(f"{name:26} {r['trainable_parameters']:>10,} {r['trainable_fraction']:>9.4f} "
              f"{r['peak_mb']:>8.1f} {r['grad_and_adam_mb']:>12.2f}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
