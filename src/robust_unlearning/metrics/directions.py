"""Which way is better for each benchmark metric, as the results and the report label it
(docs/conventions.md).

Keys are the summary keys of the TOFU, MUSE and WMDP benchmarks (and of the benchmark attacks' rows);
:func:`label` is the text shown next to a metric: its direction and, for MUSE's AUC and PrivLeak,
the convention (MUSE's AUC is ``P(holdout text scores more member-like than forget text)``).
"""

from __future__ import annotations

HIGHER = "higher is better"
LOWER = "lower is better"

MUSE_AUC = "AUC = P(holdout text scores more member-like than forget text)"
PRIVLEAK = ("closer to 0 is better; MUSE convention: (AUC - AUC_retrain) / AUC_retrain × 100, "
            f"{MUSE_AUC}; about -100 = forget set memorised")

LABELS: dict[str, str] = {
    # TOFU: forget set (lower probability / ROUGE = more forgotten)
    "forget_probability": LOWER,
    "forget_rougeL_recall": LOWER,
    "forget_truth_ratio": "higher is better (mean min(R, 1/R); 1 = cannot tell right from wrong)",
    "forget_quality": "higher is better (KS-test p-value against the retain-only model)",
    "model_utility": HIGHER,
    "forget_gibberish": "higher is better (P(clean) of the forget answers: fluent, not noise)",
    # MUSE
    "verbmem_forget": LOWER,
    "knowmem_forget": LOWER,
    "knowmem_retain": HIGHER,
    "mink_auc": f"closer to the retrain model's is better; {MUSE_AUC}",
    "retrain_auc": f"reference; {MUSE_AUC}",
    "privleak": PRIVLEAK,
    # WMDP (4 options: chance 0.25)
    "wmdp_bio_acc": "lower is better (chance 0.25)",
    "wmdp_cyber_acc": "lower is better (chance 0.25)",
    "mmlu_acc": HIGHER,
    # benchmark attacks
    "heldout_forget_nll": "higher is better (lower: knowledge came back)",
    "drawn_forget_nll": "higher is better (lower: knowledge came back)",
}
LABELS.update({"forget_exact_memorization": LOWER, "forget_extraction_strength": LOWER,  # TOFU extras
               **{f"mia_{a}_auc": "closer to 0.5 is better (AUC = P(forget item scores more member-like "
                  "than holdout item))" for a in ("loss", "zlib", "reference", "min_k", "min_k_plus_plus",
                                                   "gradnorm")}})
for _set in ("retain", "real_authors", "world_facts"):  # TOFU's utility values
    for _m in ("probability", "rougeL_recall", "truth_ratio"):
        LABELS[f"{_set}_{_m}"] = HIGHER


def label(key: str) -> str | None:
    """The direction (and convention) of the metric ``key``, or None when it has none."""
    return LABELS.get(key)


def directions(summary: dict) -> dict[str, str]:
    """``{key: label}`` for the labelled keys of a benchmark summary."""
    return {k: LABELS[k] for k in summary if k in LABELS}
