"""The cheap attacks and diagnostics, by name, for ``unlearn demo --attacks …``.

``run_extras(model, tok, bench, ["quantize", "sharpness"])`` returns ``(attacks, diagnostics)``:
dicts keyed by name, stored per results entry under ``attacks.<name>`` and ``diagnostics.<name>``
(the relearning attack is run by the demo itself), on any benchmark, the world included.
"""

from __future__ import annotations

ATTACKS = ("quantize", "jailbreak", "incontext")
DIAGNOSTICS = ("sharpness", "landscape")
EXTRAS = ATTACKS + DIAGNOSTICS


def parse_extras(text: str | None) -> list[str]:
    """``relearn,quantize,sharpness`` -> ``["quantize", "sharpness"]`` (relearn always runs)."""
    names = [n.strip() for n in (text or "").split(",") if n.strip()]
    bad = [n for n in names if n != "relearn" and n not in EXTRAS]
    if bad:
        raise ValueError(f"unknown attack or diagnostic {bad[0]!r}; known: relearn, {', '.join(EXTRAS)}")
    return [n for n in dict.fromkeys(names) if n != "relearn"]


def run_extras(model, tokenizer, bench, names: list[str]) -> tuple[dict, dict]:
    """The extras on ``bench`` (a :class:`~..benchmarks.Benchmark`, the world included): quantization
    scored by the benchmark's attack scores (stored under its ``QUANTIZE_KEY``), GCG on its forget
    questions, the in-context attack where it has persons, the diagnostics on its forget target;
    smaller settings where ``bench.quick``."""
    attacks: dict = {}
    diagnostics: dict = {}
    for name in names:
        if name == "quantize":
            from .quantize import QuantizeConfig, quantize_attack

            attacks[bench.QUANTIZE_KEY] = quantize_attack(
                model, tokenizer, None, QuantizeConfig(), score=lambda m: bench.attack_scores(m, tokenizer))
        elif name == "jailbreak":
            from .jailbreak import JailbreakConfig, gcg_items

            quick = JailbreakConfig(iters=10, candidates=32, train_questions=8)
            cfg = quick if bench.quick else JailbreakConfig()
            attacks[name] = gcg_items(model, tokenizer, bench.attack_items(), cfg)
        elif name == "incontext":
            from .incontext import InContextConfig, incontext_attack

            attacks[name] = incontext_attack(model, tokenizer, bench.incontext_world(), InContextConfig())
        elif name == "sharpness":
            from ..diagnostics.sharpness import SharpnessConfig, sharpness

            diagnostics[name] = sharpness(model, tokenizer, bench.forget_target(), SharpnessConfig())
        elif name == "landscape":
            from ..diagnostics.landscape import LandscapeConfig, landscape

            cfg = LandscapeConfig(points_1d=11, points_2d=7) if bench.quick else LandscapeConfig()
            diagnostics[name] = landscape(model, tokenizer, bench.forget_target(), cfg)
        else:
            raise ValueError(f"unknown attack or diagnostic {name!r}; known: {', '.join(EXTRAS)}")
    return attacks, diagnostics
