"""``unlearn demo --benchmark tofu|muse-news|muse-books|wmdp --model DIR``: the demo's comparison on a
standard benchmark's data.

Load the model, evaluate it, unlearn it with each method and seed on the benchmark's forget / retain
data, and evaluate every result with the benchmark's full report; write ``results.json`` (every
metric) and ``report.md`` (the summary table). Method settings come from a recipe in the format of
``recipes/world.yaml`` (``--recipe FILE``), by default :data:`DEFAULT_RECIPE`, which follows the
papers' orders of magnitude (lr 1e-5, batch 4, 5 epochs; NPO β 0.1) for 7B-class models.

The world's relearning attack needs the world's relearn pool and gold model; on these benchmarks
the demo reports unlearning only: attack a saved model with ``unlearn attack relearn --benchmark
NAME`` (:mod:`..attacks.relearn_benchmark`; ``--gold-model`` for the retain-only model's floor).
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

from ..config import build_config, load_yaml
from ..errors import UnlearnError
from ..io import load_model, write_json_atomic, write_text_atomic
from ..loop import unlearn
from ..recipes import method_config
from . import build_benchmark

DEFAULT_METHODS = ["graddiff", "npo", "simnpo"]
DEFAULT_RECIPE: dict = {
    "defaults": {"train": {"batch_size": 4, "lr": 1.0e-5, "epochs": 5, "gamma": 1.0, "max_grad_norm": 1.0,
                           "max_length": 512}},
    "objectives": {"npo": {"objective": {"beta": 0.1}}, "simnpo": {"objective": {"beta": 3.0}}},
}


def _fmt(v) -> str:
    return f"{v:.3f}" if isinstance(v, float) else ("" if v is None else str(v))


def render_markdown(results: dict) -> str:
    rows = results["entries"]
    keys = [k for k in rows[0] if k not in ("method", "seed", "unlearn")]
    lines = [f"# {results['benchmark']} — {results['model']}", "",
             "| method | seed | " + " | ".join(keys) + " |", "|" + "---|" * (len(keys) + 2)]
    for r in rows:
        cells = [r["method"], _fmt(r.get("seed"))] + [_fmt(r.get(k)) for k in keys]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_benchmark_demo(benchmark: str, model: str | Path, methods: list[str] | None = None,
                       seeds: list[int] | None = None, out: str | Path = "demo-out",
                       data: str | None = None, split: str | None = None, options: dict | None = None,
                       recipe: str | Path | None = None, log=print) -> dict:
    methods = methods or DEFAULT_METHODS
    seeds = seeds if seeds is not None else [0]
    recipe_dict = load_yaml(recipe) if recipe is not None else DEFAULT_RECIPE
    configs = {}
    for method in methods:  # fail before any expensive work
        for seed in seeds:
            cfg = method_config(method, recipe_dict)
            cfg.setdefault("train", {})["seed"] = seed
            configs[method, seed] = build_config(cfg, f"recipe for {method}")
    bench = build_benchmark(benchmark, data, split, options)
    forget, retain = bench.unlearning_data()
    base, tokenizer = load_model(model)
    t0 = time.perf_counter()
    entries = [{"method": "original", "seed": None, **bench.evaluate(base, tokenizer)["summary"]}]
    log(f"{benchmark}: {len(forget)} forget / {len(retain or [])} retain records; original model evaluated "
        f"({time.perf_counter() - t0:.0f}s)")
    for (method, seed), cfg in configs.items():
        result = unlearn(copy.deepcopy(base), tokenizer, forget, retain, cfg,
                         desc=f"unlearn {method} s{seed}")
        summary = bench.evaluate(result.export(), tokenizer)["summary"]
        entries.append({"method": method, "seed": seed, **summary, "unlearn": result.metrics})
        log(f"{method} seed {seed}: " + ", ".join(f"{k}={_fmt(v)}" for k, v in summary.items()))
    results = {"benchmark": benchmark, "model": str(model), "entries": entries}
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UnlearnError(f"--out {out} is a file, not a directory")
    write_json_atomic(out / "results.json", results)
    write_text_atomic(out / "report.md", render_markdown(results))
    return results
