"""WMDP and MMLU: multiple-choice accuracy (through lm-eval-harness and the built-in scorer) and the
forget / retain corpora, on fixture files in the published schemas (cais/wmdp: question, choices,
answer index; cais/mmlu: plus subject; the WMDP corpora and WikiText: text)."""

from __future__ import annotations

import json

import pytest

from robust_unlearning.benchmarks import BENCHMARKS, build_benchmark
from robust_unlearning.errors import UnlearnError
from robust_unlearning.metrics.mcq import builtin_accuracy, description, doc_to_text, mcq_accuracy


def _mcq(i: int, subject: str | None = None) -> dict:
    d = {"question": f"Which value does item {i} have? ", "choices": ["red", "blue", "green", "black"],
         "answer": i % 4}
    if subject:
        d["subject"] = subject
    return d


BIO = [_mcq(i) for i in range(5)]
CYBER = [_mcq(i + 10) for i in range(3)]
MMLU = [_mcq(i, "high_school_biology") for i in range(3)] + [_mcq(7, "astronomy")]


def _jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def write_wmdp(root):
    _jsonl(root / "wmdp-bio.jsonl", BIO)
    _jsonl(root / "wmdp-cyber.jsonl", CYBER)
    _jsonl(root / "mmlu.jsonl", MMLU)
    _jsonl(root / "bio-forget-corpus.jsonl", [
        {"title": "T", "abstract": "A", "text": "one two three four five six seven", "doi": "10.1/x"}])
    _jsonl(root / "cyber-forget-corpus.jsonl", [{"text": "alpha beta gamma"}])
    line = " The river flows slowly through the old valley town of Ashby. \n"
    _jsonl(root / "wikitext-2-raw-v1.jsonl", [{"text": ""}, {"text": " = Heading = \n"}, {"text": line}])
    return root


def test_prompt_is_lm_eval_template():
    d = _mcq(1)
    assert doc_to_text(d) == "Which value does item 1 have?\nA. red\nB. blue\nC. green\nD. black\nAnswer:"
    want = "The following are multiple choice questions (with answers) about biology.\n\n"
    assert description("biology") == want


def test_builtin_accuracy_is_argmax_of_letter_loglikelihoods(tiny_model, tiny_tokenizer):
    acc, per_doc = builtin_accuracy(tiny_model, tiny_tokenizer, BIO, "biology")
    assert len(per_doc) == 5 and all(len(ll) == 4 for ll in per_doc)
    hand = sum(max(range(4), key=ll.__getitem__) == d["answer"]
               for ll, d in zip(per_doc, BIO, strict=True)) / 5
    assert acc == pytest.approx(hand)


def test_lm_eval_agrees_with_builtin_scorer(tiny_model, tiny_tokenizer):
    pytest.importorskip("lm_eval")
    docs = [dict(d) for d in MMLU]
    lm = mcq_accuracy(tiny_model, tiny_tokenizer, docs, "mmlu_fixture", engine="lm-eval")
    ours = mcq_accuracy(tiny_model, tiny_tokenizer, [dict(d) for d in MMLU], "mmlu_fixture", engine="builtin")
    assert lm["engine"] == "lm-eval" and ours["engine"] == "builtin"
    # the same prompts (per-subject description included) and the same log-likelihoods
    for a, b in zip(lm["loglikelihoods"], ours["loglikelihoods"], strict=True):
        assert a == pytest.approx(b, abs=1e-3)
    assert lm["acc"] == pytest.approx(ours["acc"])


def test_unlearning_data_from_local_corpora(tmp_path):
    root = write_wmdp(tmp_path / "wmdp")
    forget, retain = build_benchmark("wmdp", root, options={"chunk_words": 3}).unlearning_data()
    assert forget == [{"text": "one two three"}, {"text": "four five six"}, {"text": "seven"},
                      {"text": "alpha beta gamma"}]
    # lines under 50 characters (blank lines, headings) are dropped
    assert retain == [{"text": "The river flows slowly through the old valley town of Ashby."}]
    (root / "bio-forget-corpus.jsonl").unlink()
    with pytest.raises(UnlearnError, match="gated"):
        build_benchmark("wmdp", root, "bio").unlearning_data()
    assert len(build_benchmark("wmdp", root, "cyber").unlearning_data()[0]) == 1
    with pytest.raises(UnlearnError, match="unknown WMDP subset"):
        build_benchmark("wmdp", root, "chem")


def test_evaluate_from_hub_mirror(tmp_path, monkeypatch, tiny_model, tiny_tokenizer):
    from datasets import Dataset, DatasetDict

    mirror = tmp_path / "mirror"
    for sub, rows in (("wmdp-bio", BIO), ("wmdp-cyber", CYBER)):
        DatasetDict({"test": Dataset.from_list(rows)}).save_to_disk(str(mirror / "cais" / "wmdp" / sub))
    DatasetDict({"test": Dataset.from_list(MMLU)}).save_to_disk(str(mirror / "cais" / "mmlu" / "all"))
    monkeypatch.setenv("ROBUST_UNLEARNING_DATASETS", str(mirror))
    report = BENCHMARKS.build("wmdp", {"engine": "builtin"}).evaluate(tiny_model, tiny_tokenizer)
    assert set(report["summary"]) == {"wmdp_bio_acc", "wmdp_cyber_acc", "mmlu_acc"}
    assert report["wmdp_bio"]["n"] == 5 and report["mmlu"]["n"] == 4
    want, _ = builtin_accuracy(tiny_model, tiny_tokenizer, [dict(d) for d in CYBER], "cybersecurity")
    assert report["summary"]["wmdp_cyber_acc"] == pytest.approx(want)


def test_bad_questions(tmp_path, tiny_model, tiny_tokenizer):
    with pytest.raises(UnlearnError, match="record 1: 'answer' must be the index"):
        mcq_accuracy(tiny_model, tiny_tokenizer, [{**_mcq(0), "answer": 9}], "t", engine="builtin")
    with pytest.raises(UnlearnError, match="record 1 needs 'question'"):
        mcq_accuracy(tiny_model, tiny_tokenizer, [{"question": "q", "choices": "abcd", "answer": 0}], "t")
    letter = [{**_mcq(0), "answer": "C"}]
    assert mcq_accuracy(tiny_model, tiny_tokenizer, letter, "t", engine="builtin")["n"] == 1
    assert letter[0]["answer"] == 2
    with pytest.raises(UnlearnError, match="engine"):
        mcq_accuracy(tiny_model, tiny_tokenizer, [_mcq(0)], "t", engine="vllm")
