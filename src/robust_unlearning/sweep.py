"""``unlearn sweep``: utility–robustness frontiers under the evaluation protocol (docs/protocol.md).

A plan (YAML, see ``configs/world/frontier.yaml``) names a tuning world, evaluation worlds, seeds, the
relearning attack and, for every method, the same number of candidate settings along the method's
own strength knob. The sweep

1. **tunes** on the tuning world: every candidate of every method, unlearned and attacked;
2. **selects**, by a rule fixed in this file before any run: a method's reference is its vanilla
   base's first candidate (``npo`` for ``npo+…``); candidates whose held-out retain accuracy on the
   tuning world is at least the reference's minus ``utility_drop`` are eligible, and the eligible one
   with the smallest post-attack knowledge gap at the largest budget (|acc − acc_gold|) is chosen
   (none eligible: the one with the highest retain accuracy, and the summary says so);
3. **evaluates** every candidate on the evaluation worlds over the seeds (the frontier), the gold
   model attacked with the same draws;
4. **reports** the chosen candidates on the evaluation worlds — raw accuracies, held-out utility,
   post-attack accuracy, the symmetric gap and KS distance to gold, recovery, and budget accounting
   (forget / retain samples consumed, passes, seconds) — with the spread over unlearning seeds and
   over attack draws kept apart, plus a frontier plot of every candidate.

Rows are appended to ``rows.jsonl`` as jobs finish; a rerun skips the jobs already there, so an
interrupted sweep resumes. ``workers`` > 1 runs jobs in parallel processes.
"""

from __future__ import annotations

import copy
import json
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import UnlearnError
from .io import write_json_atomic, write_text_atomic
from .metrics.knowledge import by_budget, gap_rows, recovery

GOLD = "gold"


@dataclass(frozen=True)
class Job:
    phase: str  # tune | eval
    world: str
    label: str  # the method's name in the plan (gold for the gold model)
    method: str
    candidate: int
    seed: int

    @property
    def key(self) -> str:
        return f"{self.phase}|{self.world}|{self.label}|{self.candidate}|{self.seed}"


def load_plan(path: str | Path) -> dict:
    from .config import load_yaml
    from .method import parse_method

    plan = load_yaml(path)
    for key in ("tuning_world", "eval_worlds", "seeds", "attack", "methods"):
        if key not in plan:
            raise UnlearnError(f"{path}: the plan needs '{key}'")
    counts = {}
    for label, spec in plan["methods"].items():
        if (
            not isinstance(spec, dict)
            or not isinstance(spec.get("candidates"), list)
            or not spec["candidates"]
        ):
            raise UnlearnError(f"{path}: methods.{label} needs a non-empty 'candidates' list")
        try:
            parse_method(spec.get("method", label))
        except (ValueError, UnlearnError) as exc:
            raise UnlearnError(f"{path}: methods.{label}: {exc}") from exc
        counts[label] = len(spec["candidates"])
    if len(set(counts.values())) > 1:
        raise UnlearnError(f"{path}: every method must have the same number of candidates, got {counts}")
    if plan["tuning_world"] in plan["eval_worlds"]:
        raise UnlearnError(f"{path}: the tuning world must not be an evaluation world")
    plan.setdefault("tune_seeds", [0])
    plan.setdefault("utility_drop", 0.02)
    plan.setdefault("frontier_on_eval", True)  # false: only gold and the chosen candidates run there
    if not isinstance(plan["frontier_on_eval"], bool):
        raise UnlearnError(f"{path}: frontier_on_eval must be true or false")
    return plan


def jobs_for(plan: dict, phase: str) -> list[Job]:
    worlds = [plan["tuning_world"]] if phase == "tune" else list(plan["eval_worlds"])
    seeds = plan["tune_seeds"] if phase == "tune" else plan["seeds"]
    jobs = [Job(phase, w, GOLD, GOLD, 0, s) for w in worlds for s in seeds]
    for label, spec in plan["methods"].items():
        for i in range(len(spec["candidates"])):
            jobs += [Job(phase, w, label, spec.get("method", label), i, s) for w in worlds for s in seeds]
    return jobs


# -- one job -------------------------------------------------------------------------------------
_WORLDS: dict = {}


def _world(name: str, device: str | None):
    if name not in _WORLDS:
        from .benchmarks.world import world_bundle
        from .io import load_model
        from .world.benchmark import evaluate, unlearning_data

        bundle = world_bundle(name)
        full, tok = load_model(bundle.full_dir)
        gold, _ = load_model(bundle.gold_dir)
        if device:
            full, gold = full.to(device), gold.to(device)
        forget, retain = unlearning_data(bundle.world)
        original = evaluate(full, tok, bundle.world)
        _WORLDS[name] = (bundle.world, full, gold, tok, forget, retain, original)
    return _WORLDS[name]


def attack_config(plan: dict, seed: int):
    from .attacks.relearn import RelearnConfig

    att = dict(plan["attack"])
    draws = att.pop("draws", 3)
    return RelearnConfig(**att, seeds=[seed * 1000 + d for d in range(draws)])


def run_job(job: Job, plan: dict, device: str | None = None, threads: int = 0) -> dict:
    import torch

    from .attacks.relearn import relearn_attack
    from .config import build_config, deep_merge
    from .loop import unlearn
    from .recipes import load_recipe, method_config
    from .world.benchmark import evaluate

    if threads:
        torch.set_num_threads(threads)
    world, full, gold, tok, forget, retain, original = _world(job.world, device)
    t0 = time.perf_counter()
    row: dict = {
        "key": job.key,
        "phase": job.phase,
        "world": job.world,
        "label": job.label,
        "method": job.method,
        "candidate": job.candidate,
        "seed": job.seed,
        "original": {k: original[k] for k in ("forget_acc", "retain_acc")},
    }
    if job.label == GOLD:
        model = gold
    else:
        cand = plan["methods"][job.label]["candidates"][job.candidate] or {}
        data = deep_merge(method_config(job.method, load_recipe(plan.get("recipe", "world"))), cand)
        data.setdefault("train", {})["seed"] = job.seed
        res = unlearn(
            copy.deepcopy(full),
            tok,
            forget,
            retain,
            build_config(data, f"{job.label} #{job.candidate}"),
            desc=f"{job.label} #{job.candidate} s{job.seed}",
        )
        model = res.export()
        if device:
            model = model.to(device)
        m = res.metrics
        row["config"] = cand
        row["budget"] = {k: m[k] for k in ("forget_samples", "retain_samples", "passes", "steps", "seconds")}
    row.update(evaluate(model, tok, world, details=True))
    row["relearn_runs"] = relearn_attack(
        model,
        tok,
        world,
        attack_config(plan, job.seed),
        desc=f"relearn {job.label} #{job.candidate} s{job.seed}",
    )
    row["job_seconds"] = round(time.perf_counter() - t0, 2)
    return row


def _read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


def run_sweep(
    plan: dict,
    out: str | Path,
    phases: tuple[str, ...] = ("tune", "eval"),
    workers: int = 1,
    threads: int = 0,
    device: str | None = None,
    log=print,
    deadline: float | None = None,
) -> dict:
    """Tune, select, evaluate, summarise. Evaluation runs gold and the chosen candidates first, then
    the other candidates (the rest of the frontier). ``deadline`` (seconds from now): no job starts
    after it; the summary covers what finished."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows_path = out / "rows.jsonl"
    t0 = time.perf_counter()
    stop_at = None if deadline is None else t0 + deadline
    pool = None
    if workers > 1:
        from .parallel import worker_pool

        pool = worker_pool(workers, threads or 1)
    try:
        with open(rows_path, "a") as fh:
            for phase in phases:
                done = {r["key"] for r in _read_rows(rows_path)}
                jobs = [j for j in jobs_for(plan, phase) if j.key not in done]
                if phase == "eval":
                    chosen = {k: v["candidate"] for k, v in select(plan, _read_rows(rows_path)).items()}
                    jobs.sort(
                        key=lambda j: 0 if j.label == GOLD else 1 if chosen.get(j.label) == j.candidate else 2
                    )
                    if not plan["frontier_on_eval"]:  # the chosen candidates only: no frontier there
                        jobs = [j for j in jobs if j.label == GOLD or chosen.get(j.label) == j.candidate]
                log(f"sweep {phase}: {len(jobs)} jobs to run ({len(done)} rows already in {rows_path})")
                _run_jobs(jobs, plan, device, threads, pool, fh, stop_at, t0, log)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    return analyze(plan, out, log=log)


def _run_jobs(jobs: list[Job], plan: dict, device, threads: int, pool, fh, stop_at, t0: float, log) -> None:
    def record(row: dict, i: int) -> None:
        fh.write(json.dumps(row) + "\n")
        fh.flush()
        log(
            f"[{i}/{len(jobs)}] {row['phase']} {row['world']} {row['label']} #{row['candidate']} "
            f"s{row['seed']}: forget {row['forget_acc']:.3f} retain {row['retain_acc']:.3f} "
            f"({row['job_seconds']:.0f}s; {time.perf_counter() - t0:.0f}s elapsed)"
        )

    def late() -> bool:
        return stop_at is not None and time.perf_counter() > stop_at

    if pool is None:
        for i, job in enumerate(jobs, 1):
            if late():
                log(f"deadline: {len(jobs) - i + 1} jobs not started")
                return
            record(run_job(job, plan, device, threads), i)
        return
    from concurrent.futures import FIRST_COMPLETED, wait

    futures = {pool.submit(run_job, j, plan, device, threads or 1): j for j in jobs}
    pending, i = set(futures), 0
    while pending:
        finished, pending = wait(pending, timeout=5, return_when=FIRST_COMPLETED)
        for fut in finished:
            if fut.cancelled():
                continue
            i += 1
            record(fut.result(), i)
        if late():
            cancelled = sum(f.cancel() for f in pending)
            if cancelled:
                log(f"deadline: {cancelled} jobs not started")
            pending = {f for f in pending if not f.cancelled()}


# -- selection and summary -----------------------------------------------------------------------
def largest_budget(budgets) -> tuple[int, int]:
    """The (samples, steps) budget with the most samples, then the most steps: the headline's."""
    return tuple(max((tuple(b) for b in budgets), key=lambda b: (b[0], b[1])))  # type: ignore[return-value]


def _last_budget(plan: dict) -> tuple[int, int]:
    return largest_budget(plan["attack"]["budgets"])


def model_scores(row: dict, gold_row: dict, budget: tuple[int, int]) -> dict:
    """One unlearned model against gold of the same world and seed: per budget, means over draws."""
    gaps = by_budget(gap_rows(row["relearn_runs"], gold_row["relearn_runs"]))
    last = next(g for g in gaps if (g["samples"], g["steps"]) == budget)
    post = last["forget_acc"]
    return {
        "forget_acc": row["forget_acc"],
        "retain_acc": row["retain_acc"],
        "utility_nll": row.get("utility_nll"),
        "retain_train_acc": row.get("retain_train_acc"),
        "gap": last["acc_gap"],
        "signed_gap": last["signed_gap"],
        "ks": last.get("ks"),
        "post": post,
        "gold_post": last["gold_acc"],
        "gap_draw_std": last["acc_gap_draw_std"],
        "recovery": recovery(row["forget_acc"], post, row["original"]["forget_acc"]),
        "budgets": gaps,
        **(row.get("budget") or {}),
    }


def _reference_label(label: str, plan: dict) -> str:
    spec = plan["methods"][label]
    if spec.get("reference"):
        return spec["reference"]
    base = spec.get("method", label).split("+")[0]
    return base if base in plan["methods"] else label


def select(plan: dict, rows: list[dict]) -> dict:
    """The rule of the module docstring, on the tuning world's rows."""
    budget = _last_budget(plan)
    tune = [r for r in rows if r["phase"] == "tune"]
    gold = {(r["world"], r["seed"]): r for r in tune if r["label"] == GOLD}
    scores: dict[tuple[str, int], list[dict]] = {}
    for r in tune:
        if r["label"] != GOLD:
            scores.setdefault((r["label"], r["candidate"]), []).append(
                model_scores(r, gold[(r["world"], r["seed"])], budget)
            )

    def mean(label: str, cand: int, key: str) -> float:
        return statistics.fmean(s[key] for s in scores[(label, cand)])

    chosen = {}
    for label, spec in plan["methods"].items():
        cands = [i for i in range(len(spec["candidates"])) if (label, i) in scores]
        if not cands:
            continue
        ref = _reference_label(label, plan)
        if (ref, 0) not in scores:
            continue
        floor = mean(ref, 0, "retain_acc") - plan.get("utility_drop", 0.02)
        ok = [i for i in cands if mean(label, i, "retain_acc") >= floor - 1e-9]
        pick = (
            min(ok, key=lambda i: mean(label, i, "gap"))
            if ok
            else max(cands, key=lambda i: mean(label, i, "retain_acc"))
        )
        chosen[label] = {
            "candidate": pick,
            "config": spec["candidates"][pick] or {},
            "eligible": len(ok),
            "of": len(cands),
            "reference": ref,
            "retain_floor": round(floor, 4),
            "tune_retain_acc": round(mean(label, pick, "retain_acc"), 4),
            "tune_gap": round(mean(label, pick, "gap"), 4),
        }
    return chosen


def _ms(vals: list[float]) -> tuple[float | None, float | None]:
    vals = [v for v in vals if v is not None]
    if not vals:
        return None, None
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else None)  # one: no spread


SUMMARY_KEYS = (
    "forget_acc",
    "retain_acc",
    "utility_nll",
    "retain_train_acc",
    "post",
    "gold_post",
    "gap",
    "signed_gap",
    "ks",
    "recovery",
    "forget_samples",
    "retain_samples",
    "passes",
    "seconds",
)


def aggregate(scores: list[dict]) -> dict:
    """Mean and std over models (unlearning seeds, worlds) of :func:`model_scores`; the spread over
    attack draws is kept apart as ``gap_draw_std`` (the mean over models of the std over draws)."""
    out: dict = {"models": len(scores)}
    for key in SUMMARY_KEYS:
        m, s = _ms([x.get(key) for x in scores])
        if m is not None:
            out[key], out[f"{key}_seed_std"] = m, s
    out["gap_draw_std"] = statistics.fmean(x["gap_draw_std"] for x in scores)
    budgets = []
    for i, b in enumerate(scores[0]["budgets"]):
        entry = {"samples": b["samples"], "steps": b["steps"]}
        for key in ("forget_acc", "gold_acc", "acc_gap", "ks"):
            m, s = _ms([x["budgets"][i].get(key) for x in scores])
            if m is not None:
                entry[key], entry[f"{key}_seed_std"] = m, s
        budgets.append(entry)
    out["budgets"] = budgets
    return out


def paired(mine: dict, ref: dict) -> dict | None:
    """A method's chosen candidate against its vanilla reference's, model by model: ``mine`` and
    ``ref`` map (world, seed) to a post-attack gap; pairs share the world, the unlearning seed and
    the attack draws. Mean (and std) of reference − mine (> 0: a smaller gap than the reference's),
    in how many models it is smaller, and the two-sided p of the paired t-test and of the Wilcoxon
    signed-rank test (``None`` below 3 pairs, or when every difference is 0). ``None`` below 2 pairs."""
    keys = sorted(set(mine) & set(ref))
    if len(keys) < 2:
        return None
    diffs = [ref[k] - mine[k] for k in keys]
    out = {"models": len(keys), "gap_diff": statistics.fmean(diffs),
           "gap_diff_std": statistics.stdev(diffs), "smaller_in": sum(d > 0 for d in diffs),
           "p_t": None, "p_wilcoxon": None}
    if len(keys) >= 3 and any(d != 0 for d in diffs):
        from scipy import stats

        out["p_t"] = float(stats.ttest_rel([ref[k] for k in keys], [mine[k] for k in keys]).pvalue)
        out["p_wilcoxon"] = float(stats.wilcoxon(diffs).pvalue)
    return out


def summarize(plan: dict, rows: list[dict], chosen: dict) -> dict:
    budget = _last_budget(plan)
    ev = [r for r in rows if r["phase"] == "eval"]
    gold = {(r["world"], r["seed"]): r for r in ev if r["label"] == GOLD}
    per: dict[tuple[str, int], dict] = {}  # (label, candidate) -> {(world, seed): model_scores}
    for r in ev:
        if r["label"] != GOLD and (r["world"], r["seed"]) in gold:
            per.setdefault((r["label"], r["candidate"]), {})[r["world"], r["seed"]] = model_scores(
                r, gold[(r["world"], r["seed"])], budget
            )

    frontier = [
        {
            "label": label,
            "candidate": c,
            "config": plan["methods"][label]["candidates"][c] or {},
            "chosen": chosen.get(label, {}).get("candidate") == c,
            **aggregate(list(sc.values())),
        }
        for (label, c), sc in sorted(per.items())
    ]
    table = [
        {"label": label, **chosen[label], **aggregate(list(per[label, chosen[label]["candidate"]].values()))}
        for label in plan["methods"]
        if label in chosen and (label, chosen[label]["candidate"]) in per
    ]

    def gaps(label: str, cand: int) -> dict:
        return {k: sc["gap"] for k, sc in per[(label, cand)].items()}

    for row in table:
        ref = row["reference"]
        if ref != row["label"] and ref in chosen and (ref, chosen[ref]["candidate"]) in per:
            row["paired"] = paired(gaps(row["label"], row["candidate"]), gaps(ref, chosen[ref]["candidate"]))
    golds = [g for g in gold.values()]
    gold_block: dict = {"models": len(golds)}
    if golds:
        pre = [g["forget_acc"] for g in golds]
        post = [
            statistics.fmean(
                r["forget_acc"] for r in g["relearn_runs"] if (r["samples"], r["steps"]) == budget
            )
            for g in golds
        ]
        for key, vals in (
            ("forget_acc", pre),
            ("post", post),
            ("retain_acc", [g["retain_acc"] for g in golds]),
            ("utility_nll", [g.get("utility_nll") for g in golds]),
            ("moved", [b - a for a, b in zip(pre, post, strict=True)]),
        ):
            gold_block[key], gold_block[f"{key}_seed_std"] = _ms(vals)
    originals = {r["world"]: r["original"] for r in ev}
    return {
        "budget": list(budget),
        "chosen": chosen,
        "table": table,
        "frontier": frontier,
        "gold": gold_block,
        "original": originals,
        "worlds": plan["eval_worlds"],
        "seeds": plan["seeds"],
        "tuning_world": plan["tuning_world"],
        "attack": plan["attack"],
    }


def pm(v, s=None, d=3) -> str:
    """``v ± s`` with ``d`` digits; ``v`` alone without ``s``; an en dash for a missing ``v``."""
    if v is None:
        return "–"
    return f"{v:.{d}f}" + (f" ± {s:.{d}f}" if s is not None else "")


def render_markdown(summary: dict) -> str:
    k, s = summary["budget"]
    g = summary["gold"]
    lines = [
        f"Evaluation worlds {', '.join(summary['worlds'])}; seeds {summary['seeds']}; tuned on "
        f"{summary['tuning_world']} only. Attack: {summary['attack']}. ± is the std over unlearning seeds "
        f"and worlds; 'draw std' the mean std over attack draws of one model. Gap = |acc − acc_gold| after "
        f"the {k}×{s} attack (same draw for both); KS = distance between the per-item correct-option "
        "probabilities of the model and of gold; recovery = (post − pre) / (original − pre).",
        "",
        f"gold: forget {pm(g.get('forget_acc'), g.get('forget_acc_seed_std'))}, after attack "
        f"{pm(g.get('post'), g.get('post_seed_std'))} "
        f"(moved {pm(g.get('moved'), g.get('moved_seed_std'))}), "
        f"held-out retain {pm(g.get('retain_acc'), g.get('retain_acc_seed_std'))}",
        "",
        "| method | setting | forget acc | held-out retain | held-out NLL | trained-retain acc "
        f"| after {k}×{s} | gap (↓) | draw std | KS (↓) | recovery | forget samples | retain samples "
        "| passes | s |",
        "|" + "---|" * 15,
    ]
    for r in summary["table"]:
        lines.append(
            "| "
            + " | ".join(
                [
                    r["label"],
                    json.dumps(r["config"]).replace("|", "/"),
                    pm(r.get("forget_acc"), r.get("forget_acc_seed_std")),
                    pm(r.get("retain_acc"), r.get("retain_acc_seed_std")),
                    pm(r.get("utility_nll"), r.get("utility_nll_seed_std")),
                    pm(r.get("retain_train_acc")),
                    pm(r.get("post"), r.get("post_seed_std")),
                    pm(r.get("gap"), r.get("gap_seed_std")),
                    pm(r.get("gap_draw_std")),
                    pm(r.get("ks"), r.get("ks_seed_std")),
                    pm(r.get("recovery"), r.get("recovery_seed_std"), 2),
                    pm(r.get("forget_samples"), None, 0),
                    pm(r.get("retain_samples"), None, 0),
                    pm(r.get("passes"), None, 0),
                    pm(r.get("seconds"), None, 1),
                ]
            )
            + " |"
        )
    pairs = [r for r in summary["table"] if r.get("paired")]
    if pairs:
        lines += [
            "",
            "Against the vanilla reference, model by model (the same world, unlearning seed and attack "
            "draws): Δgap = the reference's gap − the method's (> 0: the method ends closer to gold after "
            "the attack), in how many models its gap is smaller, and two-sided p of the paired t-test and "
            "of the Wilcoxon signed-rank test.",
            "",
            "| method | reference | Δgap | smaller in | p (t) | p (Wilcoxon) |",
            "|---|---|---|---|---|---|",
        ]
        for r in pairs:
            q = r["paired"]
            lines.append(
                f"| {r['label']} | {r['reference']} | {pm(q['gap_diff'], q['gap_diff_std'])} | "
                f"{q['smaller_in']} of {q['models']} | {pm(q['p_t'], None, 2)} | "
                f"{pm(q['p_wilcoxon'], None, 2)} |"
            )
    return "\n".join(lines) + "\n"


def frontier_figure(summary: dict):
    from .report.plots import GOLD_STYLE, _colors, _figure

    fig, (ax,) = _figure(1, width=7.5, height=5.0)
    colors = _colors()
    labels = list(dict.fromkeys(p["label"] for p in summary["frontier"]))
    for i, label in enumerate(labels):
        pts = sorted((p for p in summary["frontier"] if p["label"] == label), key=lambda p: p["retain_acc"])
        c = colors[i % len(colors)]
        ax.plot(
            [p["retain_acc"] for p in pts], [p["gap"] for p in pts], "-o", color=c, label=label, alpha=0.8
        )
        for p in pts:
            if p["chosen"]:
                ax.plot(p["retain_acc"], p["gap"], "*", color=c, markersize=16, markeredgecolor="black")
    g = summary["gold"]
    if g.get("retain_acc") is not None:
        ax.plot(
            [g["retain_acc"]],
            [0.0],
            linestyle="none",
            **{k: v for k, v in GOLD_STYLE.items() if k != "linestyle"},
            label="gold",
        )
    k, s = summary["budget"]
    ax.set_xlabel("held-out retain accuracy (↑)")
    ax.set_ylabel(f"|forget acc − gold| after {k}×{s} relearning (↓)")
    ax.set_title("Utility vs knowledge left after the attack (★: chosen on the tuning world)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def report_results(plan: dict, rows: list[dict], summary: dict) -> dict:
    """The chosen candidates' evaluation rows (and gold's) as ``unlearn report`` reads a demo's
    results: one entry per model, the relearning attack summarised over draws; ``sweep``: the summary."""
    from .attacks.relearn import summarize as summarize_draws

    chosen = {k: v["candidate"] for k, v in summary["chosen"].items()}
    entries = []
    for r in rows:
        if r["phase"] != "eval" or (r["label"] != GOLD and chosen.get(r["label"]) != r["candidate"]):
            continue
        entries.append(
            {
                "method": r["label"],
                "seed": f"{r['world']}/{r['seed']}",
                "forget_acc": r["forget_acc"],
                "retain_acc": r["retain_acc"],
                "attacks": {"relearn": summarize_draws(r["relearn_runs"])},
            }
        )
    return {"entries": entries, "attack": plan["attack"], "sweep": summary}


def analyze(plan: dict, out: str | Path, log=print) -> dict:
    from .report.plots import png_bytes

    out = Path(out)
    rows = _read_rows(out / "rows.jsonl")
    chosen = select(plan, rows)
    summary = summarize(plan, rows, chosen)
    write_json_atomic(out / "summary.json", summary)
    write_json_atomic(out / "results.json", report_results(plan, rows, summary))  # for `unlearn report`
    md = render_markdown(summary)
    write_text_atomic(out / "summary.md", md)
    if summary["frontier"]:
        tmp = out / ".frontier.png.tmp"
        tmp.write_bytes(png_bytes(frontier_figure(summary)))
        os.replace(tmp, out / "frontier.png")
    log(md)
    return summary
