"""The cheap attacks and diagnostics, by name, for ``unlearn demo --attacks …``.

``run_extras(model, tok, world, ["quantize", "sharpness"])`` returns ``(attacks, diagnostics)``:
dicts keyed by name, stored per results entry under ``attacks.<name>`` and ``diagnostics.<name>``
(the relearning attack is run by the demo itself). ``quick`` picks smaller settings.
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


def run_extras(model, tokenizer, world, names: list[str], quick: bool = False) -> tuple[dict, dict]:
    attacks: dict = {}
    diagnostics: dict = {}
    for name in names:
        if name == "quantize":
            from .quantize import QuantizeConfig, quantize_attack

            attacks[name] = quantize_attack(model, tokenizer, world, QuantizeConfig())
        elif name == "jailbreak":
            from .jailbreak import JailbreakConfig, gcg_attack

            cfg = JailbreakConfig(iters=10, candidates=32, train_questions=8) if quick else JailbreakConfig()
            attacks[name] = gcg_attack(model, tokenizer, world, cfg)
        elif name == "incontext":
            from .incontext import InContextConfig, incontext_attack

            attacks[name] = incontext_attack(model, tokenizer, world, InContextConfig())
        elif name == "sharpness":
            from ..diagnostics.sharpness import SharpnessConfig, sharpness

            diagnostics[name] = sharpness(model, tokenizer, world, SharpnessConfig())
        elif name == "landscape":
            from ..diagnostics.landscape import LandscapeConfig, landscape

            cfg = LandscapeConfig(points_1d=11, points_2d=7) if quick else LandscapeConfig()
            diagnostics[name] = landscape(model, tokenizer, world, cfg)
        else:
            raise ValueError(f"unknown attack or diagnostic {name!r}; known: {', '.join(EXTRAS)}")
    return attacks, diagnostics


def run_benchmark_extras(model, tokenizer, bench, names: list[str]) -> tuple[dict, dict]:
    """The same on a standard benchmark (TOFU, MUSE, WMDP): quantization scored by the benchmark's
    summary metrics (stored as ``benchmark_quantize``), GCG on its forget questions, and the
    diagnostics on its forget records. The in-context attack needs the world's persons."""
    attacks: dict = {}
    diagnostics: dict = {}
    for name in names:
        if name == "quantize":
            from .quantize import QuantizeConfig, quantize_attack

            attacks["benchmark_quantize"] = quantize_attack(
                model, tokenizer, None, QuantizeConfig(), score=lambda m: bench.scores(m, tokenizer))
        elif name == "jailbreak":
            from .jailbreak import JailbreakConfig, gcg_items

            attacks[name] = gcg_items(model, tokenizer, bench.attack_items(), JailbreakConfig())
        elif name in DIAGNOSTICS:
            forget = bench.unlearning_data()[0]
            if name == "sharpness":
                from ..diagnostics.sharpness import SharpnessConfig, sharpness

                diagnostics[name] = sharpness(model, tokenizer, forget, SharpnessConfig())
            else:
                from ..diagnostics.landscape import LandscapeConfig, landscape

                diagnostics[name] = landscape(model, tokenizer, forget, LandscapeConfig())
        else:
            raise ValueError(f"{name!r} runs on the world only; on a benchmark: relearn, quantize, "
                             "jailbreak, sharpness, landscape")
    return attacks, diagnostics
