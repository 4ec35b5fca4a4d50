"""HTML (self-contained: CSS inline, figures as base64 PNG) and markdown renderings of a report."""

from __future__ import annotations

import base64
import html

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table.metrics { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
table.metrics th, table.metrics td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
table.metrics th { background: #f0f0f0; }
table.metrics td:first-child, table.metrics th:first-child { text-align: left; }
tr.gold td { font-style: italic; background: #fafafa; }
figure { margin: 1em 0 2em; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption, p.note { color: #555; font-size: 0.9em; }
"""

# Counts the images that actually decoded (naturalWidth > 0); the headless-browser test reads it.
SCRIPT = """
function countImages() {
  var imgs = document.images, ok = 0;
  for (var i = 0; i < imgs.length; i++) { if (imgs[i].complete && imgs[i].naturalWidth > 0) ok++; }
  document.getElementById('images-loaded').textContent = String(ok);
  document.getElementById('images-total').textContent = String(imgs.length);
}
window.addEventListener('load', countImages);
"""


def _table_html(t) -> str:
    e = html.escape
    labels = list(t.labels) + [""] * (len(t.head) - len(t.labels))
    head = "".join(f"<th>{e(h)}<br><small>({e(lab)})</small></th>" if lab else f"<th>{e(h)}</th>"
                   for h, lab in zip(t.head, labels, strict=False))
    rows = []
    for r in t.rows:
        cls = " class='gold'" if r[0].split(":")[-1] == "gold" else ""
        rows.append(f"<tr{cls}>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>")
    body = "".join(rows)
    note = f"<p class='note'>{e(t.note)}</p>" if t.note else ""
    return (f"<h2>{e(t.title)}</h2>{note}<table class='metrics'><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table>")


def render_html(rep) -> str:
    e = html.escape
    runs = "".join(f"<li><code>{e(r['run'])}</code>: {e(r['path'])}</li>" for r in rep.runs)
    tables = "\n".join(_table_html(t) for t in rep.tables)
    figures = "\n".join(
        f"<figure id='fig-{e(f.name)}'><h3>{e(f.title)}</h3>"
        f"<img alt='{e(f.title)}' src='data:image/png;base64,{base64.b64encode(f.png).decode()}'>"
        f"<figcaption>{e(f.caption)}</figcaption></figure>" for f in rep.figures)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Robust unlearning report</title>
<style>{STYLE}</style><script>{SCRIPT}</script></head>
<body>
<h1>Robust unlearning report</h1>
<p>Runs:</p><ul>{runs}</ul>
<p>The <b>gold</b> model was trained without the forget persons: its numbers under every attack are the
floor (drawn dashed on every plot). Accuracy is 4-option multiple choice (chance 0.25).</p>
<p id="image-check">Figures loaded: <span id="images-loaded">?</span> of <span id="images-total">?</span>.</p>
{tables}
<h2>Figures</h2>
{figures}
</body></html>
"""


def render_markdown(rep) -> str:
    runs = ", ".join(f"`{r['run']}` ({r['path']})" for r in rep.runs)
    lines = ["# Robust unlearning report", "", f"Runs: {runs}", "",
             "The gold model never saw the forget persons: its numbers are the floor (dashed on every "
             "plot). Accuracy is 4-option MCQ (chance 0.25).", ""]
    for t in rep.tables:
        lines += [f"## {t.title}", ""]
        if t.note:
            lines += [t.note, ""]
        labels = list(t.labels) + [""] * (len(t.head) - len(t.labels))
        head = [f"{h} ({lab})" if lab else h for h, lab in zip(t.head, labels, strict=False)]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(t.head)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in t.rows]
        lines.append("")
    if rep.figures:
        lines += ["## Figures", ""]
        for f in rep.figures:
            lines += [f"### {f.title}", "", f"![{f.title}](figures/{f.name}.png)", "", f.caption, ""]
    return "\n".join(lines)
