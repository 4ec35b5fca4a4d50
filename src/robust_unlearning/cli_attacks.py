"""CLI commands of the attack suite, the diagnostics and the report (registered by :mod:`.cli`).

    unlearn attack quantize  --model DIR [--bits 8,4] [--granularity channel,group] [--group-size 32]
    unlearn attack jailbreak --model DIR [--prefix-len 8] [--iters 20] [--topk 32] [--candidates 64]
    unlearn attack incontext --model DIR [--facts 0,1,2,4] [--sources person,relearn,retain]
    unlearn diagnose         --model DIR [--what sharpness,landscape] [--rho 0.05]
    unlearn report RUN_DIR [RUN_DIR ...] [--out report]

``unlearn attack relearn`` lives in :mod:`.cli`; its runs on a standard benchmark or the user's own
forget file (:func:`relearn_on_benchmark`) here.

Every attack and diagnosis also runs on the world's gold model (``--no-gold`` to skip): the floor.
``--out FILE.json`` writes results in the format ``unlearn report`` reads (``entries`` with
``attacks.<name>`` / ``diagnostics.<name>``), next to ``unlearn demo``'s ``results.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, List

import typer

from .errors import UnlearnError
from .placement import DeviceOption, DtypeOption, configure


def _ints(text: str, what: str) -> list[int]:
    try:
        vals = [int(x) for x in str(text).split(",") if x.strip()]
    except ValueError as exc:
        raise UnlearnError(f"{what} takes comma-separated integers, not {text!r}") from exc
    if not vals:
        raise UnlearnError(f"{what} is empty")
    return vals


def check_world(benchmark: str) -> None:
    """An unknown world name fails before any model is loaded or any world is built."""
    from .runner import world_spec

    world_spec(benchmark)  # raises UnlearnError naming the known worlds


def _names(text: str) -> list[str]:
    return [x.strip() for x in str(text).split(",") if x.strip()]


def _config(cls, **kw):
    try:
        return cls(**kw)
    except ValueError as exc:
        raise UnlearnError(str(exc)) from exc


def _run_on_targets(model: Path, benchmark: str, gold: bool, kind: str, name: str,
                    fn: Callable, out: Path | None) -> list[dict]:
    """Run ``fn(model, tok, world)`` on the model (and gold); return and optionally write entries."""
    from .io import load_model, write_json_atomic
    from .runner import world_bundle
    from .world.benchmark import evaluate

    check_world(benchmark)
    first = load_model(model)  # a bad model directory fails before the world is built
    bundle = world_bundle(benchmark)
    targets = [(Path(model).name or str(model), model)] + ([("gold", bundle.gold_dir)] if gold else [])
    entries = []
    for label, path in targets:
        m, tok = first if first is not None else load_model(path)
        first = None
        try:
            result = fn(m, tok, bundle.world)
        except ValueError as exc:
            raise UnlearnError(str(exc)) from exc
        entries.append({"method": label, "seed": 0, "model": str(path), **evaluate(m, tok, bundle.world),
                        kind: {name: result}})
        del m
    if out:
        write_json_atomic(out, {"benchmark": benchmark, "model": str(model), "entries": entries})
    return entries


def _run_on_benchmark(model: Path, benchmark: str, data, split, option, gold_model: Path | None,
                      name: str, fn: Callable, out: Path | None, kind: str = "attacks",
                      check: Callable | None = None) -> list[dict]:
    """Run ``fn(model, tok, bench)`` on the model (and ``gold_model``) for the standard benchmark
    ``bench``; return and optionally write report entries."""
    from .benchmarks import build_benchmark
    from .config import parse_overrides
    from .io import check_model_path, load_model, write_json_atomic

    bench = build_benchmark(benchmark, data, split, parse_overrides(option or []))
    (check or (lambda b: b.prepare()))(bench)  # bad data fails before a model is loaded
    first = load_model(model)
    if gold_model is not None:
        check_model_path(gold_model)
    targets = [(Path(model).name or str(model), model)] + ([("gold", gold_model)] if gold_model else [])
    entries = []
    for label, path in targets:
        m, tok = first if first is not None else load_model(path)
        first = None
        try:
            result = fn(m, tok, bench)
        except ValueError as exc:
            raise UnlearnError(str(exc)) from exc
        entries.append({"method": label, "seed": 0, "model": str(path), kind: {name: result}})
        del m
    if out:
        write_json_atomic(out, {"benchmark": benchmark, "model": str(model), "entries": entries})
    return entries


def register(app: typer.Typer, attack_app: typer.Typer, fail: Callable[[Exception], None]) -> None:
    @attack_app.command("quantize")
    def attack_quantize(
        model: Path = typer.Option(..., help="A saved (unlearned) model directory."),
        benchmark: str = typer.Option(
            "world", help="world, world-quick, tofu, muse-news, muse-books or wmdp (scored by its metrics)."),
        bits: str = typer.Option("8,4", help="Bit widths of round-to-nearest, comma-separated."),
        granularity: str = typer.Option("channel,group",
                                        help="Scales per output 'channel' and/or per 'group'."),
        group_size: int = typer.Option(32, help="Weights per scale with --granularity group."),
        torch_int8: bool = typer.Option(True, help="Also real int8 (torch.ao dynamic quantization, CPU)."),
        backends: str = typer.Option("auto", help="Real low-bit kernels: quanto-int4, quanto-int8 (CPU), "
                                     "bnb-nf4, bnb-int8 (GPU); auto: those that run here; none."),
        gold: bool = typer.Option(True, help="World: attack the gold model too (the floor)."),
        gold_model: Path | None = typer.Option(
            None, "--gold-model", help="Other benchmarks: the retain-only / retrain model, quantized the "
                                       "same way: the floor."),
        data: Path | None = typer.Option(None, help="Other benchmarks: local data (default: the hub)."),
        split: str | None = typer.Option(None, help="tofu: forget01/05/10; wmdp: bio, cyber or bio,cyber."),
        option: List[str] | None = typer.Option(
            None, "--option", "-o", help="Further benchmark option key=value (repeatable)."),
        out: Path | None = typer.Option(None, help="Write the results JSON here."),
        device: DeviceOption = None,
        dtype: DtypeOption = None,
    ):
        """Round the weights to 8/4 bits and check whether forgotten knowledge comes back."""
        from .attacks.quantize import QuantizeConfig, label, quantize_attack
        from .attacks.quantize_real import parse_backends
        from .runner import is_world

        try:
            configure(device, dtype)
            cfg = _config(QuantizeConfig, bits=_ints(bits, "--bits"), granularities=_names(granularity),
                          group_size=group_size, torch_int8=torch_int8, backends=parse_backends(backends))
            if not is_world(benchmark):
                entries = _run_on_benchmark(
                    model, benchmark, data, split, option, gold_model, "benchmark_quantize",
                    lambda m, t, bench: quantize_attack(m, t, None, cfg,
                                                        score=lambda q: bench.scores(q, t)), out)
                for e in entries:
                    for r in e["attacks"]["benchmark_quantize"]:
                        res = (f"skipped ({r['skipped']})" if "skipped" in r else "  ".join(
                            f"{k} {v:.3f}" for k, v in r.items() if isinstance(v, float)
                            and k != "weight_change"))
                        typer.echo(f"{e['method']:>12} {label(r):>11}: {res}")
                return
            entries = _run_on_targets(model, benchmark, gold, "attacks", "quantize",
                                      lambda m, t, w: quantize_attack(m, t, w, cfg), out)
            for e in entries:
                for r in e["attacks"]["quantize"]:
                    res = (f"skipped ({r['skipped']})" if "skipped" in r else
                           f"forget_acc {r['forget_acc']:.3f}  retain_acc {r['retain_acc']:.3f}")
                    typer.echo(f"{e['method']:>12} {label(r):>11}: {res}")
        except UnlearnError as exc:
            fail(exc)

    @attack_app.command("jailbreak")
    def attack_jailbreak(
        model: Path = typer.Option(..., help="A saved (unlearned) model directory."),
        benchmark: str = typer.Option(
            "world", help="world, world-quick, tofu, muse-news, muse-books or wmdp (its forget questions)."),
        prefix_len: int = typer.Option(8, help="Tokens in the adversarial prefix."),
        iters: int = typer.Option(20, help="GCG iterations."),
        topk: int = typer.Option(32, help="Replacement tokens kept per position (by gradient)."),
        candidates: int = typer.Option(64, help="Single-token swaps scored per iteration."),
        train_questions: int = typer.Option(16, help="Forget-evaluation questions to optimise on."),
        eval_every: int = typer.Option(5, help="Score MCQ accuracy every this many iterations."),
        seed: int = typer.Option(0, help="Seed of the question split, the initial prefix and the swaps."),
        gold: bool = typer.Option(True, help="World: attack the gold model too (the floor)."),
        gold_model: Path | None = typer.Option(
            None, "--gold-model", help="Other benchmarks: the retain-only / retrain model, attacked the "
                                       "same way: the floor."),
        data: Path | None = typer.Option(None, help="Other benchmarks: local data (default: the hub)."),
        split: str | None = typer.Option(None, help="tofu: forget01/05/10; wmdp: bio, cyber or bio,cyber."),
        option: List[str] | None = typer.Option(
            None, "--option", "-o", help="Further benchmark option key=value (repeatable)."),
        out: Path | None = typer.Option(None, help="Write the results JSON here."),
        device: DeviceOption = None,
        dtype: DtypeOption = None,
    ):
        """Search a universal prompt prefix (GCG) that elicits the forgotten answers."""
        from .attacks.jailbreak import JailbreakConfig, gcg_attack, gcg_items
        from .runner import is_world

        try:
            configure(device, dtype)
            cfg = _config(JailbreakConfig, prefix_len=prefix_len, iters=iters, topk=topk,
                          candidates=candidates, train_questions=train_questions, eval_every=eval_every,
                          seed=seed)
            if not is_world(benchmark):
                entries = _run_on_benchmark(
                    model, benchmark, data, split, option, gold_model, "jailbreak",
                    lambda m, t, bench: gcg_items(m, t, bench.attack_items(), cfg), out)
                for e in entries:
                    r = e["attacks"]["jailbreak"]
                    key = "acc" if "heldout_acc" in r else "prob"
                    typer.echo(f"{e['method']:>12}: held-out {key} {r[f'heldout_{key}_no_prefix']:.3f} -> "
                               f"{r[f'heldout_{key}']:.3f}  optimised-on {key} "
                               f"{r[f'train_{key}_no_prefix']:.3f} -> {r[f'train_{key}']:.3f}  "
                               f"prefix {r['prefix']!r}")
                return
            entries = _run_on_targets(model, benchmark, gold, "attacks", "jailbreak",
                                      lambda m, t, w: gcg_attack(m, t, w, cfg), out)
            for e in entries:
                r = e["attacks"]["jailbreak"]
                typer.echo(f"{e['method']:>12}: held-out acc {r['heldout_acc_no_prefix']:.3f} -> "
                           f"{r['heldout_acc']:.3f}"
                           f"  optimised-on acc {r['train_acc_no_prefix']:.3f} -> {r['train_acc']:.3f}"
                           f"  prefix {r['prefix']!r}")
        except UnlearnError as exc:
            fail(exc)

    @attack_app.command("incontext")
    def attack_incontext(
        model: Path = typer.Option(..., help="A saved (unlearned) model directory."),
        benchmark: str = typer.Option("world", help="world or world-quick."),
        facts: str = typer.Option("0,1,2,4", help="Numbers of related facts put before the question."),
        sources: str = typer.Option("person,relearn,retain", help="Where the facts come from."),
        seed: int = typer.Option(0, help="Seed of the fact draws."),
        gold: bool = typer.Option(True, help="Attack the gold model too (the floor)."),
        out: Path | None = typer.Option(None, help="Write the results JSON here."),
        device: DeviceOption = None,
        dtype: DtypeOption = None,
    ):
        """Put related facts in the prompt and ask the forgotten questions again."""
        from .attacks.incontext import InContextConfig, incontext_attack

        try:
            configure(device, dtype)
            cfg = _config(InContextConfig, facts=_ints(facts, "--facts"), sources=_names(sources), seed=seed)
            entries = _run_on_targets(model, benchmark, gold, "attacks", "incontext",
                                      lambda m, t, w: incontext_attack(m, t, w, cfg), out)
            for e in entries:
                cells = "  ".join(f"{r['source']}×{r['facts']} {r['forget_acc']:.3f}"
                                  for r in e["attacks"]["incontext"])
                typer.echo(f"{e['method']:>12}: {cells}")
        except UnlearnError as exc:
            fail(exc)

    @app.command()
    def diagnose(
        model: Path = typer.Option(..., help="A saved (unlearned) model directory."),
        benchmark: str = typer.Option(
            "world", help="world, world-quick, tofu, muse-news, muse-books or wmdp (its forget records)."),
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
        gold: bool = typer.Option(True, help="World: diagnose the gold model too (the floor)."),
        gold_model: Path | None = typer.Option(
            None, "--gold-model", help="Other benchmarks: the retain-only / retrain model, diagnosed the "
                                       "same way: the floor."),
        data: Path | None = typer.Option(None, help="Other benchmarks: local data (default: the hub)."),
        split: str | None = typer.Option(None, help="tofu: forget01/05/10; wmdp: bio, cyber or bio,cyber."),
        option: List[str] | None = typer.Option(
            None, "--option", "-o", help="Further benchmark option key=value (repeatable)."),
        out: Path | None = typer.Option(None, help="Write the results JSON here."),
        device: DeviceOption = None,
        dtype: DtypeOption = None,
    ):
        """Sharpness of the forget loss (PGD, random directions, top Hessian eigenvalue) and its landscape."""
        from .diagnostics.landscape import LandscapeConfig, landscape
        from .diagnostics.sharpness import SharpnessConfig, sharpness

        try:
            configure(device, dtype)
            names = _names(what)
            bad = [n for n in names if n not in ("sharpness", "landscape")]
            if bad or not names:
                raise UnlearnError(f"--what takes sharpness and/or landscape, not {what!r}")
            scfg = _config(SharpnessConfig, rho=rho, pgd_steps=pgd_steps, random_dirs=random_dirs,
                           power_iters=power_iters, max_samples=samples)
            lcfg = _config(LandscapeConfig, span=span, points_1d=points, points_2d=points_2d, two_d=two_d,
                           max_samples=samples)

            def run_all(m, t, w):
                res = {}
                if "sharpness" in names:
                    res["sharpness"] = sharpness(m, t, w, scfg)
                if "landscape" in names:
                    res["landscape"] = landscape(m, t, w, lcfg)
                return res

            from .runner import is_world

            if is_world(benchmark):
                entries = _run_on_targets(model, benchmark, gold, "diagnostics", "all", run_all, None)
            else:  # the loss of the benchmark's forget records (its unlearning data)
                entries = _run_on_benchmark(model, benchmark, data, split, option, gold_model, "all",
                                            lambda m, t, bench: run_all(m, t, bench.unlearning_data()[0]),
                                            None, kind="diagnostics", check=lambda b: b.unlearning_data())
            for e in entries:
                e["diagnostics"] = e["diagnostics"]["all"]
                s = e["diagnostics"].get("sharpness")
                if s:
                    typer.echo(f"{e['method']:>12}: forget loss {s['loss']:.4f}  PGD decrease (rho {rho}) "
                               f"{s['pgd_decrease']:.4f}  random change {s['random_change_mean']:+.2e}  "
                               f"top eigenvalue {s['top_eigenvalue']:.3f}")
                ls = e["diagnostics"].get("landscape")
                if ls:
                    lo = ls["one_d"]["losses"]
                    typer.echo(f"{e['method']:>12}: 1-D landscape forget loss min {min(lo):.3f} "
                               f"centre {lo[len(lo) // 2]:.3f} max {max(lo):.3f}")
            if out:
                from .io import write_json_atomic

                write_json_atomic(out, {"benchmark": benchmark, "model": str(model), "entries": entries})
        except UnlearnError as exc:
            fail(exc)

    @app.command()
    def report(
        runs: List[Path] = typer.Argument(..., help="Run directories (with results.json) or results files."),
        out: Path = typer.Option(Path("report"), help="Where report.html, report.md and figures/ go."),
    ):
        """Write a self-contained HTML page (and markdown) comparing the methods of one or more runs."""
        from .report import build_report

        try:
            html_path, md_path = build_report(list(runs), out)
            typer.echo(f"wrote {html_path} and {md_path}")
        except UnlearnError as exc:
            fail(exc)


def relearn_on_benchmark(model: Path, benchmark: str | None, forget_file: Path | None, data, split,
                         option, given: dict, form: str, lora_rank: int, gold_model: Path | None,
                         metrics: bool, out: Path | None) -> None:
    """``unlearn attack relearn`` on TOFU / MUSE / WMDP or on the user's forget JSONL
    (:mod:`.attacks.relearn_benchmark`); ``given``: the attack settings of the command line. Prints
    one line per budget, writes ``--out``."""
    from .attacks.relearn import summarize
    from .attacks.relearn_benchmark import BenchmarkRelearnConfig, relearn_benchmark
    from .benchmarks import build_benchmark
    from .config import parse_overrides
    from .data.jsonl import read_jsonl
    from .io import load_model, write_json_atomic

    if forget_file is not None and benchmark is not None:
        raise UnlearnError("give either --benchmark or --forget, not both")
    cfg = _config(BenchmarkRelearnConfig, lora_rank=lora_rank, metrics=metrics, form=form, **given)
    bench = None
    if forget_file is not None:
        forget = read_jsonl(forget_file, "forget")
        source = str(forget_file)
    else:
        bench = build_benchmark(benchmark, data, split, parse_overrides(option or []))
        forget, _ = bench.unlearning_data()
        if metrics:
            bench.prepare()  # bad evaluation data fails before the model is loaded
        source = benchmark
    if not forget:
        raise UnlearnError(f"the forget set of {source} is empty")
    try:
        cfg.check_pool(len(forget), f"the forget set of {source}")
    except ValueError as exc:
        raise UnlearnError(str(exc)) from exc
    targets = [(Path(model).name or str(model), model)] + ([("gold", gold_model)] if gold_model else [])
    loaded = [load_model(path) for _, path in targets[:1]]  # a bad model fails before any training
    if gold_model is not None:
        from .io import check_model_path

        check_model_path(gold_model)
    result: dict = {"model": str(model), "benchmark": source, "config": {
        "budgets": [list(b) for b in cfg.budgets], "lr": cfg.lr, "batch_size": cfg.batch_size,
        "seeds": cfg.seeds, "lora_rank": cfg.lora_rank, "heldout_max": cfg.heldout_max}, "entries": []}
    for i, (label, path) in enumerate(targets):
        m, tok = loaded[0] if i == 0 else load_model(path)
        try:
            rows = relearn_benchmark(m, tok, forget, cfg, bench, desc=f"relearn {label}")
        except ValueError as exc:
            raise UnlearnError(str(exc)) from exc
        summary = summarize(rows)
        result["entries"].append({"method": label, "seed": 0, "model": str(path),
                                  "attacks": {"benchmark_relearn": summary}, "runs": rows})
        for r in summary:
            extra = "".join(f"  {k} {r[k]:.3f}" for k in r if not k.endswith("_std") and k not in
                            ("samples", "steps", "draws", "heldout_forget_nll", "drawn_forget_nll")
                            and isinstance(r[k], float))
            typer.echo(f"{label:>12} {r['samples']:>4} samples × {r['steps']:>3} steps: held-out forget NLL "
                       f"{r['heldout_forget_nll']:.3f} ± {r['heldout_forget_nll_std']:.3f}{extra}")
        del m
    if out:
        write_json_atomic(out, result)
