"""GCG beyond the world: TOFU / MUSE forget questions (scored by answer probability and NLL) and WMDP
multiple choice (scored by accuracy); the CLI, the report, and the world attack unchanged."""

from __future__ import annotations

import json
import math

import pytest
from test_benchmarks_muse import write_muse
from test_benchmarks_tofu import TOFU_SETS, model_dir, write_tofu  # noqa: F401  (fixture)
from test_benchmarks_wmdp import BIO, CYBER, write_wmdp
from typer.testing import CliRunner

from robust_unlearning.attacks.jailbreak import JailbreakConfig, gcg_items
from robust_unlearning.benchmarks import build_benchmark
from robust_unlearning.benchmarks.forget_file import ForgetFile
from robust_unlearning.cli import app
from robust_unlearning.errors import UnlearnError
from robust_unlearning.report.build import collect
from robust_unlearning.world.model import WorldBundle

CFG = JailbreakConfig(prefix_len=3, iters=3, topk=4, candidates=8, train_questions=1, eval_every=1)


def test_attack_items_of_each_benchmark(tmp_path, monkeypatch, tiny_world):
    tofu = build_benchmark("tofu", write_tofu(tmp_path / "tofu")).attack_items()
    assert len(tofu) == len(TOFU_SETS["forget10_perturbed"])
    assert tofu[0] == {"prompt": "Question: Where was Basil Mahfouz born?\nAnswer:",
                       "answer": " Basil Mahfouz was born in City0."}
    wmdp = build_benchmark("wmdp", write_wmdp(tmp_path / "wmdp")).attack_items()
    assert len(wmdp) == len(BIO) + len(CYBER)  # MMLU is utility, not a forget target
    assert wmdp[1]["options"] == [" A", " B", " C", " D"] and wmdp[1]["label"] == BIO[1]["answer"]
    assert wmdp[1]["answer"] == " B" and wmdp[1]["prompt"].endswith("D. black\nAnswer:")
    muse = build_benchmark("muse-news", write_muse(tmp_path / "muse")).attack_items()
    assert muse and all(m["prompt"].startswith("Question: ") and m["answer"].startswith(" ") for m in muse)
    (tmp_path / "own.jsonl").write_text('{"text": "a forgotten text"}\n')
    with pytest.raises(UnlearnError, match="has no forget questions"):
        ForgetFile(tmp_path / "own.jsonl").attack_items()
    # the world's: its forget-evaluation facts as MCQ items, the same as GCG on the world scores
    import robust_unlearning.benchmarks.world as world_module

    monkeypatch.setattr(world_module, "world_bundle", lambda name: WorldBundle(None, tiny_world, None, None))
    world = build_benchmark("world-quick").attack_items()
    fact = tiny_world.forget_eval[0]
    assert len(world) == len(tiny_world.forget_eval)
    assert world[0] == {"prompt": fact.prompt, "answer": fact.answer,
                        "options": [" " + o for o in fact.options], "label": fact.label}


@pytest.mark.slow
def test_gcg_on_qa_items_reports_probability_and_lowers_the_loss(tmp_path, trained_tiny, tiny_tokenizer):
    items = build_benchmark("tofu", write_tofu(tmp_path / "tofu")).attack_items()
    r = gcg_items(trained_tiny, tiny_tokenizer, items, CFG)
    assert r["train_questions"] == 1 and r["heldout_questions"] == 2
    assert "heldout_acc" not in r and "forget_acc" not in r
    for k in ("heldout_prob", "heldout_nll", "train_prob", "train_nll"):
        assert math.isfinite(r[k]) and math.isfinite(r[f"{k}_no_prefix"])
    assert 0 < r["heldout_prob"] <= 1
    assert r["loss"] <= r["curve"][0]["loss"]  # the best prefix found is kept
    assert r["train_nll"] == pytest.approx(r["loss"], rel=1e-5)  # the loss is the optimised-on NLL
    assert [c["iter"] for c in r["curve"]] == [0, 1, 2, 3]


def test_cli_jailbreak_on_wmdp_and_tofu_with_report(tmp_path, model_dir):  # noqa: F811
    def run(bench, data, train, out):
        return CliRunner().invoke(app, [
            "attack", "jailbreak", "--model", str(model_dir), "--benchmark", bench, "--data", str(data),
            "--prefix-len", "2", "--iters", "2", "--topk", "4", "--candidates", "4", "--eval-every", "1",
            "--train-questions", str(train), "--gold-model", str(model_dir), "--out", str(out)])

    out_w, out_t = tmp_path / "w.json", tmp_path / "t.json"
    res = run("wmdp", write_wmdp(tmp_path / "wmdp"), 2, out_w)
    assert res.exit_code == 0, res.output
    assert "held-out acc" in res.output
    res = run("tofu", write_tofu(tmp_path / "tofu"), 1, out_t)
    assert res.exit_code == 0, res.output
    assert "held-out prob" in res.output
    entries = json.loads(out_t.read_text())["entries"]
    assert [e["method"] for e in entries] == ["model", "gold"]
    rep = collect([out_w, out_t])
    titles = {t.title for t in rep.tables}
    assert {"GCG jailbreak (universal prefix)", "GCG jailbreak (universal prefix), QA answers"} <= titles
    assert {"jailbreak", "jailbreak_prob"} <= {f.name for f in rep.figures}
