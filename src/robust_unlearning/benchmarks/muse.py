"""MUSE (Shi et al. 2024): News (BBC) and Books (Harry Potter) (docs/metrics.md#muse).

Data (hub ``muse-bench/MUSE-News`` / ``muse-bench/MUSE-Books``, or local files of the same schema):

- ``raw``: splits ``forget``, ``retain1``, ``retain2``, ``holdout`` (``text``): unlearning data;
  documents are cut into pieces of ``chunk_words`` words (MUSE trains on fixed-size chunks);
- ``verbmem``/``forget`` (``prompt``, ``gt``): VerbMem;
- ``knowmem``: ``forget_qa``, ``retain_qa`` (``question``, ``answer``) and their in-context examples
  ``forget_qa_icl``, ``retain_qa_icl``: KnowMem on forget and on retain;
- ``privleak``: ``forget``, ``holdout`` (``text``): the Min-K % membership attack.

Metrics and their defaults are MUSE's own (``swj0419/muse_bench``; docs/conventions.md):

- ``verbmem_forget``: ROUGE-L F1, no stemmer, of 128 greedy tokens against the reference truncated to
  its first 128 tokens (``verbmem_truncate``); lower is better;
- ``knowmem_forget`` / ``knowmem_retain``: ROUGE-L F1, no stemmer, of ≤ 32 greedy tokens after
  MUSE's in-context prompt (``"Question: …\nAnswer: …"``, ending ``"Answer: "``); lower / higher is
  better; ``rouge_stemmer=True`` stems (not MUSE's convention);
- ``mink_auc``: Min-40 % AUC in MUSE's convention, P(a holdout text scores more member-like than a
  forget text): near 0 = forget set memorised, near the retrain model's = forgotten;
- ``privleak`` = ``(mink_auc - retrain_auc) / retrain_auc × 100``; closer to 0 is better, about
  -100 for a model that memorised its forget set.

PrivLeak needs the retrain model's AUC: ``reference`` is that number (in MUSE's convention, e.g.
MUSE's published 0.4772 for News, 0.5393 for Books), ``"published"`` (that number for this corpus;
``k`` must be 0.4), or the retrain model's directory (its AUC is then computed on the same texts).
Without it the AUC alone is reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import UnlearnError
from ..metrics.directions import directions
from ..metrics.memorization import knowmem, verbmem
from ..metrics.privleak import PUBLISHED_RETRAIN_AUC, min_k_scores, muse_auc, privleak
from . import BENCHMARKS, Benchmark, limited
from .source import chunk_words, load_records, require


@dataclass
class MUSE(Benchmark):
    path: str | None = None
    retain_split: str = "retain1"
    chunk_words: int = 150  # unlearning text pieces (fit the default max_length of 256 tokens)
    reference: str | float | None = None  # retrain model's AUC (MUSE's convention), "published", or its dir
    k: float = 0.4  # Min-K %
    limit: int | None = None  # at most this many items per evaluation set
    icl_examples: int | None = None  # in-context examples for KnowMem (default: all given)
    verbmem_tokens: int = 128
    verbmem_truncate: bool = True  # score against the reference's first verbmem_tokens tokens (MUSE)
    knowmem_tokens: int = 32
    rouge_stemmer: bool = False  # MUSE scores ROUGE-L without a stemmer
    batch_size: int = 16
    max_length: int = 2048
    memorization: bool = False  # exact memorization, extraction strength on VerbMem (benchmarks/extras.py)
    mia: list[str] | None = None  # membership attacks on the privleak texts (metrics/mia.py)

    hub = ""

    def _load(self, config: str, split: str, aliases=()) -> list[dict]:
        return self._cached((config, split), lambda: load_records(
            self.hub, config, split, self.path, aliases, what=f"{self.name} {config}/{split}"))

    def _texts(self, config: str, split: str) -> list[str]:
        recs = self._load(config, split)
        require(recs, ["text"], f"{self.name} {config}/{split}")
        return [r["text"] for r in recs if isinstance(r["text"], str) and r["text"].strip()]

    def unlearning_data(self) -> tuple[list[dict], list[dict]]:
        if self.chunk_words < 1:
            raise UnlearnError("chunk_words must be at least 1")
        out = []
        for split in ("forget", self.retain_split):
            texts = self._texts("raw", split)
            out.append([{"text": c} for t in texts for c in chunk_words(t, self.chunk_words)])
        return out[0], out[1]

    def _qa(self, split: str) -> list[dict]:
        recs = self._load("knowmem", split)
        require(recs, ["question", "answer"], f"{self.name} knowmem/{split}", strings=["question", "answer"])
        return recs

    def attack_items(self) -> list[dict]:
        """KnowMem's forget questions, zero-shot (``Question: …\nAnswer:``), the answer to elicit."""
        return [{"prompt": f"Question: {r['question']}\nAnswer:", "answer": " " + r["answer"].strip()}
                for r in limited(self._qa("forget_qa"), self.limit)]

    def retrain_auc(self, forget: list[str], holdout: list[str]) -> float | None:
        ref = self.reference
        if ref is None:
            return None
        if isinstance(ref, (int, float)):
            return float(ref)
        if ref == "published":
            corpus = self.name.removeprefix("muse-")
            if corpus not in PUBLISHED_RETRAIN_AUC or self.k != 0.4:
                raise UnlearnError("reference 'published' is MUSE's retrain AUC for Min-40 % on News or "
                                   "Books: use k = 0.4 on muse-news or muse-books")
            return PUBLISHED_RETRAIN_AUC[corpus]
        try:
            return float(ref)
        except ValueError:
            pass
        if not Path(ref).is_dir():
            raise UnlearnError(f"reference {ref!r} is neither an AUC number nor a model directory")
        from ..io import load_model

        model, tok = load_model(ref)
        return self._auc(model, tok, forget, holdout)

    def _auc(self, model, tokenizer, forget: list[str], holdout: list[str]) -> float:
        f = min_k_scores(model, tokenizer, forget, self.k, self.batch_size, self.max_length)
        h = min_k_scores(model, tokenizer, holdout, self.k, self.batch_size, self.max_length)
        return muse_auc(f, h)

    def prepare(self) -> None:
        if self.reference == "published":
            self.retrain_auc([], [])  # fails here, before a model is loaded, when it does not apply
        require(self._load("verbmem", "forget"), ["prompt", "gt"], f"{self.name} verbmem/forget",
                strings=["prompt", "gt"])
        for split in ("forget_qa", "forget_qa_icl", "retain_qa", "retain_qa_icl"):
            self._qa(split)
        for split in ("forget", "holdout"):
            self._texts("privleak", split)

    def evaluate(self, model, tokenizer) -> dict:
        self.prepare()
        vm = limited(self._load("verbmem", "forget"), self.limit)
        report: dict = {"verbmem": verbmem(model, tokenizer, [r["prompt"] for r in vm], [r["gt"] for r in vm],
                                           self.verbmem_tokens, self.batch_size, self.max_length,
                                           self.verbmem_truncate, self.rouge_stemmer)}
        for which in ("forget", "retain"):
            qa = limited(self._qa(f"{which}_qa"), self.limit)
            icl = self._qa(f"{which}_qa_icl")
            icl = icl if self.icl_examples is None else icl[: self.icl_examples]
            report[f"knowmem_{which}"] = knowmem(model, tokenizer, [r["question"] for r in qa],
                                                 [r["answer"] for r in qa], icl, self.knowmem_tokens,
                                                 self.batch_size, self.max_length, self.rouge_stemmer)
        forget = limited(self._texts("privleak", "forget"), self.limit)
        holdout = limited(self._texts("privleak", "holdout"), self.limit)
        auc = self._auc(model, tokenizer, forget, holdout)
        summary = {"verbmem_forget": report["verbmem"]["rougeL_f1"],
                   "knowmem_forget": report["knowmem_forget"]["rougeL_f1"],
                   "knowmem_retain": report["knowmem_retain"]["rougeL_f1"], "mink_auc": auc}
        ref_auc = self.retrain_auc(forget, holdout)
        if ref_auc is not None:
            summary["retrain_auc"] = ref_auc
            # undefined when the retrain model's AUC is 0 (it ranks every forget text above the holdout texts)
            summary["privleak"] = privleak(auc, ref_auc) if ref_auc > 0 else None
        if self.memorization or self.mia:
            from .extras import muse_metrics

            summary.update(muse_metrics(self, model, tokenizer, report, forget, holdout))
        return {"summary": summary, "directions": directions(summary), **report}


@BENCHMARKS.register("muse-news")
@dataclass
class MUSENews(MUSE):
    hub = "muse-bench/MUSE-News"


@BENCHMARKS.register("muse-books")
@dataclass
class MUSEBooks(MUSE):
    hub = "muse-bench/MUSE-Books"
