"""The embedded world scored through the shared metric code, so one report format covers the world
and the standard benchmarks (REFERENCES.md §4 definitions, as for TOFU).

For every world fact (``prompt``, ``answer``, ``options``, ``label``):

- probability ``P(answer|prompt)^{1/|a|}`` and ROUGE-L recall of the greedy answer;
- truth ratio: the *paraphrased* answer is the fact's biography sentence ("X was born in Veloria."),
  the *perturbed* answers are the same sentence with each of the three distractor options;
- MCQ accuracy over the four options (``world.benchmark.evaluate``: ``forget_acc``, ``retain_acc``).

Sets: ``forget_eval`` (forget facts the relearning attacker never sees) and ``retain_eval``. Forget
quality compares the forget truth ratios with those of the gold (retain-only) model; model utility
is the harmonic mean of the retain set's probability, ROUGE-L and truth-ratio score.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..metrics.forget_quality import forget_quality
from ..metrics.model_utility import model_utility
from ..metrics.qa import QAItem, score_qa
from ..world.generator import SENTENCES, Fact, World
from . import BENCHMARKS, Benchmark


def fact_item(fact: Fact) -> QAItem:
    wrong = [v for i, v in enumerate(fact.options) if i != fact.label]
    sentence = SENTENCES[fact.attribute]
    return QAItem(fact.prompt, fact.answer, " " + fact.sentence,
                  [" " + sentence.format(name=fact.person, value=v) for v in wrong])


def world_report(model, tokenizer, world: World, reference_model=None, generate: bool = True,
                 exact: bool = False, batch_size: int = 64, max_new_tokens: int = 8) -> dict:
    """Every shared metric on the world's forget and retain evaluation facts."""
    from ..world.benchmark import evaluate

    report: dict = {}
    for name, facts in (("forget", world.forget_eval), ("retain", world.retain_eval)):
        report[name] = score_qa(model, tokenizer, [fact_item(f) for f in facts], generate=generate,
                                max_new_tokens=max_new_tokens, batch_size=batch_size)
    mcq = evaluate(model, tokenizer, world, generation=exact)
    summary = {**mcq, "forget_probability": report["forget"]["probability"],
               "forget_truth_ratio": report["forget"]["truth_ratio_forget_score"]}
    if generate:
        summary["forget_rougeL_recall"] = report["forget"]["rougeL_recall"]
    if reference_model is not None:
        ref = score_qa(reference_model, tokenizer, [fact_item(f) for f in world.forget_eval], generate=False,
                       batch_size=batch_size)
        summary["forget_quality"] = forget_quality(report["forget"]["truth_ratios"], ref["truth_ratios"])
    utility = {"retain_probability": report["retain"]["probability"],
               "retain_truth_ratio": report["retain"]["truth_ratio_utility_score"]}
    if generate:
        utility["retain_rougeL_recall"] = report["retain"]["rougeL_recall"]
    summary.update(utility)
    summary["model_utility"] = model_utility(utility)
    return {"summary": summary, **report}


@dataclass
class _WorldBenchmark(Benchmark):
    generation: bool = False  # also greedy exact match (world.benchmark)
    rouge: bool = True  # greedy answers for ROUGE-L
    against_gold: bool = True  # forget quality against the world's gold (retain-only) model
    batch_size: int = 64

    spec_name = "world"

    def bundle(self):
        from ..runner import world_bundle

        return world_bundle(self.spec_name)

    def unlearning_data(self) -> tuple[list[dict], list[dict]]:
        from ..world.benchmark import unlearning_data

        return unlearning_data(self.bundle().world)

    def evaluate(self, model, tokenizer) -> dict:
        bundle = self.bundle()
        ref = None
        if self.against_gold:
            from ..io import load_model

            ref, _ = load_model(bundle.gold_dir)
        return world_report(model, tokenizer, bundle.world, ref, generate=self.rouge, exact=self.generation,
                            batch_size=self.batch_size)


@BENCHMARKS.register("world")
@dataclass
class WorldBenchmark(_WorldBenchmark):
    spec_name = "world"


@BENCHMARKS.register("world-quick")
@dataclass
class WorldQuickBenchmark(_WorldBenchmark):
    spec_name = "world-quick"
