"""What the demo reports on the world (used by :class:`~.world.WorldBenchmark`): per method, the
knowledge gap to gold after the same attack draws, the KS distance, recovery and held-out utility,
mean ± std over unlearning seeds (:mod:`robust_unlearning.sweep`'s measures)."""

from __future__ import annotations

from ..sweep import aggregate, largest_budget, model_scores, pm


def summarize_entries(entries: list[dict], budgets) -> list[dict]:
    """Per method: mean ± std over seeds of accuracies, held-out utility, post-attack accuracy, the
    knowledge gap to gold (|acc − acc_gold|, same draw) and KS distance, recovery and budget; the
    spread over attack draws is kept apart (``gap_draw_std``)."""
    last = largest_budget(budgets)
    gold_by_seed = {e["seed"]: {"relearn_runs": e["attacks"]["relearn_runs"]}
                    for e in entries if e["method"] == "gold"}
    out = []
    for method in dict.fromkeys(e["method"] for e in entries):
        es = [e for e in entries if e["method"] == method and e["seed"] in gold_by_seed]
        if not es:
            continue
        scores = [model_scores({**e, "relearn_runs": e["attacks"]["relearn_runs"]}, gold_by_seed[e["seed"]],
                               last) for e in es]
        out.append({"method": method, "seeds": len(es), **aggregate(scores)})
    return out


def table_rows(results: dict) -> tuple[list[str], list[list[str]]]:
    budgets = [tuple(b) for b in results["attack"]["budgets"]]
    head = ["method", "forget acc", "held-out retain", "held-out NLL"]
    head += [f"after {k}×{s}" for k, s in budgets]
    k, s = largest_budget(budgets)
    head += [f"gap @ {k}×{s} (↓)", "draw std", "KS (↓)", "recovery", "forget samples", "passes"]
    rows = []
    for r in results["summary"]:
        cells = [r["method"], pm(r.get("forget_acc"), r.get("forget_acc_seed_std")),
                 pm(r.get("retain_acc"), r.get("retain_acc_seed_std")),
                 pm(r.get("utility_nll"), r.get("utility_nll_seed_std"))]
        by = {(b["samples"], b["steps"]): b for b in r["budgets"]}
        cells += [pm(by[b].get("forget_acc"), by[b].get("forget_acc_seed_std")) if b in by else "–"
                  for b in budgets]
        cells += [pm(r.get("gap"), r.get("gap_seed_std")), pm(r.get("gap_draw_std"), None),
                  pm(r.get("ks"), r.get("ks_seed_std")),
                  pm(r.get("recovery"), r.get("recovery_seed_std"), 2),
                  pm(r.get("forget_samples"), None, 0), pm(r.get("passes"), None, 0)]
        rows.append(cells)
    return head, rows


def intro(results: dict) -> list[str]:
    att = results["attack"]
    return [
        f"# Relearning robustness on the embedded world ({results.get('world_name', 'world')})", "",
        f"Seeds: {results['seeds']} (± is the std over unlearning seeds; 'draw std' the mean std over "
        f"attack draws of one model). Relearning attack: AdamW lr {att['lr']}, batch {att['batch_size']}, "
        f"{len(att['seeds'])} draws of the relearn pool per budget (samples × steps); accuracy is 4-option "
        "MCQ (chance 0.25) on forget facts the attacker never saw. The gold model was never trained on the "
        "forget persons. Gap = |post-attack forget acc − gold's| on the same draw (lower is better; "
        "forgetting below gold counts against a method as much as remembering above it); KS = distance "
        "between the per-item correct-option probabilities of the model and of gold; recovery = "
        "(post − pre) / (original − pre). Held-out retain: facts and biographies (NLL) of retain persons "
        "that unlearning never trained on.", "",
        f"Original model: forget acc {results['original']['forget_acc']:.3f}, "
        f"held-out retain acc {results['original']['retain_acc']:.3f}.", "",
    ]
