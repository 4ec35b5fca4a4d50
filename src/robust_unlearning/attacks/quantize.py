"""The quantization attack (Zhang et al. 2024; docs/attacks.md#quantization).

Unlearning often moves weights by less than one quantization step, so rounding the unlearned
weights to a coarse grid can land them back on the grid point of the original model and restore
the forgotten knowledge. Two ways to quantize:

- *simulated* round-to-nearest (RTN), symmetric, of every ``nn.Linear`` weight (``lm_head`` left
  in full precision by default, as deployed int8/int4 kernels do): ``bits`` 8 or 4 (any 2..16),
  one scale per output channel (``granularity="channel"``) or per group of ``group_size``
  consecutive input weights of a row (``"group"``, as GPTQ/AWQ-style int4 checkpoints). The weights
  are rounded and de-quantized back to float, so the model runs unchanged (this is the hand-written
  part: a few lines of tensor arithmetic; no library offers RTN fake-quantization of an HF model
  without extra kernels);
- *real* int8 through PyTorch: ``torch.ao.quantization.quantize_dynamic`` (CPU, int8 weights,
  dynamic int8 activations). When unavailable (removed in newer PyTorch, or the model is not on
  CPU) the row records ``skipped`` with the reason instead of failing;
- *real* low-bit kernels (:mod:`.quantize_real`): optimum-quanto int4 / int8 weight-only (CPU) and
  bitsandbytes NF4 / LLM.int8() (GPU). ``backends=None`` runs those that can run here and records
  the others as ``skipped`` with the reason; a named list makes a missing requirement an error.

Each setting is a row ``{scheme, bits, granularity, group_size, forget_acc, retain_acc,
weight_change}``; run it on the gold model too for the floor.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..world.benchmark import evaluate
from ..world.generator import World

GRANULARITIES = ("channel", "group")


@dataclass
class QuantizeConfig:
    bits: list[int] = field(default_factory=lambda: [8, 4])
    granularities: list[str] = field(default_factory=lambda: ["channel", "group"])
    group_size: int = 32
    skip: list[str] = field(default_factory=lambda: ["lm_head"])  # module-name suffixes kept in float
    torch_int8: bool = True
    backends: list[str] | None = None  # real kernels (quantize_real.BACKENDS); None: every available one

    def __post_init__(self):
        self.bits = [int(b) for b in self.bits]
        for b in self.bits:
            if not 2 <= b <= 16:
                raise ValueError(f"quantization bits must be in 2..16, not {b}")
        for g in self.granularities:
            if g not in GRANULARITIES:
                raise ValueError(f"unknown granularity {g!r}; known: {', '.join(GRANULARITIES)}")
        if self.group_size < 1:
            raise ValueError(f"group size must be positive, not {self.group_size}")
        if self.backends is not None:
            from .quantize_real import check_backends

            check_backends(self.backends)


def rtn_quantize(weight: torch.Tensor, bits: int, granularity: str = "channel",
                 group_size: int = 32) -> torch.Tensor:
    """Symmetric round-to-nearest fake quantization of a 2-D weight (rows = output channels)."""
    if weight.dim() != 2:
        raise ValueError("rtn_quantize expects a 2-D weight")
    qmax = 2 ** (bits - 1) - 1
    w = weight.detach().float()
    rows, cols = w.shape
    if granularity == "channel":
        groups = w.view(rows, 1, cols)
    elif granularity == "group":
        pad = (-cols) % group_size
        if pad:
            w = torch.nn.functional.pad(w, (0, pad))
        groups = w.view(rows, -1, group_size)
    else:
        raise ValueError(f"unknown granularity {granularity!r}; known: {', '.join(GRANULARITIES)}")
    scale = groups.abs().amax(dim=-1, keepdim=True).clamp(min=1e-12) / qmax
    q = torch.clamp(torch.round(groups / scale), -qmax - 1, qmax) * scale
    return q.reshape(rows, -1)[:, :cols].to(weight.dtype)


def _linears(model, skip: list[str]):
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear) and not any(name.endswith(s) for s in skip):
            yield name, mod


@torch.no_grad()
def quantize_model(model, bits: int, granularity: str = "channel", group_size: int = 32,
                   skip: list[str] | None = None) -> tuple[torch.nn.Module, float]:
    """A fake-quantized copy of ``model`` and the relative L2 change of the quantized weights."""
    q = copy.deepcopy(model)
    skip = ["lm_head"] if skip is None else skip
    diff = norm = 0.0
    for _, mod in _linears(q, skip):
        w = mod.weight
        new = rtn_quantize(w, bits, granularity, group_size)
        diff += (new.float() - w.float()).pow(2).sum().item()
        norm += w.float().pow(2).sum().item()
        w.copy_(new)
    return q, (diff ** 0.5) / max(norm ** 0.5, 1e-12)


def torch_int8(model, skip: list[str] | None = None) -> torch.nn.Module:
    """Real int8 dynamic quantization (CPU) of the linear layers, through ``torch.ao``."""
    if next(model.parameters()).device.type != "cpu":
        raise RuntimeError("torch dynamic int8 quantization runs on CPU only")
    import torch.ao.quantization as tq

    skip = ["lm_head"] if skip is None else skip
    names = {n for n, _ in _linears(model, skip)}
    q = copy.deepcopy(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization announces its own deprecation
        return tq.quantize_dynamic(q, names, dtype=torch.qint8)


def quantize_attack(model, tokenizer, world: World | None, cfg: QuantizeConfig = QuantizeConfig(),
                    score: Callable[[object], dict] | None = None) -> list[dict]:
    """One row per setting (fp32 first). Scored by the world's MCQ accuracies, or by ``score(model)``
    (e.g. a standard benchmark's summary metrics) when given."""
    if score is None:
        if world is None:
            raise ValueError("quantize_attack needs a world or a score function")
        score = lambda m: evaluate(m, tokenizer, world)  # noqa: E731
    rows = [{"scheme": "none", "bits": 32, "granularity": None, "group_size": None,
             "weight_change": 0.0, **score(model)}]
    for bits in cfg.bits:
        for gran in cfg.granularities:
            q, change = quantize_model(model, bits, gran, cfg.group_size, cfg.skip)
            rows.append({"scheme": "rtn", "bits": bits, "granularity": gran,
                         "group_size": cfg.group_size if gran == "group" else None,
                         "weight_change": change, **score(q)})
            del q
    if cfg.torch_int8:
        row: dict = {"scheme": "torch-int8", "bits": 8, "granularity": "channel", "group_size": None}
        try:
            q = torch_int8(model, cfg.skip)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                row.update(score(q))
        except Exception as exc:  # any failure of the optional backend is recorded, not raised
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            row["skipped"] = f"{type(exc).__name__}: {msg}"
        rows.append(row)
    from .quantize_real import real_rows

    return rows + real_rows(model, cfg.backends, cfg.skip, score)


def label(row: dict) -> str:
    """Short name of a quantization setting, e.g. ``rtn4-g32``, ``rtn8-ch``, ``torch-int8``."""
    if row["scheme"] == "none":
        return "fp32"
    if row["scheme"] == "rtn":
        return f"rtn{row['bits']}-" + ("ch" if row["granularity"] == "channel" else f"g{row['group_size']}")
    return row["scheme"]
