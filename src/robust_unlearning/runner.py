"""``unlearn run``: one config -> one saved, unlearned model.

The output directory is written atomically: model (safetensors, merged or adapter), tokenizer,
``config.yaml`` (the resolved config), ``metrics.json`` (run metrics and, on world data, the world
evaluation) and ``metrics.jsonl`` (one line per step). A failed run leaves nothing behind.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from .config import RunConfig, load_config
from .data.jsonl import read_jsonl
from .errors import UnlearnError
from .io import atomic_dir, load_model, write_json_atomic
from .loop import unlearn
from .world.benchmark import evaluate, unlearning_data
from .world.model import DEFAULT_SPEC, QUICK_SPEC, WorldBundle, build_world

WORLDS = {"world": DEFAULT_SPEC, "world-quick": QUICK_SPEC}


def world_bundle(name: str) -> WorldBundle:
    if name not in WORLDS:
        raise UnlearnError(f"unknown benchmark {name!r}; known: {', '.join(WORLDS)}")
    return build_world(WORLDS[name])


def load_data(cfg: RunConfig) -> tuple[list[dict], list[dict] | None, WorldBundle | None]:
    d = cfg.data
    if d.benchmark:
        if d.forget or d.retain:
            raise UnlearnError("give either data.benchmark or data.forget/data.retain, not both")
        if d.benchmark not in WORLDS:
            from .benchmarks import build_benchmark

            forget, retain = build_benchmark(d.benchmark, d.path, d.split, d.options).unlearning_data()
            return forget, retain, None
        bundle = world_bundle(d.benchmark)
        forget, retain = unlearning_data(bundle.world)
        return forget, retain, bundle
    if not d.forget:
        raise UnlearnError("no data: set data.benchmark (world, tofu, muse-news, muse-books, wmdp) "
                           "or data.forget (a JSONL file)")
    forget = read_jsonl(d.forget, "forget")
    retain = read_jsonl(d.retain, "retain") if d.retain else None
    return forget, retain, None


def run_config(path: str | Path, overrides: list[str], log=print) -> Path:
    cfg = load_config(path, overrides)
    forget, retain, bundle = load_data(cfg)
    model_name = cfg.model or (str(bundle.full_dir) if bundle else None)
    if model_name is None:
        raise UnlearnError("no model: set 'model' (a hub id or a local directory)")
    model, tokenizer = load_model(model_name, cfg.tokenizer, cfg.trust_remote_code, cfg.dtype)
    out = Path(cfg.output_dir)
    with atomic_dir(out) as tmp:
        result = unlearn(model, tokenizer, forget, retain, cfg, metrics_path=tmp / "metrics.jsonl")
        metrics = dict(result.metrics)
        if cfg.save != "none":
            result.parameterization.save(result.model, tokenizer, tmp, merged=cfg.save == "merged")
        if bundle is not None and cfg.evaluate:
            metrics["eval"] = evaluate(result.export(), tokenizer, bundle.world)
            log(f"forget_acc={metrics['eval']['forget_acc']:.3f} retain_acc={metrics['eval']['retain_acc']:.3f}")
        (tmp / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(), sort_keys=False))
        write_json_atomic(tmp / "metrics.json", metrics)
    return out
