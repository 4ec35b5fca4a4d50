"""What the demo reports on a standard benchmark (the :class:`~robust_unlearning.benchmarks.Benchmark`
defaults; the world's is :mod:`.world_demo`): per method, mean ± std over unlearning seeds of every
summary metric, and of the relearning attack's metrics at the largest budget (mean over draws)."""

from __future__ import annotations

import statistics

from ..sweep import largest_budget, pm

SKIP = ("method", "seed", "original", "unlearn", "budget", "attacks", "diagnostics")


def _mean_std(values: list) -> tuple[float | None, float | None]:
    vals = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if not vals:
        return None, None
    return statistics.fmean(vals), statistics.pstdev(vals) if len(vals) > 1 else 0.0


def summarize_methods(entries: list[dict], relearn_key: str) -> list[dict]:
    out = []
    for method in dict.fromkeys(e["method"] for e in entries):
        es = [e for e in entries if e["method"] == method]
        row: dict = {"method": method, "seeds": len(es)}
        for key in [k for k in es[0] if k not in SKIP]:
            m, s = _mean_std([e.get(key) for e in es])
            if m is not None:
                row[key], row[f"{key}_seed_std"] = m, s
        curves = [(e.get("attacks") or {}).get(relearn_key) or [] for e in es]
        if all(curves):
            budget = largest_budget([(r["samples"], r["steps"]) for r in curves[0]])
            last = [next(r for r in c if (r["samples"], r["steps"]) == budget) for c in curves]
            row["relearn_budget"] = list(budget)
            keys = [k for k in last[0] if k not in ("samples", "steps", "draws") and not k.endswith("_std")]
            for key in keys:
                m, s = _mean_std([r.get(key) for r in last])
                if m is not None:
                    row[f"after_{key}"], row[f"after_{key}_seed_std"] = m, s
        out.append(row)
    return out


def table_rows(results: dict) -> tuple[list[str], list[list[str]]]:
    rows = results["summary"]
    keys = list(dict.fromkeys(k for r in rows for k in r if k not in ("method", "seeds", "relearn_budget")
                              and not k.endswith("_seed_std")))
    budget = next((r["relearn_budget"] for r in rows if "relearn_budget" in r), None)
    head = ["method", "seeds"] + [k.replace("after_", f"after {budget[0]}×{budget[1]}: ") if budget else k
                                  for k in keys]
    return head, [[r["method"], str(r["seeds"])] + [pm(r.get(k), r.get(f"{k}_seed_std")) for k in keys]
                  for r in rows]


def intro(results: dict) -> list[str]:
    att = results["attack"]
    return [f"# {results['benchmark']} — {results['model']}", "",
            f"Seeds: {results['seeds']} (± is the std over unlearning seeds). Relearning attack: fine-tune "
            f"on k forget records for s steps (AdamW lr {att['lr']}, batch {att['batch_size']}, "
            f"{len(att['seeds'])} draws per budget); 'after k×s' columns are its metrics at the largest "
            "budget (mean over draws); held-out forget NLL is the per-token NLL of forget records the "
            "attacker did not see (lower: more came back). `unlearn report` on this directory shows every "
            "budget and metric.", ""]
