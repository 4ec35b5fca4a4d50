"""Method names: ``objective[+strategy][+parameterization]``, e.g. ``npo``, ``npo+sam``,
``graddiff+stableun+bounded-lora``, ``graddiff+lora``. Missing parts default to ``plain`` and
``full``."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UnlearnError
from .objectives.base import OBJECTIVES
from .parameterizations.base import PARAMETERIZATIONS
from .strategies.base import STRATEGIES


@dataclass(frozen=True)
class Method:
    objective: str
    strategy: str = "plain"
    parameterization: str = "full"

    @property
    def name(self) -> str:
        return f"{self.objective}+{self.strategy}+{self.parameterization}"


def parse_method(text: str) -> Method:
    parts = [p.strip().lower() for p in str(text).split("+")]
    if not parts or not parts[0]:
        raise UnlearnError(f"empty method name; known objectives: {', '.join(OBJECTIVES.names())}")
    objective = parts[0]
    OBJECTIVES.get(objective)  # raises with the list of known objectives
    strategy, param = None, None
    for part in parts[1:]:
        if part in STRATEGIES.names() and strategy is None:
            strategy = part
        elif part in PARAMETERIZATIONS.names() and param is None:
            param = part
        else:
            raise UnlearnError(
                f"cannot read {part!r} in method {text!r}: a method is objective+strategy+parameterization; "
                f"objectives: {', '.join(OBJECTIVES.names())}; strategies: {', '.join(STRATEGIES.names())}; "
                f"parameterizations: {', '.join(PARAMETERIZATIONS.names())}"
            )
    return Method(objective, strategy or "plain", param or "full")
