"""How cost grows with the model: every strategy and parameterization at about 1 M, 10 M and 100 M
parameters (random Llama models) and on SmolLM2-135M when it is installed.

Per model, on the quick tuning world's unlearning data (GradDiff, fixed batches; the loop's step,
:func:`robust_unlearning.loop.train_step`, through ``strategy_cost.Harness``):

* each strategy's median step time and ``overhead`` = step / (passes × one plain pass), each step
  against a plain pass timed just before it (goal ≤ 1.15; plain ≤ 1.05), and the peak memory of one
  step above plain's (allocator events, as strategy_cost.py);
* each parameterization's (full, lora, bounded-lora) plain step time, trainable parameters and peak
  memory of one step;
* relearning-attack throughput (fine-tuning items per second: samples × steps / time, from the
  difference of two budgets so that the attack's own scoring is not counted) and evaluation
  throughput (MCQ facts scored per second).

Writes ``results/scaling.json`` and ``results/scaling.png`` (overhead and step time against size).

    python benchmarks/scaling.py                       # all sizes (tens of minutes on two cores)
    python benchmarks/scaling.py --sizes 1m --steps 2  # seconds: a smoke run
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from strategy_cost import STRATEGY_OPTIONS, Harness, peak_bytes, strategy_rows  # noqa: E402

# random Llama shapes (vocab: the world tokenizer's 2048; tied embeddings)
SIZES = {
    "1m": {"hidden_size": 128, "intermediate_size": 384, "num_hidden_layers": 4, "num_attention_heads": 4},
    "10m": {"hidden_size": 320, "intermediate_size": 960, "num_hidden_layers": 8, "num_attention_heads": 5},
    "100m": {"hidden_size": 768, "intermediate_size": 2048, "num_hidden_layers": 14,
             "num_attention_heads": 12},
}
PARAMETERIZATIONS = {"full": {}, "lora": {"r": 8, "alpha": 16}, "bounded-lora": {"r": 8, "alpha": 16}}


def random_model(shape: dict, tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tokenizer), num_key_value_heads=shape["num_attention_heads"],
                      max_position_embeddings=256, tie_word_embeddings=True,
                      bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                      pad_token_id=tokenizer.pad_token_id, **shape)
    return LlamaForCausalLM(cfg)


def models(sizes: list[str], world_tok):
    """(label, model, tokenizer) for each size; SmolLM2-135M last when installed."""
    for s in sizes:
        if s == "smollm2":
            from robust_unlearning.errors import UnlearnError
            from robust_unlearning.io import load_model

            try:
                model, tok = load_model("smollm2-135m")
            except UnlearnError as exc:  # the package is not installed: say so, go on
                print(f"skipping smollm2-135m: {exc}")
                continue
            yield "smollm2-135m", model, tok
        else:
            yield s, random_model(SIZES[s], world_tok), world_tok


def parameterization_rows(model, tok, forget, retain, batch: int, steps: int) -> dict:
    from robust_unlearning.objectives.base import OBJECTIVES
    from robust_unlearning.parameterizations.base import PARAMETERIZATIONS as REG

    rows = {}
    for name, opts in PARAMETERIZATIONS.items():
        m = copy.deepcopy(model)
        for p in m.parameters():
            p.requires_grad_(True)
        m = REG.build(name, opts).prepare(m, OBJECTIVES.build("graddiff", {}))
        m.train()
        h = Harness(m, tok, forget, retain, batch)
        r = h.run("plain", steps + 1)
        peak = peak_bytes(lambda h=h: h.run("plain", 1))
        rows[name] = {"trainable_parameters": sum(p.numel() for p in h.params),
                      "step_seconds": statistics.median(r["times"]), "peak_mb": peak / 2**20}
        del m, h
    return rows


def throughput(model, tok, world) -> dict:
    from robust_unlearning.attacks.relearn import RelearnConfig, relearn_attack
    from robust_unlearning.world.benchmark import evaluate

    model.eval()
    n = len(world.forget_eval) + len(world.retain_eval)
    t = time.perf_counter()
    evaluate(model, tok, world)
    eval_s = time.perf_counter() - t

    def attack_seconds(steps: int) -> float:
        cfg = RelearnConfig(budgets=[(8, steps)], lr=1e-4, batch_size=8, seeds=[0])
        t = time.perf_counter()
        relearn_attack(model, tok, world, cfg)
        return time.perf_counter() - t

    attack_seconds(1)  # warm-up
    # the attack scores the model after its budget: the difference of two budgets is fine-tuning alone
    relearn_s = attack_seconds(9) - attack_seconds(1)
    return {"eval_items_per_s": n / eval_s, "relearn_items_per_s": 8 * 8 / max(relearn_s, 1e-9),
            "eval_items": n}


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    labels = [m["label"] for m in result["models"]]
    xs = [m["parameters"] for m in result["models"]]
    for name in result["strategies"]:
        a.plot(xs, [m["strategies"][name]["overhead"] for m in result["models"]], "o-", label=name)
        b.plot(xs, [m["strategies"][name]["step_seconds"] for m in result["models"]], "o-", label=name)
    a.axhline(1.15, color="grey", ls="--", lw=1)
    a.set(xscale="log", xlabel="parameters", ylabel="step / (passes × plain pass)", title="overhead")
    b.set(xscale="log", yscale="log", xlabel="parameters", ylabel="seconds per step", title="step time")
    for ax in (a, b):
        ax.set_xticks(xs, labels, rotation=20)
        ax.legend(fontsize=7)
    fig.suptitle(f"{result['machine']}, {result['date']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1m,10m,100m,smollm2")
    ap.add_argument("--strategies", default=",".join(STRATEGY_OPTIONS))
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--out", default=str(HERE / "results" / "scaling.json"))
    args = ap.parse_args(argv)
    os.environ.setdefault("ROBUST_UNLEARNING_QUIET", "1")

    from robust_unlearning.benchmarks.world import world_bundle
    from robust_unlearning.io import load_model, write_json_atomic
    from robust_unlearning.world.benchmark import unlearning_data

    bundle = world_bundle("world-quick-tune")
    _, world_tok = load_model(bundle.full_dir)
    forget, retain = unlearning_data(bundle.world)
    names = [s.strip() for s in args.strategies.split(",") if s.strip()]
    result = {"date": time.strftime("%Y-%m-%d"), "torch": torch.__version__,
              "threads": torch.get_num_threads(),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores", "batch_size": args.batch_size,
              "objective": "graddiff", "strategies": {n: STRATEGY_OPTIONS[n] for n in names},
              "models": []}
    out = Path(args.out)
    t0 = time.perf_counter()
    for label, model, tok in models([s.strip() for s in args.sizes.split(",") if s.strip()], world_tok):
        model.train()
        h = Harness(model, tok, forget, retain, args.batch_size)
        row = {"label": label, "parameters": sum(p.numel() for p in model.parameters())}
        row["strategies"] = strategy_rows(h, args.steps, names, run_peak=False)
        row["parameterizations"] = parameterization_rows(model, tok, forget, retain, args.batch_size,
                                                         args.steps)
        row.update(throughput(model, tok, bundle.world))
        result["models"].append(row)
        result["seconds"] = round(time.perf_counter() - t0, 1)
        write_json_atomic(out, result)  # a run cut short keeps its finished sizes
        print(f"{label} ({row['parameters'] / 1e6:.1f} M): " + ", ".join(
            f"{n} {r['overhead']:.3f}" for n, r in row["strategies"].items())
            + f"; eval {row['eval_items_per_s']:.0f} items/s, "
              f"relearn {row['relearn_items_per_s']:.1f} items/s",
            flush=True)
        del model, h
    plot(result, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return result


if __name__ == "__main__":
    main()
