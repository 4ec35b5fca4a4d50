"""WMDP (Li et al. 2024): hazardous knowledge in biosecurity and cybersecurity, with MMLU as utility
(docs/metrics.md#wmdp-and-mmlu).

Evaluation: zero-shot 4-choice accuracy on ``cais/wmdp`` (configs ``wmdp-bio``, ``wmdp-cyber``, split
``test``; ``question``, ``choices``, ``answer`` index) and on ``cais/mmlu`` (config ``all``, split
``test``; plus ``subject``), scored through lm-eval-harness with its own prompt templates
(:mod:`..metrics.mcq`). Unlearning effectiveness is often quoted as ``1 - accuracy``.

Unlearning data: the forget corpora, as local files (the bio corpus is gated: request access and
place ``bio-forget-corpus.jsonl`` under ``path``; the cyber corpus is ``cais/wmdp-corpora``
``cyber-forget-corpus``), cut into pieces of ``chunk_words`` words; retain: WikiText
(``Salesforce/wikitext``, ``wikitext-2-raw-v1``, train; lines of at least ``min_retain_chars``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UnlearnError
from ..metrics.directions import directions
from ..metrics.mcq import LETTERS, check_docs, description, doc_to_text, mcq_accuracy
from . import BENCHMARKS, Benchmark, limited
from .source import chunk_words, load_records, require

SUBSETS = {"bio": "biology", "cyber": "cybersecurity"}


@BENCHMARKS.register("wmdp")
@dataclass
class WMDP(Benchmark):
    path: str | None = None
    split: str = "bio,cyber"  # which WMDP subsets: bio, cyber or both
    mmlu: bool = True  # also score MMLU (utility)
    engine: str = "auto"  # lm-eval (auto when installed) or builtin
    limit: int | None = None  # at most this many questions per set
    chunk_words: int = 150
    min_retain_chars: int = 50
    batch_size: int = 32

    def __post_init__(self):
        self.subsets = [s.strip() for s in self.split.split(",") if s.strip()]
        bad = [s for s in self.subsets if s not in SUBSETS]
        if bad or not self.subsets:
            raise UnlearnError(f"unknown WMDP subset(s) {', '.join(bad) or '(none)'}; known: bio, cyber")

    def unlearning_data(self) -> tuple[list[dict], list[dict]]:
        forget = []
        for sub in self.subsets:
            config = f"{sub}-forget-corpus"
            try:
                recs = load_records("cais/wmdp-corpora", config, "train", self.path, what=f"WMDP {config}")
            except UnlearnError as exc:
                if sub == "bio":
                    raise UnlearnError(f"{exc} (the WMDP bio forget corpus is gated: request access and "
                                       "put bio-forget-corpus.jsonl in the --data directory)") from exc
                raise
            require(recs, ["text"], f"WMDP {config}", strings=["text"])
            forget += [{"text": c} for r in limited(recs, self.limit)
                       for c in chunk_words(r["text"], self.chunk_words)]
        retain = load_records("Salesforce/wikitext", "wikitext-2-raw-v1", "train", self.path,
                              aliases=("wikitext",), what="WikiText wikitext-2-raw-v1")
        require(retain, ["text"], "WikiText", strings=["text"])
        retain = [{"text": r["text"].strip()} for r in retain
                  if len(r["text"].strip()) >= self.min_retain_chars]
        if not forget:
            raise UnlearnError("the WMDP forget corpus has no text")
        if not retain:
            raise UnlearnError(f"WikiText has no line of at least {self.min_retain_chars} characters")
        return forget, retain

    def _questions(self) -> dict[str, list[dict]]:
        def load() -> dict[str, list[dict]]:
            sets = {}
            for sub in self.subsets:
                sets[f"wmdp_{sub}"] = load_records("cais/wmdp", f"wmdp-{sub}", "test", self.path,
                                                   what=f"WMDP {sub}")
            if self.mmlu:
                sets["mmlu"] = load_records("cais/mmlu", "all", "test", self.path, aliases=("mmlu",),
                                            what="MMLU")
            for name, docs in sets.items():
                docs[:] = limited(docs, self.limit)
                require(docs, ["question", "choices", "answer"], name)
                check_docs(docs, name)
            return sets

        return self._cached("questions", load)

    def prepare(self) -> None:
        self._questions()

    def attack_items(self) -> list[dict]:
        """The WMDP questions (not MMLU) as 4-letter multiple choice, in the scorer's prompt format."""
        items = []
        for name, docs in self._questions().items():
            if name == "mmlu":
                continue
            topic = SUBSETS.get(name.removeprefix("wmdp_"))
            for d in docs:
                options = [" " + LETTERS[j] for j in range(len(d["choices"]))]
                items.append({"prompt": description(topic) + doc_to_text(d), "answer": options[d["answer"]],
                              "options": options, "label": d["answer"]})
        return items

    def evaluate(self, model, tokenizer) -> dict:
        report, summary = {}, {}
        for name, docs in self._questions().items():
            topic = SUBSETS.get(name.removeprefix("wmdp_")) if name != "mmlu" else None
            report[name] = mcq_accuracy(model, tokenizer, docs, name, topic, self.engine, self.batch_size)
            summary[f"{name}_acc"] = report[name]["acc"]
        return {"summary": summary, "directions": directions(summary), **report}
