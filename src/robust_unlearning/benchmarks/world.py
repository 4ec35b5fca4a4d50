"""The embedded world as a :class:`~robust_unlearning.benchmarks.Benchmark`: every command, attack and
the demo reach it through the same interface as TOFU, MUSE and WMDP. Its names and what differs
from a standard benchmark live here, and only here:

- names: ``world`` / ``world-quick`` (the default evaluation world, seed 1), ``world-tiny`` (seconds to
  build, for tests), ``world-tune`` / ``world-quick-tune`` (the tuning world, seed 100), each with
  ``:seed=N`` (another world: other persons, facts and split), and for the worlds trained from
  scratch ``:layers=N`` (a deeper or shallower world model) and ``:stop=end`` (pretraining runs its
  whole schedule instead of stopping at the MCQ bar), comma-separated (``world-quick:layers=8,stop=end``);
- ``world-smol`` (and ``world-smol-tune``, ``:seed=N``): a 20-person world on a *real* pretrained LM,
  SmolLM2-135M-Instruct (dequantized Q4_1), fine-tuned on the world's facts as TOFU does (full model:
  every person; gold: the retain persons) instead of trained from scratch (:mod:`..finetune`); its
  recipe is ``recipes/world-smol.yaml`` (chosen on ``world-smol-tune`` by
  ``benchmarks/real_model_tune.py``);
- it brings its own models: the full model (what a demo unlearns) and the gold model (the floor);
- attack results carry the world's MCQ evaluation; the relearning attack draws from the relearn
  pool (QA or biography form) and is scored by MCQ accuracy; the in-context attack needs its persons;
- ``-quick`` worlds run the demo's extra attacks with smaller settings.

Its report is scored through the shared metric code, so one report format covers the world and the
standard benchmarks (docs/metrics.md#the-world-through-the-tofu-metrics definitions, as for TOFU).
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

from dataclasses import dataclass, replace

from ..errors import UnlearnError
from ..finetune import FinetuneConfig
from ..metrics.forget_quality import forget_quality
from ..metrics.model_utility import model_utility
from ..metrics.qa import QAItem, score_qa
from ..world.generator import SENTENCES, TUNING_SEED, Fact, World, WorldConfig
from ..world.model import DEFAULT_SPEC, QUICK_SPEC, TINY_SPEC, WorldBundle, WorldSpec, build_world
from . import BENCHMARKS, Benchmark


@dataclass(frozen=True)
class RealWorldSpec:
    """A world on a pretrained LM: the world's config, the base model and how it is fine-tuned."""

    world: WorldConfig
    base: str
    finetune: FinetuneConfig


# the reduced real-model world of benchmarks/real_model.py --cpu-reduced (same config: same cache)
SMOL_SPEC = RealWorldSpec(WorldConfig(n_persons=20, forget_fraction=0.2, relearn_pool=16, retain_eval=48),
                          "smollm2-135m", FinetuneConfig(epochs=10, batch_size=8))
WORLDS = {"world": DEFAULT_SPEC, "world-quick": QUICK_SPEC, "world-tiny": TINY_SPEC, "world-smol": SMOL_SPEC}
NAMES = (f"{', '.join(WORLDS)}, world-tune, world-quick-tune, world-smol-tune, or any of them with options "
         "(:seed=N; the worlds trained from scratch also :layers=N and :stop=end)")
# pretraining's MCQ bar when it runs its whole schedule (stop=end): a bar no accuracy reaches
FULL_SCHEDULE = 2.0


def world_spec(name: str) -> WorldSpec | RealWorldSpec:
    """The world a name stands for (see the module docstring). Options after a colon, separated by
    commas: ``seed=N`` (another world); for the worlds trained from scratch also ``layers=N`` (the
    world model's depth) and ``stop=bar|end`` (pretraining stops once the full model reaches the MCQ
    bar, the default, or runs every epoch of its schedule). Each option gives its own cached models."""
    base, _, opts = name.partition(":")
    tune = base.endswith("-tune")
    base = base[: -len("-tune")] if tune else base
    if base not in WORLDS:
        raise UnlearnError(f"unknown benchmark {name!r}; known: {NAMES}")
    spec = WORLDS[base]
    real = isinstance(spec, RealWorldSpec)
    seed = TUNING_SEED if tune else spec.world.seed
    model: dict = {}
    pretrain: dict = {}
    usage = f"use {base}:seed=N" + ("" if real else ", layers=N, stop=bar|end")
    for opt in (o.strip() for o in opts.split(",")) if opts else ():
        key, _, value = (x.strip() for x in opt.partition("="))
        if key == "seed" and value.lstrip("-").isdigit():
            seed = int(value)
        elif key == "layers" and not real and value.isdigit() and int(value) >= 1:
            model["num_hidden_layers"] = int(value)
        elif key == "stop" and not real and value in ("bar", "end"):
            pretrain["target_acc"] = FULL_SCHEDULE if value == "end" else spec.pretrain.target_acc
        else:
            raise UnlearnError(f"bad world option {opt!r} in {name!r}: {usage}")
    spec = replace(spec, world=replace(spec.world, seed=seed))
    if model:
        spec = replace(spec, model=replace(spec.model, **model))
    if pretrain:
        spec = replace(spec, pretrain=replace(spec.pretrain, **pretrain))
    return spec


def is_world(name: str | None) -> bool:
    return bool(name) and name.partition(":")[0].removesuffix("-tune") in WORLDS


def is_real(name: str | None) -> bool:
    """Whether ``name`` is a world on a pretrained LM (fine-tuned, not trained from scratch)."""
    return is_world(name) and isinstance(world_spec(name), RealWorldSpec)


def world_bundle(name: str, log=None) -> WorldBundle:
    """The world ``name`` with its full and gold models (generated and trained or fine-tuned once,
    then cached). A real world's models are fine-tuned on the GPU when there is one (bf16), else on
    the CPU (float32)."""
    spec = world_spec(name)
    if not isinstance(spec, RealWorldSpec):
        return build_world(spec)
    import torch

    from ..finetune import build_real_world
    from ..models import ensure_model, is_named
    from ..world.generator import generate_world

    log = log or print
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if is_named(spec.base):
        ensure_model(spec.base, log=log)
    real = build_real_world(generate_world(spec.world), spec.base, spec.finetune, device=device,
                            dtype="bfloat16" if device == "cuda" else "float32", log=log)
    return WorldBundle(spec, real.world, real.full_dir, real.gold_dir)


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


@BENCHMARKS.register("world")
@dataclass
class WorldBenchmark(Benchmark):
    generation: bool = False  # also greedy exact match (world.benchmark)
    rouge: bool = True  # greedy answers for ROUGE-L
    against_gold: bool = True  # forget quality against the world's gold (retain-only) model
    batch_size: int = 64

    # ``name``: any world name of the module docstring (set by :func:`world_benchmark`)
    RELEARN_KEY = "relearn"
    QUANTIZE_KEY = "quantize"
    HAS_PERSONS = True
    HAS_ENTRY_SCORES = True
    LINE_KEYS = ("forget_acc", "retain_acc")

    @property
    def quick(self) -> bool:
        return self.name.startswith("world-quick")

    def bundle(self) -> WorldBundle:
        return self._cached("bundle", lambda: world_bundle(self.name))

    def world(self) -> World:
        return self.bundle().world

    def unlearning_data(self) -> tuple[list[dict], list[dict]]:
        from ..world.benchmark import unlearning_data

        return unlearning_data(self.world())

    def evaluate(self, model, tokenizer) -> dict:
        bundle = self.bundle()
        ref = None
        if self.against_gold:
            from ..io import load_model

            ref, _ = load_model(bundle.gold_dir)
        return world_report(model, tokenizer, bundle.world, ref, generate=self.rouge, exact=self.generation,
                            batch_size=self.batch_size)

    # -- what attacks and the demo need (Benchmark's hooks) -----------------------------------------
    def smaller(self) -> WorldBenchmark:
        if self.name != "world":
            return self
        return world_benchmark("world-quick", {k: getattr(self, k) for k in self.__dataclass_fields__})

    def recipe(self, path=None) -> dict:
        from ..recipes import load_recipe

        if path is not None:
            return super().recipe(path)
        return load_recipe("world-smol" if is_real(self.name) else "world")

    def default_model(self):
        return self.bundle().full_dir

    def floor_model(self, gold: bool = True, gold_model=None):
        return self.bundle().gold_dir if gold else None

    def entry_scores(self, model, tokenizer) -> dict:
        from ..world.benchmark import evaluate

        return evaluate(model, tokenizer, self.world())

    def attack_scores(self, model, tokenizer) -> dict:
        return self.entry_scores(model, tokenizer)

    def attack_items(self) -> list[dict]:
        from ..attacks.jailbreak import fact_items

        return fact_items(list(self.world().forget_eval))

    def check_forget(self) -> None:
        """A generated world's forget set cannot be bad; nothing to load before the model."""

    def forget_target(self):
        return self.world()

    def incontext_world(self) -> World:
        return self.world()

    def relearn_config(self, given: dict, form: str = "qa", lora_rank: int = 0, metrics: bool = True,
                       recipe: dict | None = None):
        from ..attacks.relearn import RelearnConfig
        from ..recipes import recipe_attack

        att = {**recipe_attack(recipe or self.recipe(), self.quick), **given}  # the command line wins
        return RelearnConfig(**{**att, "form": form, "lora_rank": lora_rank})

    def check_relearn(self, cfg) -> None:
        """The relearn pool is checked when drawn; the world is built after the model is loaded."""

    def relearn(self, model, tokenizer, cfg, desc: str = "relearn") -> list[dict]:
        from ..attacks.relearn import relearn_attack

        return relearn_attack(model, tokenizer, self.world(), cfg, desc=desc)

    def relearn_result(self, model, entries: list[dict], cfg) -> dict:
        """The world's relearn output: the model's curve with its gap to gold's, gold's curve, and
        report entries."""
        mine = entries[0]["attacks"][self.RELEARN_KEY]
        result = {"model": str(model), "benchmark": self.name, "relearn": mine, "runs": entries[0]["runs"]}
        name = "relearn_lora" if cfg.lora_rank else "relearn"
        report = [{"method": entries[0]["method"], "seed": 0, "attacks": {name: mine}}]
        if len(entries) > 1:
            result["gold"] = gold = entries[1]["attacks"][self.RELEARN_KEY]
            gold_acc = {(r["samples"], r["steps"]): r["forget_acc"] for r in gold}
            for r in mine:
                r["gap"] = r["forget_acc"] - gold_acc[(r["samples"], r["steps"])]
            report.append({"method": "gold", "seed": 0, "attacks": {name: gold}})
        result["entries"] = report
        return result

    def relearn_attacks(self, rows: list[dict]) -> dict:
        from ..attacks.relearn import summarize

        return {"relearn": summarize(rows), "relearn_runs": rows}  # the draws: gap to gold per draw

    # -- the demo -----------------------------------------------------------------------------------
    def demo_scores(self, model, tokenizer, details: bool = True) -> dict:
        from ..world.benchmark import evaluate

        return evaluate(model, tokenizer, self.world(), details=details)

    def describe(self) -> str:
        w = self.world()
        return (f"world {self.name}: {len(w.persons)} persons, {len(w.forget_eval)} forget-eval facts, "
                f"{len(w.retain_eval)} held-out retain facts")

    def demo_header(self, model) -> dict:
        from dataclasses import asdict

        return {"world_name": self.name, "world": asdict(world_spec(self.name))}

    def demo_summary(self, entries: list[dict], budgets) -> list[dict]:
        from .world_demo import summarize_entries

        return summarize_entries(entries, budgets)

    def demo_table(self, results: dict) -> tuple[list[str], list[list[str]]]:
        from .world_demo import table_rows

        return table_rows(results)

    def demo_intro(self, results: dict) -> list[str]:
        from .world_demo import intro

        return intro(results)

    def relearn_lines(self, result: dict) -> list[str]:
        return [f"{r['samples']:>4} samples × {r['steps']:>3} steps: forget_acc {r['forget_acc']:.3f} ± "
                f"{r['forget_acc_std']:.3f}  retain_acc {r['retain_acc']:.3f}"
                + (f"  gap {r['gap']:+.3f}" if "gap" in r else "") for r in result["relearn"]]


@BENCHMARKS.register("world-quick")
@dataclass
class WorldQuickBenchmark(WorldBenchmark):
    """The small world (listed among the benchmarks; built by :func:`world_benchmark` like any world)."""


def world_benchmark(name: str, options: dict) -> WorldBenchmark | None:
    """The world ``name`` (any of the module docstring's names) with ``options``; ``None`` when
    ``name`` is not a world's."""
    if not is_world(name):
        return None
    world_spec(name)  # a bad world name fails here
    bench = BENCHMARKS.build("world", options)
    bench.name = name
    return bench
