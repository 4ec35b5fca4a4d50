"""The ``unlearn`` command line (typer).

    unlearn demo [--quick] [--methods npo,npo+sam] [--seeds 3] [--out DIR]
    unlearn run CONFIG.yaml [key=value ...] [--resume]
    unlearn eval --model DIR [--benchmark world]
    unlearn attack relearn|quantize|jailbreak|incontext --model DIR ...   (cli_attacks.py)
    unlearn diagnose --model DIR [--what sharpness,landscape]              (cli_attacks.py)
    unlearn report RUN_DIR [RUN_DIR ...] [--out DIR]                       (cli_attacks.py)
    unlearn sweep PLAN.yaml [--phase tune|eval|all|analyze]
    unlearn methods
    unlearn models [--convert smollm2-135m]

Every command takes its benchmark by name (the worlds included) through the same
:class:`~.benchmarks.Benchmark` interface. Every user error prints one line ``error: ...`` on stderr
and exits with code 2 (:func:`.cli_common.handles_errors`); shared options are :mod:`.cli_common`'s.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import List

import typer

from .cli_attacks import attack_app, diagnose, report
from .cli_common import (
    BENCHMARKS_HELP,
    Options,
    attack_overrides,
    benchmark_of,
    build,
    handles_errors,
    names,
    one_line,
    parse_seeds,
)
from .errors import UnlearnError
from .placement import BatchSizeOption, DeviceOption, DtypeOption, configure
from .progress import add_quiet_option

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Remove knowledge from a causal LM so that it stays removed.")
app.add_typer(attack_app, name="attack")
add_quiet_option(app)  # unlearn --quiet COMMAND
app.command()(diagnose)
app.command()(report)

__all__ = ["app", "main", "one_line"]


@app.command()
@handles_errors
def demo(
    methods: str | None = typer.Option(None, help="Comma-separated methods (default: the recipe's; "
                                                     "ga,graddiff,npo,simnpo,rmu on the world)."),
    seeds: str = typer.Option("1", help="A count (3) or a list of seeds (0,1,2)."),
    out: Path = typer.Option(Path("demo-out"), help="Where results.json and report.md go."),
    quick: bool = typer.Option(False, "--quick", help="A smaller world and model (about a minute)."),
    budgets: str | None = typer.Option(None, help="Relearning budgets SAMPLESxSTEPS, comma-separated."),
    attack_lr: float | None = typer.Option(None, help="Learning rate of the relearning attack."),
    draws: int | None = typer.Option(None, help="Draws of the relearn set per budget."),
    attacks: str = typer.Option("relearn", help="Attacks/diagnostics per model: relearn (always) plus any of "
                                "quantize, jailbreak, incontext, sharpness, landscape."),
    benchmark: str = typer.Option("world", help="world, world-smol (SmolLM2 fine-tuned on a world), or tofu, "
                                                "muse-news, muse-books, wmdp (+ --model)."),
    model: str | None = typer.Option(None, help="Standard benchmarks: the model to unlearn."),
    data: Path | None = typer.Option(None, help="Standard benchmarks: local data (default: the hub)."),
    split: str | None = typer.Option(None, help="Standard benchmarks: tofu forget10, wmdp bio,cyber, ..."),
    recipe_file: Path | None = typer.Option(None, "--recipe", help="Method recipe (default: the "
                                                                      "benchmark's)."),
    gold_model: str | None = typer.Option(
        None, "--gold-model", help="Standard benchmarks: a model that never learnt the forget set (TOFU's "
                                   "retain-only, MUSE's retrain model), evaluated and attacked as 'gold'."),
    workers: int | None = typer.Option(
        None, help="Processes that run the methods and seeds side by side, each with a share of the "
                   "threads (default: 2 on a CPU-only machine for a model under 50 M parameters, else 1; "
                   "or $ROBUST_UNLEARNING_WORKERS)."),
    option: Options = None,
):
    """Unlearn with several methods, attack them, and compare with the gold model (the world's own
    models, or on a standard benchmark --model and --gold-model)."""
    from .attacks.suite import parse_extras
    from .demo import run_demo

    if draws is not None and draws < 1:
        raise UnlearnError("--draws must be at least 1")
    if workers is not None and workers < 1:
        raise UnlearnError("--workers must be at least 1")
    given = attack_overrides(budgets or None, attack_lr, list(range(draws)) if draws is not None else None)
    method_list = names(methods) or None
    if methods is not None and not method_list:
        raise UnlearnError("--methods is empty")
    bench = benchmark_of(benchmark, data, split, option)
    if quick:
        bench = bench.smaller()
    extras = build(parse_extras, text=attacks)
    if "incontext" in extras and not bench.HAS_PERSONS:
        bench.incontext_world()  # fails before any work
    recipe = bench.recipe(recipe_file)
    run_demo(bench, method_list, parse_seeds(seeds), out, model=model, gold=gold_model, recipe=recipe,
             attack=build(bench.relearn_config, given=given, recipe=recipe), extras=extras, log=typer.echo,
             workers=workers)


@app.command()
@handles_errors
def run(config: Path = typer.Argument(..., help="YAML config of the experiment."),
        overrides: List[str] | None = typer.Argument(None, help="key.sub=value overrides."),
        resume: bool = typer.Option(False, "--resume", help="Continue from the newest checkpoint "
                                    "(train.checkpoint_every) of an interrupted run of this config.")):
    """Unlearn a model on forget/retain data (or a named benchmark) and save it.

    Several processes: torchrun --nproc_per_node N -m robust_unlearning.cli run CONFIG, or
    accelerate launch --config_file configs/accelerate/ddp.yaml -m robust_unlearning.cli run CONFIG."""
    from .runner import run_config

    out = run_config(config, overrides or [], log=typer.echo, resume=resume)
    typer.echo(f"saved to {out}")


@app.command("eval")
@handles_errors
def eval_cmd(model: Path = typer.Option(..., help="A saved model directory."),
             benchmark: str = typer.Option("world", help=f"{BENCHMARKS_HELP}."),
             generation: bool = typer.Option(False, help="World: also score greedy exact match."),
             data: Path | None = typer.Option(
                 None, help="Local benchmark data: a file or a directory (default: the hub)."),
             split: str | None = typer.Option(
                 None, help="tofu: forget01/05/10; wmdp: bio, cyber or bio,cyber."),
             reference: str | None = typer.Option(
                 None, help="tofu: the retain-only model's directory or its saved report (forget quality); "
                            "muse: the retrain model's directory or its Min-K AUC (PrivLeak)."),
             limit: int | None = typer.Option(None, help="At most this many examples per evaluation set."),
             option: Options = None,
             out: Path | None = typer.Option(None, help="Write the metrics JSON (every metric) here."),
             device: DeviceOption = None, dtype: DtypeOption = None, batch_size: BatchSizeOption = None):
    """Score a saved model on a benchmark; print the summary, write every metric to --out."""
    from .benchmarks import build_benchmark
    from .config import parse_overrides
    from .io import load_model, write_json_atomic

    configure(device, dtype)
    given = {"batch_size": batch_size, "generation": generation or None, "reference": reference,
             "limit": limit}
    opts = {**parse_overrides(option or []), **{k: v for k, v in given.items() if v is not None}}
    bench = build_benchmark(benchmark, data, split, opts)
    bench.prepare()  # bad data fails before the model is loaded
    m, tok = load_model(model)
    report = bench.evaluate(m, tok)
    if out:
        write_json_atomic(out, {"model": str(model), "benchmark": benchmark, **report})
    typer.echo(json.dumps({"model": str(model), "benchmark": benchmark, **report["summary"]}, indent=2))


@app.command()
@handles_errors
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
@handles_errors
def models(convert: str = typer.Option(None, help="Convert this named model into the cache now.")):
    """List the named models (usable as model: / --model / --gold-model) and where they are cached."""
    from .models import ensure_model, list_models, models_root

    if convert:
        typer.echo(f"{convert}: {ensure_model(convert, log=typer.echo)}")
    typer.echo(f"cache: {models_root()}  (set ROBUST_UNLEARNING_CACHE to move it)")
    for row in list_models():
        state = ("converted" if row["converted"] else "converted on first use") if row["installed"] \
            else f"not installed: {row['install']}"
        typer.echo(f"{row['name']}: {row['description']}")
        typer.echo(f"    {state}; {row['path']}")


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
