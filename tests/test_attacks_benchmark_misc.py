"""Quantization attack and diagnostics scored on a standard benchmark (TOFU fixture), and their report."""

from __future__ import annotations

import json

import pytest
from test_benchmarks_tofu import model_dir, write_tofu  # noqa: F401  (fixture)
from typer.testing import CliRunner

from robust_unlearning.benchmarks import build_benchmark
from robust_unlearning.cli import app
from robust_unlearning.io import load_model
from robust_unlearning.report.build import collect


@pytest.mark.slow
def test_cli_quantize_on_tofu_with_gold_and_report(tmp_path, model_dir):  # noqa: F811
    data = write_tofu(tmp_path / "tofu")
    out = tmp_path / "q.json"
    res = CliRunner().invoke(app, ["attack", "quantize", "--model", str(model_dir), "--benchmark", "tofu",
                                   "--data", str(data), "-o", "generate=false", "--bits", "8,2",
                                   "--granularity", "channel", "--no-torch-int8", "--backends", "none",
                                   "--gold-model", str(model_dir), "--out", str(out)])
    assert res.exit_code == 0, res.output
    entries = json.loads(out.read_text())["entries"]
    assert [e["method"] for e in entries] == ["model", "gold"]
    rows = entries[0]["attacks"]["benchmark_quantize"]
    assert [(r["scheme"], r["bits"]) for r in rows] == [("none", 32), ("rtn", 8), ("rtn", 2)]
    # fp32 is the benchmark's own evaluation of the model; 8 bits barely moves it, 2 bits does
    m, tok = load_model(model_dir)
    want = build_benchmark("tofu", data, options={"generate": False}).evaluate(m, tok)["summary"]
    assert rows[0]["forget_probability"] == pytest.approx(want["forget_probability"], rel=1e-6)
    assert rows[1]["forget_probability"] == pytest.approx(want["forget_probability"], rel=0.05)
    assert rows[2]["weight_change"] > 10 * rows[1]["weight_change"]
    assert "forget_truth_ratio" in res.output

    rep = collect([out])
    t = next(t for t in rep.tables if t.title == "Quantization attack on the benchmark")
    assert [r[:2] for r in t.rows] == [["model", "fp32"], ["model", "rtn8-ch"], ["model", "rtn2-ch"],
                                       ["gold", "fp32"], ["gold", "rtn8-ch"], ["gold", "rtn2-ch"]]
    assert "forget_probability" in t.head
    assert any(f.name == "benchmark_quantize" for f in rep.figures)
    assert not any(t.title == "Quantization attack" for t in rep.tables)  # the world's table stays out


def test_cli_quantize_benchmark_bad_data_fails_before_the_model(tmp_path):
    out = tmp_path / "q.json"
    res = CliRunner().invoke(app, ["attack", "quantize", "--model", str(tmp_path / "no-model"), "--benchmark",
                                   "tofu", "--data", str(tmp_path / "missing"), "--out", str(out)])
    assert res.exit_code == 2 and res.output.startswith("error: data path not found"), res.output
    assert not out.exists()


def test_cli_diagnose_on_tofu_forget_records(tmp_path, model_dir):  # noqa: F811
    """Sharpness and landscape of the loss on the benchmark's forget records, model and gold."""
    from robust_unlearning.diagnostics.common import forget_batch, forget_loss_fn

    data = write_tofu(tmp_path / "tofu")
    out = tmp_path / "d.json"
    res = CliRunner().invoke(app, ["diagnose", "--model", str(model_dir), "--benchmark", "tofu", "--data",
                                   str(data), "--power-iters", "3", "--points", "5", "--points-2d", "3",
                                   "--gold-model", str(model_dir), "--out", str(out)])
    assert res.exit_code == 0, res.output
    entries = json.loads(out.read_text())["entries"]
    assert [e["method"] for e in entries] == ["model", "gold"]
    s = entries[0]["diagnostics"]["sharpness"]
    # the loss diagnosed is the NLL of TOFU's forget QA pairs (answers as targets)
    m, tok = load_model(model_dir)
    forget, _ = build_benchmark("tofu", data).unlearning_data()
    want = forget_loss_fn(m, forget_batch(tok, forget))().item()
    assert s["loss"] == pytest.approx(want, rel=1e-5)
    assert s["pgd_decrease"] >= 0
    assert len(entries[0]["diagnostics"]["landscape"]["one_d"]["losses"]) == 5
    rep = collect([out])
    assert any(t.title.startswith("Sharpness") for t in rep.tables)
