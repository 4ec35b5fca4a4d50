"""Standard unlearning benchmarks, registered by name.

    bench = BENCHMARKS.build("tofu", {"split": "forget10", "path": "data/tofu"})
    forget, retain = bench.unlearning_data()          # records for ``loop.unlearn``
    report = bench.evaluate(model, tokenizer)        # a JSON-able dict of every metric

Built in: ``tofu``, ``muse-news``, ``muse-books``, ``wmdp``, ``world``, ``world-quick``. Each
benchmark is a dataclass whose fields are its options (``path``: local data; ``limit``: at most this
many examples per evaluation set; ...). Metrics live in :mod:`robust_unlearning.metrics`.
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
    """The benchmark ``name`` with its data ``path``, ``split`` and further ``options``."""
    opts = dict(options or {})
    if path is not None:
        opts["path"] = str(path)
    if split is not None:
        opts["split"] = split
    return BENCHMARKS.build(name, opts)


def limited(records: list, limit: int | None) -> list:
    return records if limit is None else records[:limit]


__all__ = ["BENCHMARKS", "Benchmark", "build_benchmark", "limited"]
