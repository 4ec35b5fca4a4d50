"""One YAML file per experiment, validated by pydantic, overridable with ``key.sub=value``.

    model: path/or/hub-id            # or leave out with data.benchmark: world
    method: npo+sam                  # objective[+strategy][+parameterization]
    objective: {beta: 0.1}           # options of the chosen objective
    strategy: {rho: 0.01}            # options of the chosen strategy
    parameterization: {}             # options of the chosen parameterization
    data: {forget: forget.jsonl, retain: retain.jsonl}
    train: {steps: 100, lr: 1e-5, batch_size: 8, gamma: 1.0, seed: 0,
            checkpoint_every: 50, gradient_checkpointing: false, mixed_precision: "no"}
    output_dir: runs/npo-sam
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, PositiveInt, ValidationError, field_validator

from .errors import UnlearnError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class TrainConfig(_Strict):
    steps: int | None = None  # optimizer steps; if unset, ``epochs`` over the forget set
    epochs: float = 5.0
    batch_size: int = 8  # forget micro-batch size (global: split over processes)
    retain_batch_size: int | None = None  # default: batch_size
    grad_accum: int = 1
    lr: float = 1e-5
    weight_decay: float = 0.0
    # torch's fused AdamW (one kernel for the whole update); None: fused unless the gradients are
    # sharded (FSDP2 / DeepSpeed). False: the per-tensor AdamW of the figures measured before 2026-12-01
    fused_optimizer: bool | None = None
    scheduler: str = "constant"  # any ``transformers.get_scheduler`` name
    warmup_steps: int = 0
    max_grad_norm: float | None = 1.0
    gamma: float = 1.0  # retain weight γ
    seed: int = 0
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"  # bf16/fp16 keep float32 master weights
    max_length: int = 256
    gradient_checkpointing: bool = False  # recompute activations in backward (less memory, ~1/3 slower)
    eval_every: PositiveInt | None = None  # score the model every N steps (and at the end) into the log
    checkpoint_every: PositiveInt | None = None  # save a resumable checkpoint every N optimizer steps
    checkpoint_dir: str | None = None  # default for `unlearn run`: <output_dir>.checkpoints; a run
    # without --resume clears the checkpoints it finds there
    keep_checkpoints: PositiveInt = 2  # the newest K checkpoints are kept
    # experiment trackers (trackers.py): none | all | comma-separated tensorboard, wandb, mlflow
    report_to: str = "none"
    log_dir: str | None = None  # trackers' directory; default for `unlearn run`: <output_dir>.log
    keep_best: str | None = None  # METRIC:min|max over the eval_every evaluations (best.py)
    # with eval_every on a benchmark: also its whole evaluation's summary metrics (slower than the
    # default forget / retain NLL; the world always gives its MCQ accuracies)
    eval_benchmark: bool = False

    @field_validator("keep_best")
    @classmethod
    def _best_spec(cls, v):
        if v is not None:
            from .best import parse

            parse(v)
        return v

    @field_validator("report_to")
    @classmethod
    def _known_trackers(cls, v):
        from .trackers import parse

        parse(v)  # unknown or missing tracker: one clear error when the config is read
        return v


class DataConfig(_Strict):
    benchmark: str | None = None  # world, world-quick, tofu, muse-news, muse-books, wmdp; or files below
    forget: str | None = None  # JSONL with "text", or "question" + "answer"
    retain: str | None = None
    path: str | None = None  # local data of a benchmark (file or directory); default: the hub
    split: str | None = None  # benchmark split: tofu forget01/05/10, wmdp bio/cyber
    options: dict[str, Any] = {}  # further benchmark options (e.g. tofu template, chunk_words)
    # QA rows as a one-turn chat (data/chat.py): auto = when the tokenizer has a chat template
    chat_template: Literal["auto", "on", "off"] = "auto"

    @field_validator("chat_template", mode="before")
    @classmethod
    def _yaml_on_off(cls, v):  # YAML reads an unquoted on / off as a boolean
        return {True: "on", False: "off"}.get(v, v) if isinstance(v, bool) else v


class RunConfig(_Strict):
    model: str | None = None  # hub id or local directory; default: the world model
    tokenizer: str | None = None
    trust_remote_code: bool = False
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = "float32"
    method: str = "graddiff"
    objective: dict[str, Any] = {}
    strategy: dict[str, Any] = {}
    parameterization: dict[str, Any] = {}
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    output_dir: str = "runs/unlearn"
    save: Literal["merged", "adapter", "none"] = "merged"
    evaluate: bool = True  # score on the world benchmark afterwards (world data only)


def _format_validation(exc: ValidationError, source: str) -> str:
    errs = exc.errors()
    parts = []
    for e in errs[:3]:
        loc = ".".join(str(x) for x in e["loc"])
        parts.append(f"{loc}: {e['msg']}")
    more = f" (+{len(errs) - 3} more)" if len(errs) > 3 else ""
    return f"{source}: invalid config: " + "; ".join(parts) + more


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """``["train.lr=1e-4", "method=npo+sam"]`` -> nested dict (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise UnlearnError(f"override {item!r} is not key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError:
            value = raw
        node = out
        *parents, leaf = key.strip().split(".")
        if not all(k.strip() for k in (*parents, leaf)):
            raise UnlearnError(f"override {item!r} has an empty key")
        for k in parents:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise UnlearnError(f"override {item!r} conflicts with another override")
        node[leaf] = value
    return out


def deep_merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UnlearnError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise UnlearnError(f"{path}: not UTF-8 text ({exc.reason})") from exc
    except OSError as exc:
        raise UnlearnError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    except RecursionError as exc:
        raise UnlearnError(f"{path}: malformed YAML: nested too deeply") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UnlearnError(f"{where}: malformed YAML: {problem}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UnlearnError(f"{path}: a config must be a mapping of keys to values")
    return data


def build_config(data: dict, source: str = "config") -> RunConfig:
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise UnlearnError(_format_validation(exc, source)) from exc


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> RunConfig:
    data = load_yaml(path) if path is not None else {}
    data = deep_merge(data, parse_overrides(overrides or []))
    return build_config(data, str(path) if path is not None else "overrides")
