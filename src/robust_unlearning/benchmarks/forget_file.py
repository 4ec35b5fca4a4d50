"""The user's own forget JSONL as a benchmark with forget records only (``unlearn attack relearn
--forget FILE``): relearned on and scored by the held-out forget NLL; it has no metrics of its own."""

from __future__ import annotations

from pathlib import Path

from . import Benchmark


class ForgetFile(Benchmark):
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.name = str(path)

    def unlearning_data(self) -> tuple[list[dict], None]:
        from ..data.jsonl import read_jsonl

        return self._cached("forget", lambda: read_jsonl(self.path, "forget")), None

    def relearn(self, model, tokenizer, cfg, desc: str = "relearn") -> list[dict]:
        from ..attacks.relearn_benchmark import relearn_benchmark

        return relearn_benchmark(model, tokenizer, self.unlearning_data()[0], cfg, None, desc=desc)
