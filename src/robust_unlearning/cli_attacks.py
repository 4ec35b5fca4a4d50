"""CLI commands of the attack suite, the diagnostics and the report (added to the app by :mod:`.cli`).

    unlearn attack relearn   --model DIR [--budgets 20x5,40x10] [--lora-rank 8] [--forget FILE]
    unlearn attack quantize  --model DIR [--bits 8,4] [--granularity channel,group] [--group-size 32]
    unlearn attack jailbreak --model DIR [--prefix-len 8] [--iters 20] [--topk 32] [--candidates 64]
    unlearn attack incontext --model DIR [--facts 0,1,2,4] [--sources person,relearn,retain]
    unlearn diagnose         --model DIR [--what sharpness,landscape] [--rho 0.05]
    unlearn report RUN_DIR [RUN_DIR ...] [--out report]

Every benchmark, the worlds included, goes through :func:`run_on_targets`: the benchmark is built
(bad names and data fail first), the model is loaded, then the floor model (the world's gold model,
``--no-gold`` to skip; elsewhere ``--gold-model``), and each is attacked the same way.
``--out FILE.json`` writes results in the format ``unlearn report`` reads (``entries`` with
``attacks.<name>`` / ``diagnostics.<name>``), next to ``unlearn demo``'s ``results.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, List

import typer

from .cli_common import (
    BENCHMARKS_HELP,
    Data,
    Gold,
    GoldModel,
    ModelDir,
    Options,
    OutFile,
    Split,
    attack_overrides,
    benchmark_of,
    build,
    handles_errors,
    ints,
    names,
    parse_seeds,
)
from .errors import UnlearnError
from .placement import DeviceOption, DtypeOption, configure

attack_app = typer.Typer(no_args_is_help=True, help="Attacks that try to bring forgotten knowledge back.")


def _label(model) -> str:
    return Path(model).name or str(model)


def run_on_targets(model: Path, bench, floor, kind: str, name: str, fn: Callable,
                   out: Path | None = None, scores: bool = True) -> list[dict]:
    """``fn(model, tok, bench)`` on the model and on ``floor`` (``floor(): path | None``, the model that
    never learnt the forget set, asked after the model loaded); one report entry each (with the
    benchmark's :meth:`entry_scores` unless ``scores`` is off), written to ``out`` when given."""
    from .io import load_model, write_json_atomic

    first = load_model(model)  # a bad model directory fails before the floor is built or checked
    gold = floor()
    targets = [(_label(model), model)] + ([("gold", gold)] if gold is not None else [])
    entries = []
    for label, path in targets:
        m, tok = first if first is not None else load_model(path)
        first = None
        try:
            result = fn(m, tok, bench)
        except ValueError as exc:
            raise UnlearnError(str(exc)) from exc
        extra = bench.entry_scores(m, tok) if scores else {}
        entries.append({"method": label, "seed": 0, "model": str(path), **extra, kind: {name: result}})
        del m
    if out:
        write_json_atomic(out, {"benchmark": bench.name, "model": str(model), "entries": entries})
    return entries


def _quantize_line(r: dict, keys) -> str:
    if "skipped" in r:
        return f"skipped ({r['skipped']})"
    keys = keys or [k for k, v in r.items() if isinstance(v, float) and k != "weight_change"]
    return "  ".join(f"{k} {r[k]:.3f}" for k in keys)


@attack_app.command("quantize")
@handles_errors
def attack_quantize(
    model: ModelDir,
    benchmark: str = typer.Option("world", help=f"{BENCHMARKS_HELP} (scored by its metrics)."),
    bits: str = typer.Option("8,4", help="Bit widths of round-to-nearest, comma-separated."),
    granularity: str = typer.Option("channel,group", help="Scales per output 'channel' and/or per 'group'."),
    group_size: int = typer.Option(32, help="Weights per scale with --granularity group."),
    torch_int8: bool = typer.Option(True, help="Also real int8 (torch.ao dynamic quantization, CPU)."),
    backends: str = typer.Option("auto", help="Real low-bit kernels: quanto-int4, quanto-int8 (CPU), "
                                 "bnb-nf4, bnb-int8 (GPU); auto: those that run here; none."),
    gold: Gold = True, gold_model: GoldModel = None, data: Data = None, split: Split = None,
    option: Options = None, out: OutFile = None, device: DeviceOption = None, dtype: DtypeOption = None,
):
    """Round the weights to 8/4 bits and check whether forgotten knowledge comes back."""
    from .attacks.quantize import QuantizeConfig, label, quantize_attack
    from .attacks.quantize_real import parse_backends

    configure(device, dtype)
    cfg = build(QuantizeConfig, bits=ints(bits, "--bits"), granularities=names(granularity),
                group_size=group_size, torch_int8=torch_int8, backends=parse_backends(backends))
    bench = benchmark_of(benchmark, data, split, option)
    bench.prepare()  # bad data fails before a model is loaded
    key = bench.QUANTIZE_KEY
    entries = run_on_targets(
        model, bench, lambda: bench.floor_model(gold, gold_model), "attacks", key,
        lambda m, t, b: quantize_attack(m, t, None, cfg, score=lambda q: b.attack_scores(q, t)), out)
    for e in entries:
        for r in e["attacks"][key]:
            typer.echo(f"{e['method']:>12} {label(r):>11}: {_quantize_line(r, bench.LINE_KEYS)}")


@attack_app.command("jailbreak")
@handles_errors
def attack_jailbreak(
    model: ModelDir,
    benchmark: str = typer.Option("world", help=f"{BENCHMARKS_HELP} (its forget questions)."),
    prefix_len: int = typer.Option(8, help="Tokens in the adversarial prefix."),
    iters: int = typer.Option(20, help="GCG iterations."),
    topk: int = typer.Option(32, help="Replacement tokens kept per position (by gradient)."),
    candidates: int = typer.Option(64, help="Single-token swaps scored per iteration."),
    train_questions: int = typer.Option(16, help="Forget-evaluation questions to optimise on."),
    eval_every: int = typer.Option(5, help="Score MCQ accuracy every this many iterations."),
    seed: int = typer.Option(0, help="Seed of the question split, the initial prefix and the swaps."),
    gold: Gold = True, gold_model: GoldModel = None, data: Data = None, split: Split = None,
    option: Options = None, out: OutFile = None, device: DeviceOption = None, dtype: DtypeOption = None,
):
    """Search a universal prompt prefix (GCG) that elicits the forgotten answers."""
    from .attacks.jailbreak import JailbreakConfig, gcg_items

    configure(device, dtype)
    cfg = build(JailbreakConfig, prefix_len=prefix_len, iters=iters, topk=topk, candidates=candidates,
                train_questions=train_questions, eval_every=eval_every, seed=seed)
    bench = benchmark_of(benchmark, data, split, option)
    bench.prepare()
    entries = run_on_targets(model, bench, lambda: bench.floor_model(gold, gold_model), "attacks",
                             "jailbreak", lambda m, t, b: gcg_items(m, t, b.attack_items(), cfg), out)
    for e in entries:
        r = e["attacks"]["jailbreak"]
        key = "acc" if "heldout_acc" in r else "prob"
        typer.echo(f"{e['method']:>12}: held-out {key} {r[f'heldout_{key}_no_prefix']:.3f} -> "
                   f"{r[f'heldout_{key}']:.3f}  optimised-on {key} {r[f'train_{key}_no_prefix']:.3f} -> "
                   f"{r[f'train_{key}']:.3f}  prefix {r['prefix']!r}")


@attack_app.command("incontext")
@handles_errors
def attack_incontext(
    model: ModelDir,
    benchmark: str = typer.Option("world", help="world or world-quick."),
    facts: str = typer.Option("0,1,2,4", help="Numbers of related facts put before the question."),
    sources: str = typer.Option("person,relearn,retain", help="Where the facts come from."),
    seed: int = typer.Option(0, help="Seed of the fact draws."),
    gold: bool = typer.Option(True, help="Attack the gold model too (the floor)."),
    out: OutFile = None, device: DeviceOption = None, dtype: DtypeOption = None,
):
    """Put related facts in the prompt and ask the forgotten questions again."""
    from .attacks.incontext import InContextConfig, incontext_attack

    configure(device, dtype)
    cfg = build(InContextConfig, facts=ints(facts, "--facts"), sources=names(sources), seed=seed)
    bench = benchmark_of(benchmark)
    if not bench.HAS_PERSONS:
        bench.incontext_world()  # fails before a model is loaded
    entries = run_on_targets(model, bench, lambda: bench.floor_model(gold), "attacks", "incontext",
                             lambda m, t, b: incontext_attack(m, t, b.incontext_world(), cfg), out)
    for e in entries:
        rows = e["attacks"]["incontext"]
        cells = "  ".join(f"{r['source']}×{r['facts']} {r['forget_acc']:.3f}" for r in rows)
        typer.echo(f"{e['method']:>12}: {cells}")


@attack_app.command("relearn")
@handles_errors
def attack_relearn(
    model: ModelDir,
    benchmark: str = typer.Option(
        "world", help=f"{BENCHMARKS_HELP} (relearn on its forget set; scored on held-out forget NLL and "
                      "the benchmark's metrics)."),
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
    gold: Gold = True, gold_model: GoldModel = None,
    forget: Path | None = typer.Option(
        None, help="Your own forget JSONL ({\"text\"} or {\"question\", \"answer\"}) instead of a "
                   "benchmark: relearn on it, scored on held-out forget NLL."),
    data: Data = None, split: Split = None, option: Options = None,
    metrics: bool = typer.Option(True, help="Other benchmarks: also the benchmark's own metrics after "
                                            "every budget (--no-metrics: held-out forget NLL only)."),
    out: OutFile = None, device: DeviceOption = None, dtype: DtypeOption = None,
):
    """Fine-tune on a few forget samples and measure how much forgotten knowledge comes back."""
    from .attacks.relearn import summarize
    from .io import write_json_atomic

    configure(device, dtype)
    given = attack_overrides(budgets, lr, parse_seeds(seeds) if seeds is not None else None)
    if forget is not None and benchmark != "world":
        raise UnlearnError("give either --benchmark or --forget, not both")
    if forget is not None:
        from .benchmarks.forget_file import ForgetFile

        bench = ForgetFile(forget)
    else:
        bench = benchmark_of(benchmark, data, split, option)
    cfg = build(bench.relearn_config, given=given, form=form, lora_rank=lora_rank, metrics=metrics)
    bench.check_relearn(cfg)
    entries = run_on_targets(model, bench, lambda: bench.floor_model(gold, gold_model), "attacks",
                             bench.RELEARN_KEY, lambda m, t, b: b.relearn(m, t, cfg), scores=False)
    for e in entries:
        rows = e["attacks"][bench.RELEARN_KEY]
        e["attacks"][bench.RELEARN_KEY] = summarize(rows)
        e["runs"] = rows
    result = bench.relearn_result(model, entries, cfg)
    if out:
        write_json_atomic(out, result)
    for line in bench.relearn_lines(result):
        typer.echo(line)


def _check_what(what: str) -> list[str]:
    chosen = names(what)
    if not chosen or any(n not in ("sharpness", "landscape") for n in chosen):
        raise UnlearnError(f"--what takes sharpness and/or landscape, not {what!r}")
    return chosen


def _diagnosis_lines(e: dict, rho: float) -> list[str]:
    lines = []
    s = e["diagnostics"].get("sharpness")
    if s:
        lines.append(f"{e['method']:>12}: forget loss {s['loss']:.4f}  PGD decrease (rho {rho}) "
                     f"{s['pgd_decrease']:.4f}  random change {s['random_change_mean']:+.2e}  "
                     f"top eigenvalue {s['top_eigenvalue']:.3f}")
    ls = e["diagnostics"].get("landscape")
    if ls:
        lo = ls["one_d"]["losses"]
        lines.append(f"{e['method']:>12}: 1-D landscape forget loss min {min(lo):.3f} "
                     f"centre {lo[len(lo) // 2]:.3f} max {max(lo):.3f}")
    return lines


@handles_errors
def diagnose(
    model: ModelDir,
    benchmark: str = typer.Option("world", help=f"{BENCHMARKS_HELP} (its forget records)."),
    what: str = typer.Option("sharpness,landscape", help="sharpness and/or landscape."),
    rho: float = typer.Option(0.05, help="Sharpness: L2 radius of the weight perturbation."),
    pgd_steps: int = typer.Option(5, help="Sharpness: projected gradient steps."),
    random_dirs: int = typer.Option(4, help="Sharpness: random directions (each used as ±d)."),
    power_iters: int = typer.Option(20, help="Sharpness: power iterations (top Hessian eigenvalue)."),
    span: float = typer.Option(1.0, help="Landscape: the grid spans [-span, span] along each direction."),
    points: int = typer.Option(21, help="Landscape: points of the 1-D curve."),
    points_2d: int = typer.Option(11, help="Landscape: points per axis of the 2-D grid."),
    two_d: bool = typer.Option(True, help="Landscape: also the 2-D grid."),
    samples: int = typer.Option(64, help="Forget-evaluation QA pairs (other benchmarks: forget records) "
                                         "in the forget loss."),
    gold: Gold = True, gold_model: GoldModel = None, data: Data = None, split: Split = None,
    option: Options = None, out: OutFile = None, device: DeviceOption = None, dtype: DtypeOption = None,
):
    """Sharpness of the forget loss (PGD, random directions, top Hessian eigenvalue) and its landscape."""
    from .diagnostics.landscape import LandscapeConfig, landscape
    from .diagnostics.sharpness import SharpnessConfig, sharpness
    from .io import write_json_atomic

    configure(device, dtype)
    chosen = _check_what(what)
    scfg = build(SharpnessConfig, rho=rho, pgd_steps=pgd_steps, random_dirs=random_dirs,
                 power_iters=power_iters, max_samples=samples)
    lcfg = build(LandscapeConfig, span=span, points_1d=points, points_2d=points_2d, two_d=two_d,
                 max_samples=samples)
    run = {"sharpness": lambda m, t, target: sharpness(m, t, target, scfg),
           "landscape": lambda m, t, target: landscape(m, t, target, lcfg)}
    bench = benchmark_of(benchmark, data, split, option)
    bench.check_forget()  # bad forget data fails before a model is loaded
    entries = run_on_targets(model, bench, lambda: bench.floor_model(gold, gold_model), "diagnostics", "all",
                             lambda m, t, b: {n: run[n](m, t, b.forget_target()) for n in run if n in chosen})
    for e in entries:
        e["diagnostics"] = e["diagnostics"]["all"]
        for line in _diagnosis_lines(e, rho):
            typer.echo(line)
    if out:
        write_json_atomic(out, {"benchmark": benchmark, "model": str(model), "entries": entries})


@handles_errors
def report(
    runs: List[Path] = typer.Argument(..., help="Run directories (with results.json) or results files."),
    out: Path = typer.Option(Path("report"), help="Where report.html, report.md and figures/ go."),
):
    """Write a self-contained HTML page (and markdown) comparing the methods of one or more runs."""
    from .report import build_report

    html_path, md_path = build_report(list(runs), out)
    typer.echo(f"wrote {html_path} and {md_path}")
