"""The Python API: a handful of names over the same code the CLI runs.

    import robust_unlearning as ru
    model, tok = ru.load("world-quick")                       # a world's fine-tuned model (built once)
    result = ru.unlearn(model, tok, "world-quick", "npo+sam", steps=40, lr=1e-3)
    print(ru.evaluate(result.export(), tok, "world-quick")["summary"])
    print(ru.attack(result.export(), tok, "world-quick", budgets=[(8, 10)], seeds=[0]))

``data`` is a benchmark name (``world``, ``world-quick``, ``tofu``, ``muse-news``, ``wmdp``, ...), a
:class:`~robust_unlearning.benchmarks.Benchmark` from :func:`benchmark`, or for :func:`unlearn` a
``(forget, retain)`` pair of record lists (``{"text"}`` or ``{"question", "answer"}`` dicts).
"""

from __future__ import annotations

from .benchmarks import Benchmark, build_benchmark
from .errors import UnlearnError
from .loop import UnlearnResult

__all__ = ["attack", "benchmark", "evaluate", "load", "methods", "unlearn"]


def benchmark(name: str, path: str | None = None, split: str | None = None, **options) -> Benchmark:
    """The benchmark ``name`` with its local data ``path``, ``split`` and options (as ``-o`` gives)."""
    return build_benchmark(name, path, split, options)


def _bench(data) -> Benchmark:
    if isinstance(data, Benchmark):
        return data
    if isinstance(data, str):
        return benchmark(data)
    raise UnlearnError(f"expected a benchmark name or Benchmark, not {type(data).__name__}")


def load(model: str, dtype: str = "float32", trust_remote_code: bool = False):
    """``(model, tokenizer)`` of a named model (``smollm2-135m``), a directory, a hub id, or a benchmark
    that brings its own model (a world: its full model, trained and cached on first use)."""
    from .data.chat import set_chat_template
    from .io import load_model

    try:
        own = _bench(model).default_model()
    except UnlearnError:
        own = None
    m, tok = load_model(str(own or model), None, trust_remote_code, dtype)
    set_chat_template(tok, "auto")
    return m, tok


def unlearn(model, tokenizer, data, method: str = "npo", *, objective: dict | None = None,
            strategy: dict | None = None, parameterization: dict | None = None, **train) -> UnlearnResult:
    """Unlearn ``data``'s forget set from ``model`` with ``method`` (``objective+strategy+param``);
    ``train`` takes any ``train.*`` setting (steps, lr, batch_size, seed, ...). ``result.model`` is
    the trained model (adapter-wrapped with LoRA), ``result.export()`` a plain one, ``result.metrics``
    the run's metrics and budget."""
    from .config import build_config
    from .loop import unlearn as run

    if isinstance(data, tuple):
        forget, retain = data
    else:
        forget, retain = _bench(data).unlearning_data()
    cfg = build_config({"method": method, "objective": objective or {}, "strategy": strategy or {},
                        "parameterization": parameterization or {}, "train": train}, "unlearn()")
    return run(model, tokenizer, list(forget), list(retain) if retain else None, cfg)


def evaluate(model, tokenizer, data) -> dict:
    """Every metric of the benchmark (``summary`` holds the headline numbers)."""
    return _bench(data).evaluate(_plain(model), tokenizer)


def attack(model, tokenizer, data, kind: str = "relearn", **options):
    """An attack on ``model``: ``relearn`` (options: budgets [(samples, steps)], lr, batch_size, seeds,
    lora_rank, form) returns one row per draw and budget; ``quantize``, ``jailbreak``, ``incontext``
    return that attack's result (as ``unlearn demo --attacks`` stores it). The model is not changed."""
    bench = _bench(data)
    model = _plain(model)
    if kind == "relearn":
        form, lora = options.pop("form", "qa"), options.pop("lora_rank", 0)
        cfg = bench.relearn_config(options, form=form, lora_rank=lora)
        bench.check_relearn(cfg)
        return bench.relearn(model, tokenizer, cfg)
    from .attacks.suite import ATTACKS, run_extras

    if kind not in ATTACKS:
        raise UnlearnError(f"unknown attack {kind!r}; known: relearn, {', '.join(ATTACKS)}")
    if options:
        raise UnlearnError(f"attack {kind!r} takes no options here; use the CLI's for its settings")
    attacks, _ = run_extras(model, tokenizer, bench, [kind])
    return next(iter(attacks.values()))


def methods() -> dict[str, list[str]]:
    """The registered objectives, strategies and parameterizations (a method is one of each)."""
    from .objectives.base import OBJECTIVES
    from .parameterizations.base import PARAMETERIZATIONS
    from .strategies.base import STRATEGIES

    return {"objectives": OBJECTIVES.names(), "strategies": STRATEGIES.names(),
            "parameterizations": PARAMETERIZATIONS.names()}


def _plain(model):
    """An :class:`UnlearnResult` or adapter-wrapped model as a plain causal LM."""
    if isinstance(model, UnlearnResult):
        return model.export()
    return model
