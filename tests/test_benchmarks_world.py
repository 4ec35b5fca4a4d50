"""The world through the shared metric code (probability, ROUGE-L, truth ratio, forget quality,
model utility, MCQ), and ``unlearn run`` on a standard benchmark's data."""

from __future__ import annotations

import json

import pytest
from conftest import save_model
from scipy.stats import hmean, ks_2samp

from robust_unlearning.benchmarks import BENCHMARKS
from robust_unlearning.benchmarks.world import fact_item, world_report
from robust_unlearning.metrics.qa import score_qa
from robust_unlearning.world.benchmark import evaluate
from robust_unlearning.world.generator import SENTENCES


def test_fact_item_paraphrase_and_perturbations(tiny_world):
    fact = tiny_world.forget_eval[0]
    item = fact_item(fact)
    assert item.prompt == fact.prompt and item.answer == fact.answer
    assert item.paraphrased == " " + fact.sentence and fact.value in item.paraphrased
    wrong = [v for i, v in enumerate(fact.options) if i != fact.label]
    template = SENTENCES[fact.attribute]
    assert item.perturbed == [" " + template.format(name=fact.person, value=v) for v in wrong]
    assert fact.value not in wrong and len(item.perturbed) == 3


def test_world_report_uses_shared_metrics(tiny_world, tiny_tokenizer, tiny_model):
    import copy

    import torch

    world = copy.copy(tiny_world)  # a smaller evaluation, same world
    world.forget_eval, world.retain_eval = tiny_world.forget_eval[:8], tiny_world.retain_eval[:8]
    tiny_world = world
    other = copy.deepcopy(tiny_model)
    with torch.no_grad():  # a different "gold" model: perturb the weights
        for p in other.parameters():
            p.add_(0.05 * torch.randn_like(p))
    report = world_report(tiny_model, tiny_tokenizer, tiny_world, reference_model=other, max_new_tokens=4)
    s = report["summary"]
    mcq = evaluate(tiny_model, tiny_tokenizer, tiny_world)
    assert s["forget_acc"] == pytest.approx(mcq["forget_acc"])
    assert s["retain_acc"] == pytest.approx(mcq["retain_acc"])
    ref = score_qa(other, tiny_tokenizer, [fact_item(f) for f in tiny_world.forget_eval], generate=False)
    assert s["forget_quality"] == pytest.approx(ks_2samp(report["forget"]["truth_ratios"],
                                                         ref["truth_ratios"]).pvalue)
    assert len(report["forget"]["truth_ratios"]) == len(tiny_world.forget_eval)
    three = [s["retain_probability"], s["retain_rougeL_recall"], s["retain_truth_ratio"]]
    assert s["model_utility"] == pytest.approx(hmean(three)) or (min(three) == 0 and s["model_utility"] == 0)
    assert "world" in BENCHMARKS.names() and "world-quick" in BENCHMARKS.names()


def test_unlearn_run_on_tofu_data(tmp_path, tiny_model, tiny_tokenizer):
    from test_benchmarks_tofu import write_tofu

    from robust_unlearning.config import build_config
    from robust_unlearning.runner import load_data, run_config

    model_dir = tmp_path / "model"
    save_model(tiny_model, tiny_tokenizer, model_dir)
    root = write_tofu(tmp_path / "tofu")
    data = {"benchmark": "tofu", "path": str(root), "split": "forget10"}
    cfg = {"model": str(model_dir), "method": "graddiff", "data": data,
           "train": {"steps": 1, "batch_size": 2}, "output_dir": str(tmp_path / "out"), "save": "none"}
    forget, retain, bench = load_data(build_config(cfg))
    assert len(forget) == 3 and len(retain) == 5 and bench.name == "tofu" and bench.default_model() is None
    (tmp_path / "run.yaml").write_text(json.dumps(cfg))
    out = run_config(tmp_path / "run.yaml", [], log=lambda *_: None)
    assert (out / "metrics.json").is_file()


def test_cli_eval_world_keeps_mcq_keys_and_adds_shared_metrics(tmp_path, monkeypatch, tiny_world, tiny_model,
                                                                tiny_tokenizer):
    import copy

    from typer.testing import CliRunner

    import robust_unlearning.benchmarks.world as world_module
    from robust_unlearning.cli import app
    from robust_unlearning.world.model import WorldBundle

    model_dir = tmp_path / "model"
    save_model(tiny_model, tiny_tokenizer, model_dir)
    world = copy.copy(tiny_world)
    world.forget_eval, world.retain_eval = tiny_world.forget_eval[:6], tiny_world.retain_eval[:6]
    monkeypatch.setattr(world_module, "world_bundle",
                        lambda name: WorldBundle(None, world, model_dir, model_dir))
    out = tmp_path / "eval.json"
    res = CliRunner().invoke(app, ["eval", "--model", str(model_dir), "--benchmark", "world-quick",
                                   "-o", "rouge=false", "--out", str(out)])
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    s = report["summary"]
    assert {"forget_acc", "retain_acc", "model_utility"} <= set(s) and "forget_em" not in s
    assert s["forget_quality"] == pytest.approx(1.0)  # gold is the same model here
    assert len(report["forget"]["truth_ratios"]) == 6
    printed = json.loads(res.stdout[res.stdout.index("{"):])
    assert printed["forget_acc"] == s["forget_acc"]
