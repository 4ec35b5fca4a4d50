"""TOFU's memorisation and membership-inference metrics, as open-unlearning's TOFU evaluation has
them: exact memorization and extraction strength on the forget answers (:mod:`..metrics.extraction`),
and membership attacks with the forget set as members and TOFU's ``holdout01|05|10`` (same size as
``forget01|05|10``, authors never trained on) as non-members (:mod:`..metrics.mia`, AUC).

Items are the forget questions under the benchmark's template with their answers (``limit`` applies).
"""

from __future__ import annotations

from ..errors import UnlearnError
from ..metrics.extraction import memorization_report
from ..metrics.mia import ATTACKS, mia_report
from . import limited
from .source import require


def holdout_config(split: str) -> str:
    return "holdout" + split.removeprefix("forget")


def qa_items(bench, config: str) -> list[dict]:
    recs = limited(bench._load(config), bench.limit)
    require(recs, ["question", "answer"], f"TOFU {config}", strings=["question", "answer"])
    return [{"prompt": bench.template.format(question=r["question"]), "answer": bench._space(r["answer"])}
            for r in recs]


def memorization_and_mia(bench, model, tokenizer, report: dict) -> dict:
    """Adds ``report["memorization"]`` / ``report["mia"]``; returns their summary values."""
    summary = {}
    forget = qa_items(bench, bench.split)
    if bench.memorization:
        mem = memorization_report(model, tokenizer, forget, batch_size=bench.batch_size)
        report["memorization"] = mem
        summary["forget_exact_memorization"] = mem["exact_memorization"]
        summary["forget_extraction_strength"] = mem["extraction_strength"]
    if bench.mia:
        bad = sorted(set(bench.mia) - set(ATTACKS) - {"reference"}) + (
            ["reference (needs a reference model; not available here)"] if "reference" in bench.mia else [])
        if bad:
            raise UnlearnError(f"TOFU mia: unsupported attack(s) {', '.join(bad)}; known: "
                               f"{', '.join(a for a in ATTACKS if a != 'reference')}")
        holdout = qa_items(bench, holdout_config(bench.split))
        mia = mia_report(model, tokenizer, forget, holdout, attacks=bench.mia, batch_size=bench.batch_size)
        report["mia"] = mia
        summary.update({f"mia_{name}_auc": v["auc"] for name, v in mia.items()})
    return summary
