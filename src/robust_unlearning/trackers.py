"""Experiment trackers (``train.report_to``) through accelerate's trackers.

``report_to`` is ``none`` (default), ``all`` (every tracker whose package is installed) or a comma-
separated list of ``tensorboard``, ``wandb``, ``mlflow``. Trackers write under the run's log
directory (``train.log_dir``; for ``unlearn run`` ``<output_dir>.log``, beside the live
``metrics.jsonl``). Offline: TensorBoard always is; W&B with ``WANDB_MODE=offline``; MLflow logs to a
local ``mlruns`` store unless ``MLFLOW_TRACKING_URI`` says otherwise. Every step's log entry is sent
with its nested values flattened (``eval/forget_acc``); the resolved config as hyper-parameters.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .errors import UnlearnError

TRACKERS = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}  # name -> package


def parse(report_to: str) -> list[str]:
    """The trackers named by ``report_to`` (see the module docstring); an unknown name is an error."""
    names = [n.strip().lower() for n in str(report_to).split(",") if n.strip()]
    if not names or names == ["none"]:
        return []
    if names == ["all"]:
        return [n for n, pkg in TRACKERS.items() if importlib.util.find_spec(pkg) is not None]
    bad = [n for n in names if n not in TRACKERS]
    if bad:
        raise UnlearnError(f"train.report_to: unknown tracker(s) {', '.join(bad)}; "
                           f"use none, all or a comma-separated list of {', '.join(TRACKERS)}")
    missing = [n for n in names if importlib.util.find_spec(TRACKERS[n]) is None]
    if missing:
        raise UnlearnError(f"train.report_to: {', '.join(missing)} not installed "
                           f"(pip install {' '.join(TRACKERS[n] for n in missing)})")
    return names


def flatten(d: dict, prefix: str = "") -> dict:
    """Nested dicts to ``a/b`` keys; numbers and booleans kept, everything else as text (hparams)."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "/"))
        elif isinstance(v, (bool, int, float, str)):
            out[key] = v
        elif v is not None:
            out[key] = str(v)
    return out


def scalars(d: dict) -> dict:
    """The numeric entries of a flattened log entry (what a tracker plots)."""
    return {k: v for k, v in flatten(d).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def start(accelerator, names: list[str], config: dict, run_name: str) -> None:
    if names:
        accelerator.init_trackers("robust-unlearning", config=flatten(config),
                                  init_kwargs={"wandb": {"name": run_name}, "mlflow": {"run_name": run_name}})


def log_dir_for(output_dir: str | Path) -> Path:
    """Where ``unlearn run`` writes the live ``metrics.jsonl``, tracker files and a failure's error."""
    out = Path(output_dir)
    return out.parent / f"{out.name}.log"
