"""``unlearn demo --benchmark tofu|muse-news|muse-books|wmdp --model DIR``: the demo's comparison on a
standard benchmark's data.

Load the model, evaluate it, unlearn it with each method and seed on the benchmark's forget / retain
data, and evaluate every result with the benchmark's full report; write ``results.json`` (every
metric) and ``report.md`` (the summary table). Method settings come from a recipe in the format of
``recipes/world.yaml`` (``--recipe FILE``), by default :data:`DEFAULT_RECIPE`, which follows the
papers' orders of magnitude (lr 1e-5, batch 4, 5 epochs; NPO β 0.1) for 7B-class models.

Every unlearned model is then attacked: the relearning attack on the benchmark's forget records
(:mod:`..attacks.relearn_benchmark`: held-out forget NLL and the benchmark's metrics after each
budget), plus any of ``extras`` (quantize, jailbreak, sharpness, landscape). ``gold``: a model that
never learnt the forget set (TOFU's retain-only model, MUSE's retrain model), evaluated and attacked
the same way as method ``gold``: the floor. ``attack=None`` skips the relearning attack.
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


def _relearn_cell(entry: dict, budget: tuple[int, int]) -> str:
    for r in (entry.get("attacks") or {}).get("benchmark_relearn") or []:
        if (r["samples"], r["steps"]) == budget:
            return _fmt(r.get("heldout_forget_nll"))
    return ""


def render_markdown(results: dict) -> str:
    rows = results["entries"]
    keys = [k for k in rows[0] if k not in ("method", "seed", "unlearn", "attacks", "diagnostics")]
    budgets = sorted({(r["samples"], r["steps"]) for e in rows
                      for r in (e.get("attacks") or {}).get("benchmark_relearn") or []})
    shown = [b for b in budgets if b[1] == 0][-1:] + budgets[-1:]  # unattacked and the largest budget
    head = keys + [f"held-out forget NLL @ {k}×{st}" for k, st in shown]
    lines = [f"# {results['benchmark']} — {results['model']}", "",
             "| method | seed | " + " | ".join(head) + " |", "|" + "---|" * (len(head) + 2)]
    for r in rows:
        cells = [r["method"], _fmt(r.get("seed"))] + [_fmt(r.get(k)) for k in keys]
        cells += [_relearn_cell(r, b) for b in shown]
        lines.append("| " + " | ".join(cells) + " |")
    if budgets:
        lines += ["", "Relearning: fine-tune on k forget records for s steps (mean over draws); held-out "
                  "forget NLL is the per-token NLL of forget records the attacker did not see (lower: more "
                  "came back). `unlearn report` on this directory shows every budget and metric."]
    return "\n".join(lines) + "\n"


def run_benchmark_demo(benchmark: str, model: str | Path, methods: list[str] | None = None,
                       seeds: list[int] | None = None, out: str | Path = "demo-out",
                       data: str | None = None, split: str | None = None, options: dict | None = None,
                       recipe: str | Path | None = None, log=print, attack=None,
                       extras: list[str] | None = None, gold: str | Path | None = None) -> dict:
    """``attack``: a :class:`~..attacks.relearn_benchmark.BenchmarkRelearnConfig` (None: no relearning
    attack); ``extras``: further attacks / diagnostics by name; ``gold``: the floor model."""
    from ..attacks.relearn import summarize
    from ..attacks.relearn_benchmark import relearn_benchmark
    from ..attacks.suite import run_benchmark_extras

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
    if attack is not None:
        try:
            attack.check_pool(len(forget))
        except ValueError as exc:
            raise UnlearnError(f"{exc}; set --budgets") from exc
    if "jailbreak" in (extras or []):
        bench.attack_items()  # a benchmark without forget questions fails before any training
    base, tokenizer = load_model(model)
    if gold is not None:
        from ..io import check_model_path

        check_model_path(gold)

    def attack_all(m, label: str) -> dict:
        out: dict = {}
        if attack is not None:
            rows = relearn_benchmark(m, tokenizer, forget, attack, bench, desc=f"relearn {label}")
            out["attacks"] = {"benchmark_relearn": summarize(rows)}
        if extras:
            try:
                atk, diag = run_benchmark_extras(m, tokenizer, bench, extras)
            except ValueError as exc:
                raise UnlearnError(str(exc)) from exc
            out.setdefault("attacks", {}).update(atk)
            if diag:
                out["diagnostics"] = diag
        return out

    t0 = time.perf_counter()
    entries = [{"method": "original", "seed": None, **bench.evaluate(base, tokenizer)["summary"]}]
    log(f"{benchmark}: {len(forget)} forget / {len(retain or [])} retain records; original model evaluated "
        f"({time.perf_counter() - t0:.0f}s)")
    for (method, seed), cfg in configs.items():
        result = unlearn(copy.deepcopy(base), tokenizer, forget, retain, cfg,
                         desc=f"unlearn {method} s{seed}")
        unlearned = result.export()
        summary = bench.evaluate(unlearned, tokenizer)["summary"]
        entries.append({"method": method, "seed": seed, **summary, "unlearn": result.metrics,
                        **attack_all(unlearned, f"{method} s{seed}")})
        log(f"{method} seed {seed}: " + ", ".join(f"{k}={_fmt(v)}" for k, v in summary.items()))
        del unlearned
    if gold is not None:
        g, gtok = load_model(gold)
        if gtok.get_vocab() != tokenizer.get_vocab():
            raise UnlearnError(f"the gold model {gold} has another tokenizer than {model}")
        summary = bench.evaluate(g, tokenizer)["summary"]
        entries.append({"method": "gold", "seed": None, **summary, **attack_all(g, "gold")})
        log("gold: " + ", ".join(f"{k}={_fmt(v)}" for k, v in summary.items()))
    results = {"benchmark": benchmark, "model": str(model), "entries": entries}
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UnlearnError(f"--out {out} is a file, not a directory")
    write_json_atomic(out / "results.json", results)
    write_text_atomic(out / "report.md", render_markdown(results))
    return results
