"""Checkpoints of an unlearning run: everything needed to continue it bit-identically.

A checkpoint is a directory ``step-NNNNNN`` (after NNNNNN optimizer steps) holding

    weights.safetensors   the trainable parameters, by name (float32 master copies under mixed precision)
    state.safetensors     every tensor of the rest of the state (optimizer moments, strategy buffers, RNG)
    state.json            the rest of the state, with references to those tensors: step, optimizer and
                          scheduler state dicts, strategy and objective state, data-stream positions,
                          RNG states (python, numpy, torch CPU, CUDA when present), the log so far, a
                          fingerprint of the config

Nothing is pickled: tensors go through safetensors and everything else through JSON (floats
round-trip exactly), so loading a checkpoint never runs code. Each checkpoint is written into a
temporary directory next to its final place and moved there with ``os.replace`` only when
complete; a run killed while writing leaves at most a stray ``.tmp-*`` directory, never a
half-written checkpoint. The last ``keep`` checkpoints are kept. :class:`RunState` writes and
restores an unlearning run's state; ``unlearn(resume=True)`` continues from the newest checkpoint
bit-identically, a fresh run clears the directory's old ones.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import UnlearnError

PATTERN = re.compile(r"^step-(\d+)$")


# -- nested state <-> (JSON, tensors) -----------------------------------------------------------------

def pack(obj, tensors: dict[str, torch.Tensor]):
    """Replace every tensor/array in ``obj`` by a reference into ``tensors``; JSON-able result."""
    if isinstance(obj, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = obj.detach().to("cpu").clone().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray):
        key = f"t{len(tensors)}"
        tensors[key] = torch.from_numpy(obj.copy())
        return {"__ndarray__": key}
    if isinstance(obj, dict):
        return {"__map__": [[pack(k, tensors), pack(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [pack(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [pack(v, tensors) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot checkpoint a {type(obj).__name__}")


def unpack(obj, tensors: dict[str, torch.Tensor]):
    if isinstance(obj, list):
        return [unpack(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__ndarray__" in obj:
            return tensors[obj["__ndarray__"]].numpy()
        if "__tuple__" in obj:
            return tuple(unpack(v, tensors) for v in obj["__tuple__"])
        return {unpack(k, tensors): unpack(v, tensors) for k, v in obj["__map__"]}
    return obj


# -- RNG ------------------------------------------------------------------------------------------------

def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def fingerprint(config: dict) -> str:
    """A short hash of the settings a resumed run must share with the run it continues."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


# -- directories --------------------------------------------------------------------------------------

def list_checkpoints(directory: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints in ``directory``, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for p in directory.iterdir():
        m = PATTERN.match(p.name)
        if m and (p / "state.json").is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest(directory: str | Path) -> Path | None:
    found = list_checkpoints(directory)
    return found[-1][1] if found else None


def clear(directory: str | Path) -> None:
    """Remove the checkpoints (and stray temporary directories) of an earlier run."""
    directory = Path(directory)
    if not directory.is_dir():
        return
    for p in directory.iterdir():
        if PATTERN.match(p.name) or p.name.startswith(".tmp-"):
            shutil.rmtree(p, ignore_errors=True)


def save(directory: str | Path, step: int, weights: dict[str, torch.Tensor], state: dict,
         keep: int = 2) -> Path:
    """Write checkpoint ``step`` atomically, then delete all but the newest ``keep``."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"step-{step:06d}"
    tmp = Path(tempfile.mkdtemp(dir=directory, prefix=".tmp-"))
    try:
        save_file({k: v.detach().to("cpu").clone().contiguous() for k, v in weights.items()},
                  str(tmp / "weights.safetensors"))
        tensors: dict[str, torch.Tensor] = {}
        meta = pack(state, tensors)
        save_file(tensors, str(tmp / "state.safetensors"))
        with open(tmp / "state.json", "w") as fh:
            json.dump({"step": step, "state": meta}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        if target.exists():  # a rerun of the same step (never the case within one run)
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    for _, old in list_checkpoints(directory)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return target


def load(path: str | Path) -> tuple[int, dict[str, torch.Tensor], dict]:
    """``(step, weights, state)`` of the checkpoint at ``path`` (tensors on the CPU)."""
    from safetensors.torch import load_file

    path = Path(path)
    try:
        meta = json.loads((path / "state.json").read_text())
        weights = load_file(str(path / "weights.safetensors"))
        tensors = load_file(str(path / "state.safetensors"))
    except (OSError, ValueError) as exc:
        raise UnlearnError(f"cannot read checkpoint {path}: {exc}") from exc
    return int(meta["step"]), weights, unpack(meta["state"], tensors)


def to_device(obj, device):
    """``obj`` with every tensor moved to ``device`` (for strategy state)."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device) for v in obj)
    return obj


# -- an unlearning run's state ------------------------------------------------------------------------

@dataclass
class Progress:
    """Where a run stands: optimizer steps done, the log so far, passes run, seconds spent."""

    step: int = 0
    log: list | None = None
    passes: int = 0
    seconds: float = 0.0


@dataclass
class RunState:
    """The live objects a checkpoint of the loop saves and restores (``scaler``: fp16's GradScaler,
    ``retain_stream`` may be ``None``)."""

    fingerprint: str
    named: list  # (name, trainable parameter)
    optimizer: object
    scheduler: object
    strategy: object
    objective: object
    forget_stream: object
    retain_stream: object
    scaler: object
    device: object

    def save(self, directory, progress: Progress, keep: int) -> Path:
        state = {
            "fingerprint": self.fingerprint, "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "strategy": self.strategy.state_dict(),
            "objective": self.objective.state_dict(),
            "forget_stream": self.forget_stream.state_dict(),
            "retain_stream": self.retain_stream.state_dict() if self.retain_stream is not None else None,
            "rng": rng_state(), "log": progress.log, "total_passes": progress.passes,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "seconds": progress.seconds,
        }
        return save(directory, progress.step, dict(self.named), state, keep=keep)

    def restore(self, path: Path) -> Progress:
        """Load the checkpoint at ``path`` into the live objects (it must come from this config)."""
        step, weights, state = load(path)
        if state["fingerprint"] != self.fingerprint:
            raise UnlearnError(f"checkpoint {path} belongs to a run with other settings; resume with the "
                               "config it was written with, or start afresh without --resume")
        with torch.no_grad():
            for n, p in self.named:
                if n not in weights:
                    raise UnlearnError(f"checkpoint {path} has no weights for {n}")
                p.data.copy_(weights[n].to(p.device, p.dtype))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.strategy.load_state_dict(to_device(state["strategy"], self.device))
        if state.get("objective"):  # older checkpoints have none (no objective then had state)
            self.objective.load_state_dict(state["objective"])
        self.forget_stream.load_state_dict(state["forget_stream"])
        if self.retain_stream is not None:
            self.retain_stream.load_state_dict(state["retain_stream"])
        set_rng_state(state["rng"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        return Progress(step, state["log"], state["total_passes"], state["seconds"])


def start(directory, resume: bool, saving: bool, is_main: bool, run: RunState) -> Progress:
    """Resume from the newest checkpoint in ``directory`` (``resume``), or, on a fresh run that
    saves checkpoints, clear the old ones there (they would be resumed by mistake)."""
    if directory and resume and (path := latest(directory)) is not None:
        return run.restore(path)
    if directory and saving and is_main:
        clear(directory)
    return Progress(log=[])


@contextlib.contextmanager
def naming_last_good(directory):
    """A :class:`~.errors.NonFiniteLossError` raised inside names the newest checkpoint."""
    from .errors import NonFiniteLossError

    try:
        yield
    except NonFiniteLossError as exc:
        last = latest(directory) if directory else None
        if last is not None:
            exc.args = (f"{exc.args[0]}; last good checkpoint: {last}",)
        raise
