"""How much forgotten knowledge a model holds, measured against the gold (retain-only) model.

Raw forget accuracy rewards *over*-forgetting: a 4-option MCQ accuracy of 0.12 when gold (which
never saw the facts) scores 0.23 means the model still singles out the right answer, to avoid it.
Two symmetric measures compare the model with gold instead, at the same attack budget and on the
same attack draw (docs/protocol.md):

- ``acc_gap`` = |acc − acc_gold|: the headline. Zero is gold; forgetting below gold's accuracy counts
  against a method exactly as much as remembering above it;
- ``ks`` = the two-sample Kolmogorov–Smirnov distance between the per-item probabilities of the
  correct option (among the four) of the model and of gold. It compares whole distributions (as
  TOFU's forget quality does for truth ratios), so a model whose accuracy matches gold's by a mix of
  items it knows and items it avoids still shows a distance.

``recovery`` = (post − pre) / (original − pre): the share of what unlearning removed that the attack
brought back (0: nothing, 1: everything).
"""

from __future__ import annotations

import statistics
from typing import Sequence


def ks_distance(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sample KS statistic sup_x |F_a(x) − F_b(x)| (``scipy.stats.ks_2samp``)."""
    from scipy.stats import ks_2samp

    if len(a) == 0 or len(b) == 0:
        raise ValueError("the KS distance needs two non-empty samples")
    return float(ks_2samp(list(a), list(b)).statistic)


def recovery(pre: float, post: float, original: float) -> float | None:
    """Share of the removed accuracy that came back; None when nothing was removed."""
    removed = original - pre
    return (post - pre) / removed if removed > 1e-9 else None


def gap_rows(rows: list[dict], gold_rows: list[dict]) -> list[dict]:
    """Pair every attack row with gold's row of the same draw (``seed``) and budget; add ``gold_acc``,
    ``acc_gap`` (|acc − gold|), ``signed_gap`` and, when both carry ``forget_probs``, ``ks``."""
    gold = {(r["seed"], r["samples"], r["steps"]): r for r in gold_rows}
    out = []
    for r in rows:
        g = gold.get((r["seed"], r["samples"], r["steps"]))
        if g is None:
            raise ValueError(
                f"no gold row for draw {r['seed']} at {r['samples']}x{r['steps']}: attack gold "
                "with the same draws and budgets"
            )
        entry = {
            "samples": r["samples"],
            "steps": r["steps"],
            "seed": r["seed"],
            "forget_acc": r["forget_acc"],
            "gold_acc": g["forget_acc"],
            "signed_gap": r["forget_acc"] - g["forget_acc"],
            "acc_gap": abs(r["forget_acc"] - g["forget_acc"]),
        }
        if r.get("forget_probs") and g.get("forget_probs"):
            entry["ks"] = ks_distance(r["forget_probs"], g["forget_probs"])
        out.append(entry)
    return out


def by_budget(
    rows: list[dict], keys: Sequence[str] = ("forget_acc", "gold_acc", "signed_gap", "acc_gap", "ks")
) -> list[dict]:
    """Mean and spread over attack draws, per (samples, steps)."""
    groups: dict[tuple[int, int], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["samples"], r["steps"]), []).append(r)
    out = []
    for (k, s), rs in sorted(groups.items()):
        entry: dict = {"samples": k, "steps": s, "draws": len(rs)}
        for key in keys:
            vals = [r[key] for r in rs if isinstance(r.get(key), (int, float))]
            if vals:
                entry[key] = statistics.fmean(vals)
                entry[f"{key}_draw_std"] = statistics.pstdev(vals) if len(vals) > 1 else 0.0
        out.append(entry)
    return out
