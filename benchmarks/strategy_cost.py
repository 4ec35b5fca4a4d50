"""Cost of each robust strategy on the world model: time per pass and peak memory.

For every strategy (objective GradDiff, full fine-tuning, the world recipe's batch size):

* ``overhead`` = step time / (passes per step × time of one plain forward/backward pass).
  Goal ≤ 1.15: a strategy costs its passes and little else. A pass is one forward + backward of one
  micro-batch; a backward through a gradient graph (GP, CR) is counted as two passes.
  Each step's ratio uses a plain pass timed just before it (the machine's load drifts); the median
  over steps is reported.
* ``extra_mb`` = peak memory of ``strategy.compute`` plus the state the strategy keeps between steps
  (WA's average, StableUN's iterate history), above plain GradDiff's, from the allocator events
  recorded by the PyTorch profiler (``profile_memory``); ``extra_grad_buffers`` is the same in
  units of one gradient-sized buffer (the trainable parameters' bytes). Goal: SAM ≤ 1 buffer.
  ``run_peak_extra_mb`` is the peak of setup + two whole steps (optimizer included) above plain's:
  on a small model the optimizer's first step can set the peak for every strategy.

Usage: ``python benchmarks/strategy_cost.py [--quick] [--steps 6] [--unfused]``; writes
``benchmarks/results/strategy_cost.json`` with the loop's default optimizer, torch's fused AdamW
(``strategy_cost_unfused.json`` with ``--unfused``: the per-tensor AdamW, ``train.fused_optimizer:
false``) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from functools import partial
from pathlib import Path

import torch

from robust_unlearning.data.collate import Collator
from robust_unlearning.io import load_model
from robust_unlearning.loop import train_step
from robust_unlearning.objectives.base import OBJECTIVES
from robust_unlearning.strategies.base import STRATEGIES, Losses, MicroBatch, StepContext
from robust_unlearning.world.benchmark import unlearning_data
from robust_unlearning.world.model import DEFAULT_SPEC, QUICK_SPEC, build_world

STRATEGY_OPTIONS = {
    "plain": {}, "sam": {"rho": 0.01}, "rs": {"sigma": 1e-4, "samples": 3}, "gp": {"coef": 0.1},
    "cr": {"coef": 0.1, "h": 0.01}, "wa": {"start": 1, "every": 1},
    "stableun": {"rules": ["sap", "gpn", "gap", "hws"], "T": 2, "M": 5},
}


class Harness:
    """The loop's step (:func:`~robust_unlearning.loop.train_step`: zero grads, strategy, clip,
    AdamW, after_step) on fixed batches."""

    def __init__(self, model, tokenizer, forget, retain, batch_size: int, fused: bool = True):
        self.model = model
        self.fused = fused
        self.objective = OBJECTIVES.build("graddiff", {})
        collate = Collator(tokenizer)
        starts = lambda records: range(0, len(records) - batch_size + 1, batch_size)  # noqa: E731
        self.fb = [collate(forget[i:i + batch_size]) for i in starts(forget)]
        self.rb = [collate(retain[i:i + batch_size]) for i in starts(retain)]
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.i = 0

    def _next(self, pool):
        self.i += 1
        return pool[self.i % len(pool)]

    def pass_time(self, repeats: int) -> float:
        times = []
        for r in range(repeats + 1):
            batch = self._next(self.fb)
            t = time.perf_counter()
            self.objective.forget_loss(self.model, batch, None).backward()
            if r:
                times.append(time.perf_counter() - t)
            for p in self.params:
                p.grad = None
        return statistics.median(times)

    def run(self, name: str, steps: int, profile_last: bool = False) -> dict:
        """Run ``steps`` steps. Before each step one plain pass is timed, so every step's overhead
        is measured against the machine's speed of that moment (the load drifts)."""
        strategy = STRATEGIES.build(name, STRATEGY_OPTIONS[name])
        strategy.setup(self.params)
        opt = torch.optim.AdamW(self.params, lr=1e-5, fused=True if self.fused else None)
        ratios, times, passes, compute_peak = [], [], 0, None
        losses = Losses(lambda b: self.objective.forget_loss(self.model, b, None),
                        lambda b: self.objective.retain_loss(self.model, b, None),
                        next_forget=lambda: self._next(self.fb), next_retain=lambda: self._next(self.rb))
        for step in range(steps):
            unit = self.pass_time(1) if not profile_last else None
            t = time.perf_counter()
            make_ctx = partial(StepContext, self.model, self.params,
                               [MicroBatch(self._next(self.fb), self._next(self.rb))], losses,
                               gamma=1.0, lr=1e-5, step=step)
            peaks = []
            if profile_last and step == steps - 1:  # the peak of strategy.compute alone
                strategy.compute = _profiled(strategy.compute, peaks)
            ctx, _, _ = train_step(strategy, make_ctx, opt, self.params, step, max_grad_norm=1.0)
            if peaks:
                del strategy.compute  # the class's method again
                compute_peak = peaks[0]
            elapsed = time.perf_counter() - t
            passes = ctx.passes
            if unit is not None and step > 0:  # the first step warms caches up
                times.append(elapsed)
                ratios.append(elapsed / (passes * unit))
        state = sum(_nbytes(v) for v in strategy.state_dict().values())
        return {"passes": passes, "times": times, "ratios": ratios, "compute_peak": compute_peak,
                "state_bytes": state}


def strategy_rows(h: Harness, steps: int, names: list[str], run_peak: bool = True) -> dict:
    """Per strategy: passes per step, median step time and overhead over ``steps`` timed steps, and
    memory above plain's (``run_peak``: also the peak of setup + two whole steps)."""
    grad_bytes = sum(p.numel() * p.element_size() for p in h.params)
    rows = {}
    for name in names:
        r = h.run(name, steps + 1)
        rows[name] = {"passes_per_step": r["passes"], "step_seconds": statistics.median(r["times"]),
                      "overhead": statistics.median(r["ratios"])}
    base = None
    for name in ["plain"] + [n for n in names if n != "plain"]:
        # setup + 2 steps, optimizer included
        whole = peak_bytes(lambda n=name: h.run(n, 2)) if run_peak else 0
        r = h.run(name, 2, profile_last=True)  # strategy.compute alone, after a warm-up step
        compute = r["compute_peak"] + r["state_bytes"]  # + what the strategy keeps between steps
        if name == "plain":
            base = (whole, compute)
        if name in rows:
            rows[name].update({"extra_mb": (compute - base[1]) / 2**20,
                               "extra_grad_buffers": (compute - base[1]) / grad_bytes,
                               "state_mb": r["state_bytes"] / 2**20})
            if run_peak:
                rows[name]["run_peak_extra_mb"] = (whole - base[0]) / 2**20
    return rows


def _profiled(compute, peaks: list):
    return lambda ctx: peaks.append(peak_bytes(lambda: compute(ctx)))


def _nbytes(obj) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, (list, tuple)):
        return sum(_nbytes(x) for x in obj)
    if isinstance(obj, dict):
        return sum(_nbytes(x) for x in obj.values())
    return 0


def peak_bytes(fn) -> int:
    """Peak of allocated-minus-freed bytes while ``fn`` runs (CPU allocator events)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    cur = peak = 0
    for e in sorted(prof.events(), key=lambda e: e.time_range.start):
        cur += e.self_cpu_memory_usage
        peak = max(peak, cur)
    return peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="the quick world model (default: the full one)")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--strategies", default=",".join(STRATEGY_OPTIONS))
    ap.add_argument("--unfused", action="store_true",
                    help="the per-tensor AdamW (train.fused_optimizer: false; default: the loop's fused one)")
    ap.add_argument("--out", default=None, help="default: results/strategy_cost.json "
                                               "(strategy_cost_unfused.json with --unfused)")
    args = ap.parse_args()
    args.fused = not args.unfused
    args.out = args.out or str(Path(__file__).parent / "results" /
                               ("strategy_cost_unfused.json" if args.unfused else "strategy_cost.json"))
    torch.manual_seed(0)
    spec = QUICK_SPEC if args.quick else DEFAULT_SPEC
    bundle = build_world(spec)
    model, tokenizer = load_model(bundle.full_dir)
    model.train()
    forget, retain = unlearning_data(bundle.world)
    h = Harness(model, tokenizer, forget, retain, args.batch_size, args.fused)
    names = [s.strip() for s in args.strategies.split(",") if s.strip()]
    grad_bytes = sum(p.numel() * p.element_size() for p in h.params)
    rows = strategy_rows(h, args.steps, names)
    result = {
        "world": "quick" if args.quick else "default", "objective": "graddiff", "batch_size": args.batch_size,
        "optimizer": "AdamW (fused)" if args.fused else "AdamW",
        "trainable_parameters": sum(p.numel() for p in h.params), "gradient_buffer_mb": grad_bytes / 2**20,
        "torch": torch.__version__, "machine": platform.machine(), "threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "options": {n: STRATEGY_OPTIONS[n] for n in names}, "strategies": rows,
        "goals": {"overhead": "<= 1.15", "sam_extra_grad_buffers": "<= 1"},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'strategy':10} {'passes':>6} {'step s':>8} {'overhead':>9} {'extra MB':>9} {'extra bufs':>10} "
          f"{'run peak +MB':>12}")
    for name, r in rows.items():
        print(f"{name:10} {r['passes_per_step']:>6} {r['step_seconds']:>8.4f} {r['overhead']:>9.3f} "
              f"{r['extra_mb']:>9.2f} {r['extra_grad_buffers']:>10.2f} {r['run_peak_extra_mb']:>12.2f}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
