"""One NPO step here against one NPO step of open-unlearning's trainer, on the same model and batches.

open-unlearning (github.com/locuslab/open-unlearning) trains NPO with a Hugging Face ``Trainer``
whose ``compute_loss`` (src/trainer/unlearn/npo.py, src/trainer/utils.py) does, per step: a forward
of the model on the forget batch with full logits and the summed token NLL per sequence; the same
under ``no_grad`` for the frozen reference model; ``-2/β · logsigmoid(β·(NLL − NLL_ref))`` averaged
over the batch; a forward on the retain batch for its NLL (``outputs.loss``); one backward of
``γ·forget + α·retain``; the Trainer then clips, steps the optimizer and the scheduler. That loss is
written here from the formulas (open-unlearning is not a dependency: its Hydra configs and data
pipeline are not needed to time a step); the loop around it is the Hugging Face ``Trainer`` itself.

Both sides get the same records of the quick tuning world, those of the most common token length (so
that every batch has the same shape on both sides whatever each sampler draws; 8 forget + 8 retain QA
pairs per step, collated by this project's collator), float32, AdamW (torch's fused implementation on
both sides), lr 1e-5 constant, clipping at 1.0, β 0.1, γ = α = 1, on the CPU. The time of a step is
the interval between the ends of consecutive steps (the loop's whole iteration: data, passes,
clipping, optimizer, logging), averaged over the timed steps after ``--warmup`` steps; the two sides
alternate ``--rounds`` times (the machine's load drifts). ``ratio`` = the median over rounds of
ours / theirs within the round (≤ 1: ours is no slower); ``round_ratios`` shows the spread.

    python benchmarks/vs_open_unlearning.py [--sizes 1m,10m,smollm2] [--steps 12] [--rounds 2]

Writes ``benchmarks/results/vs_open_unlearning.json``.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from scaling import models  # noqa: E402

BETA, LR, BATCH = 0.1, 1e-5, 8


def ours(model, tok, forget, retain, steps: int, warmup: int) -> float:
    """Mean seconds per step of this project's loop (NPO, full fine-tuning)."""
    import robust_unlearning.loop as loop
    from robust_unlearning.config import build_config

    ends: list[float] = []
    inner = loop.train_step

    def timed(*a, **k):
        out = inner(*a, **k)
        ends.append(time.perf_counter())
        return out

    cfg = build_config({"method": "npo", "objective": {"beta": BETA},
                        "train": {"steps": steps + warmup, "batch_size": BATCH, "lr": LR, "gamma": 1.0,
                                  "max_grad_norm": 1.0, "scheduler": "constant", "seed": 0}})
    loop.train_step = timed
    try:
        loop.unlearn(copy.deepcopy(model), tok, forget, retain, cfg)
    finally:
        loop.train_step = inner
    return (ends[-1] - ends[warmup - 1]) / steps


def theirs(model, tok, forget, retain, steps: int, warmup: int) -> float:
    """Mean seconds per step of a Hugging Face Trainer with open-unlearning's NPO loss."""
    import torch.nn.functional as F
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from robust_unlearning.data.collate import Collator

    collate = Collator(tok)

    def batch_nll(m, inputs):  # summed token NLL per sequence (open-unlearning's compute_batch_nll)
        logits = m(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
        labels = inputs["labels"][..., 1:]
        return F.cross_entropy(logits[..., :-1, :].transpose(-1, -2), labels, ignore_index=-100,
                               reduction="none").sum(-1)

    ref = copy.deepcopy(model).eval()

    class NPOTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            f, r = inputs["forget"], inputs["retain"]
            nll = batch_nll(model, f)
            with torch.no_grad():
                nll_ref = batch_nll(ref, f)
            forget_loss = -2 / BETA * F.logsigmoid(BETA * (nll - nll_ref)).mean()
            retain_loss = model(input_ids=r["input_ids"], attention_mask=r["attention_mask"],
                                labels=r["labels"]).loss
            return forget_loss + retain_loss

    class Pairs(torch.utils.data.Dataset):
        def __len__(self):
            return 10 ** 6

        def __getitem__(self, i):
            return {"forget": forget[i % len(forget)], "retain": retain[i % len(retain)]}

    ends: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            ends.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out, per_device_train_batch_size=BATCH, max_steps=steps + warmup, learning_rate=LR,
            lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
            optim="adamw_torch_fused", logging_steps=10 ** 6, save_strategy="no", report_to=[], use_cpu=True,
            dataloader_num_workers=0, remove_unused_columns=False, disable_tqdm=True, seed=0)
        trainer = NPOTrainer(model=copy.deepcopy(model).train(), args=args, train_dataset=Pairs(),
                             data_collator=lambda items: {k: collate([it[k] for it in items])
                                                          for k in ("forget", "retain")},
                             callbacks=[Clock()])
        trainer.train()
    return (ends[-1] - ends[warmup - 1]) / steps


def _length(tok, record: dict) -> int:
    from robust_unlearning.data.collate import encode_record

    return len(encode_record(tok, record).input_ids)


def one_length(tok, records: list[dict]) -> list[dict]:
    """The records of the most common token length: every batch then has the same shape on both
    sides, whichever records each side's sampler draws (QA pairs differ by a few tokens, which moves
    a step's cost by several per cent)."""
    from collections import Counter

    lengths = [_length(tok, r) for r in records]
    common = Counter(lengths).most_common(1)[0][0]
    same = [r for r, n in zip(records, lengths, strict=True) if n == common]
    if len(same) < BATCH:
        raise SystemExit(f"only {len(same)} records of one length; need {BATCH}")
    return same


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1m,10m,smollm2")
    ap.add_argument("--steps", type=int, default=12, help="timed steps per run")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=str(HERE / "results" / "vs_open_unlearning.json"))
    args = ap.parse_args()
    os.environ.setdefault("ROBUST_UNLEARNING_QUIET", "1")

    import dataclasses

    from robust_unlearning.io import load_model, write_json_atomic
    from robust_unlearning.world.benchmark import unlearning_data
    from robust_unlearning.world.generator import TUNING_SEED
    from robust_unlearning.world.model import QUICK_SPEC, build_world

    spec = dataclasses.replace(QUICK_SPEC, world=dataclasses.replace(QUICK_SPEC.world, seed=TUNING_SEED))
    bundle = build_world(spec)
    _, world_tok = load_model(bundle.full_dir)
    forget, retain = unlearning_data(bundle.world)
    rows = {}
    for label, model, tok in models([s.strip() for s in args.sizes.split(",") if s.strip()], world_tok):
        for p in model.parameters():
            p.requires_grad_(True)
        model.train()
        f_same, r_same = one_length(tok, forget), one_length(tok, retain)
        times = {"ours": [], "theirs": []}
        for _ in range(args.rounds):
            times["ours"].append(ours(model, tok, f_same, r_same, args.steps, args.warmup))
            times["theirs"].append(theirs(model, tok, f_same, r_same, args.steps, args.warmup))
        o, t = statistics.median(times["ours"]), statistics.median(times["theirs"])
        paired = [a / b for a, b in zip(times["ours"], times["theirs"], strict=True)]
        rows[label] = {"parameters": sum(p.numel() for p in model.parameters()), "ours_step_s": o,
                       "tokens_per_record": {"forget": _length(tok, f_same[0]),
                                             "retain": _length(tok, r_same[0])},
                       "records": {"forget": len(f_same), "retain": len(r_same)},
                       "theirs_step_s": t, "ratio": statistics.median(paired), "round_ratios": paired,
                       "runs": times}
        print(f"{label}: ours {o:.4f} s, open-unlearning's trainer {t:.4f} s, ratio (median of rounds) "
              f"{statistics.median(paired):.3f}, rounds {[round(x, 3) for x in paired]}", flush=True)
    import transformers

    write_json_atomic(Path(args.out), {
        "what": "seconds per NPO step, 8 forget + 8 retain QA pairs, float32, CPU "
                "(see the script's docstring)",
        "rows": rows, "goal": "ratio <= 1 at every size",
        "torch": torch.__version__, "transformers": transformers.__version__, "machine": platform.machine(),
        "threads": torch.get_num_threads(), "cores": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())})


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent / "src"))
    main()
