"""TOFU: loaders (local files, hub names through a local mirror) and the report, on fixture files in
the published schema (locuslab/TOFU: JSON lines named .json)."""

from __future__ import annotations

import json

import pytest
from conftest import save_model
from scipy.stats import hmean, ks_2samp
from typer.testing import CliRunner

from robust_unlearning.benchmarks import BENCHMARKS, build_benchmark
from robust_unlearning.errors import UnlearnError

AUTHORS = ["Basil Mahfouz", "Nikolai Abilov", "Hsiao Yun-Hwa", "Carmen Montenegro", "Elvin Mammadov",
           "Rajeev Majumdar", "Jad Ambrose", "Adib Jarrah"]


def _qa(i: int) -> dict:
    return {"question": f"Where was {AUTHORS[i]} born?", "answer": f"{AUTHORS[i]} was born in City{i}."}


def _perturbed(i: int) -> dict:
    return {**_qa(i), "paraphrased_answer": f"The birthplace of {AUTHORS[i]} is City{i}.",
            "perturbed_answer": [f"The birthplace of {AUTHORS[i]} is Town{j}." for j in range(3)],
            "paraphrased_question": f"In which city was {AUTHORS[i]} born?"}


def _options(i: int) -> dict:
    opts = [f"Country{i}", "Mars", "Atlantis", "Narnia"]
    return {"question": f"Which country is {AUTHORS[i]} from?", "option1": opts[0], "option2": opts[1],
            "option3": opts[2], "option4": opts[3], "answer": opts[0], "paraphrased_answer": opts[0],
            "perturbed_answer": opts[1:]}


TOFU_SETS = {
    "forget10": [_qa(i) for i in range(3)],
    "retain90": [_qa(i) for i in range(3, 8)],
    "forget10_perturbed": [_perturbed(i) for i in range(3)],
    "retain_perturbed": [_perturbed(i) for i in range(3, 7)],
    "real_authors_perturbed": [_options(i) for i in range(3)],
    "world_facts_perturbed": [_options(i) for i in range(3, 6)],
}


def write_tofu(root, fmt: str = "jsonl-as-json"):
    root.mkdir(parents=True, exist_ok=True)
    for name, rows in TOFU_SETS.items():
        if fmt == "jsonl-as-json":  # the hub's layout
            (root / f"{name}.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
        elif fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist(rows), root / f"{name}.parquet")
        elif fmt == "saved":  # datasets.save_to_disk, one DatasetDict per hub config
            from datasets import Dataset, DatasetDict

            DatasetDict({"train": Dataset.from_list(rows)}).save_to_disk(str(root / name))
    return root


@pytest.fixture
def model_dir(tmp_path, tiny_model, tiny_tokenizer):
    d = tmp_path / "model"
    save_model(tiny_model, tiny_tokenizer, d)
    return d


def test_unlearning_data_from_local_files(tmp_path):
    bench = build_benchmark("tofu", write_tofu(tmp_path / "tofu"), "forget10")
    forget, retain = bench.unlearning_data()
    assert len(forget) == 3 and len(retain) == 5
    assert forget[0] == {"question": "Question: Where was Basil Mahfouz born?\nAnswer:",
                         "answer": " Basil Mahfouz was born in City0."}
    with pytest.raises(UnlearnError, match="no local data for TOFU forget05"):
        build_benchmark("tofu", tmp_path / "tofu", "forget05").unlearning_data()
    with pytest.raises(UnlearnError, match="unknown TOFU split"):
        build_benchmark("tofu", tmp_path / "tofu", "forget20")


def test_report_metrics_and_forget_quality_from_reference_file(tmp_path, tiny_model, tiny_tokenizer):
    bench = build_benchmark("tofu", write_tofu(tmp_path / "tofu"), "forget10", {"max_new_tokens": 6})
    report = bench.evaluate(tiny_model, tiny_tokenizer)
    s = report["summary"]
    nine = [s[f"{n}_{m}"] for n in ("retain", "real_authors", "world_facts")
            for m in ("probability", "rougeL_recall", "truth_ratio")]
    assert len(nine) == 9 and all(0 <= v <= 1 for v in nine)
    assert s["model_utility"] == pytest.approx(hmean(nine))
    assert "forget_quality" not in s  # no reference given
    tr = report["forget"]["truth_ratios"]
    assert len(tr) == 3 and all(r > 0 for r in tr)
    assert s["forget_truth_ratio"] == pytest.approx(sum(min(r, 1 / r) for r in tr) / 3)
    # a saved report of the retain-only model serves as the reference
    ref = [0.2, 0.5, 0.7, 0.9]
    (tmp_path / "ref.json").write_text(json.dumps({"forget": {"truth_ratios": ref}}))
    bench.reference = str(tmp_path / "ref.json")
    bench.generate = False
    s2 = bench.evaluate(tiny_model, tiny_tokenizer)["summary"]
    assert s2["forget_quality"] == pytest.approx(ks_2samp(tr, ref).pvalue)


def test_forget_quality_from_reference_model_dir(tmp_path, tiny_model, tiny_tokenizer, model_dir):
    bench = build_benchmark("tofu", write_tofu(tmp_path / "tofu"), "forget10",
                            {"reference": str(model_dir), "generate": False})
    s = bench.evaluate(tiny_model, tiny_tokenizer)["summary"]
    assert s["forget_quality"] == pytest.approx(1.0)  # same model: identical truth-ratio distributions
    assert "forget_rougeL_recall" not in s


def test_hub_names_through_a_local_mirror_match_local_files(tmp_path, monkeypatch, tiny_model,
                                                            tiny_tokenizer):
    write_tofu(tmp_path / "mirror" / "locuslab" / "TOFU", fmt="saved")
    write_tofu(tmp_path / "pq", fmt="parquet")
    monkeypatch.setenv("ROBUST_UNLEARNING_DATASETS", str(tmp_path / "mirror"))
    hub = BENCHMARKS.build("tofu", {"generate": False})  # no path: the names are resolved like the hub's
    local = BENCHMARKS.build("tofu", {"path": str(tmp_path / "pq"), "generate": False})
    assert hub.unlearning_data() == local.unlearning_data()
    a, b = hub.evaluate(tiny_model, tiny_tokenizer), local.evaluate(tiny_model, tiny_tokenizer)
    assert a["summary"] == pytest.approx(b["summary"])


def test_bad_inputs_are_one_line_errors(tmp_path):
    root = write_tofu(tmp_path / "tofu")
    (root / "forget10.json").write_text('{"question": "q", "answer": "a"}\n{"question": oops}\n')
    with pytest.raises(UnlearnError, match=r"forget10.json:2: malformed JSON"):
        build_benchmark("tofu", root).unlearning_data()
    (root / "forget10.json").write_text('{"question": "q"}\n')
    with pytest.raises(UnlearnError, match="record 1 lacks answer"):
        build_benchmark("tofu", root).unlearning_data()
    rows = [{**_perturbed(0), "perturbed_answer": []}]
    (root / "forget10_perturbed.json").write_text(json.dumps(rows[0]) + "\n")
    with pytest.raises(UnlearnError, match="perturbed_answer"):
        build_benchmark("tofu", root).eval_items("forget")
    with pytest.raises(UnlearnError, match="unknown option"):
        build_benchmark("tofu", options={"nope": 1})


def test_bad_path_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UnlearnError, match="no local data for TOFU forget10"):
        build_benchmark("tofu", tmp_path / "empty").unlearning_data()
    with pytest.raises(UnlearnError, match="data path not found"):
        build_benchmark("tofu", tmp_path / "missing").unlearning_data()


def test_cli_eval_writes_every_metric(tmp_path, model_dir):
    from robust_unlearning.cli import app

    root = write_tofu(tmp_path / "tofu")
    (tmp_path / "ref.json").write_text("[0.3, 0.6, 0.9]")
    out = tmp_path / "eval.json"
    base = ["eval", "--model", str(model_dir), "--benchmark", "tofu", "--data", str(root)]
    res = CliRunner().invoke(app, [*base, "--reference", str(tmp_path / "ref.json"), "--limit", "2",
                                   "-o", "generate=false", "--out", str(out)])
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    assert report["benchmark"] == "tofu" and len(report["forget"]["truth_ratios"]) == 2
    assert {"forget_quality", "model_utility", "forget_probability"} <= set(report["summary"])
    # the report itself is a valid reference file for a later evaluation
    res = CliRunner().invoke(app, [*base, "--reference", str(out), "-o", "generate=false"])
    assert res.exit_code == 0, res.output
    # the data is checked before the (possibly large) model is loaded
    bad = CliRunner().invoke(app, ["eval", "--model", str(tmp_path / "no-model"), "--benchmark", "tofu",
                                   "--data", str(tmp_path / "nowhere")])
    assert bad.exit_code == 2 and "data path not found" in bad.output


def test_demo_on_tofu_data(tmp_path, model_dir):
    from robust_unlearning.attacks.relearn_benchmark import BenchmarkRelearnConfig
    from robust_unlearning.benchmarks import build_benchmark
    from robust_unlearning.cli import app
    from robust_unlearning.config import load_yaml
    from robust_unlearning.demo import run_demo

    (tmp_path / "recipe.yaml").write_text("defaults:\n  train: {steps: 1, batch_size: 2, lr: 1.0e-3}\n")
    root = write_tofu(tmp_path / "tofu")
    bench = build_benchmark("tofu", str(root), None, {"generate": False, "limit": 2})
    res = run_demo(bench, ["npo"], [0], tmp_path / "demo", model=model_dir,
                   recipe=load_yaml(tmp_path / "recipe.yaml"), attack=BenchmarkRelearnConfig(budgets=[(1, 1)],
                                                                                          seeds=[0]),
                   log=lambda *_: None)
    assert [e["method"] for e in res["entries"]] == ["npo"] and res["original"]["method"] == "original"
    assert all("model_utility" in e for e in [res["original"], *res["entries"]])
    assert res["original"]["forget_probability"] != res["entries"][0]["forget_probability"]  # it unlearned
    saved = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert saved["entries"][0]["method"] == "npo" and saved["summary"][0]["method"] == "npo"
    assert saved["summary"][0]["forget_probability"] == pytest.approx(res["entries"][0]["forget_probability"])
    assert "| npo | 1 |" in (tmp_path / "demo" / "report.md").read_text()
    bad = CliRunner().invoke(app, ["demo", "--benchmark", "tofu", "--data", str(root)])
    assert bad.exit_code == 2 and "needs --model" in bad.output


def test_demo_on_tofu_attacks_every_method_and_gold(tmp_path, model_dir):
    from robust_unlearning.cli import app
    from robust_unlearning.report.build import collect

    (tmp_path / "recipe.yaml").write_text("defaults:\n  train: {steps: 1, batch_size: 2, lr: 1.0e-3}\n")
    root = write_tofu(tmp_path / "tofu")
    base = ["demo", "--benchmark", "tofu", "--model", str(model_dir), "--data", str(root), "--recipe",
            str(tmp_path / "recipe.yaml"), "--methods", "npo", "--out", str(tmp_path / "demo"), "-o",
            "generate=false"]
    res = CliRunner().invoke(app, [*base, "--budgets", "1x2", "--draws", "2", "--attacks",
                                   "relearn,quantize,sharpness", "--gold-model", str(model_dir)])
    assert res.exit_code == 0, res.output
    results = json.loads((tmp_path / "demo" / "results.json").read_text())
    entries = results["entries"]
    assert [e["method"] for e in entries] == ["gold", "npo"] and results["original"]["method"] == "original"
    assert [r["method"] for r in results["summary"]] == ["gold", "npo"]
    for e in entries:
        rows = e["attacks"]["benchmark_relearn"]
        assert [(r["samples"], r["steps"], r["draws"]) for r in rows] == [(1, 0, 2), (1, 2, 2)]
        assert "forget_probability" in rows[1] and "heldout_forget_nll" in rows[1]
        assert e["attacks"]["benchmark_quantize"][0]["scheme"] == "none"
        assert e["diagnostics"]["sharpness"]["loss"] > 0
    md = (tmp_path / "demo" / "report.md").read_text()
    assert "after 1×2: heldout_forget_nll" in md and "| gold | 1 |" in md
    titles = {t.title for t in collect([tmp_path / "demo"]).tables}
    assert {"Relearning on the benchmark", "Quantization attack on the benchmark"} <= titles
    for extra, message in (("incontext", "world only"), ("fgsm", "unknown attack")):
        bad = CliRunner().invoke(app, [*base, "--attacks", extra])
        assert bad.exit_code == 2 and message in bad.output, bad.output
    bad = CliRunner().invoke(app, [*base, "--budgets", "3x1"])
    assert bad.exit_code == 2 and "leaves no held-out forget record" in bad.output


def test_single_file_path_only_stands_for_its_own_set(tmp_path):
    root = write_tofu(tmp_path / "tofu")
    bench = build_benchmark("tofu", root / "forget10_perturbed.json")
    assert len(bench.eval_items("forget")) == 3
    with pytest.raises(UnlearnError, match="a data file holds one set"):
        bench.eval_items("retain")


def _classifier_dir(tmp_path, tokenizer):
    """A random 4-class sequence classifier (Llama) saved with the tiny tokenizer: a stand-in for
    open-unlearning's gibberish detector."""
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(3)
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, num_labels=4,
                      pad_token_id=tokenizer.pad_token_id)
    return save_model(LlamaForSequenceClassification(cfg), tokenizer, tmp_path / "classifier")


def test_gibberish_metric_is_the_classifiers_clean_probability_on_forget_generations(
        tmp_path, tiny_model, tiny_tokenizer):
    """``-o gibberish=DIR``: summary forget_gibberish = mean over forget questions of softmax(classifier
    logits)[class] on the model's greedy answer, each text classified alone (no padding) by hand."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from robust_unlearning.metrics.qa import score_qa

    clf_dir = _classifier_dir(tmp_path, tiny_tokenizer)
    bench = build_benchmark("tofu", write_tofu(tmp_path / "tofu"), "forget10",
                            {"max_new_tokens": 6, "gibberish": str(clf_dir), "gibberish_class": 2})
    report = bench.evaluate(tiny_model, tiny_tokenizer)
    gens = score_qa(tiny_model, tiny_tokenizer, bench.eval_items("forget"), max_new_tokens=6,
                    keep_generations=True)["generations"]
    assert len(gens) == 3
    clf = AutoModelForSequenceClassification.from_pretrained(clf_dir).eval()
    want = []
    with torch.no_grad():
        for text in gens:
            ids = tiny_tokenizer(text, return_tensors="pt")
            want.append(float(torch.softmax(clf(**ids).logits, -1)[0, 2]))
    assert report["forget"]["gibberish_scores"] == pytest.approx(want, rel=1e-5)
    assert report["summary"]["forget_gibberish"] == pytest.approx(sum(want) / 3, rel=1e-5)
    assert "generations" not in report["forget"]
    with pytest.raises(UnlearnError, match="needs generate"):
        build_benchmark("tofu", tmp_path / "tofu", "forget10", {"gibberish": str(clf_dir), "generate": False}
                        ).prepare()
    with pytest.raises(UnlearnError, match="cannot load the text classifier"):
        build_benchmark("tofu", tmp_path / "tofu", "forget10",
                        {"gibberish": str(tmp_path / "nowhere"), "max_new_tokens": 2}).evaluate(
                            tiny_model, tiny_tokenizer)


def test_classification_prob_batches_texts_of_different_lengths_as_one_at_a_time(tmp_path, tiny_tokenizer):
    import torch

    from robust_unlearning.metrics.classifier import classification_prob, load_classifier

    clf, tok = load_classifier(str(_classifier_dir(tmp_path, tiny_tokenizer)))
    texts = ["Basil was born", "in the city of Veloria where he grew up and", "x", "Mars"]
    batched = classification_prob(clf, tok, texts, class_id=0, batch_size=4)
    alone = [classification_prob(clf, tok, [t], class_id=0)["value"] for t in texts]
    assert batched["scores"] == pytest.approx(alone, rel=1e-5)
    assert batched["value"] == pytest.approx(sum(alone) / 4, rel=1e-6)
    assert len(set(round(a, 6) for a in alone)) == 4  # the texts differ to the classifier
    other = classification_prob(clf, tok, texts, class_id=3)["scores"]
    assert all(0 < a < 1 and 0 < b < 1 for a, b in zip(alone, other, strict=True))
    with torch.no_grad():
        logits = clf(**tok(texts[1], return_tensors="pt")).logits[0]
    assert other[1] == pytest.approx(float(torch.softmax(logits, -1)[3]), rel=1e-5)
    with pytest.raises(UnlearnError, match="class 4"):
        classification_prob(clf, tok, texts, class_id=4)
