"""The weight-growth proof of bounded LoRA (docs/methods.md#bounded-lora) on the world model.

Pure gradient ascent (``ga+lora`` vs ``ga+bounded-lora``, lr 1e-3, batch 4, gradients clipped at 1.0
after logging their norm) for ``--steps`` steps on the forget set. Reports, per method, the first,
largest and last gradient norm and max|ΔW|, their growth factors (max over the second half / first
step), the forget loss, and for bounded LoRA its analytic bound α/(r·s). Writes
``benchmarks/results/weight_growth.json``. The same property is asserted on a tiny model in
``tests/test_bounded_lora.py``.

    python benchmarks/weight_growth.py [--quick] [--steps 300]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
from pathlib import Path

import torch

from robust_unlearning.config import build_config
from robust_unlearning.io import load_model
from robust_unlearning.loop import unlearn
from robust_unlearning.world.benchmark import unlearning_data
from robust_unlearning.world.model import DEFAULT_SPEC, QUICK_SPEC, build_world

RESULTS = Path(__file__).parent / "results" / "weight_growth.json"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--steps", type=int, default=300)
    args = ap.parse_args()
    bundle = build_world(QUICK_SPEC if args.quick else DEFAULT_SPEC)
    model, tok = load_model(bundle.full_dir)
    forget, _ = unlearning_data(bundle.world)
    out = {"world": "quick" if args.quick else "default", "steps": args.steps, "lr": 1e-3, "methods": {}}
    half = args.steps // 2
    for method in ("ga+lora", "ga+bounded-lora"):
        cfg = build_config({"method": method, "train": {"steps": args.steps, "batch_size": 4, "lr": 1e-3}})
        log = unlearn(copy.deepcopy(model), tok, forget, None, cfg).log
        gn = [e["grad_norm"] for e in log]
        dw = [e["delta_w_max"] for e in log]
        row = {"grad_norm_first": gn[0], "grad_norm_max": max(gn), "grad_norm_last": gn[-1],
               "grad_norm_growth": max(gn[half:]) / gn[0],
               "delta_w_max_first": dw[0], "delta_w_max_max": max(dw), "delta_w_max_last": dw[-1],
               "delta_w_growth": max(dw[half:]) / dw[0],
               "forget_loss_first": log[0].get("forget_loss"), "forget_loss_last": log[-1].get("forget_loss"),
               "all_finite": all(map(lambda v: v == v and abs(v) != float("inf"), gn))}
        if "delta_w_bound" in log[0]:
            row["delta_w_bound"] = log[0]["delta_w_bound"]
            row["bound_respected"] = max(dw) <= log[0]["delta_w_bound"] * (1 + 1e-6)
        out["methods"][method] = row
        print(method, json.dumps({k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items()}),
              flush=True)
    out["torch"] = torch.__version__
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=2) + "\n")
    os.replace(tmp, RESULTS)


if __name__ == "__main__":
    main()
