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


def _first_line(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    if not lines:
        return type(exc).__name__
    # "Error(s) in loading state_dict for X:" says nothing alone: add the line that follows
    return f"{lines[0]} {lines[1]}" if lines[0].endswith(":") and len(lines) > 1 else lines[0]


def _looks_local(name: str) -> bool:
    """A path rather than a hub id (``org/name``): absolute, relative with ./ or ~, or deeper."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name or name.endswith("/")


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Hold back transformers' load report (missing weights become an error below instead)."""
    from transformers.utils import logging as hf_logging

    from .progress import progress_enabled

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    if not progress_enabled():
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def check_model_path(name: str | Path) -> str:
    """Fail fast (before any expensive work) on a model path that cannot load: a missing local
    directory, a file, no or malformed ``config.json``, no safetensors weights. Hub ids pass.
    Returns the name to load (``~`` expanded). A named model (``smollm2-135m``, :mod:`.models`)
    becomes its converted directory in the cache."""
    from .models import resolve_model

    name = str(resolve_model(str(name)))
    local = Path(name).expanduser()
    try:
        if not local.exists():
            if _looks_local(name):
                raise UnlearnError(f"model directory not found: {name}")
            return name  # a hub id
        if not local.is_dir() or not (local / "config.json").is_file():
            raise UnlearnError(f"cannot load model from {local}: not a Hugging Face model directory "
                               "(no config.json)")
        try:
            cfg = json.loads((local / "config.json").read_text(encoding="utf-8"))
        except ValueError as exc:
            raise UnlearnError(f"cannot load model from {local}: {local / 'config.json'} is not valid "
                               f"JSON ({_first_line(exc)})") from exc
        if not isinstance(cfg, dict) or not isinstance(cfg.get("model_type"), str):
            raise UnlearnError(f"cannot load model from {local}: {local / 'config.json'} has no "
                               "'model_type'")
        if not any(local.glob("*.safetensors")):
            raise UnlearnError(f"cannot load model from {local}: no .safetensors weights "
                               "(pickled weights are not loaded)")
    except OSError as exc:  # e.g. a directory without read permission
        raise UnlearnError(f"cannot read model directory {local}: {exc.strerror or exc}") from exc
    return str(local.resolve())  # absolute, so an adapter saved from it names a base that loads anywhere


def adapter_base(name: str | Path) -> str | None:
    """The base model of a saved peft adapter directory (``adapter_config.json`` and no
    ``config.json``, as ``unlearn run`` writes with ``save: adapter``); ``None`` for anything else."""
    local = Path(str(name)).expanduser()
    cfg_file = local / "adapter_config.json"
    if not local.is_dir() or not cfg_file.is_file() or (local / "config.json").is_file():
        return None
    try:
        cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (ValueError, OSError) as exc:
        raise UnlearnError(f"cannot load the adapter in {local}: {cfg_file} is not valid JSON "
                           f"({_first_line(exc)})") from exc
    base = cfg.get("base_model_name_or_path") if isinstance(cfg, dict) else None
    if not isinstance(base, str) or not base:
        raise UnlearnError(f"cannot load the adapter in {local}: {cfg_file} names no "
                           "'base_model_name_or_path'")
    return base


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def _tokenizer_problem(local: Path) -> str | None:
    """Why a local directory's tokenizer did not load, when it is a missing or malformed file."""
    if not local.is_dir():
        return None
    if not any((local / f).is_file() for f in _TOKENIZER_FILES):
        return f"no tokenizer files ({', '.join(_TOKENIZER_FILES)})"
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (local / f).is_file():
            try:
                json.loads((local / f).read_text(encoding="utf-8"))
            except (ValueError, OSError) as exc:
                return f"{local / f} is not valid JSON ({_first_line(exc)})"
    return None


def load_model(name: str | Path, tokenizer: str | Path | None = None, trust_remote_code: bool = False,
               dtype: str | None = None, device=None):
    """Load a causal LM and its tokenizer from a local directory or a hub id (safetensors only).

    ``dtype``: float32 / bfloat16 / float16 / auto (or fp32 / bf16 / fp16); ``device``: where the
    weights go. Left ``None``, both follow what the command set through
    :func:`.placement.configure` (``--device`` / ``--dtype``), else float32 on the CPU.

    Every failure is one :class:`UnlearnError`: a missing or unreadable directory, a broken
    ``config.json``, weights that do not deserialize or do not cover the model (a model with
    freshly initialised layers is never returned), a missing or broken tokenizer.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .placement import DTYPES, current

    cur_device, cur_dtype = current()
    dtype = DTYPES.get(dtype, dtype) if dtype is not None else (cur_dtype or "float32")
    device = device if device is not None else cur_device
    base = adapter_base(name)
    if base is not None:
        return _load_merged_adapter(Path(str(name)).expanduser(), base, tokenizer, trust_remote_code, dtype,
                                    device)
    name = check_model_path(name)
    if dtype not in _DTYPES:
        raise UnlearnError(f"unknown dtype {dtype!r}; known: {', '.join(_DTYPES)}")
    torch_dtype = _DTYPES[dtype] if dtype == "auto" else getattr(torch, _DTYPES[dtype])
    try:
        with _quiet_transformers():
            model, info = AutoModelForCausalLM.from_pretrained(
                name, use_safetensors=True, dtype=torch_dtype, trust_remote_code=trust_remote_code,
                output_loading_info=True)
    except UnlearnError:
        raise
    except Exception as exc:  # transformers raises many types; the user gets one line
        damaged = " (a .safetensors file is damaged)" if type(exc).__name__ == "SafetensorError" else ""
        raise UnlearnError(f"cannot load model {name!r}: {_first_line(exc)}{damaged}") from exc
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        more = f" (+{len(missing) - 3} more)" if len(missing) > 3 else ""
        raise UnlearnError(f"cannot load model {name!r}: the weights lack {len(missing)} of the model's "
                           f"tensors ({', '.join(missing[:3])}{more}); the checkpoint is incomplete or "
                           "of another architecture")
    tok_name = str(tokenizer or name)
    try:
        with _quiet_transformers():
            tok = AutoTokenizer.from_pretrained(tok_name, trust_remote_code=trust_remote_code)
    except Exception as exc:
        if tokenizer is not None and not Path(tok_name).exists() and _looks_local(tok_name):
            raise UnlearnError(f"tokenizer directory not found: {tok_name}") from exc
        raise UnlearnError(f"cannot load the tokenizer from {tok_name!r}: "
                           f"{_tokenizer_problem(Path(tok_name)) or _first_line(exc)}") from exc
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token  # padding is masked by position, never by id (collate.py)
    if device is not None and torch.device(device) != model.device:
        model = model.to(device)
    return model, tok


def _load_merged_adapter(local: Path, base: str, tokenizer, trust_remote_code: bool, dtype: str, device=None):
    """An adapter directory: its base model with the adapter (LoRA or bounded LoRA) merged in."""
    from .parameterizations.bounded_lora import load_adapter

    if tokenizer is None and any((local / f).is_file() for f in _TOKENIZER_FILES):
        tokenizer = local  # ``unlearn run`` saves the tokenizer beside the adapter
    model, tok = load_model(base, tokenizer, trust_remote_code, dtype, device)
    try:
        model = load_adapter(model, local).merge_and_unload()
    except Exception as exc:
        raise UnlearnError(f"cannot load the adapter in {local} onto {base}: {_first_line(exc)}") from exc
    model.eval()
    return model, tok
