"""Tuned settings for the embedded world, one YAML file per world (``world.yaml``).

A method's config is the deep merge of ``defaults``, then the entry for its objective, strategy and
parameterization, then an entry for the exact method name if there is one.
"""

from __future__ import annotations

from importlib import resources

import yaml

from ..config import deep_merge
from ..method import parse_method


def load_recipe(name: str = "world") -> dict:
    text = resources.files(__name__).joinpath(f"{name}.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def method_config(method: str, recipe: dict | None = None) -> dict:
    recipe = recipe if recipe is not None else load_recipe()
    m = parse_method(method)
    out = dict(recipe.get("defaults", {}))
    for section, key in (("objectives", m.objective), ("strategies", m.strategy),
                         ("parameterizations", m.parameterization)):
        out = deep_merge(out, (recipe.get(section) or {}).get(key) or {})
    out = deep_merge(out, (recipe.get("methods") or {}).get(m.name) or {})
    out = deep_merge(out, (recipe.get("methods") or {}).get(method) or {})
    out["method"] = method
    return out


def recipe_attack(recipe: dict, quick: bool = False) -> dict:
    """The relearning attack's settings: ``attack``, with ``quick_attack`` on top for the quick world."""
    att = dict(recipe.get("attack") or {})
    if quick:
        att.update(recipe.get("quick_attack") or {})
    return att
