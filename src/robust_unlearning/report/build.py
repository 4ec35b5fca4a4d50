"""Assemble tables and figures from results files and write report.html, report.md, figures/."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from ..io import write_text_atomic
from ..metrics.directions import label as metric_label
from . import metrics as M
from .load import Series, load_runs
from .render import render_html, render_markdown


@dataclass
class Table:
    title: str
    head: list[str]
    rows: list[list[str]]
    note: str = ""
    labels: list[str] = field(default_factory=list)  # per column: direction / convention ("" none)


@dataclass
class Figure:
    name: str
    title: str
    png: bytes
    caption: str = ""


@dataclass
class Report:
    runs: list[dict]
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)


def _f(x: float | None, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if x != 0 and abs(x) < 0.5 * 10 ** -digits:  # would print as 0.000: show its size instead
        return f"{x:.1e}"
    return f"{x:.{digits}f}"


def _pm(ms: tuple[float, float] | None, digits: int = 3) -> str:
    if ms is None or math.isnan(ms[0]):
        return "-"
    m, s = ms
    return _f(m, digits) if not s or math.isnan(s) else f"{_f(m, digits)} ± {_f(s, digits)}"


def _gold_of(series: list[Series], s: Series) -> Series | None:
    return next((g for g in series if g.is_gold and g.run == s.run), None)


def _split(series: list[Series], fn) -> tuple[dict, dict]:
    """label -> fn(series) for non-gold and gold series, dropping empty results."""
    normal, gold = {}, {}
    for s in series:
        v = fn(s)
        if v:
            (gold if s.is_gold else normal)[s.label] = v
    return normal, gold


# -- sections --------------------------------------------------------------------------------------

def _accuracy_section(series: list[Series], rep: Report) -> None:
    names = M.relearn_names(series)
    budgets: list[tuple[str, int, int]] = []
    for name in names:
        pts = sorted({(k, st) for s in series for k, c in M.relearn_curves(s, name).items()
                      for st in c if st > 0})
        budgets += [(name, k, st) for k, st in pts]
    head = ["method", "seeds", "forget acc", "retain acc"]
    head += [f"{n}: forget after {k}×{st}" for n, k, st in budgets]
    last = {n: max((b for b in budgets if b[0] == n), key=lambda b: (b[1], b[2])) for n in names
            if any(b[0] == n for b in budgets)}
    head += [f"{n}: gap @ {k}×{st}" for n, k, st in last.values()]
    rows = []
    for s in series:
        curves = {n: M.relearn_curves(s, n) for n in names}
        cells = [s.label, str(len(s.entries)), _pm(M.scalar(s, "forget_acc")), _pm(M.scalar(s, "retain_acc"))]
        cells += [_pm(curves[n].get(k, {}).get(st)) for n, k, st in budgets]
        gold = _gold_of(series, s)
        for n, k, st in last.values():
            mine = curves[n].get(k, {}).get(st)
            floor = M.relearn_curves(gold, n).get(k, {}).get(st) if gold else None
            cells.append(_f(mine[0] - floor[0]) if mine and floor and not s.is_gold else "-")
        rows.append(cells)
    rep.tables.append(Table("Accuracy and relearning", head, rows,
                            "4-option MCQ accuracy (chance 0.25), mean ± std over seeds. Relearning: "
                            "fine-tune on SAMPLES relearn-pool facts for STEPS steps, then score the "
                            "forget-evaluation facts the attacker never saw. Gap: post-attack forget "
                            "accuracy minus gold's (lower is better)."))
    for name in names:
        ks = sorted({k for s in series for k in M.relearn_curves(s, name)})
        panels = []
        for k in ks:
            normal, gold = _split(series, lambda s, k=k, name=name: M.relearn_curves(s, name).get(k))
            panels.append({"title": f"{k} relearn samples", "xlabel": "attack steps", "ylabel": "forget acc",
                           "series": normal, "gold": gold, "chance": True})
        if panels:
            fig = M_plots().curve_figure(f"{name}: forget accuracy vs attack steps", panels)
            rep.figures.append(Figure(f"{name}_recovery", f"Recovery under the {name} attack", _png(fig),
                                      "Forget accuracy as the relearning attack trains; gold dashed "
                                      "(the floor)."))


def _quantize_section(series: list[Series], rep: Report) -> None:
    curves = {s.label: M.quantize_curve(s) for s in series}
    retain = {s.label: M.quantize_curve(s, "retain_acc")[0] for s in series}
    labels = list(dict.fromkeys(x for c, _ in curves.values() for x in c))
    if not labels:
        return
    skipped = {k: v for _, sk in curves.values() for k, v in sk.items()}
    rows = [[s.label] + [f"{_pm(curves[s.label][0].get(x))} / {_pm(retain[s.label].get(x))}" for x in labels]
            for s in series if curves[s.label][0]]
    note = ("Cells: forget acc / retain acc after quantizing the linear weights (rtnB-ch: B-bit "
            "round-to-nearest per output channel; rtnB-gN: per group of N weights; torch-int8: torch.ao "
            "dynamic int8).")
    if skipped:
        note += " Skipped: " + "; ".join(f"{k} ({v})" for k, v in skipped.items()) + "."
    rep.tables.append(Table("Quantization attack", ["method", *labels], rows, note))
    normal, gold = _split(series, lambda s: M.quantize_curve(s)[0])
    panel = {"title": "forget accuracy after quantization", "xlabel": "weights", "ylabel": "forget acc",
             "series": normal, "gold": gold, "categorical": True, "chance": True}
    rnormal, rgold = _split(series, lambda s: M.quantize_curve(s, "retain_acc")[0])
    rpanel = {**panel, "title": "retain accuracy after quantization", "ylabel": "retain acc",
              "series": rnormal, "gold": rgold}
    rep.figures.append(Figure("quantize", "Quantization attack",
                              _png(M_plots().curve_figure("Quantization attack", [panel, rpanel])),
                              "Coarser grids to the right; gold dashed (the floor)."))


def _jailbreak_section(series: list[Series], rep: Report) -> None:
    for metric in dict.fromkeys(m for m in map(M.jailbreak_metric, series) if m):
        _jailbreak_tables(series, rep, metric)


def _jailbreak_tables(series: list[Series], rep: Report, metric: str) -> None:
    nums = {s.label: M.jailbreak_numbers(s, metric) for s in series}
    if not any(nums.values()):
        return
    what = "acc" if metric == "acc" else "answer prob"
    head = ["method", f"held-out {what}: no prefix → prefix", f"optimised-on {what}: no prefix → prefix",
            "answer NLL: no prefix → prefix"]
    rows = []
    for label, n in nums.items():
        if n:
            rows.append([label, f"{_pm(n[f'heldout_{metric}_no_prefix'])} → {_pm(n[f'heldout_{metric}'])}",
                         f"{_pm(n[f'train_{metric}_no_prefix'])} → {_pm(n[f'train_{metric}'])}",
                         f"{_pm(n['loss_no_prefix'])} → {_pm(n['loss'])}"])
    title = "GCG jailbreak (universal prefix)" + ("" if metric == "acc" else ", QA answers")
    note = ("A prefix optimised by greedy coordinate gradient to maximise the likelihood of the forgotten "
            "answers on some forget-evaluation questions, then prepended to those (optimised-on) and to the "
            "others (held-out).")
    if metric != "acc":
        note += " Answer prob: mean of P(answer | prefix, question)^(1/|answer|) (TOFU's probability)."
    rep.tables.append(Table(title, head, rows, note))
    panels = []
    for part, ptitle in (("heldout", "held-out questions"), ("train", "questions optimised on")):
        normal, gold = _split(series, lambda s, part=part: M.jailbreak_curves(s, metric).get(part))
        panels.append({"title": ptitle, "xlabel": "GCG iteration",
                       "ylabel": "forget acc" if metric == "acc" else "answer probability",
                       "series": normal, "gold": gold, "chance": metric == "acc"})
    fig = M_plots().curve_figure(f"GCG jailbreak: forget {what} with the prefix", panels)
    rep.figures.append(Figure("jailbreak" if metric == "acc" else f"jailbreak_{metric}", title, _png(fig),
                              "Iteration 0 is the random initial prefix; gold dashed (the floor)."))


def _incontext_section(series: list[Series], rep: Report) -> None:
    curves = {s.label: M.incontext_curves(s) for s in series}
    cols = list(dict.fromkeys((src, n) for c in curves.values() for src, pts in c.items() for n in pts))
    if not cols:
        return
    rows = [[label] + [_pm(c.get(src, {}).get(n)) for src, n in cols] for label, c in curves.items() if c]
    rep.tables.append(Table("In-context attack", ["method", *[f"{src} × {n}" for src, n in cols]], rows,
                            "Forget accuracy when SOURCE × N related facts precede the question (person: "
                            "other facts about the same person; relearn: relearn-pool facts; retain: "
                            "unrelated control)."))
    panels = []
    for src in dict.fromkeys(src for src, _ in cols):
        normal, gold = _split(series, lambda s, src=src: M.incontext_curves(s).get(src))
        panels.append({"title": f"context: {src} facts", "xlabel": "facts in context", "ylabel": "forget acc",
                       "series": normal, "gold": gold, "chance": True})
    fig = M_plots().curve_figure("In-context attack", panels)
    rep.figures.append(Figure("incontext", "In-context attack", _png(fig), "Gold dashed (the floor)."))


def _sharpness_section(series: list[Series], rep: Report) -> None:
    nums = {s.label: M.sharpness_numbers(s) for s in series}
    if not any(nums.values()):
        return
    head = ["method", "ρ", "forget loss", "PGD decrease", "random change (mean)", "random decrease (max)",
            "top Hessian eigenvalue"]
    rows = [[label, _f(n["rho"][0], 4), _pm(n["loss"]), _pm(n["pgd_decrease"], 4),
             _pm(n["random_change_mean"], 5), _pm(n["random_decrease_max"], 5), _pm(n["top_eigenvalue"], 2)]
            for label, n in nums.items() if n]
    rep.tables.append(Table("Sharpness of the forget loss", head, rows,
                            "PGD decrease: the largest drop of the forget NLL within an L2 ball of radius "
                            "ρ (how easily knowledge comes back). Random: the change along random "
                            "directions of norm ρ. Top eigenvalue: power iteration on Hessian-vector "
                            "products."))
    gold = {s.label for s in series if s.is_gold}
    rep.figures.append(Figure("sharpness", "Sharpness",
                              _png(M_plots().sharpness_figure({k: v for k, v in nums.items() if v}, gold,
                                                              M.SHARPNESS_KEYS)),
                              "Gold hatched, its value dashed across each panel (the floor)."))


def _landscape_section(series: list[Series], rep: Report) -> None:
    ls = {s.label: M.landscape(s) for s in series}
    ls = {k: v for k, v in ls.items() if v}
    if not ls:
        return
    gold = {s.label for s in series if s.is_gold}
    one = {k: v["one_d"] for k, v in ls.items() if "one_d" in v}
    if one:
        fig = M_plots().landscape_1d_figure({k: v for k, v in one.items() if k not in gold},
                                            {k: v for k, v in one.items() if k in gold})
        rep.figures.append(Figure("landscape_1d", "1-D loss landscape", _png(fig),
                                  "Forget loss along one filter-normalised random direction "
                                  "(Li et al. 2018); gold dashed."))
    two = {k: v["two_d"] for k, v in ls.items() if "two_d" in v}
    if two:
        rep.figures.append(Figure("landscape_2d", "2-D loss landscape",
                                  _png(M_plots().landscape_2d_figure(two, gold)),
                                  "Forget loss on a plane of two filter-normalised random directions; the "
                                  "gold panel (dashed frame) is the floor."))


def _benchmark_relearn_section(series: list[Series], rep: Report) -> None:
    rows_of = {s.label: M.benchmark_relearn_rows(s) for s in series}
    if not any(rows_of.values()):
        return
    keys = list(dict.fromkeys(k for rows in rows_of.values() for cell in rows.values() for k in cell))
    head = ["method", "samples × steps", *keys]
    table = [[label, f"{k}×{st}", *[_pm(cell.get(key)) for key in keys]]
             for label, rows in rows_of.items() for (k, st), cell in rows.items()]
    labels = ["", "", *[metric_label(k) or "" for k in keys]]
    rep.tables.append(Table("Relearning on the benchmark", head, table,
                            "Fine-tune on SAMPLES forget records for STEPS steps (mean ± std over draws). "
                            "held-out forget NLL: per-token NLL of forget records the attacker did not "
                            "see (lower: more came back); drawn: of those it saw. Benchmark metrics are "
                            "scored without the relearned items where they are part of the evaluation "
                            "(TOFU's questions).", labels))
    ks = sorted({k for rows in rows_of.values() for k, _ in rows})
    panels = []
    for k in ks:
        def curve(s, k=k):
            rows = M.benchmark_relearn_rows(s)
            return {st: cell["heldout_forget_nll"] for (kk, st), cell in rows.items()
                    if kk == k and "heldout_forget_nll" in cell}
        normal, gold = _split(series, curve)
        panels.append({"title": f"{k} relearn samples", "xlabel": "attack steps",
                       "ylabel": "held-out forget NLL", "series": normal, "gold": gold})
    fig = M_plots().curve_figure("Relearning: held-out forget NLL vs attack steps", panels)
    rep.figures.append(Figure("benchmark_relearn", "Recovery under relearning on the benchmark", _png(fig),
                              "Per-token NLL of forget records the attacker never saw; lower means the "
                              "knowledge came back. The model that never learnt them (gold) dashed."))


def _benchmark_quantize_section(series: list[Series], rep: Report) -> None:
    got = {s.label: M.benchmark_quantize_rows(s) for s in series}
    if not any(rows for rows, _ in got.values()):
        return
    keys = list(dict.fromkeys(k for rows, _ in got.values() for cell in rows.values() for k in cell))
    table = [[label, setting, *[_pm(cell.get(k)) for k in keys]]
             for label, (rows, _) in got.items() for setting, cell in rows.items()]
    skipped = {k: v for _, sk in got.values() for k, v in sk.items()}
    note = ("The benchmark's metrics after quantizing the linear weights (rtnB-ch: B-bit round-to-nearest "
            "per output channel; rtnB-gN: per group of N weights; torch-int8: torch.ao dynamic int8).")
    if skipped:
        note += " Skipped: " + "; ".join(f"{k} ({v})" for k, v in skipped.items()) + "."
    rep.tables.append(Table("Quantization attack on the benchmark", ["method", "weights", *keys], table,
                            note, ["", "", *[metric_label(k) or "" for k in keys]]))
    panels = []
    for key in keys[:4]:
        def curve(s, key=key):
            return {lab: cell[key] for lab, cell in M.benchmark_quantize_rows(s)[0].items() if key in cell}

        normal, gold = _split(series, curve)
        panels.append({"title": key, "xlabel": "weights", "ylabel": key, "series": normal, "gold": gold,
                       "categorical": True})
    rep.figures.append(Figure("benchmark_quantize", "Quantization attack on the benchmark",
                              _png(M_plots().curve_figure("Quantization attack", panels)),
                              "Coarser grids to the right; the model that never learnt the forget set "
                              "dashed."))


def M_plots():  # noqa: N802 - lazy import of matplotlib
    from . import plots

    return plots


def _png(fig) -> bytes:
    return M_plots().png_bytes(fig)


def _frontier_section(series: list[Series], rep: Report) -> None:
    """``unlearn sweep``'s results: the utility–robustness frontier of every run that has one."""
    from ..sweep import frontier_figure

    for run in rep.runs:
        summary = run.get("sweep")
        if not summary or not summary.get("frontier"):
            continue
        k, s = summary["budget"]
        head = ["method", "setting", "forget acc", "held-out retain", f"after {k}×{s}", "gap (↓)", "KS (↓)",
                "recovery", "forget samples", "passes"]

        def ms(r, key):
            return _pm((r.get(key), r.get(f"{key}_seed_std")))

        rows = [[r["label"], str(r.get("config") or "{}"), ms(r, "forget_acc"), ms(r, "retain_acc"),
                 ms(r, "post"), ms(r, "gap"), ms(r, "ks"),
                 _f(r.get("recovery"), 2), _f(r.get("forget_samples"), 0), _f(r.get("passes"), 0)]
                for r in summary["table"]]
        rep.tables.append(Table("Chosen settings on the evaluation worlds", head, rows,
                                "Chosen on the tuning world; mean ± std over evaluation worlds × seeds. "
                                "Gap = |forget acc − gold's| after the largest attack, same draw."))
        rep.figures.append(Figure("frontier", "Utility vs knowledge left after the attack",
                                  _png(frontier_figure(summary)),
                                  "Every candidate on the evaluation worlds; stars: chosen on the tuning "
                                  "world; gold at gap 0."))


def collect(paths: list[str | Path]) -> Report:
    series, runs = load_runs(paths)
    rep = Report(runs)
    for section in (_frontier_section, _accuracy_section, _benchmark_relearn_section, _quantize_section,
                    _benchmark_quantize_section, _jailbreak_section, _incontext_section, _sharpness_section,
                    _landscape_section):
        section(series, rep)
    return rep


def build_report(paths: list[str | Path], out: str | Path = "report") -> tuple[Path, Path]:
    """Write ``report.html``, ``report.md`` and ``figures/*.png`` into ``out``."""
    rep = collect(paths)
    out = Path(out)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    for fig in rep.figures:
        (out / "figures" / f"{fig.name}.png").write_bytes(fig.png)
    write_text_atomic(out / "report.html", render_html(rep))
    write_text_atomic(out / "report.md", render_markdown(rep))
    return out / "report.html", out / "report.md"
