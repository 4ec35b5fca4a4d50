"""``unlearn demo``: the whole story on one benchmark, the embedded world or a standard one.

Load the model (the world's full model, or ``--model``) and the gold model (the world's, or
``--gold-model``: a model that never learnt the forget set); unlearn with each method and seed on the
benchmark's forget / retain data (settings from the benchmark's recipe, ``recipes/*.yaml``);
evaluate every result; attack it and gold with the relearning attack — the same draws for both at
each seed — plus any of ``extras`` (:mod:`.attacks.suite`); write ``results.json`` and ``report.md``
(one row per method, mean ± std over seeds: :meth:`Benchmark.demo_table`) and print the table.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import torch

from .config import build_config
from .errors import UnlearnError
from .io import load_model, write_json_atomic, write_text_atomic
from .loop import unlearn
from .parallel import default_workers, run_jobs
from .recipes import method_config


def run_demo(bench, methods: list[str] | None = None, seeds: list[int] | None = None,
             out: str | Path = "demo-out", model=None, gold=None, recipe: dict | None = None, attack=None,
             extras: list[str] | None = None, log=print, workers: int | None = None) -> dict:
    """``bench``: a :class:`~.benchmarks.Benchmark`; ``model`` / ``gold``: the model to unlearn and the
    floor (default: the benchmark's own); ``attack``: the relearning attack's settings (default: the
    recipe's); ``extras``: further attacks / diagnostics by name; ``workers``: processes that run
    the (method, seed) jobs and the gold attacks side by side (:mod:`.parallel`; default
    :func:`~.parallel.default_workers`)."""
    recipe = recipe if recipe is not None else bench.recipe()
    methods = methods or recipe.get("demo_methods") or bench.recipe().get("demo_methods")
    seeds = seeds if seeds is not None else [0]
    attack = attack if attack is not None else bench.relearn_config({}, recipe=recipe)
    configs = _method_configs(methods, seeds, recipe)  # bad methods fail before any expensive work
    t0 = time.perf_counter()
    base_path = model if model is not None else bench.default_model()
    if base_path is None:
        raise UnlearnError(f"--benchmark {bench.name} needs --model (the model to unlearn)")
    _check(bench, attack, extras)
    gold_path = bench.floor_model(True, gold)
    jobs = [("gold", seed) for seed in (seeds if gold_path is not None else [])] + list(configs)
    if workers is None:
        workers = default_workers(len(jobs), _parameters(base_path))

    setup = partial(_setup, bench, str(base_path), None if gold_path is None else str(gold_path), attack,
                    extras, configs)
    here: dict = {}

    def setup_here() -> _State:
        """A worker's state, plus the original model's scores and the first line: in this process,
        while the workers start."""
        st = setup()
        here["original"] = {"method": "original", **bench.demo_scores(st.base, st.tokenizer, details=False)}
        log(f"{bench.describe()}; original model " + _fmt(_headline(bench, here["original"])) +
            f" ({time.perf_counter() - t0:.0f}s)")
        return st

    def done(_, answer: tuple) -> None:
        if answer[1]:
            log(answer[1])

    answers = run_jobs(_job, setup, jobs, workers, done, setup_here=setup_here)
    original = here["original"]
    headline = _headline(bench, original)
    entries = [{"method": e["method"], "seed": e["seed"], "original": headline, **e} for e, _ in answers]
    results = {**bench.demo_header(base_path), "original": original, "attack": asdict(attack), "seeds": seeds,
               "entries": entries, "summary": bench.demo_summary(entries, attack.budgets),
               "seconds": round(time.perf_counter() - t0, 1)}
    _write(bench, Path(out), results)
    log(render_table(bench, results))
    return results


@dataclass
class _State:
    """What every job of one process reads: the benchmark, the models, the attack."""

    bench: object
    base: object
    tokenizer: object
    floor: object
    forget: list
    retain: list
    attack: object
    extras: list | None
    configs: dict

    def attacked(self, m, label: str, seed: int, fields: dict) -> dict:
        rows = self.bench.relearn(m, self.tokenizer, _draws(self.attack, seed),
                                  desc=f"relearn {label} s{seed}")
        entry = {**fields, "attacks": self.bench.relearn_attacks(rows)}
        _add_extras(entry, m, self.tokenizer, self.bench, self.extras)
        return entry


def _setup(bench, base_path: str, gold_path: str | None, attack, extras, configs: dict) -> _State:
    """A process's state: the models loaded from their paths (the gold model refused when its
    tokenizer differs)."""
    base, tokenizer = load_model(base_path)
    floor = _load_floor(gold_path, tokenizer, base_path)
    forget, retain = bench.unlearning_data()
    return _State(bench, base, tokenizer, floor, forget, retain, attack, extras, configs)


def _job(st: _State, job: tuple) -> tuple[dict, str | None]:
    """One gold attack (``("gold", seed)``) or one method run (``(method, seed)``): its results entry
    (without the original model's scores, which the caller adds) and the line to print."""
    bench, tokenizer = st.bench, st.tokenizer
    name, seed = job
    if name == "gold":
        fields = {"method": "gold", "seed": seed, **bench.demo_scores(st.floor, tokenizer)}
        return st.attacked(st.floor, "gold", seed, fields), None
    result = unlearn(copy.deepcopy(st.base), tokenizer, st.forget, st.retain, st.configs[name, seed],
                     desc=f"unlearn {name} s{seed}")
    unlearned = result.export()
    scores = bench.demo_scores(unlearned, tokenizer)
    m = result.metrics
    budget = {k: m[k] for k in ("forget_samples", "retain_samples", "passes", "steps", "seconds")}
    fields = {"method": name, "seed": seed, **scores, "unlearn": m, "budget": budget}
    entry = st.attacked(unlearned, name, seed, fields)
    return entry, f"{name} seed {seed}: {_fmt(_headline(bench, scores))} ({m['seconds']:.1f}s)"


def _method_configs(methods: list[str], seeds: list[int], recipe: dict) -> dict:
    configs = {}
    for method in methods:
        for seed in seeds:
            data = method_config(method, recipe)
            data.setdefault("train", {})["seed"] = seed
            configs[method, seed] = build_config(data, f"recipe for {method}")
    return configs


def _check(bench, attack, extras: list[str] | None) -> None:
    """Data the attacks need fails before a model is loaded."""
    try:
        bench.check_relearn(attack)
    except UnlearnError as exc:
        raise UnlearnError(f"{exc}; set --budgets") from exc
    if "jailbreak" in (extras or []):
        bench.attack_items()  # a benchmark without forget questions fails before any training


def _parameters(path) -> int:
    """The model's parameter count from its config, without loading the weights (0 if unknown)."""
    try:
        from transformers import AutoConfig, AutoModelForCausalLM

        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(str(path)))
        return sum(p.numel() for p in model.parameters())
    except Exception:  # noqa: BLE001 (a GGUF file, an unknown architecture: count it as large)
        return 10 ** 12


def _load_floor(path, tokenizer, base_path):
    if path is None:
        return None
    floor, ftok = load_model(path)
    if ftok.get_vocab() != tokenizer.get_vocab():
        raise UnlearnError(f"the gold model {path} has another tokenizer than {base_path}")
    return floor


def _draws(attack, seed: int):
    """The attack of unlearning seed ``seed``: its own draws, the same for every model of that seed."""
    cfg = copy.deepcopy(attack)
    cfg.seeds = [seed * 1000 + s for s in attack.seeds]
    return cfg


def _headline(bench, scores: dict) -> dict:
    keys = bench.LINE_KEYS or [k for k, v in scores.items() if isinstance(v, (int, float)) and k != "seed"]
    return {k: scores[k] for k in keys if k in scores}


def _fmt(scores: dict) -> str:
    return " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in scores.items())


def _add_extras(entry: dict, model, tokenizer, bench, extras: list[str] | None) -> None:
    if extras:
        from .attacks.suite import run_extras

        try:
            attacks, diagnostics = run_extras(model, tokenizer, bench, extras)
        except ValueError as exc:
            raise UnlearnError(str(exc)) from exc
        entry["attacks"].update(attacks)
        if diagnostics:
            entry["diagnostics"] = diagnostics


def _write(bench, out: Path, results: dict) -> None:
    if out.exists() and not out.is_dir():
        raise UnlearnError(f"--out {out} is a file, not a directory")
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "results.json", results)
    write_text_atomic(out / "report.md", render_markdown(bench, results))


def render_table(bench, results: dict) -> str:
    head, rows = bench.demo_table(results)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths]), *map(line, rows)])


def render_markdown(bench, results: dict) -> str:
    head, rows = bench.demo_table(results)
    lines = [*bench.demo_intro(results), "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += ["", f"Total time: {results['seconds']} s.", ""]
    return "\n".join(lines)
