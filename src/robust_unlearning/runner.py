"""``unlearn run``: one config -> one saved, unlearned model.

The output directory is written atomically: model (safetensors, merged or adapter), tokenizer,
``config.yaml`` (the resolved config), ``metrics.json`` (run metrics and, on world data, the world
evaluation) and ``metrics.jsonl`` (one line per step). A failed run leaves no output directory.

The run's log directory, ``<output_dir>.log`` (``train.log_dir``), holds the live ``metrics.jsonl``
(flushed every step: ``tail -f`` it), the trackers' files (``train.report_to``) and, when a run
fails, ``error.txt`` beside the log of the steps it made.

Checkpoints (``train.checkpoint_every``) go to ``train.checkpoint_dir``, by default
``<output_dir>.checkpoints`` next to the output: outside the atomic output's temporary directory,
so they survive a crash; ``resume=True`` (``unlearn run CONFIG --resume``) continues from the newest.
They are kept after a successful run (delete the directory when done with it).

Under several processes (``torchrun`` / ``accelerate launch``) every process trains; only the main
process writes the output directory.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from .config import RunConfig, load_config
from .data.chat import set_chat_template
from .data.jsonl import read_jsonl
from .errors import UnlearnError
from .io import atomic_dir, load_model, write_json_atomic, write_text_atomic
from .loop import cpu_only, unlearn
from .method import parse_method
from .trackers import log_dir_for


def load_data(cfg: RunConfig) -> tuple[list[dict], list[dict] | None, object | None]:
    """Forget and retain records, and the benchmark they come from (``None`` for files)."""
    d = cfg.data
    if d.benchmark:
        if d.forget or d.retain:
            raise UnlearnError("give either data.benchmark or data.forget/data.retain, not both")
        from .benchmarks import build_benchmark

        bench = build_benchmark(d.benchmark, d.path, d.split, d.options)
        forget, retain = bench.unlearning_data()
        return forget, retain, bench
    if not d.forget:
        raise UnlearnError("no data: set data.benchmark (world, tofu, muse-news, muse-books, wmdp) "
                           "or data.forget (a JSONL file)")
    forget = read_jsonl(d.forget, "forget")
    retain = read_jsonl(d.retain, "retain") if d.retain else None
    return forget, retain, None


def run_config(path: str | Path, overrides: list[str], log=print, resume: bool = False) -> Path:
    from accelerate import PartialState

    cfg = load_config(path, overrides)
    parse_method(cfg.method)  # an unknown method fails before the data and the model are loaded
    out = Path(cfg.output_dir)
    if cfg.train.checkpoint_every and not cfg.train.checkpoint_dir:
        train = cfg.train.model_copy(update={"checkpoint_dir": str(out.parent / f"{out.name}.checkpoints")})
        cfg = cfg.model_copy(update={"train": train})
    log_dir = Path(cfg.train.log_dir) if cfg.train.log_dir else log_dir_for(out)
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"log_dir": str(log_dir)})})
    if resume and not cfg.train.checkpoint_dir:
        raise UnlearnError("--resume needs checkpoints: set train.checkpoint_every "
                           "(and optionally train.checkpoint_dir)")
    forget, retain, bench = load_data(cfg)
    default = bench.default_model() if bench is not None else None
    model_name = cfg.model or (str(default) if default is not None else None)
    if model_name is None:
        raise UnlearnError("no model: set 'model' (a hub id or a local directory)")
    model, tokenizer = load_model(model_name, cfg.tokenizer, cfg.trust_remote_code, cfg.dtype)
    set_chat_template(tokenizer, cfg.data.chat_template)  # QA format of training, evaluation, attacks
    if resume:
        from .checkpoint import latest

        found = latest(cfg.train.checkpoint_dir)
        log(f"resuming from {found}" if found else
            f"no checkpoint in {cfg.train.checkpoint_dir}; starting from step 0")
    evaluate_fn = (_evaluator(tokenizer, forget, retain, bench, whole=cfg.train.eval_benchmark)
                   if cfg.train.eval_every else None)
    if not PartialState(cpu=cpu_only()).is_main_process:  # other processes train along and write nothing
        unlearn(model, tokenizer, forget, retain, cfg, resume=resume, evaluate_fn=evaluate_fn)
        return out
    log_dir.mkdir(parents=True, exist_ok=True)
    (log_dir / "error.txt").unlink(missing_ok=True)
    log(f"live log: {log_dir / 'metrics.jsonl'}")
    try:
        with atomic_dir(out) as tmp:
            result = unlearn(model, tokenizer, forget, retain, cfg, metrics_path=log_dir / "metrics.jsonl",
                             resume=resume, evaluate_fn=evaluate_fn)
            shutil.copyfile(log_dir / "metrics.jsonl", tmp / "metrics.jsonl")
            _finish(result, cfg, bench, tokenizer, tmp, log)
    except BaseException as e:  # the model directory is all-or-nothing; the log and the error stay
        write_text_atomic(log_dir / "error.txt", f"{type(e).__name__}: {e}\n")
        raise
    return out


def _finish(result, cfg: RunConfig, bench, tokenizer, tmp: Path, log) -> None:
    """Write the model, the resolved config and the run metrics into the output's temporary dir."""
    metrics = dict(result.metrics)
    if cfg.save != "none":
        result.parameterization.save(result.model, tokenizer, tmp, merged=cfg.save == "merged")
    ev = bench.entry_scores(result.export(), tokenizer) if bench is not None and cfg.evaluate else {}
    if ev:  # the world's MCQ evaluation; a standard benchmark is scored by `unlearn eval`
        metrics["eval"] = ev
        log(" ".join(f"{k}={ev[k]:.3f}" for k in bench.LINE_KEYS or ev))
    (tmp / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(), sort_keys=False))
    write_json_atomic(tmp / "metrics.json", metrics)


def _evaluator(tokenizer, forget: list[dict], retain: list[dict] | None, bench, max_records: int = 256,
               whole: bool = False):
    """What ``train.eval_every`` scores: a benchmark's :meth:`entry_scores` where it has them (the
    world's forget and retain MCQ accuracy); otherwise the mean per-token NLL of (at most
    ``max_records``) forget and retain records — cheap on any data — plus, with ``whole``
    (``train.eval_benchmark``), the benchmark's summary metrics (:meth:`Benchmark.scores`)."""
    if bench is not None and bench.HAS_ENTRY_SCORES:
        return lambda m: bench.entry_scores(m, tokenizer)
    from .metrics.scoring import mean_token_nll

    f, r = forget[:max_records], (retain or [])[:max_records]

    def score(m) -> dict:
        out = {"forget_nll": mean_token_nll(m, tokenizer, f)}
        if r:
            out["retain_nll"] = mean_token_nll(m, tokenizer, r)
        if whole and bench is not None:
            out.update(bench.scores(m, tokenizer))
        return out

    return score
