"""The memorisation and membership-inference metrics of open-unlearning's TOFU and MUSE evaluations,
as options of those benchmarks:

- TOFU ``memorization``: exact memorization and extraction strength on the forget answers
  (:mod:`..metrics.extraction`); ``mia``: membership attacks (:mod:`..metrics.mia`, AUC), the forget
  set as members, TOFU's ``holdout01|05|10`` (same size, authors never trained on) as non-members.
  Items are the forget questions under the benchmark's template with their answers.
- MUSE ``memorization``: the same on the VerbMem forget passages (prompt, then ``gt`` scored);
  ``mia``: the attacks on MUSE's ``privleak`` forget and holdout texts.

Min-K % and Min-K %++ use k = 0.4, open-unlearning's TOFU and MUSE setting (MUSE's own). ``limit``
applies. The reference attack needs a reference model, which a benchmark evaluation does not have:
use :func:`..metrics.mia.mia_report` for it.
"""

from __future__ import annotations

from ..errors import UnlearnError
from ..metrics.extraction import memorization_report
from ..metrics.mia import ATTACKS, mia_report
from . import limited
from .source import require

K = 0.4  # Min-K % / Min-K %++ in open-unlearning's TOFU and MUSE configs


def holdout_config(split: str) -> str:
    return "holdout" + split.removeprefix("forget")


def qa_items(bench, config: str) -> list[dict]:
    recs = limited(bench._load(config), bench.limit)
    require(recs, ["question", "answer"], f"TOFU {config}", strings=["question", "answer"])
    return [{"prompt": bench.template.format(question=r["question"]), "answer": bench._space(r["answer"])}
            for r in recs]


def check_attacks(what: str, attacks) -> None:
    bad = sorted(set(attacks) - set(ATTACKS) - {"reference"}) + (
        ["reference (needs a reference model; not available here)"] if "reference" in attacks else [])
    if bad:
        raise UnlearnError(f"{what} mia: unsupported attack(s) {', '.join(bad)}; known: "
                           f"{', '.join(a for a in ATTACKS if a != 'reference')}")


def add_metrics(bench, model, tokenizer, report: dict, summary: dict, memorized: list[dict],
                members: list[dict], nonmembers, max_length: int = 512) -> None:
    """Fills ``report["memorization"]`` / ``report["mia"]`` and their summary values.
    ``nonmembers``: a function returning the holdout items (loaded only when asked)."""
    if bench.memorization:
        mem = memorization_report(model, tokenizer, memorized, bench.batch_size, max_length)
        report["memorization"] = mem
        summary["forget_exact_memorization"] = mem["exact_memorization"]
        summary["forget_extraction_strength"] = mem["extraction_strength"]
    if bench.mia:
        mia = mia_report(model, tokenizer, members, nonmembers(), attacks=bench.mia, k=K,
                         batch_size=bench.batch_size, max_length=max_length)
        report["mia"] = mia
        summary.update({f"mia_{name}_auc": v["auc"] for name, v in mia.items()})


def tofu_metrics(bench, model, tokenizer, report: dict) -> dict:
    """TOFU: adds to ``report``; returns the summary values."""
    summary: dict = {}
    check_attacks("TOFU", bench.mia or ())
    forget = qa_items(bench, bench.split)
    add_metrics(bench, model, tokenizer, report, summary, forget, forget,
                lambda: qa_items(bench, holdout_config(bench.split)))
    return summary


def muse_metrics(bench, model, tokenizer, report: dict, forget: list[str], holdout: list[str]) -> dict:
    """MUSE: adds to ``report``; returns the summary values. ``forget`` / ``holdout``: the privleak texts."""
    summary: dict = {}
    check_attacks("MUSE", bench.mia or ())
    vm = limited(bench._load("verbmem", "forget"), bench.limit)
    memorized = [{"prompt": r["prompt"], "answer": r["gt"]} for r in vm]
    add_metrics(bench, model, tokenizer, report, summary, memorized, [{"text": t} for t in forget],
                lambda: [{"text": t} for t in holdout], bench.max_length)
    return summary
