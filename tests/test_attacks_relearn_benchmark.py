"""The relearning attack beyond the world: TOFU (relearned questions left out of the evaluation), the
user's own forget JSONL, and the CLI; the world attack's loop is shared and unchanged."""

from __future__ import annotations

import json

import pytest
import torch
from test_benchmarks_tofu import TOFU_SETS, model_dir, write_tofu  # noqa: F401  (fixture)
from typer.testing import CliRunner

from robust_unlearning.attacks.relearn import summarize
from robust_unlearning.attacks.relearn_benchmark import BenchmarkRelearnConfig, relearn_benchmark
from robust_unlearning.benchmarks import build_benchmark
from robust_unlearning.cli import app
from robust_unlearning.data.collate import Collator
from robust_unlearning.metrics.scoring import mean_token_nll
from robust_unlearning.objectives.base import mean_nll


def test_tofu_excluding_drops_the_relearned_questions_everywhere(tmp_path, tiny_model, tiny_tokenizer):
    bench = build_benchmark("tofu", write_tofu(tmp_path / "tofu"), "forget10", {"generate": False})
    forget, _ = bench.unlearning_data()
    attacked_on = [forget[1]]
    sub = bench.excluding(attacked_on)
    prompts = [it.prompt for it in sub.eval_items("forget")]
    assert len(prompts) == 2 and forget[1]["question"] not in prompts
    assert len(bench.eval_items("forget")) == 3  # the original is untouched
    assert len(sub.eval_items("retain")) == len(TOFU_SETS["retain_perturbed"])
    # a saved reference file of truth ratios (one per forget question) loses the same index
    (tmp_path / "ref.json").write_text(json.dumps([0.1, 0.2, 0.3]))
    sub.reference = str(tmp_path / "ref.json")
    assert sub.reference_truth_ratios() == [0.1, 0.3]
    with pytest.raises(Exception, match="every forget-evaluation question is excluded"):
        bench.excluding(forget).eval_items("forget")


def test_mean_token_nll_is_the_mean_of_per_record_nll(tiny_model, tiny_tokenizer):
    recs = [{"question": "Q: a?", "answer": " b c"}, {"text": "one two three four five"},
            {"question": "Q: longer question here?", "answer": " d"}]
    with torch.no_grad():
        want = float(mean_nll(tiny_model, Collator(tiny_tokenizer)(recs)))
    assert mean_token_nll(tiny_model, tiny_tokenizer, recs, batch_size=2) == pytest.approx(want, rel=1e-5)


def test_relearning_on_tofu_fits_what_it_saw_and_scores_the_rest(tmp_path, trained_tiny, tiny_tokenizer):
    bench = build_benchmark("tofu", write_tofu(tmp_path / "tofu"), "forget10", {"generate": False})
    forget, _ = bench.unlearning_data()
    cfg = BenchmarkRelearnConfig(budgets=[(2, 0), (2, 6)], lr=3e-3, batch_size=2, seeds=[0, 1])
    rows = relearn_benchmark(trained_tiny, tiny_tokenizer, forget, cfg, bench)
    assert [(r["samples"], r["steps"], r["seed"]) for r in rows] == [(2, 0, 0), (2, 6, 0), (2, 0, 1),
                                                                     (2, 6, 1)]
    for before, after in (rows[0:2], rows[2:4]):
        assert after["drawn_forget_nll"] < 0.5 * before["drawn_forget_nll"]  # the attacker learnt its set
        assert {"heldout_forget_nll", "forget_probability", "forget_truth_ratio"} <= set(after)
    # step 0 is the unattacked model: its held-out NLL is that of the one record not drawn
    untouched = mean_token_nll(trained_tiny, tiny_tokenizer, forget)
    per = [mean_token_nll(trained_tiny, tiny_tokenizer, [r]) for r in forget]
    assert min(per) - 1e-4 <= rows[0]["heldout_forget_nll"] <= max(per) + 1e-4
    assert untouched == pytest.approx(sum(per) / 3, rel=1e-5)
    summary = summarize(rows)
    assert [(s["samples"], s["steps"], s["draws"]) for s in summary] == [(2, 0, 2), (2, 6, 2)]
    assert summary[1]["heldout_forget_nll"] == pytest.approx(
        (rows[1]["heldout_forget_nll"] + rows[3]["heldout_forget_nll"]) / 2)
    with pytest.raises(ValueError, match="leaves no held-out forget record"):
        relearn_benchmark(trained_tiny, tiny_tokenizer, forget, BenchmarkRelearnConfig(budgets=[(3, 1)]),
                          bench)


def test_cli_relearn_on_own_jsonl_and_tofu(tmp_path, model_dir):  # noqa: F811
    forget = tmp_path / "forget.jsonl"
    forget.write_text("".join(json.dumps({"question": f"Who is person {i}?", "answer": f" Person {i} is a "
                                          f"baker in town {i}."}) + "\n" for i in range(6)))
    out = tmp_path / "own.json"
    res = CliRunner().invoke(app, ["attack", "relearn", "--model", str(model_dir), "--forget", str(forget),
                                   "--budgets", "2x1,4x3", "--seeds", "2", "--lr", "1e-3", "--out", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    rows = data["entries"][0]["attacks"]["benchmark_relearn"]
    budgets = [(r["samples"], r["steps"], r["draws"]) for r in rows]
    assert budgets == [(2, 0, 2), (2, 1, 2), (4, 0, 2), (4, 3, 2)]  # step 0: the unattacked model
    assert data["config"]["lr"] == 1e-3 and "held-out forget NLL" in res.output

    out = tmp_path / "tofu.json"
    res = CliRunner().invoke(app, ["attack", "relearn", "--model", str(model_dir), "--benchmark", "tofu",
                                   "--data", str(write_tofu(tmp_path / "tofu")), "--split", "forget10",
                                   "-o", "generate=false", "--budgets", "1x2", "--seeds", "1",
                                   "--gold-model", str(model_dir), "--out", str(out)])
    assert res.exit_code == 0, res.output
    entries = json.loads(out.read_text())["entries"]
    assert [e["method"] for e in entries] == ["model", "gold"]
    assert "forget_probability" in entries[0]["attacks"]["benchmark_relearn"][0]


@pytest.mark.parametrize("args, message", [
    (["--forget", "nope.jsonl"], "forget file not found: nope.jsonl"),
    (["--forget", "{empty}"], "forget file has no records"),
    (["--forget", "{forget}", "--benchmark", "tofu"], "either --benchmark or --forget"),
    (["--forget", "{forget}", "--budgets", "3x1"], "leaves no held-out forget record"),
    (["--forget", "{forget}", "--form", "bio"], "form applies to the world only"),
    (["--benchmark", "tofu", "--data", "{missing}"], "data path not found"),
])
def test_cli_relearn_bad_input_one_line_exit_2(args, message, tmp_path, model_dir):  # noqa: F811
    (tmp_path / "forget.jsonl").write_text("".join(json.dumps({"text": f"t {i}"}) + "\n" for i in range(3)))
    (tmp_path / "empty.jsonl").write_text("")
    subs = {"{forget}": str(tmp_path / "forget.jsonl"), "{empty}": str(tmp_path / "empty.jsonl"),
            "{missing}": str(tmp_path / "missing")}
    args = [subs.get(a, a) for a in args]
    out = tmp_path / "out.json"
    res = CliRunner().invoke(app, ["attack", "relearn", "--model", str(model_dir), *args, "--out", str(out)])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], res.output
    assert not out.exists()
