"""``unlearn report``: tables and figures from results files, self-contained HTML, markdown, errors."""

from __future__ import annotations

import base64
import json
import re

import pytest
from typer.testing import CliRunner

from robust_unlearning.cli import app
from robust_unlearning.errors import UnlearnError
from robust_unlearning.report import build_report
from robust_unlearning.report.build import collect

PNG = b"\x89PNG\r\n\x1a\n"
FIGURES = ["relearn_recovery", "quantize", "jailbreak", "incontext", "sharpness", "landscape_1d",
           "landscape_2d"]


def _entry(method: str, seed: int, level: float, extras: bool = True) -> dict:
    """A results entry whose forget accuracy is about ``level`` under every attack."""
    jitter = 0.01 * seed
    relearn = [{"samples": k, "steps": s, "forget_acc": min(1.0, level + 0.02 * s + jitter),
                "forget_acc_std": 0.01, "retain_acc": 0.9, "retain_acc_std": 0.0, "draws": 2}
               for k, s in [(8, 5), (8, 10), (16, 10)]]
    e = {"method": method, "seed": seed, "forget_acc": level + jitter, "retain_acc": 0.9,
         "attacks": {"relearn": relearn, "relearn_runs": []}}
    if not extras:
        return e
    e["attacks"]["quantize"] = [
        {"scheme": "none", "bits": 32, "granularity": None, "group_size": None, "weight_change": 0.0,
         "forget_acc": level, "retain_acc": 0.9},
        {"scheme": "rtn", "bits": 8, "granularity": "channel", "group_size": None, "weight_change": 0.01,
         "forget_acc": level, "retain_acc": 0.9},
        {"scheme": "rtn", "bits": 4, "granularity": "group", "group_size": 32, "weight_change": 0.1,
         "forget_acc": level + 0.1, "retain_acc": 0.8},
        {"scheme": "torch-int8", "bits": 8, "granularity": "channel", "group_size": None,
         "skipped": "RuntimeError: no engine"},
    ]
    e["attacks"]["jailbreak"] = {
        "prefix": "ab", "prefix_ids": [1, 2], "train_questions": 4, "heldout_questions": 20,
        "loss_no_prefix": 3.0, "loss": 2.5, "train_acc_no_prefix": level, "heldout_acc_no_prefix": level,
        "train_acc": level + 0.2, "heldout_acc": level + 0.05, "forget_acc": level + 0.05,
        "curve": [{"iter": i, "loss": 3 - 0.1 * i, "train_acc": level + 0.04 * i,
                   "heldout_acc": level + 0.01 * i} for i in (0, 5)]}
    e["attacks"]["incontext"] = [{"source": src, "facts": n, "forget_acc": level + 0.03 * n}
                                 for src in ("person", "retain") for n in (0, 2)]
    e["diagnostics"] = {
        "sharpness": {"rho": 0.05, "loss": 2.0, "pgd_loss": 1.9, "pgd_decrease": 0.1 + level,
                      "random_change_mean": 0.001, "random_change_std": 0.0, "random_decrease_max": 0.0005,
                      "top_eigenvalue": 50 * level, "power_iters": 5, "converged": True},
        "landscape": {"one_d": {"alphas": [-1, 0, 1], "losses": [3, 2 - level, 3]},
                      "two_d": {"alphas": [-1, 0, 1], "betas": [-1, 0, 1],
                                "losses": [[3, 2.5, 3], [2.5, 2 - level, 2.5], [3, 2.5, 3]]}}}
    return e


def write_run(path, methods=("npo", "ga"), seeds=(0, 1), extras=True):
    levels = {"npo": 0.3, "ga": 0.5, "gold": 0.25}
    entries = [_entry(m, s, levels.get(m, 0.4), extras) for m in (*methods, "gold") for s in seeds]
    path.mkdir(parents=True, exist_ok=True)
    (path / "results.json").write_text(json.dumps({"entries": entries, "seeds": list(seeds)}))
    return path


def synthetic_report(tmp_path):
    run = write_run(tmp_path / "run")
    return build_report([run], tmp_path / "out")


def test_every_section_is_there(tmp_path):
    html_path, md_path = synthetic_report(tmp_path)
    html, md = html_path.read_text(), md_path.read_text()
    titles = ["Accuracy and relearning", "Quantization attack", "GCG jailbreak (universal prefix)",
              "In-context attack", "Sharpness of the forget loss"]
    for t in titles:
        assert f"## {t}" in md and f"<h2>{t}</h2>" in html
    assert html.count("<table") == len(titles)
    for name in FIGURES:
        assert (tmp_path / "out" / "figures" / f"{name}.png").read_bytes().startswith(PNG)
        assert f"(figures/{name}.png)" in md
    # every image is inlined (no external file, no network) and decodes as a PNG
    srcs = re.findall(r"<img [^>]*src='([^']+)'", html)
    assert len(srcs) == len(FIGURES)
    for src in srcs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG)
    assert "http://" not in html and "https://" not in html
    assert "Skipped: torch-int8 (RuntimeError: no engine)." in md


def test_numbers_in_the_tables(tmp_path):
    rep = collect([write_run(tmp_path / "run")])
    acc = rep.tables[0]
    assert acc.head[:4] == ["method", "seeds", "forget acc", "retain acc"]
    assert acc.head[-1] == "relearn: gap @ 16×10"
    rows = {r[0]: r for r in acc.rows}
    assert list(rows) == ["npo", "ga", "gold"]  # gold last
    assert rows["npo"][2] == "0.305 ± 0.007"  # mean ± std over seeds 0 and 1
    # gap at 16×10: (0.3 + 0.2 + 0.005) - (0.25 + 0.2 + 0.005)
    assert rows["npo"][-1] == "0.050" and rows["ga"][-1] == "0.250" and rows["gold"][-1] == "-"
    quant = next(t for t in rep.tables if t.title == "Quantization attack")
    assert quant.head == ["method", "fp32", "rtn8-ch", "rtn4-g32"]
    assert quant.rows[0][3] == "0.400 / 0.800"


def test_demo_results_without_extras(tmp_path):
    rep = collect([write_run(tmp_path / "run", extras=False)])
    assert [t.title for t in rep.tables] == ["Accuracy and relearning"]
    assert [f.name for f in rep.figures] == ["relearn_recovery"]


def test_several_runs_are_labelled_by_run(tmp_path):
    a = write_run(tmp_path / "a", methods=("npo",), extras=False)
    b = write_run(tmp_path / "b", methods=("npo",), extras=False)
    rep = collect([a, b / "results.json"])
    assert [r[0] for r in rep.tables[0].rows] == ["a:npo", "a:gold", "results:npo", "results:gold"]


def test_real_attack_outputs_feed_the_report(tiny_model, tiny_tokenizer, tiny_world, tmp_path):
    """The rows the attack and diagnostic functions write are what the report reads."""
    from robust_unlearning.attacks.incontext import InContextConfig, incontext_attack
    from robust_unlearning.attacks.quantize import QuantizeConfig, quantize_attack
    from robust_unlearning.diagnostics.landscape import LandscapeConfig, landscape

    entry = {"method": "tiny", "seed": 0, "forget_acc": 0.3, "retain_acc": 0.3, "attacks": {
        "quantize": quantize_attack(tiny_model, tiny_tokenizer, tiny_world,
                                    QuantizeConfig(bits=[4], granularities=["channel"], torch_int8=False)),
        "incontext": incontext_attack(tiny_model, tiny_tokenizer, tiny_world,
                                      InContextConfig(facts=[1], sources=["person"]))},
        "diagnostics": {"landscape": landscape(tiny_model, tiny_tokenizer, tiny_world,
                                               LandscapeConfig(points_1d=3, points_2d=2, max_samples=4))}}
    (tmp_path / "r").mkdir()
    entries = [entry, {**entry, "method": "gold"}]
    (tmp_path / "r" / "results.json").write_text(json.dumps({"entries": entries}))
    rep = collect([tmp_path / "r"])
    assert {t.title for t in rep.tables} >= {"Quantization attack", "In-context attack"}
    assert {f.name for f in rep.figures} == {"quantize", "incontext", "landscape_1d", "landscape_2d"}


@pytest.mark.parametrize("content, message", [
    (None, "no results"),
    ("{not json", "cannot read"),
    ('{"entries": []}', "no 'entries'"),
    ('{"entries": [{"seed": 0}]}', "no 'method'"),
])
def test_bad_inputs_are_one_clear_error(tmp_path, content, message):
    run = tmp_path / "run"
    run.mkdir()
    if content is not None:
        (run / "results.json").write_text(content)
    with pytest.raises(UnlearnError, match=message):
        build_report([run], tmp_path / "out")


def test_cli(tmp_path):
    run = write_run(tmp_path / "run", extras=False)
    out = tmp_path / "rep"
    res = CliRunner().invoke(app, ["report", str(run), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert (out / "report.html").is_file() and (out / "report.md").is_file()
    res = CliRunner().invoke(app, ["report", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "error: no results" in res.output


def test_attack_files_of_one_model_share_a_row(tmp_path):
    """`unlearn attack quantize --out q.json` and `unlearn diagnose --out d.json` on one model, plus a
    demo run: the model's attacks and diagnoses are one row, the demo's methods their own rows."""
    full = _entry("npo", 0, 0.3)
    quant = {"method": "m1", "seed": 0, "model": "runs/m1", "forget_acc": 0.3, "retain_acc": 0.9,
             "attacks": {"quantize": full["attacks"]["quantize"]}}
    diag = {"method": "m1", "seed": 0, "model": "runs/m1", "forget_acc": 0.3, "retain_acc": 0.9,
            "diagnostics": full["diagnostics"]}
    gold_q = {**quant, "method": "gold", "forget_acc": 0.25}
    gold_d = {**diag, "method": "gold", "forget_acc": 0.25}
    (tmp_path / "q.json").write_text(json.dumps({"model": "runs/m1", "entries": [quant, gold_q]}))
    (tmp_path / "d.json").write_text(json.dumps({"model": "runs/m1/", "entries": [diag, gold_d]}))
    run = write_run(tmp_path / "demo", methods=("npo",), seeds=(0,), extras=False)
    rep = collect([tmp_path / "q.json", tmp_path / "d.json", run])
    acc = next(t for t in rep.tables if t.title == "Accuracy and relearning")
    assert [r[0] for r in acc.rows] == ["m1:m1", "m1:gold", "demo:npo", "demo:gold"]
    sharp = next(t for t in rep.tables if t.title.startswith("Sharpness"))
    quant_t = next(t for t in rep.tables if t.title.startswith("Quantization"))
    assert [r[0] for r in sharp.rows] == ["m1:m1", "m1:gold"] == [r[0] for r in quant_t.rows]


def test_benchmark_relearning_table_and_figure(tmp_path):
    """`unlearn attack relearn --benchmark tofu --gold-model … --out` results: one row per budget with
    every metric, the gold model's rows beside, and a recovery figure of the held-out NLL."""
    def rows(level):
        return [{"samples": 20, "steps": st, "draws": 3, "heldout_forget_nll": level - 0.1 * st,
                 "heldout_forget_nll_std": 0.05, "drawn_forget_nll": level - 0.2 * st,
                 "drawn_forget_nll_std": 0.0, "forget_probability": 0.1 + 0.01 * st,
                 "forget_probability_std": 0.01} for st in (0, 10)]
    entries = [{"method": "npo", "seed": 0, "model": "runs/npo",
                "attacks": {"benchmark_relearn": rows(3.0)}},
               {"method": "gold", "seed": 0, "model": "retain90",
                "attacks": {"benchmark_relearn": rows(4.0)}}]
    (tmp_path / "r.json").write_text(json.dumps({"model": "runs/npo", "entries": entries}))
    html_path, md_path = build_report([tmp_path / "r.json"], tmp_path / "out")
    rep = collect([tmp_path / "r.json"])
    t = next(t for t in rep.tables if t.title == "Relearning on the benchmark")
    assert t.head == ["method", "samples × steps", "heldout_forget_nll", "drawn_forget_nll",
                      "forget_probability"]
    assert t.rows[1] == ["npo", "20×10", "2.000 ± 0.050", "1.000", "0.200 ± 0.010"]
    assert [r[0] for r in t.rows] == ["npo", "npo", "gold", "gold"]
    assert (tmp_path / "out" / "figures" / "benchmark_relearn.png").read_bytes().startswith(PNG)
    assert "Relearning on the benchmark" in md_path.read_text()
