"""Figures (matplotlib, object API on the Agg canvas: no pyplot global state, no display needed).

Every figure draws the gold model (retrained without the forget persons) as a black dashed line or
panel: the floor a perfect unlearning method would sit on.
"""

from __future__ import annotations

import io
import math

GOLD_STYLE = {"color": "black", "linestyle": "--", "linewidth": 2.0, "marker": "s", "markersize": 4}
CHANCE = 0.25  # 4-option MCQ


def _figure(n_panels: int, width: float = 4.6, height: float = 3.4, ncols: int | None = None):
    from matplotlib.figure import Figure

    ncols = ncols or min(n_panels, 3)
    nrows = math.ceil(n_panels / ncols)
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = [fig.add_subplot(nrows, ncols, i + 1) for i in range(n_panels)]
    return fig, axes


def png_bytes(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return buf.getvalue()


def _colors():
    from matplotlib import colormaps

    cmap = colormaps["tab20"]  # 20 distinct colours: demos compare a dozen methods and more
    return [cmap((2 * i) % 20 + (i // 10) % 2) for i in range(64)]


def curve_figure(title: str, panels: list[dict]):
    """Panels of curves. A panel: ``{title, xlabel, ylabel, series: {label: curve}, gold: {label:
    curve}, categorical: bool, chance: bool}`` with a curve ``{x: (mean, std)}``."""
    fig, axes = _figure(len(panels))
    colors = _colors()
    for ax, p in zip(axes, panels, strict=False):
        order = list(dict.fromkeys(x for c in [*p["series"].values(), *p["gold"].values()] for x in c))
        if not p.get("categorical"):
            order = sorted(order)
        pos = {x: i for i, x in enumerate(order)} if p.get("categorical") else {x: x for x in order}

        def draw(label, curve, style, ax=ax, order=order, pos=pos):
            xs = [x for x in order if x in curve]
            ys = [curve[x][0] for x in xs]
            sd = [0.0 if math.isnan(curve[x][1]) else curve[x][1] for x in xs]
            px = [pos[x] for x in xs]
            ax.plot(px, ys, label=label, **style)
            if any(sd):
                lo = [y - s for y, s in zip(ys, sd, strict=True)]
                hi = [y + s for y, s in zip(ys, sd, strict=True)]
                ax.fill_between(px, lo, hi, color=style.get("color"), alpha=0.15, linewidth=0)

        for i, (label, curve) in enumerate(p["series"].items()):
            draw(label, curve, {"color": colors[i], "marker": "o", "markersize": 4, "linewidth": 1.5})
        for label, curve in p["gold"].items():
            draw(f"{label} (floor)", curve, GOLD_STYLE)
        if p.get("chance"):
            ax.axhline(CHANCE, color="grey", linestyle=":", linewidth=1, label="chance")
        if p.get("categorical"):
            ax.set_xticks(range(len(order)), [str(x) for x in order], rotation=30, ha="right")
        ax.set_title(p["title"], fontsize=10)
        ax.set_xlabel(p["xlabel"])
        ax.set_ylabel(p["ylabel"])
        ax.grid(alpha=0.3)
    n = sum(len(p["series"]) for p in panels[:1]) + 2
    if n > 8:  # many methods: one legend beside the panels instead of over the first one
        axes[-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    else:
        axes[0].legend(fontsize=7, loc="best")
    fig.suptitle(title)
    return fig


def landscape_1d_figure(series: dict[str, dict], gold: dict[str, dict]):
    fig, (ax,) = _figure(1, width=6.0, height=4.0)
    colors = _colors()
    for i, (label, d) in enumerate(series.items()):
        ax.plot(d["alphas"], d["losses"], color=colors[i], label=label, linewidth=1.5)
    for label, d in gold.items():
        ax.plot(d["alphas"], d["losses"], label=f"{label} (floor)", **{**GOLD_STYLE, "marker": None})
    ax.axvline(0, color="grey", linewidth=0.8)
    ax.set_xlabel("α (filter-normalised random direction)")
    ax.set_ylabel("forget loss (NLL)")
    ax.set_title("1-D landscape of the forget loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def landscape_2d_figure(maps: dict[str, dict], gold_labels: set[str]):
    import numpy as np

    labels = list(maps)
    fig, axes = _figure(len(labels), width=3.8, height=3.4, ncols=min(len(labels), 4))
    lo = min(min(min(r) for r in m["losses"]) for m in maps.values())
    hi = max(max(max(r) for r in m["losses"]) for m in maps.values())
    levels = np.linspace(lo, hi, 15) if hi > lo else 15
    for ax, label in zip(axes, labels, strict=False):
        m = maps[label]
        cs = ax.contourf(m["alphas"], m["betas"], np.array(m["losses"]), levels=levels, cmap="viridis")
        ax.plot([0], [0], marker="*", color="red", markersize=8)
        gold = label in gold_labels
        ax.set_title(f"{label} (floor)" if gold else label, fontsize=9,
                     fontweight="bold" if gold else "normal")
        if gold:
            for spine in ax.spines.values():
                spine.set_linestyle("--")
                spine.set_linewidth(2)
        ax.set_xlabel("α")
        ax.set_ylabel("β")
    fig.colorbar(cs, ax=axes, label="forget loss (NLL)")
    fig.suptitle("2-D landscape of the forget loss (same colour scale)")
    return fig


def sharpness_figure(numbers: dict[str, dict], gold_labels: set[str], titles: dict[str, str]):
    keys = list(titles)
    fig, axes = _figure(len(keys), width=4.2, height=3.6)
    colors = _colors()
    labels = list(numbers)
    for ax, key in zip(axes, keys, strict=False):
        for i, label in enumerate(labels):
            m, s = numbers[label].get(key, (float("nan"), 0.0))
            gold = label in gold_labels
            ax.bar(i, m, yerr=None if math.isnan(s) or not s else s,
                   color="lightgrey" if gold else colors[i], edgecolor="black",
                   hatch="//" if gold else None)
            if gold and not math.isnan(m):
                ax.axhline(m, label=f"{label} (floor)", **{**GOLD_STYLE, "marker": None})
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
        ax.set_title(titles[key], fontsize=9)
        ax.grid(alpha=0.3, axis="y")
        if any(lb in gold_labels for lb in labels):
            ax.legend(fontsize=7)
    fig.suptitle("Sharpness of the forget loss around the weights")
    return fig
