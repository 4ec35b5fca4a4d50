"""Where and in which dtype a command puts the models it loads: ``--device`` / ``--dtype``.

Every command that loads a model (``unlearn eval``, ``attack *``, ``diagnose``, and the reference
and gold models the benchmarks load while scoring) calls :func:`configure` once with its options;
:func:`~.io.load_model` then places every model it loads there, and scoring, attacks (the
relearning attack's optimizer included) and diagnostics run where the model's weights are, in
batches. Defaults: the accelerator accelerate would pick (CUDA, XPU, MPS, ...), else the CPU; float32
on the CPU, bfloat16 on an accelerator that supports it (else float32). Library callers that never
call :func:`configure` keep float32 on the CPU.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from .errors import UnlearnError

if TYPE_CHECKING:
    import torch

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16",
          "float32": "float32", "bfloat16": "bfloat16", "float16": "float16", "auto": "auto"}

_state: dict = {"device": None, "dtype": None}


def default_device() -> torch.device:
    """The device accelerate would pick in one process: the current accelerator, else the CPU."""
    import torch

    acc = getattr(torch, "accelerator", None)
    if acc is not None and acc.is_available():
        dev = acc.current_accelerator()
        return torch.device(dev.type, acc.current_device_index())
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def resolve_device(device: str | torch.device | None) -> torch.device:
    import torch

    if device is None or str(device) == "auto":
        return default_device()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise UnlearnError(f"unknown device {device!r} (cpu, cuda, cuda:1, mps, xpu, auto)") from exc
    if dev.type != "cpu" and dev.type != "meta":
        mod = getattr(torch, dev.type, None)
        available = getattr(mod, "is_available", None)
        if available is None or not available():
            raise UnlearnError(f"device {device!r} is not available on this machine")
    return dev


def bf16_supported(device: torch.device) -> bool:
    import torch

    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return True
    return device.type in ("xpu", "mps", "npu", "hpu")


def resolve_dtype(dtype: str | None, device: torch.device) -> str:
    """A dtype name for :func:`~.io.load_model`: fp32 / bf16 / fp16 (or the long names), default
    float32 on the CPU and bfloat16 on an accelerator that supports it."""
    if dtype is None:
        return "bfloat16" if device.type != "cpu" and bf16_supported(device) else "float32"
    if dtype not in DTYPES:
        raise UnlearnError(f"unknown dtype {dtype!r}; known: fp32, bf16, fp16")
    name = DTYPES[dtype]
    if name == "bfloat16" and not bf16_supported(device):
        raise UnlearnError(f"{device} does not support bfloat16; use --dtype fp16 or fp32")
    return name


def configure(device: str | None = None, dtype: str | None = None) -> tuple[torch.device, str]:
    """Set where (and in which dtype) the models this process loads go; returns them."""
    dev = resolve_device(device)
    name = resolve_dtype(dtype, dev)
    _state["device"], _state["dtype"] = dev, name
    return dev, name


def reset() -> None:
    _state["device"], _state["dtype"] = None, None


def current() -> tuple[torch.device | None, str | None]:
    """The configured ``(device, dtype)``; ``(None, None)`` when no command configured them."""
    return _state["device"], _state["dtype"]


# -- shared command-line options ---------------------------------------------------------------------

DeviceOption = Annotated[str | None, typer.Option(
    "--device", help="Where to load the model(s) and compute: cpu, cuda, cuda:1, mps, ... (default: the "
                     "accelerator accelerate picks, else the CPU).")]
DtypeOption = Annotated[str | None, typer.Option(
    "--dtype", help="fp32, bf16 or fp16 (default: fp32 on the CPU, bf16 on a GPU that supports it).")]
BatchSizeOption = Annotated[int | None, typer.Option(
    "--batch-size", min=1, help="Sequences per scoring / attack batch (default: each benchmark's own).")]
