"""Real low-bit quantization for the quantization attack, beside the simulated round-to-nearest of
:mod:`.quantize`: the deployed kernels, through their libraries.

- ``quanto-int4`` / ``quanto-int8``: weight-only int4 / int8 of every linear layer through
  ``optimum-quanto`` (``quantize(model, weights=qint4)`` then ``freeze``: packed integer weights, one
  scale per group of 128 input weights for int4 and per output channel for int8, as quanto does for
  ``transformers``' ``QuantoConfig``). Runs on the CPU. Extra ``robust-unlearning[quantize]``.
- ``bnb-nf4`` / ``bnb-int8``: bitsandbytes 4-bit NormalFloat (NF4, block size 64, bf16 compute) and
  LLM.int8(), the way ``transformers`` loads a model with ``BitsAndBytesConfig``: the model is saved
  to a temporary directory and reloaded quantized onto the GPU. Needs a CUDA GPU and bitsandbytes.

Rows name the path that ran (``scheme``); ``weight_change`` is the relative L2 change of the
quantized weights (de-quantized), for quanto; None for bitsandbytes (its packed formats are not
de-quantized here). ``lm_head`` (the ``skip`` suffixes) stays in full precision, as in the simulated
path.
"""

from __future__ import annotations

import copy
import importlib.util
import tempfile

import torch

from ..errors import UnlearnError

BACKENDS = ("quanto-int4", "quanto-int8", "bnb-nf4", "bnb-int8")
BITS = {"quanto-int4": 4, "quanto-int8": 8, "bnb-nf4": 4, "bnb-int8": 8}


def unavailable(backend: str) -> str | None:
    """Why ``backend`` cannot run here, or None."""
    if backend not in BACKENDS:
        raise UnlearnError(f"unknown quantization backend {backend!r}; known: {', '.join(BACKENDS)}")
    if backend.startswith("quanto"):
        if importlib.util.find_spec("optimum") is None or importlib.util.find_spec("optimum.quanto") is None:
            return "optimum-quanto is not installed (pip install 'robust-unlearning[quantize]')"
        return None
    if not torch.cuda.is_available():
        return "bitsandbytes 4-bit NF4 / 8-bit quantization needs a CUDA GPU; none is visible"
    if importlib.util.find_spec("bitsandbytes") is None:
        return "bitsandbytes is not installed (pip install 'robust-unlearning[quantize]')"
    return None


def _skipped(name: str, skip: list[str]) -> bool:
    return any(name == s or name.endswith("." + s) for s in skip)


def quanto_granularity(q) -> tuple[str, int | None]:
    """("group", size) when quanto grouped the weights (int4 on layers whose input width is a
    multiple of 128), else ("channel", None): one scale per output channel."""
    sizes = {getattr(m.weight, "_group_size", None) for m in q.modules() if hasattr(m, "weight")
             and type(m.weight).__name__.startswith("WeightQ")}
    sizes.discard(None)
    return ("group", max(sizes)) if sizes else ("channel", None)


def quanto_quantize(model, bits: int, skip: list[str]) -> tuple[torch.nn.Module, float]:
    from optimum.quanto import freeze, qint4, qint8, quantize

    q = copy.deepcopy(model)
    names = [n for n, m in q.named_modules() if isinstance(m, torch.nn.Linear)]
    exclude = [n for n in names if _skipped(n, skip)]
    quantize(q, weights=qint4 if bits == 4 else qint8, exclude=exclude or None)
    freeze(q)
    originals = dict(model.named_modules())
    diff = norm = 0.0
    for name in names:
        if name in exclude:
            continue
        w = originals[name].weight.detach().float()
        new = q.get_submodule(name).weight
        new = new.dequantize() if hasattr(new, "dequantize") else new
        diff += (new.detach().float() - w).pow(2).sum().item()
        norm += w.pow(2).sum().item()
    return q, (diff ** 0.5) / max(norm ** 0.5, 1e-12)


def bnb_quantize(model, bits: int, skip: list[str]) -> torch.nn.Module:
    from transformers import BitsAndBytesConfig

    if bits == 4:
        cfg = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                 bnb_4bit_compute_dtype=torch.bfloat16, llm_int8_skip_modules=skip or None)
    else:
        cfg = BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip or None)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        return type(model).from_pretrained(tmp, quantization_config=cfg, device_map={"": 0},
                                           dtype=torch.bfloat16)


def real_quantize(model, backend: str, skip: list[str]) -> tuple[torch.nn.Module, float | None]:
    """``model`` quantized by ``backend`` and the relative weight change (None: not measured);
    an :class:`UnlearnError` saying why when the backend cannot run here."""
    reason = unavailable(backend)
    if reason is not None:
        raise UnlearnError(f"{backend}: {reason}")
    if backend.startswith("quanto"):
        return quanto_quantize(model, BITS[backend], skip)
    return bnb_quantize(model, BITS[backend], skip), None


def check_backends(backends: list[str]) -> None:
    """Named backends must exist and be able to run here (one clear error otherwise)."""
    for b in backends:
        reason = unavailable(b)
        if reason is not None:
            raise UnlearnError(f"quantization backend {b}: {reason}")


def real_rows(model, backends: list[str] | None, skip: list[str], score) -> list[dict]:
    """One row per real backend: ``backends=None`` tries them all, recording those that cannot run
    here as ``skipped`` (with the reason)."""
    rows = []
    for backend in BACKENDS if backends is None else backends:
        row: dict = {"scheme": backend, "bits": BITS[backend], "granularity": None, "group_size": None}
        reason = unavailable(backend)
        if reason is not None:
            if backends is not None:
                raise UnlearnError(f"quantization backend {backend}: {reason}")
            rows.append({**row, "skipped": reason})
            continue
        q, change = real_quantize(model, backend, skip)
        if backend.startswith("quanto"):
            row["granularity"], row["group_size"] = quanto_granularity(q)
        else:  # bitsandbytes: NF4 in blocks of 64 weights; LLM.int8() one scale per row
            nf4 = backend == "bnb-nf4"
            row["granularity"], row["group_size"] = ("block", 64) if nf4 else ("channel", None)
        rows.append({**row, "weight_change": change, **score(q)})
        del q
    return rows


def parse_backends(text: str) -> list[str] | None:
    """``--backends``: ``auto`` (None: every backend, those that cannot run recorded as skipped),
    ``none`` (no real kernels), or comma-separated names (each must run here)."""
    text = str(text).strip()
    if text == "auto":
        return None
    if text == "none":
        return []
    names = [x.strip() for x in text.split(",") if x.strip()]
    unknown = [n for n in names if n not in BACKENDS]
    if unknown or not names:
        raise UnlearnError(f"unknown quantization backend(s) {', '.join(unknown) or repr(text)}; known: "
                           f"{', '.join(BACKENDS)}, auto, none")
    return names
