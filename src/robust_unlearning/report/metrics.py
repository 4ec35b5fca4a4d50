"""Pulling curves and numbers out of a :class:`~.load.Series`, averaged over its seeds.

Every curve is ``{x: (mean, std)}`` over the series' entries (seeds) that have the point.
"""

from __future__ import annotations

import statistics

from .load import Series

Curve = dict  # x -> (mean, std)


def mean_std(vals: list[float]) -> tuple[float, float]:
    vals = [float(v) for v in vals if v is not None]
    if not vals:
        return float("nan"), float("nan")
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def _aggregate(points: list[dict]) -> Curve:
    xs: dict = {}
    for pts in points:
        for x, y in pts.items():
            xs.setdefault(x, []).append(y)
    return {x: mean_std(v) for x, v in xs.items()}


def scalar(s: Series, key: str) -> tuple[float, float] | None:
    vals = [e[key] for e in s.entries if isinstance(e.get(key), (int, float))]
    return mean_std(vals) if vals else None


def attack_names(series: list[Series]) -> list[str]:
    names: dict[str, None] = {}
    for s in series:
        for e in s.entries:
            names.update(dict.fromkeys(e.get("attacks") or {}))
    return list(names)


def relearn_names(series: list[Series]) -> list[str]:
    return [n for n in attack_names(series) if n.startswith("relearn") and not n.endswith("_runs")]


def relearn_curves(s: Series, name: str = "relearn", key: str = "forget_acc") -> dict[int, Curve]:
    """samples -> {steps: (mean, std)}; step 0 is the unattacked model when not measured."""
    per: dict[int, list[dict]] = {}
    for e in s.entries:
        rows = (e.get("attacks") or {}).get(name) or []
        by_k: dict[int, dict] = {}
        for r in rows:
            by_k.setdefault(int(r["samples"]), {})[int(r["steps"])] = r[key]
        for k, pts in by_k.items():
            if 0 not in pts and isinstance(e.get(key), (int, float)):
                pts[0] = e[key]
            per.setdefault(k, []).append(pts)
    return {k: dict(sorted(_aggregate(v).items())) for k, v in sorted(per.items())}


def quant_label(row: dict) -> str:
    from ..attacks.quantize import label

    return label(row)


def quantize_curve(s: Series, key: str = "forget_acc") -> tuple[Curve, dict[str, str]]:
    pts, skipped = [], {}
    for e in s.entries:
        rows = (e.get("attacks") or {}).get("quantize") or []
        p = {}
        for r in rows:
            if "skipped" in r:
                skipped[quant_label(r)] = r["skipped"]
            elif key in r:
                p[quant_label(r)] = r[key]
        if p:
            pts.append(p)
    return _aggregate(pts), skipped


def jailbreak_metric(s: Series) -> str | None:
    """``acc`` for multiple-choice results (world, WMDP), ``prob`` for QA answers (TOFU, MUSE)."""
    for e in s.entries:
        jb = (e.get("attacks") or {}).get("jailbreak")
        if jb:
            return "acc" if "heldout_acc" in jb else "prob"
    return None


def jailbreak_curves(s: Series, metric: str = "acc") -> dict[str, Curve]:
    """``heldout`` and ``train`` accuracy (or answer probability) against GCG iteration."""
    out: dict[str, list[dict]] = {"heldout": [], "train": []}
    for e in s.entries:
        jb = (e.get("attacks") or {}).get("jailbreak")
        if not jb:
            continue
        for part in out:
            pts = {int(c["iter"]): c[f"{part}_{metric}"] for c in jb.get("curve", [])
                   if isinstance(c.get(f"{part}_{metric}"), (int, float))}
            if pts:
                out[part].append(pts)
    return {k: dict(sorted(_aggregate(v).items())) for k, v in out.items() if v}


def jailbreak_numbers(s: Series, metric: str = "acc") -> dict[str, tuple[float, float]]:
    keys = (f"heldout_{metric}_no_prefix", f"heldout_{metric}", f"train_{metric}_no_prefix",
            f"train_{metric}", "loss_no_prefix", "loss")
    jbs = [(e.get("attacks") or {}).get("jailbreak") for e in s.entries]
    jbs = [j for j in jbs if j and f"heldout_{metric}" in j]
    return {k: mean_std([j.get(k) for j in jbs]) for k in keys} if jbs else {}


def incontext_curves(s: Series) -> dict[str, Curve]:
    """source -> {facts in context: (mean, std)}."""
    per: dict[str, list[dict]] = {}
    for e in s.entries:
        rows = (e.get("attacks") or {}).get("incontext") or []
        by_src: dict[str, dict] = {}
        for r in rows:
            by_src.setdefault(r["source"], {})[int(r["facts"])] = r["forget_acc"]
        for src, pts in by_src.items():
            per.setdefault(src, []).append(pts)
    return {k: dict(sorted(_aggregate(v).items())) for k, v in per.items()}


SHARPNESS_KEYS = {
    "pgd_decrease": "worst-case forget-loss decrease (PGD, radius ρ)",
    "random_change_mean": "mean forget-loss change, random directions of norm ρ",
    "top_eigenvalue": "top Hessian eigenvalue of the forget loss",
}


def sharpness_numbers(s: Series) -> dict[str, tuple[float, float]]:
    ds = [(e.get("diagnostics") or {}).get("sharpness") for e in s.entries]
    ds = [d for d in ds if d]
    if not ds:
        return {}
    out = {k: mean_std([d.get(k) for d in ds]) for k in (*SHARPNESS_KEYS, "loss", "random_decrease_max")}
    out["rho"] = (ds[0].get("rho"), 0.0)
    return out


def landscape(s: Series) -> dict | None:
    """The landscape averaged over seeds (same grid), or None."""
    ls = [(e.get("diagnostics") or {}).get("landscape") for e in s.entries]
    ls = [x for x in ls if x]
    if not ls:
        return None
    out: dict = {}
    one = [x["one_d"] for x in ls if "one_d" in x]
    if one:
        n = len(one[0]["losses"])
        one = [o for o in one if len(o["losses"]) == n]
        out["one_d"] = {"alphas": one[0]["alphas"],
                        "losses": [statistics.fmean(o["losses"][i] for o in one) for i in range(n)]}
    two = [x["two_d"] for x in ls if "two_d" in x]
    if two:
        g = two[0]
        two = [t for t in two if len(t["losses"]) == len(g["losses"])]
        out["two_d"] = {"alphas": g["alphas"], "betas": g["betas"],
                        "losses": [[statistics.fmean(t["losses"][i][j] for t in two)
                                    for j in range(len(g["losses"][0]))] for i in range(len(g["losses"]))]}
    return out


BENCHMARK_RELEARN = "benchmark_relearn"


def benchmark_relearn_rows(s: Series) -> dict[tuple[int, int], dict[str, tuple[float, float]]]:
    """(samples, steps) -> metric -> (mean, std) of the benchmark relearning attack
    (:mod:`robust_unlearning.attacks.relearn_benchmark`): rows already averaged over draws; several
    entries (seeds of the unlearning) are averaged again."""
    per: dict[tuple[int, int], dict[str, list[tuple[float, float]]]] = {}
    for e in s.entries:
        for r in (e.get("attacks") or {}).get(BENCHMARK_RELEARN) or []:
            cell = per.setdefault((int(r["samples"]), int(r["steps"])), {})
            for k, v in r.items():
                if k in ("samples", "steps", "draws") or k.endswith("_std"):
                    continue
                if not isinstance(v, (int, float)):
                    continue
                cell.setdefault(k, []).append((float(v), float(r.get(f"{k}_std") or 0.0)))
    out = {}
    for budget, cell in sorted(per.items()):
        # one entry: its own std over draws; several: the spread of their means
        out[budget] = {k: (v[0] if len(v) == 1 else mean_std([m for m, _ in v])) for k, v in cell.items()}
    return out


BENCHMARK_QUANTIZE = "benchmark_quantize"


def benchmark_quantize_rows(s: Series) -> tuple[dict[str, dict[str, tuple[float, float]]], dict[str, str]]:
    """setting label (``fp32``, ``rtn4-g32``, …) -> metric -> (mean, std) over entries, of the
    quantization attack scored by a standard benchmark's metrics; and the skipped settings."""
    per: dict[str, dict[str, list[float]]] = {}
    skipped: dict[str, str] = {}
    for e in s.entries:
        for r in (e.get("attacks") or {}).get(BENCHMARK_QUANTIZE) or []:
            if "skipped" in r:
                skipped[quant_label(r)] = r["skipped"]
                continue
            cell = per.setdefault(quant_label(r), {})
            for k, v in r.items():
                if k not in ("bits", "group_size", "weight_change") and isinstance(v, (int, float)):
                    cell.setdefault(k, []).append(float(v))
    return {lab: {k: mean_std(v) for k, v in cell.items()} for lab, cell in per.items()}, skipped
