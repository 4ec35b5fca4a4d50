"""robust-unlearning: remove knowledge from a causal LM so that it stays removed.

The Python API (:mod:`robust_unlearning.api`), imported on first use so that ``import
robust_unlearning`` and the CLI stay light::

    import robust_unlearning as ru
    model, tok = ru.load("world-quick")
    result = ru.unlearn(model, tok, "world-quick", "npo+sam", steps=40, lr=1e-3)
    print(ru.evaluate(result.export(), tok, "world-quick")["summary"])
    rows = ru.attack(result.export(), tok, "world-quick", budgets=[(8, 10)], seeds=[0])
"""

__all__ = ["attack", "benchmark", "evaluate", "load", "methods", "unlearn"]


def __getattr__(name: str):
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'robust_unlearning' has no attribute {name!r}")
