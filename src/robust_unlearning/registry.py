"""Registration by decorator, in the style of lm-eval-harness's task registry.

    OBJECTIVES = Registry("objective", package="robust_unlearning.objectives")

    @OBJECTIVES.register("npo")
    class NPO(Objective): ...

    OBJECTIVES.build("npo", {"beta": 0.1})

On first lookup the registry imports every module of ``package``, so a new component is one new
file there: no list to edit. Components take their options as keyword arguments (dataclass
fields); an unknown option or name is an :class:`UnlearnError` that lists what is known.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
from typing import Any, Callable, Generic, TypeVar

from .errors import UnlearnError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, package: str | None = None, modules: tuple[str, ...] = ()):
        self.kind = kind
        self._entries: dict[str, type[T]] = {}
        # the package's modules are imported on first lookup, so that built-in components register
        # themselves without the package importing every (possibly heavy) module at start-up
        self._package = package
        self._modules = modules  # or named modules (a package that also holds other code)
        self._loaded = False

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        def deco(cls: type[T]) -> type[T]:
            if name in self._entries and self._entries[name] is not cls:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._entries[name] = cls
            cls.name = name  # type: ignore[attr-defined]
            return cls

        return deco

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            for mod in self._modules:
                importlib.import_module(mod)
            if self._package is not None:
                pkg = importlib.import_module(self._package)
                for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
                    if not info.name.startswith("_"):
                        importlib.import_module(f"{self._package}.{info.name}")

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def get(self, name: str) -> type[T]:
        self._load()
        if name not in self._entries:
            raise UnlearnError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}")
        return self._entries[name]

    def build(self, name: str, options: dict[str, Any] | None = None) -> T:
        cls = self.get(name)
        options = dict(options or {})
        if "preset" in options:  # named settings (e.g. a paper's): the preset, then explicit options
            presets = getattr(cls, "presets", {}) or {}
            preset = options.pop("preset")
            if preset not in presets:
                raise UnlearnError(f"unknown preset {preset!r} for {self.kind} {name!r}; known: "
                                   f"{', '.join(sorted(presets)) or '(none)'}")
            options = {**presets[preset], **options}
        allowed = option_names(cls)
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise UnlearnError(
                f"unknown option(s) {', '.join(unknown)} for {self.kind} {name!r}; "
                f"known: {', '.join(sorted(allowed)) or '(none)'}"
            )
        try:
            return cls(**options)
        except (TypeError, ValueError) as exc:
            raise UnlearnError(f"bad options for {self.kind} {name!r}: {exc}") from exc


def option_names(cls: type) -> list[str]:
    if dataclasses.is_dataclass(cls):
        return [f.name for f in dataclasses.fields(cls) if f.init]
    sig = inspect.signature(cls.__init__)
    return [p for p in sig.parameters if p != "self"]
