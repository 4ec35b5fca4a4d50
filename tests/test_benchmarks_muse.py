"""MUSE (News, Books): loaders and metrics on fixture files in the published schema
(muse-bench/MUSE-News: configs raw, verbmem, knowmem, privleak)."""

from __future__ import annotations

import json

import pytest
from conftest import save_model
from sklearn.metrics import roc_auc_score

from robust_unlearning.benchmarks import BENCHMARKS, build_benchmark
from robust_unlearning.errors import UnlearnError
from robust_unlearning.metrics.memorization import icl_prompt
from robust_unlearning.metrics.privleak import min_k_score
from robust_unlearning.metrics.rouge import rouge_l_f1
from robust_unlearning.metrics.scoring import text_token_logprobs

NEWS = [f"The council of town {i} voted to rebuild the old bridge before the winter floods."
        for i in range(4)]
OTHER = [f"A new bakery in district {i} sells bread made from ancient grains every morning."
         for i in range(3)]

MUSE_SETS = {
    ("raw", "forget"): [{"text": t} for t in NEWS],
    ("raw", "retain1"): [{"text": t} for t in OTHER],
    ("raw", "retain2"): [{"text": t} for t in OTHER[:1]],
    ("raw", "holdout"): [{"text": t} for t in OTHER[1:]],
    ("verbmem", "forget"): [{"prompt": t[:30], "gt": t[30:]} for t in NEWS[:3]],
    ("knowmem", "forget_qa"): [{"question": f"What did the council of town {i} vote for?",
                                "answer": "to rebuild the old bridge"} for i in range(3)],
    ("knowmem", "forget_qa_icl"): [{"question": "Who rebuilt the bridge?", "answer": "the council"}],
    ("knowmem", "retain_qa"): [{"question": f"What does the bakery in district {i} sell?",
                                "answer": "bread"} for i in range(2)],
    ("knowmem", "retain_qa_icl"): [{"question": "When does the bakery open?", "answer": "every morning"}],
    # one text on both sides: a tie, so the AUC is strictly between 0 and 1 whatever the model
    ("privleak", "forget"): [{"text": t} for t in NEWS],
    ("privleak", "holdout"): [{"text": t} for t in OTHER + NEWS[:1]],
}


def write_muse(root, saved: bool = False):
    if saved:
        from datasets import Dataset, DatasetDict

        by_config: dict = {}
        for (config, split), rows in MUSE_SETS.items():
            by_config.setdefault(config, {})[split] = Dataset.from_list(rows)
        for config, splits in by_config.items():
            DatasetDict(splits).save_to_disk(str(root / config))
        return root
    for (config, split), rows in MUSE_SETS.items():
        (root / config).mkdir(parents=True, exist_ok=True)
        (root / config / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_unlearning_data_chunks_documents(tmp_path):
    bench = build_benchmark("muse-news", write_muse(tmp_path / "news"), options={"chunk_words": 5})
    forget, retain = bench.unlearning_data()
    # 15 words per news text -> 3 pieces of 5 words; 14 words per retain text -> 5 + 5 + 4
    assert len(forget) == 4 * 3 and len(retain) == 3 * 3
    assert forget[0] == {"text": "The council of town 0"}
    assert retain[2] == {"text": "ancient grains every morning."}
    bench.retain_split = "retain2"
    assert len(bench.unlearning_data()[1]) == 3


def test_icl_prompt_format():
    got = icl_prompt("Q2?", [{"question": "Q1?", "answer": " A1 "}])
    # MUSE's prompt (metrics/knowmem.py): answers as given, a trailing space after the last "Answer:"
    assert got == "Question: Q1?\nAnswer:  A1 \n\nQuestion: Q2?\nAnswer: "


def test_report_matches_metric_definitions(tmp_path, tiny_model, tiny_tokenizer):
    bench = build_benchmark("muse-news", write_muse(tmp_path / "news"),
                            options={"reference": 0.4, "verbmem_tokens": 8, "knowmem_tokens": 4})
    report = bench.evaluate(tiny_model, tiny_tokenizer)
    s = report["summary"]
    vm = report["verbmem"]
    # the reference cut to its first verbmem_tokens tokens, as MUSE does
    refs = [tiny_tokenizer.decode(tiny_tokenizer(r["gt"])["input_ids"][:8], skip_special_tokens=True)
            for r in MUSE_SETS[("verbmem", "forget")]]
    assert vm["references"] == refs
    assert s["verbmem_forget"] == pytest.approx(sum(rouge_l_f1(vm["generations"], refs)) / 3)
    assert len(report["knowmem_forget"]["scores"]) == 3 and len(report["knowmem_retain"]["scores"]) == 2
    # Min-K % (K = 40 %) AUC recomputed from per-token log-probs, in MUSE's convention (the holdout
    # texts are the positives), then PrivLeak by its formula
    forget = [min_k_score(t, 0.4) for t in text_token_logprobs(tiny_model, tiny_tokenizer, NEWS)]
    holdout = [min_k_score(t, 0.4) for t in text_token_logprobs(tiny_model, tiny_tokenizer, OTHER + NEWS[:1])]
    auc = roc_auc_score([0] * 4 + [1] * 4, forget + holdout)
    assert s["mink_auc"] == pytest.approx(auc)
    assert s["privleak"] == pytest.approx((auc - 0.4) / 0.4 * 100)


def test_privleak_against_retrain_model_dir_and_hub_mirror(tmp_path, monkeypatch, tiny_model, tiny_tokenizer):
    d = tmp_path / "retrain"
    save_model(tiny_model, tiny_tokenizer, d)
    write_muse(tmp_path / "mirror" / "muse-bench" / "MUSE-Books", saved=True)
    monkeypatch.setenv("ROBUST_UNLEARNING_DATASETS", str(tmp_path / "mirror"))
    bench = BENCHMARKS.build("muse-books", {"reference": str(d), "verbmem_tokens": 2, "knowmem_tokens": 2})
    s = bench.evaluate(tiny_model, tiny_tokenizer)["summary"]
    assert s["privleak"] == pytest.approx(0.0)  # the same model as its own retrain model
    assert s["retrain_auc"] == pytest.approx(s["mink_auc"])
    with pytest.raises(UnlearnError, match="muse-news"):  # News is not in the mirror
        BENCHMARKS.build("muse-news", {}).unlearning_data()


def test_missing_fields_and_bad_reference(tmp_path, tiny_model, tiny_tokenizer):
    root = write_muse(tmp_path / "news")
    (root / "verbmem" / "forget.jsonl").write_text(json.dumps({"prompt": "x"}) + "\n")
    with pytest.raises(UnlearnError, match="verbmem/forget: record 1 lacks gt"):
        build_benchmark("muse-news", root).evaluate(tiny_model, tiny_tokenizer)
    bench = build_benchmark("muse-news", write_muse(tmp_path / "news2"), options={"reference": "nonsense",
                                                                                  "verbmem_tokens": 1,
                                                                                  "knowmem_tokens": 1})
    with pytest.raises(UnlearnError, match="neither an AUC number nor a model directory"):
        bench.evaluate(tiny_model, tiny_tokenizer)
