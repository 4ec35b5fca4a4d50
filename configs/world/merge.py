"""Merge the results.json of several `unlearn demo` runs (e.g. method subsets run in parallel
processes with the same seeds and attack) into one results.json, report.md and printed table.

    python configs/world/merge.py OUT_DIR RUN_DIR [RUN_DIR ...]

The gold entries of the first run are kept (every run attacks gold with the same seeded draws, so
they are identical); each (method, seed) entry is taken once.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from robust_unlearning.demo import render_markdown, render_table, summarize_entries
from robust_unlearning.io import write_json_atomic, write_text_atomic


def main(out: str, runs: list[str]) -> None:
    results = [json.loads((Path(r) / "results.json").read_text()) for r in runs]
    base = results[0]
    for r in results[1:]:
        if r["attack"] != base["attack"] or r["seeds"] != base["seeds"] or r["world"] != base["world"]:
            raise SystemExit(f"{runs[0]} and another run differ in world, seeds or attack")
    seen, entries = set(), []
    for r in results:
        for e in r["entries"]:
            if (e["method"], e["seed"]) not in seen:
                seen.add((e["method"], e["seed"]))
                entries.append(e)
    merged = {**base, "entries": entries, "merged_from": runs,
              "summary": summarize_entries(entries, base["attack"]["budgets"]),
              "seconds": round(sum(r["seconds"] for r in results), 1)}
    write_json_atomic(Path(out) / "results.json", merged)
    write_text_atomic(Path(out) / "report.md", render_markdown(merged))
    print(render_table(merged))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
