"""Standard unlearning benchmarks, registered by name.

    bench = BENCHMARKS.build("tofu", {"split": "forget10", "path": "data/tofu"})
    forget, retain = bench.unlearning_data()          # records for ``loop.unlearn``
    report = bench.evaluate(model, tokenizer)        # a JSON-able dict of every metric

Built in: ``tofu``, ``muse-news``, ``muse-books``, ``wmdp``, and the embedded world under any of its
names (``world``, ``world-quick``, ``world-tune``, ``world:seed=2``, ...: :mod:`.world`). Each
benchmark is a dataclass whose fields are its options (``path``: local data; ``limit``: at most this
many examples per evaluation set; ...). Metrics live in :mod:`robust_unlearning.metrics`.

Every command, attack and the demo go through this interface, the world included: what the world
does otherwise (its own models, MCQ-scored attacks, the in-context attack) is one of the hooks below,
overridden in :mod:`.world`. ``forget_file(path)`` makes the user's own forget JSONL a benchmark
with forget records only (:mod:`.forget_file`).
"""

from __future__ import annotations

from ..errors import UnlearnError
from ..registry import Registry


class Benchmark:
    """A source of unlearning data and an evaluation that reports every metric of the benchmark."""

    name: str = ""

    def unlearning_data(self) -> tuple[list[dict], list[dict] | None]:
        raise NotImplementedError

    def evaluate(self, model, tokenizer) -> dict:
        raise NotImplementedError

    def scores(self, model, tokenizer) -> dict:
        """The numeric values of :meth:`evaluate`'s summary (``None`` kept: undefined), what an
        attack records per setting."""
        summary = self.evaluate(model, tokenizer)["summary"]
        return {k: v for k, v in summary.items() if isinstance(v, (int, float)) or v is None}

    def prepare(self) -> None:
        """Load and check the evaluation data, so bad data fails before an expensive model load."""

    def attack_items(self) -> list[dict]:
        """The forget questions an elicitation attack (GCG jailbreak) targets: ``prompt`` and
        ``answer``, plus ``options`` (continuations) and ``label`` for multiple choice."""
        raise UnlearnError(f"benchmark {self.name!r} has no forget questions for this attack")

    def excluding(self, records: list[dict]) -> Benchmark:
        """This benchmark with the forget-evaluation items that ``records`` (forget records of
        :meth:`unlearning_data`, e.g. a relearning attacker's training set) state left out, so an
        attack is scored on knowledge it was not shown. Default: unchanged (the evaluation sets are
        not the unlearning records, as in WMDP's MCQ or MUSE's QA)."""
        return self

    # -- what attacks and the demo need; the world overrides these (benchmarks/world.py) ------------
    RELEARN_KEY = "benchmark_relearn"  # the name results store the relearning attack under
    QUANTIZE_KEY = "benchmark_quantize"  # ... and the quantization attack
    quick = False  # smaller settings for the demo's extra attacks
    HAS_PERSONS = False  # facts grouped by person: what the in-context attack draws from
    HAS_ENTRY_SCORES = False  # :meth:`entry_scores` is cheap and not empty (scored after a run)
    LINE_KEYS: tuple[str, ...] | None = None  # the metrics a printed attack line shows (None: all)

    def smaller(self) -> Benchmark:
        """A smaller variant (``--quick``): the same benchmark here."""
        return self

    def recipe(self, path=None) -> dict:
        """The method recipe of the demo (``--recipe FILE``; default ``recipes/standard.yaml``, the
        papers' orders of magnitude for 7B-class models)."""
        from ..config import load_yaml
        from ..recipes import load_recipe

        return load_yaml(path) if path is not None else load_recipe("standard")

    def default_model(self):
        """The model a demo unlearns when none is given (``None``: the user must give one)."""
        return None

    def floor_model(self, gold: bool = True, gold_model=None):
        """The model that never learnt the forget set, attacked and evaluated as ``gold``: the one
        given (``--gold-model``), checked before any work."""
        if gold_model is not None:
            from ..io import check_model_path

            check_model_path(gold_model)
        return gold_model

    def entry_scores(self, model, tokenizer) -> dict:
        """What an attack's result entry carries besides the attack: nothing here."""
        return {}

    def attack_scores(self, model, tokenizer) -> dict:
        """What an attack that changes the weights (quantization) records per setting."""
        return self.scores(model, tokenizer)

    def check_forget(self) -> None:
        """Load and check the forget records, so bad data fails before a model is loaded."""
        self.unlearning_data()

    def forget_target(self):
        """What the forget-loss diagnostics (sharpness, landscape) score: the forget records."""
        return self.unlearning_data()[0]

    def incontext_world(self):
        raise UnlearnError("the in-context attack runs on the world only (it needs persons' facts)")

    def relearn_config(self, given: dict, form: str = "qa", lora_rank: int = 0, metrics: bool = True,
                       recipe: dict | None = None):
        """The relearning attack's settings: the command line's ``given`` over the recipe's ``attack``
        over the defaults."""
        from ..attacks.relearn_benchmark import BenchmarkRelearnConfig
        from ..recipes import recipe_attack

        if form != "qa":
            raise UnlearnError("form applies to the world only (its two surface forms); a benchmark "
                               "relearns on its own forget records")
        att = {**recipe_attack(recipe or {}, self.quick), **given}
        return BenchmarkRelearnConfig(**{**att, "lora_rank": lora_rank, "metrics": metrics})

    def check_relearn(self, cfg) -> None:
        """Bad data or a budget larger than the forget set fails before a model is loaded."""
        forget, _ = self.unlearning_data()
        if cfg.metrics:
            self.prepare()
        if not forget:
            raise UnlearnError(f"the forget set of {self.name} is empty")
        try:
            cfg.check_pool(len(forget), f"the forget set of {self.name}")
        except ValueError as exc:
            raise UnlearnError(str(exc)) from exc

    def relearn(self, model, tokenizer, cfg, desc: str = "relearn") -> list[dict]:
        from ..attacks.relearn_benchmark import relearn_benchmark

        return relearn_benchmark(model, tokenizer, self.unlearning_data()[0], cfg, self, desc=desc)

    def relearn_attacks(self, rows: list[dict]) -> dict:
        """What a demo entry stores of a relearning attack's ``rows``."""
        from ..attacks.relearn import summarize

        return {self.RELEARN_KEY: summarize(rows)}

    # -- the demo's report (benchmarks/demo_report.py; the world's in benchmarks/world_demo.py) ------
    def demo_scores(self, model, tokenizer, details: bool = True) -> dict:
        """A demo entry's scores: the summary of :meth:`evaluate`."""
        return self.evaluate(model, tokenizer)["summary"]

    def describe(self) -> str:
        forget, retain = self.unlearning_data()
        return f"{self.name}: {len(forget)} forget / {len(retain or [])} retain records"

    def demo_header(self, model) -> dict:
        return {"benchmark": self.name, "model": str(model)}

    def demo_summary(self, entries: list[dict], budgets) -> list[dict]:
        from .demo_report import summarize_methods

        return summarize_methods(entries, self.RELEARN_KEY)

    def demo_table(self, results: dict) -> tuple[list[str], list[list[str]]]:
        from .demo_report import table_rows

        return table_rows(results)

    def demo_intro(self, results: dict) -> list[str]:
        from .demo_report import intro

        return intro(results)

    def relearn_result(self, model, entries: list[dict], cfg) -> dict:
        """``unlearn attack relearn``'s output from the per-model ``entries``."""
        config = {"budgets": [list(b) for b in cfg.budgets], "lr": cfg.lr, "batch_size": cfg.batch_size,
                  "seeds": cfg.seeds, "lora_rank": cfg.lora_rank, "heldout_max": cfg.heldout_max}
        return {"model": str(model), "benchmark": self.name, "config": config, "entries": entries}

    def relearn_lines(self, result: dict) -> list[str]:
        lines = []
        for e in result["entries"]:
            for r in e["attacks"][self.RELEARN_KEY]:
                extra = "".join(f"  {k} {r[k]:.3f}" for k in r if not k.endswith("_std") and k not in
                                ("samples", "steps", "draws", "heldout_forget_nll", "drawn_forget_nll")
                                and isinstance(r[k], float))
                lines.append(f"{e['method']:>12} {r['samples']:>4} samples × {r['steps']:>3} steps: held-out "
                             f"forget NLL {r['heldout_forget_nll']:.3f} ± "
                             f"{r['heldout_forget_nll_std']:.3f}{extra}")
        return lines

    def _cached(self, key, load):
        cache = self.__dict__.setdefault("_data_cache", {})
        if key not in cache:
            cache[key] = load()
        return cache[key]


BENCHMARKS: Registry[Benchmark] = Registry(
    "benchmark",
    modules=("robust_unlearning.benchmarks.tofu", "robust_unlearning.benchmarks.muse",
             "robust_unlearning.benchmarks.wmdp", "robust_unlearning.benchmarks.world"),
)


def build_benchmark(name: str, path: str | None = None, split: str | None = None,
                    options: dict | None = None) -> Benchmark:
    """The benchmark ``name`` (a registered one or any world name) with its data ``path``, ``split``
    and further ``options``."""
    from .world import NAMES, world_benchmark

    opts = dict(options or {})
    if path is not None:
        opts["path"] = str(path)
    if split is not None:
        opts["split"] = split
    world = world_benchmark(name, opts)
    if world is not None:
        return world
    try:
        return BENCHMARKS.build(name, opts)
    except UnlearnError as exc:
        if str(exc).startswith("unknown benchmark"):
            raise UnlearnError(f"{exc}; worlds: {NAMES}") from exc
        raise


def limited(records: list, limit: int | None) -> list:
    return records if limit is None else records[:limit]


__all__ = ["BENCHMARKS", "Benchmark", "build_benchmark", "limited"]
