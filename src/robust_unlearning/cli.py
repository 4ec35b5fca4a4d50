"""The ``unlearn`` command line (typer).

    unlearn demo [--quick] [--methods npo,npo+sam] [--seeds 3] [--out DIR]
    unlearn run CONFIG.yaml [key=value ...] [--resume]
    unlearn eval --model DIR [--benchmark world]
    unlearn attack relearn --model DIR [--budgets 20x5,40x10] [--lora-rank 8]
    unlearn attack quantize|jailbreak|incontext --model DIR ...   (cli_attacks.py)
    unlearn diagnose --model DIR [--what sharpness,landscape]
    unlearn report RUN_DIR [RUN_DIR ...] [--out DIR]
    unlearn methods
    unlearn models [--convert smollm2-135m]

Every user error prints one line ``error: ...`` on stderr and exits with code 2.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import List

import typer

from .errors import UnlearnError
from .placement import BatchSizeOption, DeviceOption, DtypeOption, configure
from .progress import add_quiet_option


def is_world(name: str | None) -> bool:
    from .runner import is_world as check

    return check(name)

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Remove knowledge from a causal LM so that it stays removed.")
attack_app = typer.Typer(no_args_is_help=True, help="Attacks that try to bring forgotten knowledge back.")
app.add_typer(attack_app, name="attack")
add_quiet_option(app)  # unlearn --quiet COMMAND


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (a message from a library may span several)."""
    return " ".join(ln.strip() for ln in str(exc).splitlines() if ln.strip()) or type(exc).__name__


def _fail(exc: Exception) -> None:
    typer.echo(f"error: {one_line(exc)}", err=True)
    raise typer.Exit(getattr(exc, "exit_code", 2))


@app.command()
def demo(
    methods: str = typer.Option(None, help="Comma-separated methods (default: ga,graddiff,npo,simnpo,rmu)."),
    seeds: str = typer.Option("1", help="A count (3) or a list of seeds (0,1,2)."),
    out: Path = typer.Option(Path("demo-out"), help="Where results.json and report.md go."),
    quick: bool = typer.Option(False, "--quick", help="A smaller world and model (about a minute)."),
    budgets: str = typer.Option(None, help="Relearning budgets SAMPLESxSTEPS, comma-separated."),
    attack_lr: float = typer.Option(None, help="Learning rate of the relearning attack."),
    draws: int = typer.Option(None, help="Draws of the relearn set per budget."),
    attacks: str = typer.Option("relearn", help="Attacks/diagnostics per model: relearn (always) plus any of "
                                "quantize, jailbreak, incontext, sharpness, landscape."),
    benchmark: str = typer.Option("world", help="world, or tofu, muse-news, muse-books, wmdp (+ --model)."),
    model: str | None = typer.Option(None, help="Standard benchmarks: the model to unlearn."),
    data: Path | None = typer.Option(None, help="Standard benchmarks: local data (default: the hub)."),
    split: str | None = typer.Option(None, help="Standard benchmarks: tofu forget10, wmdp bio,cyber, ..."),
    recipe_file: Path | None = typer.Option(None, "--recipe", help="Standard benchmarks: method recipe."),
    gold_model: str | None = typer.Option(
        None, "--gold-model", help="Standard benchmarks: a model that never learnt the forget set (TOFU's "
                                   "retain-only, MUSE's retrain model), evaluated and attacked as 'gold'."),
    option: List[str] | None = typer.Option(
        None, "--option", "-o", help="Standard benchmarks: further benchmark option key=value (repeatable)."),
):
    """Build the world, unlearn with several methods, attack them, and compare with the gold model."""
    from .attacks.relearn import RelearnConfig
    from .demo import attack_overrides, parse_budgets, parse_seeds, run_demo
    from .recipes import load_recipe, recipe_attack

    try:
        if draws is not None and draws < 1:
            raise UnlearnError("--draws must be at least 1")
        given = attack_overrides(parse_budgets(budgets) if budgets else None, attack_lr,
                                 list(range(draws)) if draws is not None else None)
        if not is_world(benchmark):
            from .attacks.relearn_benchmark import BenchmarkRelearnConfig
            from .attacks.suite import parse_extras
            from .benchmarks.demo import run_benchmark_demo

            if model is None:
                raise UnlearnError(f"--benchmark {benchmark} needs --model (the model to unlearn)")
            method_list = [m.strip() for m in methods.split(",") if m.strip()] if methods else None
            try:
                relearn_cfg = BenchmarkRelearnConfig(**given)
                extras = parse_extras(attacks)
            except ValueError as exc:
                raise UnlearnError(str(exc)) from exc
            if "incontext" in extras:
                raise UnlearnError("the in-context attack runs on the world only (it needs persons' facts)")
            from .config import parse_overrides

            run_benchmark_demo(benchmark, model, method_list, parse_seeds(seeds), out, data, split,
                               options=parse_overrides(option or []), recipe=recipe_file, log=typer.echo,
                               attack=relearn_cfg, extras=extras, gold=gold_model)
            return
        quick = quick or benchmark.startswith("world-quick")
        recipe = load_recipe("world")
        att = {**recipe_attack(recipe, quick), **given}  # the command line overrides the recipe
        method_list = [m.strip() for m in methods.split(",") if m.strip()] if methods else None
        if methods is not None and not method_list:
            raise UnlearnError("--methods is empty")
        from .attacks.suite import parse_extras

        try:
            extras = parse_extras(attacks)
        except ValueError as exc:
            raise UnlearnError(str(exc)) from exc
        world = benchmark if benchmark != "world" or not quick else "world-quick"
        run_demo(method_list, parse_seeds(seeds), out, world=world, attack=RelearnConfig(**att),
                 recipe=recipe, log=typer.echo, extras=extras)
    except UnlearnError as exc:
        _fail(exc)


@app.command()
def run(config: Path = typer.Argument(..., help="YAML config of the experiment."),
        overrides: List[str] | None = typer.Argument(None, help="key.sub=value overrides."),
        resume: bool = typer.Option(False, "--resume", help="Continue from the newest checkpoint "
                                    "(train.checkpoint_every) of an interrupted run of this config.")):
    """Unlearn a model on forget/retain data (or a named benchmark) and save it.

    Several processes: torchrun --nproc_per_node N -m robust_unlearning.cli run CONFIG, or
    accelerate launch --config_file configs/accelerate/ddp.yaml -m robust_unlearning.cli run CONFIG."""
    from .runner import run_config

    try:
        out = run_config(config, overrides or [], log=typer.echo, resume=resume)
        typer.echo(f"saved to {out}")
    except UnlearnError as exc:
        _fail(exc)


@app.command("eval")
def eval_cmd(model: Path = typer.Option(..., help="A saved model directory."),
             benchmark: str = typer.Option(
                 "world", help="world, world-quick, tofu, muse-news, muse-books or wmdp."),
             generation: bool = typer.Option(False, help="World: also score greedy exact match."),
             data: Path | None = typer.Option(
                 None, help="Local benchmark data: a file or a directory (default: the hub)."),
             split: str | None = typer.Option(
                 None, help="tofu: forget01/05/10; wmdp: bio, cyber or bio,cyber."),
             reference: str | None = typer.Option(
                 None, help="tofu: the retain-only model's directory or its saved report (forget quality); "
                            "muse: the retrain model's directory or its Min-K AUC (PrivLeak)."),
             limit: int | None = typer.Option(None, help="At most this many examples per evaluation set."),
             option: List[str] | None = typer.Option(
                 None, "--option", "-o", help="Further benchmark option key=value (repeatable)."),
             out: Path | None = typer.Option(None, help="Write the metrics JSON (every metric) here."),
             device: DeviceOption = None, dtype: DtypeOption = None, batch_size: BatchSizeOption = None):
    """Score a saved model on a benchmark; print the summary, write every metric to --out."""
    from .benchmarks import build_benchmark
    from .config import parse_overrides
    from .io import load_model, write_json_atomic

    try:
        configure(device, dtype)
        opts = parse_overrides(option or [])
        if batch_size is not None:
            opts["batch_size"] = batch_size
        if is_world(benchmark):
            opts["generation"] = generation
        if reference is not None:
            opts["reference"] = reference
        if limit is not None:
            opts["limit"] = limit
        bench = build_benchmark(benchmark, data, split, opts)
        bench.prepare()  # bad data fails before the model is loaded
        m, tok = load_model(model)
        report = bench.evaluate(m, tok)
        summary = report["summary"]
        metrics = {"model": str(model), "benchmark": benchmark, **report}
        if out:
            write_json_atomic(out, metrics)
        typer.echo(json.dumps({"model": str(model), "benchmark": benchmark, **summary}, indent=2))
    except UnlearnError as exc:
        _fail(exc)


@attack_app.command("relearn")
def attack_relearn(
    model: Path = typer.Option(..., help="A saved (unlearned) model directory."),
    benchmark: str = typer.Option(
        "world", help="world, world-quick, tofu, muse-news, muse-books or wmdp (relearn on its forget "
                      "set; scored on held-out forget NLL and the benchmark's metrics)."),
    budgets: str | None = typer.Option(
        None, help="SAMPLESxSTEPS, comma-separated (default: the recipe's, 20x10,40x40,40x100 on world "
                   "and 8x10,16x40 on world-quick; 20x10,20x30,40x30 elsewhere)."),
    lr: float | None = typer.Option(None, help="AdamW learning rate of the attacker (default: the "
                                                "recipe's, 1e-3, on the world; 1e-5 elsewhere)."),
    seeds: str | None = typer.Option(None, help="Draws of the relearn set, a count or a list (default: "
                                                "the recipe's, 0,1,2 on world and 0,1 on world-quick)."),
    form: str = typer.Option("qa", help="World: relearn on 'qa' pairs or 'bio' sentences."),
    lora_rank: int = typer.Option(
        0, help="Relearn through LoRA adapters of this rank (0: full fine-tuning)."),
    gold: bool = typer.Option(True, help="World: attack the gold model too (the floor)."),
    gold_model: Path | None = typer.Option(
        None, "--gold-model", help="Other benchmarks: a model that never learnt the forget set (TOFU's "
                                   "retain-only, MUSE's retrain model), attacked the same way: the floor."),
    forget: Path | None = typer.Option(
        None, help="Your own forget JSONL ({\"text\"} or {\"question\", \"answer\"}) instead of a "
                   "benchmark: relearn on it, scored on held-out forget NLL."),
    data: Path | None = typer.Option(None, help="Local benchmark data (default: the hub)."),
    split: str | None = typer.Option(None, help="tofu: forget01/05/10; wmdp: bio, cyber or bio,cyber."),
    option: List[str] | None = typer.Option(
        None, "--option", "-o", help="Further benchmark option key=value (repeatable)."),
    metrics: bool = typer.Option(True, help="Other benchmarks: also the benchmark's own metrics after "
                                            "every budget (--no-metrics: held-out forget NLL only)."),
    out: Path | None = typer.Option(None, help="Write the results JSON here."),
    device: DeviceOption = None,
    dtype: DtypeOption = None,
):
    """Fine-tune on a few forget samples and measure how much forgotten knowledge comes back."""
    from .attacks.relearn import RelearnConfig, relearn_attack, summarize
    from .cli_attacks import check_world, relearn_on_benchmark
    from .demo import attack_overrides, parse_budgets, parse_seeds
    from .io import load_model, write_json_atomic
    from .recipes import load_recipe, recipe_attack
    from .runner import world_bundle

    try:
        configure(device, dtype)
        given = attack_overrides(parse_budgets(budgets) if budgets is not None else None, lr,
                                 parse_seeds(seeds) if seeds is not None else None)
        if forget is not None or not is_world(benchmark):
            relearn_on_benchmark(model, None if forget is not None and benchmark == "world" else benchmark,
                                 forget, data, split, option, given, form, lora_rank, gold_model, metrics,
                                 out)
            return
        check_world(benchmark)
        att = {**recipe_attack(load_recipe("world"), benchmark.startswith("world-quick")), **given}
        try:
            cfg = RelearnConfig(**{**att, "form": form, "lora_rank": lora_rank})
        except ValueError as exc:
            raise UnlearnError(str(exc)) from exc
        m, tok = load_model(model)  # a bad model directory fails before the world is built
        bundle = world_bundle(benchmark)
        try:
            rows = relearn_attack(m, tok, bundle.world, cfg)
            result = {"model": str(model), "benchmark": benchmark, "relearn": summarize(rows), "runs": rows}
            if gold:
                g, _ = load_model(bundle.gold_dir)
                grows = relearn_attack(g, tok, bundle.world, cfg, desc="relearn gold")
                result["gold"] = summarize(grows)
                gold_acc = {(r["samples"], r["steps"]): r["forget_acc"] for r in result["gold"]}
                for r in result["relearn"]:
                    r["gap"] = r["forget_acc"] - gold_acc[(r["samples"], r["steps"])]
        except ValueError as exc:
            raise UnlearnError(str(exc)) from exc
        # the same curves in the format `unlearn report` reads
        name = "relearn_lora" if lora_rank else "relearn"
        result["entries"] = [{"method": Path(model).name or str(model), "seed": 0,
                              "attacks": {name: result["relearn"]}}]
        if gold:
            result["entries"].append({"method": "gold", "seed": 0, "attacks": {name: result["gold"]}})
        if out:
            write_json_atomic(out, result)
        for r in result["relearn"]:
            gap = f"  gap {r['gap']:+.3f}" if "gap" in r else ""
            typer.echo(f"{r['samples']:>4} samples × {r['steps']:>3} steps: forget_acc "
                       f"{r['forget_acc']:.3f} ± {r['forget_acc_std']:.3f}  "
                       f"retain_acc {r['retain_acc']:.3f}{gap}")
    except UnlearnError as exc:
        _fail(exc)


@app.command()
def sweep(
    plan: Path = typer.Argument(..., help="Sweep plan YAML (configs/world/frontier.yaml is the project's)."),
    out: Path = typer.Option(Path("sweep-out"), "--out", "-o", help="Directory for rows.jsonl, summary.json, "
                             "summary.md and frontier.png; a rerun resumes."),
    phase: str = typer.Option("all", help="tune, eval, all, or analyze (summarise the rows already there)."),
    workers: int = typer.Option(1, help="Jobs run in parallel processes."),
    threads: int = typer.Option(0, help="Torch threads per job (0: torch's default; 1 with several "
                                "workers)."),
    device: str | None = typer.Option(None, help="Place the world models here (cpu, cuda); default: as "
                                      "loaded."),
):
    """Utility-robustness frontiers: tune every method's candidates on the tuning world, pick one per
    method by the fixed rule, run every candidate on the evaluation worlds over seeds, attack each and
    gold with the same draws, and summarise (docs/protocol.md)."""
    from .sweep import analyze, load_plan, run_sweep

    try:
        if phase not in ("tune", "eval", "all", "analyze"):
            raise UnlearnError(f"--phase must be tune, eval, all or analyze, not {phase!r}")
        if workers < 1 or threads < 0:
            raise UnlearnError("--workers must be >= 1 and --threads >= 0")
        p = load_plan(plan)
        if phase == "analyze":
            if not (out / "rows.jsonl").exists():
                raise UnlearnError(f"no rows to analyse: {out / 'rows.jsonl'} does not exist")
            analyze(p, out, log=typer.echo)
            return
        phases = ("tune", "eval") if phase == "all" else (phase,)
        run_sweep(p, out, phases, workers=workers, threads=threads or (1 if workers > 1 else 0),
                  device=device, log=typer.echo)
    except UnlearnError as exc:
        _fail(exc)


@app.command()
def methods():
    """List the objectives, strategies and parameterizations a method can combine."""
    from .objectives.base import OBJECTIVES
    from .parameterizations.base import PARAMETERIZATIONS
    from .strategies.base import STRATEGIES

    typer.echo("a method is objective[+strategy][+parameterization]")
    typer.echo(f"objectives:        {', '.join(OBJECTIVES.names())}")
    typer.echo(f"strategies:        {', '.join(STRATEGIES.names())}")
    typer.echo(f"parameterizations: {', '.join(PARAMETERIZATIONS.names())}")


@app.command()
def models(convert: str = typer.Option(None, help="Convert this named model into the cache now.")):
    """List the named models (usable as model: / --model / --gold-model) and where they are cached."""
    from .models import ensure_model, list_models, models_root

    try:
        if convert:
            typer.echo(f"{convert}: {ensure_model(convert, log=typer.echo)}")
        typer.echo(f"cache: {models_root()}  (set ROBUST_UNLEARNING_CACHE to move it)")
        for row in list_models():
            state = ("converted" if row["converted"] else "converted on first use") if row["installed"] \
                else f"not installed: {row['install']}"
            typer.echo(f"{row['name']}: {row['description']}")
            typer.echo(f"    {state}; {row['path']}")
    except UnlearnError as exc:
        _fail(exc)


from .cli_attacks import register as _register_attack_commands  # noqa: E402

_register_attack_commands(app, attack_app, _fail)


DEBUG_ENV = "ROBUST_UNLEARNING_DEBUG"


def main() -> None:
    """The console entry point: user errors exit 2 with one line; anything else is a bug, reported
    on one line with exit code 1 (``ROBUST_UNLEARNING_DEBUG=1`` shows its traceback)."""
    try:
        app()
    except UnlearnError as exc:  # pragma: no cover - commands catch their own
        print(f"error: {one_line(exc)}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        if os.environ.get(DEBUG_ENV) == "1":
            raise
        print(f"error: internal error, a bug in robust_unlearning ({type(exc).__name__}: {one_line(exc)}); "
              f"set {DEBUG_ENV}=1 for the traceback", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
