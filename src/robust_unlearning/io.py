"""Atomic outputs and safe model loading.

Outputs (directories, JSON files) are written next to their target under a temporary name and moved
into place only when complete, so a failed run leaves no half-written output. Weights are loaded
with safetensors only (never unpickled) and ``trust_remote_code`` is off unless asked for.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import UnlearnError


@contextlib.contextmanager
def atomic_dir(target: str | Path, overwrite: bool = True) -> Iterator[Path]:
    target = Path(target)
    if target.exists() and not overwrite:
        raise UnlearnError(f"output directory exists: {target}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    try:
        yield tmp
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_json_atomic(path: str | Path, obj) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(obj, fh, indent=2)
            fh.write("\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomic(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


_DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16", "auto": "auto"}


def load_model(name: str | Path, tokenizer: str | Path | None = None, trust_remote_code: bool = False,
               dtype: str = "float32"):
    """Load a causal LM and its tokenizer from a local directory or a hub id (safetensors only)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    name = str(name)
    local = Path(name)
    if local.exists():
        if not local.is_dir() or not (local / "config.json").is_file():
            raise UnlearnError(f"cannot load model from {local}: not a Hugging Face model directory "
                               "(no config.json)")
        if not any(local.glob("*.safetensors")):
            raise UnlearnError(f"cannot load model from {local}: no .safetensors weights "
                               "(pickled weights are not loaded)")
    torch_dtype = _DTYPES[dtype] if dtype == "auto" else getattr(torch, _DTYPES[dtype])
    try:
        model = AutoModelForCausalLM.from_pretrained(name, use_safetensors=True, dtype=torch_dtype,
                                                     trust_remote_code=trust_remote_code)
        tok = AutoTokenizer.from_pretrained(str(tokenizer or name), trust_remote_code=trust_remote_code)
    except UnlearnError:
        raise
    except Exception as exc:  # transformers raises many types; the user gets one line
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnlearnError(f"cannot load model {name!r}: {msg}") from exc
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token  # padding is masked by position, never by id (collate.py)
    return model, tok
