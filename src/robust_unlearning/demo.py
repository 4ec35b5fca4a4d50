"""``unlearn demo``: the whole story on the embedded world.

Build or load the world, the full model and the gold model; unlearn with each method and seed;
evaluate; attack every result (and gold) with the relearning attack; print a table and write
``results.json`` and ``report.md``.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict
from pathlib import Path

from .attacks.relearn import RelearnConfig, relearn_attack, summarize
from .config import build_config
from .errors import UnlearnError
from .io import load_model, write_json_atomic, write_text_atomic
from .loop import unlearn
from .method import parse_method
from .recipes import load_recipe, method_config
from .sweep import aggregate, largest_budget, model_scores, pm
from .world.benchmark import evaluate, unlearning_data

DEFAULT_METHODS = ["ga", "graddiff", "npo", "simnpo", "rmu"]


def run_demo(methods: list[str] | None = None, seeds: list[int] | None = None, out: str | Path = "demo-out",
             quick: bool = False, attack: RelearnConfig | None = None, recipe: dict | None = None,
             log=print, extras: list[str] | None = None, world: str | None = None) -> dict:
    """``world``: a world name (``world``, ``world-quick``, ``world:seed=2``, …; default ``world``,
    or ``world-quick`` with ``quick``). ``extras``: further cheap attacks/diagnostics per entry
    (``attacks.suite``: quantize, jailbreak, incontext, sharpness, landscape), stored under
    ``attacks.<name>`` / ``diagnostics.<name>``."""
    from .runner import world_bundle, world_spec

    methods = methods or DEFAULT_METHODS
    seeds = seeds if seeds is not None else [0]
    for m in methods:
        parse_method(m)  # fail before any expensive work
    world_name = world or ("world-quick" if quick else "world")
    quick = quick or world_name.startswith("world-quick")
    spec = world_spec(world_name)
    recipe = recipe or load_recipe("world")
    attack = attack or RelearnConfig(**(recipe.get("attack") or {}))
    t0 = time.perf_counter()
    bundle = world_bundle(world_name)
    world = bundle.world
    t_world = time.perf_counter() - t0
    full, tokenizer = load_model(bundle.full_dir)
    gold, _ = load_model(bundle.gold_dir)
    forget, retain = unlearning_data(world)
    entries = []

    def attack_cfg(seed: int) -> RelearnConfig:
        cfg = copy.deepcopy(attack)
        cfg.seeds = [seed * 1000 + s for s in attack.seeds]
        return cfg

    base = {"method": "original", **evaluate(full, tokenizer, world)}
    original = {k: base[k] for k in ("forget_acc", "retain_acc")}
    log(f"world {world_name}: {len(world.persons)} persons, {len(world.forget_eval)} forget-eval facts, "
        f"{len(world.retain_eval)} held-out retain facts; original model forget_acc={base['forget_acc']:.3f} "
        f"retain_acc={base['retain_acc']:.3f} ({t_world:.0f}s to build/load)")
    for seed in seeds:
        rows = relearn_attack(gold, tokenizer, world, attack_cfg(seed), desc=f"relearn gold s{seed}")
        entries.append({"method": "gold", "seed": seed, "original": original,
                        **evaluate(gold, tokenizer, world, details=True),
                        "attacks": {"relearn": summarize(rows), "relearn_runs": rows}})
        _add_extras(entries[-1], gold, tokenizer, world, extras, quick)
    for method in methods:
        for seed in seeds:
            data = method_config(method, recipe)
            data.setdefault("train", {})["seed"] = seed
            cfg = build_config(data, f"recipe for {method}")
            model = copy.deepcopy(full)
            result = unlearn(model, tokenizer, forget, retain, cfg, desc=f"unlearn {method} s{seed}")
            unlearned = result.export()
            scores = evaluate(unlearned, tokenizer, world, details=True)
            rows = relearn_attack(unlearned, tokenizer, world, attack_cfg(seed),
                                  desc=f"relearn {method} s{seed}")
            m = result.metrics
            budget = {k: m[k] for k in ("forget_samples", "retain_samples", "passes", "steps", "seconds")}
            entries.append({"method": method, "seed": seed, "original": original, **scores, "unlearn": m,
                            "budget": budget,
                            "attacks": {"relearn": summarize(rows), "relearn_runs": rows}})
            _add_extras(entries[-1], unlearned, tokenizer, world, extras, quick)
            log(f"{method} seed {seed}: forget_acc={scores['forget_acc']:.3f} "
                f"retain_acc={scores['retain_acc']:.3f} ({m['seconds']:.1f}s)")
    summary = summarize_entries(entries, attack.budgets)
    results = {
        "world_name": world_name, "world": asdict(spec), "original": base, "attack": asdict(attack),
        "seeds": seeds, "entries": entries, "summary": summary, "seconds": round(time.perf_counter() - t0, 1),
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "results.json", results)
    write_text_atomic(out / "report.md", render_markdown(results))
    log(render_table(results))
    return results


def _add_extras(entry: dict, model, tokenizer, world, extras: list[str] | None, quick: bool) -> None:
    if extras:
        from .attacks.suite import run_extras

        attacks, diagnostics = run_extras(model, tokenizer, world, extras, quick=quick)
        entry["attacks"].update(attacks)
        if diagnostics:
            entry["diagnostics"] = diagnostics


def summarize_entries(entries: list[dict], budgets) -> list[dict]:
    """Per method: mean ± std over seeds of accuracies, held-out utility, post-attack accuracy, the
    knowledge gap to gold (|acc − acc_gold|, same draw) and KS distance, recovery and budget; the
    spread over attack draws is kept apart (``gap_draw_std``)."""
    last = largest_budget(budgets)
    gold_by_seed = {e["seed"]: {"relearn_runs": e["attacks"]["relearn_runs"]}
                    for e in entries if e["method"] == "gold"}
    out = []
    for method in dict.fromkeys(e["method"] for e in entries):
        es = [e for e in entries if e["method"] == method and e["seed"] in gold_by_seed]
        if not es:
            continue
        scores = [model_scores({**e, "relearn_runs": e["attacks"]["relearn_runs"]}, gold_by_seed[e["seed"]],
                               last) for e in es]
        out.append({"method": method, "seeds": len(es), **aggregate(scores)})
    return out


def table_rows(results: dict) -> tuple[list[str], list[list[str]]]:
    budgets = [tuple(b) for b in results["attack"]["budgets"]]
    head = ["method", "forget acc", "held-out retain", "held-out NLL"]
    head += [f"after {k}×{s}" for k, s in budgets]
    k, s = largest_budget(budgets)
    head += [f"gap @ {k}×{s} (↓)", "draw std", "KS (↓)", "recovery", "forget samples", "passes"]
    rows = []
    for r in results["summary"]:
        cells = [r["method"], pm(r.get("forget_acc"), r.get("forget_acc_seed_std")),
                 pm(r.get("retain_acc"), r.get("retain_acc_seed_std")),
                 pm(r.get("utility_nll"), r.get("utility_nll_seed_std"))]
        by = {(b["samples"], b["steps"]): b for b in r["budgets"]}
        cells += [pm(by[b].get("forget_acc"), by[b].get("forget_acc_seed_std")) if b in by else "–"
                  for b in budgets]
        cells += [pm(r.get("gap"), r.get("gap_seed_std")), pm(r.get("gap_draw_std"), None),
                  pm(r.get("ks"), r.get("ks_seed_std")),
                  pm(r.get("recovery"), r.get("recovery_seed_std"), 2),
                  pm(r.get("forget_samples"), None, 0), pm(r.get("passes"), None, 0)]
        rows.append(cells)
    return head, rows


def render_table(results: dict) -> str:
    head, rows = table_rows(results)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths]), *map(line, rows)])


def render_markdown(results: dict) -> str:
    head, rows = table_rows(results)
    att = results["attack"]
    n_draws = len(att["seeds"])
    lines = [
        f"# Relearning robustness on the embedded world ({results.get('world_name', 'world')})", "",
        f"Seeds: {results['seeds']} (± is the std over unlearning seeds; 'draw std' the mean std over "
        f"attack draws of one model). Relearning attack: AdamW lr {att['lr']}, batch {att['batch_size']}, "
        f"{n_draws} draws of the relearn pool per budget (samples × steps); accuracy is 4-option MCQ "
        "(chance 0.25) on forget facts the attacker never saw. The gold model was never trained on the "
        "forget persons. Gap = |post-attack forget acc − gold's| on the same draw (lower is better; "
        "forgetting below gold counts against a method as much as remembering above it); KS = distance "
        "between the per-item correct-option probabilities of the model and of gold; recovery = "
        "(post − pre) / (original − pre). Held-out retain: facts and biographies (NLL) of retain persons "
        "that unlearning never trained on.", "",
        f"Original model: forget acc {results['original']['forget_acc']:.3f}, "
        f"held-out retain acc {results['original']['retain_acc']:.3f}.", "",
        "| " + " | ".join(head) + " |", "|" + "---|" * len(head),
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += ["", f"Total time: {results['seconds']} s.", ""]
    return "\n".join(lines)


def parse_seeds(text: str) -> list[int]:
    text = str(text).strip()
    try:
        if "," in text:
            return [int(x) for x in text.split(",") if x.strip()]
        n = int(text)
    except ValueError as exc:
        raise UnlearnError(f"--seeds takes a count (3) or a list (0,1,2), not {text!r}") from exc
    if n < 1:
        raise UnlearnError("--seeds must be at least 1")
    return list(range(n))


def attack_overrides(budgets: list[tuple[int, int]] | None = None, lr: float | None = None,
                     seeds: list[int] | None = None) -> dict:
    """The relearning attack's settings given on the command line (``None``: not given), to lay
    over the recipe's or the config class's defaults."""
    given = {"budgets": budgets, "lr": lr, "seeds": seeds}
    return {k: v for k, v in given.items() if v is not None}


def parse_budgets(text: str) -> list[tuple[int, int]]:
    out = []
    for part in str(text).split(","):
        try:
            k, s = part.lower().split("x")
            out.append((int(k), int(s)))
        except ValueError as exc:
            raise UnlearnError(f"a budget is SAMPLESxSTEPS (e.g. 20x5), not {part!r}") from exc
    return out
