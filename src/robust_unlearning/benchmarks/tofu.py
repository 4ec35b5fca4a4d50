"""TOFU (Maini et al. 2024): fictitious authors, question answering (docs/metrics.md#tofu).

Data (hub ``locuslab/TOFU``, every config has one split ``train``; or local files of the same schema):

- unlearning: ``forget01|05|10`` and ``retain99|95|90`` (``question``, ``answer``);
- evaluation: ``forgetXX_perturbed`` and ``retain_perturbed`` (``question``, ``answer``,
  ``paraphrased_answer``, ``perturbed_answer`` (list), ``paraphrased_question``),
  ``real_authors_perturbed`` and ``world_facts_perturbed`` (``question``, ``answer``,
  ``perturbed_answer``).

The truth ratio compares the perturbed answers with ``paraphrased_answer`` on the forget and retain
sets and with ``answer`` on real authors and world facts (any ``paraphrased_answer`` there is not
used), as TOFU's ``config/eval_everything.yaml`` (``base_answer_key``) and open-unlearning's
``TOFU_QA_ra`` / ``TOFU_QA_wf`` do; it averages the perturbed answers' losses
(``perturbed_mean="geometric"``, TOFU's definition; ``"arithmetic"`` is the named alternative).
Every default is TOFU's (docs/conventions.md).

Report: on every set probability, ROUGE-L recall and truth ratio (:mod:`..metrics.qa`); on the
forget set the per-question truth ratios and, given the retain-only model (``reference``: a model
directory, or a reference JSON: the report of that model or TOFU's ``eval_log_forget.json``), the
forget quality; model utility over the nine utility values. Optional (``benchmarks/extras.py``):
``memorization`` (EM, ES on the forget answers) and ``mia`` (membership attacks, forget vs TOFU's
``holdout01|05|10``, AUC) and ``gibberish`` (a text classifier's P(clean) on the forget
generations, open-unlearning's gibberish metric: :mod:`..metrics.classifier`).

Prompt: ``template`` formats the question (default ``"Question: {question}\\nAnswer:"``); set it to
your model's chat format (TOFU's Llama-2 models use ``"[INST] {question} [/INST]"``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

from ..errors import UnlearnError
from ..metrics.directions import directions
from ..metrics.forget_quality import forget_quality, read_reference_truth_ratios
from ..metrics.model_utility import model_utility
from ..metrics.qa import QAItem, score_qa
from . import BENCHMARKS, Benchmark, limited
from .source import load_records, require

HUB = "locuslab/TOFU"
SPLITS = {"forget01": "retain99", "forget05": "retain95", "forget10": "retain90"}
EVAL_SETS = ("forget", "retain", "real_authors", "world_facts")


@BENCHMARKS.register("tofu")
@dataclass
class TOFU(Benchmark):
    path: str | None = None  # local data (file or directory); default: the hub
    split: str = "forget10"
    template: str = "Question: {question}\nAnswer:"
    reference: str | None = None  # retain-only model dir, or a reference JSON of its truth ratios
    perturbed_mean: str = "geometric"  # TOFU's; "arithmetic": mean of the perturbed probabilities
    limit: int | None = None  # at most this many questions per evaluation set
    max_new_tokens: int = 128  # TOFU generates up to 200 tokens including the question
    batch_size: int = 32
    generate: bool = True  # ROUGE-L needs greedy answers
    exclude: list[str] | None = None  # forget-evaluation questions (as templated) to leave out
    memorization: bool = False  # exact memorization and extraction strength on the forget answers
    mia: list[str] | None = None  # membership attacks (metrics/mia.py), forget vs holdout01|05|10
    # a text classifier (directory or hub id) scoring the forget generations: open-unlearning's gibberish
    # metric (madhurjindal/autonlp-Gibberish-Detector-492513457, class 0 = clean; metrics/classifier.py)
    gibberish: str | None = None
    gibberish_class: int = 0

    def __post_init__(self):
        if self.split not in SPLITS:
            raise UnlearnError(f"unknown TOFU split {self.split!r}; known: {', '.join(SPLITS)}")
        if "{question}" not in self.template:
            raise UnlearnError("the TOFU template needs a {question} placeholder")

    def _load(self, config: str) -> list[dict]:
        return self._cached(config, lambda: load_records(HUB, config, "train", self.path,
                                                         what=f"TOFU {config}"))

    def _qa(self, rec: dict) -> dict:
        return {"question": self.template.format(question=rec["question"]),
                "answer": self._space(rec["answer"])}

    def _space(self, a: str) -> str:
        return a if a.startswith((" ", "\n")) or self.template.endswith((" ", "\n")) else " " + a

    def unlearning_data(self) -> tuple[list[dict], list[dict]]:
        out = []
        for config in (self.split, SPLITS[self.split]):
            recs = self._load(config)
            require(recs, ["question", "answer"], f"TOFU {config}", strings=["question", "answer"])
            out.append([self._qa(r) for r in recs])
        return out[0], out[1]

    def excluding(self, records: list[dict]) -> TOFU:
        """The relearn records' questions left out of the forget evaluation (and, for forget quality,
        out of the reference's truth ratios): the attack is scored on questions it was not shown."""
        out = copy.copy(self)  # shares the loaded data
        out.exclude = sorted({r["question"] for r in records if isinstance(r.get("question"), str)})
        return out

    def attack_items(self) -> list[dict]:
        return [{"prompt": it.prompt, "answer": it.answer} for it in self.eval_items("forget")]

    def _kept(self, items: list[QAItem]) -> list[bool]:
        drop = set(self.exclude or ())
        return [it.prompt not in drop for it in items]

    def eval_items(self, which: str) -> list[QAItem]:
        items = self._all_items(which)
        if which == "forget" and self.exclude:
            items = [it for it, keep in zip(items, self._kept(items), strict=True) if keep]
            if not items:
                raise UnlearnError("TOFU: every forget-evaluation question is excluded")
        return items

    def _all_items(self, which: str) -> list[QAItem]:
        config = {"forget": f"{self.split}_perturbed", "retain": "retain_perturbed",
                  "real_authors": "real_authors_perturbed", "world_facts": "world_facts_perturbed"}[which]
        recs = limited(self._load(config), self.limit)
        require(recs, ["question", "answer", "perturbed_answer"], f"TOFU {config}")
        items = []
        for i, r in enumerate(recs, 1):
            pert = r["perturbed_answer"]
            pert = [pert] if isinstance(pert, str) else list(pert)
            if not pert or not all(isinstance(p, str) for p in pert):
                raise UnlearnError(f"TOFU {config}: record {i}: perturbed_answer must be a string or a "
                                   "non-empty list of strings")
            # TOFU's base answer: paraphrased on forget / retain, the answer itself on real authors /
            # world facts (config/eval_everything.yaml, base_answer_key)
            para = r["answer"]
            if which in ("forget", "retain"):
                para = r.get("paraphrased_answer") or para
            if not all(isinstance(x, str) for x in (r["question"], r["answer"], para)):
                raise UnlearnError(f"TOFU {config}: record {i}: question, answer and paraphrased_answer "
                                   "must be strings")
            items.append(QAItem(self.template.format(question=r["question"]), self._space(r["answer"]),
                                self._space(para), [self._space(p) for p in pert]))
        return items

    def _score(self, model, tokenizer, which: str) -> dict:
        return score_qa(model, tokenizer, self.eval_items(which), generate=self.generate,
                        share=which in ("real_authors", "world_facts"), perturbed_mean=self.perturbed_mean,
                        max_new_tokens=self.max_new_tokens, batch_size=self.batch_size,
                        keep_generations=which == "forget" and self.gibberish is not None)

    def reference_truth_ratios(self) -> list[float] | None:
        if self.reference is None:
            return None
        ref = Path(self.reference)
        if ref.is_dir():
            from ..io import load_model

            ref_model, ref_tok = load_model(ref)
            return score_qa(ref_model, ref_tok, self.eval_items("forget"), generate=False,
                            perturbed_mean=self.perturbed_mean, batch_size=self.batch_size)["truth_ratios"]
        ratios = read_reference_truth_ratios(ref)
        if self.exclude:
            items = self._all_items("forget")
            if len(ratios) == len(items):  # otherwise (another order or set) the KS test takes all
                ratios = [r for r, keep in zip(ratios, self._kept(items), strict=True) if keep]
        return ratios

    def prepare(self) -> None:
        if self.gibberish is not None and not self.generate:
            raise UnlearnError("TOFU: gibberish scores the forget generations; it needs generate=true")
        for name in EVAL_SETS:
            self.eval_items(name)
        if self.reference is not None and not Path(self.reference).is_dir():
            read_reference_truth_ratios(self.reference)

    def evaluate(self, model, tokenizer) -> dict:
        report = {name: self._score(model, tokenizer, name) for name in EVAL_SETS}
        retain_tr = self.reference_truth_ratios()
        summary: dict = {
            "forget_probability": report["forget"]["probability"],
            "forget_truth_ratio": report["forget"]["truth_ratio_forget_score"],
        }
        if self.generate:
            summary["forget_rougeL_recall"] = report["forget"]["rougeL_recall"]
        if retain_tr is not None:
            summary["forget_quality"] = forget_quality(report["forget"]["truth_ratios"], retain_tr)
        utility = {}
        for name in EVAL_SETS[1:]:
            utility[f"{name}_probability"] = report[name]["probability"]
            if self.generate:
                utility[f"{name}_rougeL_recall"] = report[name]["rougeL_recall"]
            utility[f"{name}_truth_ratio"] = report[name]["truth_ratio_utility_score"]
        summary.update(utility)
        summary["model_utility"] = model_utility(utility)  # nine values; six when generate=False
        if self.memorization or self.mia:
            from .extras import tofu_metrics

            summary.update(tofu_metrics(self, model, tokenizer, report))
        if self.gibberish is not None:
            from ..metrics.classifier import classification_prob, load_classifier

            clf, clf_tok = self._cached("gibberish", lambda: load_classifier(self.gibberish))
            gib = classification_prob(clf, clf_tok, report["forget"].pop("generations"),
                                      self.gibberish_class, self.batch_size)
            summary["forget_gibberish"] = gib["value"]
            report["forget"]["gibberish_scores"] = gib["scores"]
        return {"summary": summary, "directions": directions(summary), **report}
