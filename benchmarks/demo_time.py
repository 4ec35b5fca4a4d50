"""Wall-clock time of `unlearn demo`: cold (empty model cache: world, tokenizer, world model and gold
model are built) and warm (cached models), default and ``--quick``.

Goals (issue "Core"): cold within 5 minutes on two cores, warm within 2, ``--quick`` within 1.

    python benchmarks/demo_time.py [--quick-only | --default-only] [--skip-cold]

Each measurement runs the real command line in a subprocess (``unlearn demo [--quick]``, default
methods, one seed) with a fresh cache directory for the cold run; the figures are printed and
written to ``benchmarks/results/demo_time.json``. Run it on an otherwise idle machine: the figures
scale with the load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results" / "demo_time.json"


def timed(args: list[str], cache: str) -> float:
    env = {**os.environ, "ROBUST_UNLEARNING_CACHE": cache, "ROBUST_UNLEARNING_QUIET": "1"}
    with tempfile.TemporaryDirectory() as out:
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "robust_unlearning.cli", "demo", "--out", out, *args],
                       env=env, check=True, stdout=subprocess.DEVNULL)
        return round(time.perf_counter() - t, 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick-only", action="store_true")
    ap.add_argument("--default-only", action="store_true")
    ap.add_argument("--skip-cold", action="store_true")
    args = ap.parse_args()
    rows = {}
    for name, extra in (("quick", ["--quick"]), ("default", [])):
        if (name == "default" and args.quick_only) or (name == "quick" and args.default_only):
            continue
        with tempfile.TemporaryDirectory() as cache:
            if not args.skip_cold:
                rows[f"{name}_cold_s"] = timed(extra, cache)
                print(f"{name} cold: {rows[f'{name}_cold_s']} s", flush=True)
            else:  # warm only: the user's cache, with the world models built first if missing
                from robust_unlearning.world.model import DEFAULT_SPEC, QUICK_SPEC, build_world, cache_root

                cache = str(cache_root())
                build_world(QUICK_SPEC if name == "quick" else DEFAULT_SPEC)
            rows[f"{name}_warm_s"] = timed(extra, cache)
            print(f"{name} warm: {rows[f'{name}_warm_s']} s", flush=True)
            rows[f"{name}_measured_utc"] = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    load = os.getloadavg()[0]
    result = {**rows, "goals_s": {"default_cold": 300, "default_warm": 120, "quick": 60},
              "cores": os.cpu_count(), "torch": torch.__version__, "machine": platform.machine(),
              "load_average_after": round(load, 2)}
    old = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps({**old, **result}, indent=2) + "\n")
    os.replace(tmp, RESULTS)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
