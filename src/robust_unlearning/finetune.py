"""The world on a real pretrained LM (TOFU's protocol): fine-tune it on the world's facts.

The *full* model is the base LM fine-tuned on the QA pairs of every person, the *gold* model the
same LM fine-tuned on the retain persons only (it never saw the forget persons: the retrain ideal).
Each trains until every one of its MCQ sets (full: forget and retain evaluation facts; gold: retain)
reaches ``target_acc`` (default 0.9), or ``epochs`` run out (the history records which).

Both are Hugging Face directories cached under ``$ROBUST_UNLEARNING_CACHE``
(``real-world-<hash>/{full,gold}``), keyed by the base model, the world's facts, the fine-tuning
config, the dtype and the chat-template mode, as the small world models are; a second call loads
nothing and trains nothing. QA rows go through :mod:`.data.chat`, so with an instruct model the
facts are learnt in its chat format, the format unlearning, evaluation and the attacks then use.

Device and precision: ``device="cuda"`` and ``dtype="bfloat16"`` train float32 master weights under
bf16 autocast (pure bf16 weights would round small AdamW updates away); weights are saved in
float32.

    from robust_unlearning.finetune import FinetuneConfig, build_real_world
    bundle = build_real_world(world, "smollm2-135m", FinetuneConfig(), device="cuda", dtype="bfloat16")
    bundle.full_dir, bundle.gold_dir, bundle.history
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .data.chat import set_chat_template
from .data.collate import Collator
from .errors import UnlearnError
from .metrics.scoring import target_nll

CACHE_VERSION = "1"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class FinetuneConfig:
    epochs: int = 15  # at most; training stops at the first epoch where every MCQ set reaches target_acc
    batch_size: int = 16
    lr: float = 2e-4
    warmup_frac: float = 0.05
    weight_decay: float = 0.0
    target_acc: float = 0.9
    max_length: int = 64
    biographies: bool = False  # also train on the persons' biographies (TOFU: QA pairs only)
    eval_batch_size: int = 128
    seed: int = 0


@dataclass
class RealWorld:
    world: object
    base: str
    full_dir: Path
    gold_dir: Path
    history: dict = field(default_factory=dict)  # {"full": {...}, "gold": {...}} (from the cache's meta)


def autocast(device, dtype: str):
    """bf16/fp16 autocast on ``device`` for a reduced ``dtype``; a no-op for float32."""
    if dtype not in DTYPES:
        raise UnlearnError(f"unknown dtype {dtype!r}; known: {', '.join(DTYPES)}")
    if dtype == "float32":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=DTYPES[dtype])


def training_records(world, persons: list[str], biographies: bool = False) -> list[dict]:
    recs = [{"question": f.prompt, "answer": f.answer} for p in persons for f in world.facts[p]]
    if biographies:
        recs += [{"text": world.biography(p)} for p in persons]
    return recs


def finetune_facts(model, tokenizer, records: list[dict], eval_sets: dict[str, list],
                   cfg: FinetuneConfig = FinetuneConfig(), dtype: str = "float32", log=None,
                   desc: str = "finetune") -> dict:
    """Fine-tune ``model`` (on its current device, in place) on ``records`` until every MCQ set in
    ``eval_sets`` (items with ``prompt``, ``options``, ``label``) reaches ``cfg.target_acc``.
    Returns ``{"epochs", "steps", "acc", "reached", "seconds"}``."""
    from .metrics.scoring import model_device
    from .progress import progress
    from .world.mcq import fact_mcq_accuracy

    if not records:
        raise UnlearnError("nothing to fine-tune on")
    device = model_device(model)
    rng = random.Random(cfg.seed)
    torch.manual_seed(cfg.seed)
    collate = Collator(tokenizer, cfg.max_length)
    for p in model.parameters():
        p.requires_grad_(True)
    # fused: one kernel over all weights (the per-tensor loop dominates small CPU steps of a 135 M model)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    per_epoch = math.ceil(len(records) / cfg.batch_size)
    total = cfg.epochs * per_epoch
    warmup = max(1, int(cfg.warmup_frac * total))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warmup if s < warmup
        else 0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, total - warmup))))
    hist: dict = {"epochs": 0, "steps": 0, "acc": {}, "reached": False, "curve": []}
    t0 = time.perf_counter()
    bar = progress(total=total, desc=desc)

    def score() -> dict:
        with autocast(device, dtype):
            return {k: fact_mcq_accuracy(model, tokenizer, v, cfg.eval_batch_size)
                    for k, v in eval_sets.items()}

    for epoch in range(cfg.epochs):
        order = records[:]
        rng.shuffle(order)
        model.train()
        for i in range(0, len(order), cfg.batch_size):
            batch = {k: v.to(device) for k, v in collate(order[i:i + cfg.batch_size]).items()}
            with autocast(device, dtype):
                loss = target_nll(model, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            hist["steps"] += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
        hist["epochs"] = epoch + 1
        hist["acc"] = score()
        hist["curve"].append({"epoch": epoch + 1, "loss": loss.item(), **hist["acc"]})
        if log is not None:
            log(f"{desc} epoch {epoch + 1}: loss {loss.item():.3f} "
                + " ".join(f"{k}_acc {v:.3f}" for k, v in hist["acc"].items()))
        if all(a >= cfg.target_acc for a in hist["acc"].values()):
            hist["reached"] = True
            break
    bar.close()
    model.eval()
    hist["seconds"] = round(time.perf_counter() - t0, 1)
    return hist


def world_fingerprint(world) -> str:
    """A hash of the world's facts and split (whatever config produced it)."""
    blob = json.dumps({"facts": [f.to_json() for p in world.persons for f in world.facts[p]],
                       "forget": list(world.forget_persons),
                       "forget_eval": [(f.person, f.attribute) for f in world.forget_eval],
                       "retain_eval": [(f.person, f.attribute) for f in world.retain_eval]}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _base_fingerprint(base: str) -> dict:
    from .io import check_model_path

    path = Path(check_model_path(base))  # a named model is converted here, once
    meta = path / "named_model.json"
    return {"base": base, "named": json.loads(meta.read_text()) if meta.is_file() else None,
            "path": None if meta.is_file() else str(path)}


def real_world_key(world, base: str, cfg: FinetuneConfig, dtype: str, chat_template: str) -> str:
    blob = json.dumps({"v": CACHE_VERSION, "base": _base_fingerprint(base), "world": world_fingerprint(world),
                       "finetune": asdict(cfg), "dtype": dtype, "chat_template": chat_template},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def build_real_world(world, base: str = "smollm2-135m", cfg: FinetuneConfig = FinetuneConfig(),
                     device: str = "cpu", dtype: str = "float32", chat_template: str = "auto",
                     force: bool = False, log=None) -> RealWorld:
    """Load or fine-tune (and cache) the full and gold models of ``world`` on the base LM ``base``
    (a named model, a directory or a hub id)."""
    from .io import atomic_dir, load_model, write_json_atomic
    from .world.model import cache_root

    autocast(device, dtype)  # an unknown dtype fails before any work
    root = cache_root() / f"real-world-{real_world_key(world, base, cfg, dtype, chat_template)}"
    dirs = {"full": root / "full", "gold": root / "gold"}
    plan = {"full": (world.persons, {"forget": world.forget_eval, "retain": world.retain_eval}),
            "gold": (world.retain_persons, {"retain": world.retain_eval})}
    history = {}
    for name, (persons, evals) in plan.items():
        target = dirs[name]
        meta_file = target / "real_world_meta.json"
        if not force and meta_file.is_file() and any(target.glob("*.safetensors")):
            history[name] = json.loads(meta_file.read_text())["history"]
            continue
        model, tok = load_model(base)
        set_chat_template(tok, chat_template)
        model.to(device)
        hist = finetune_facts(model, tok, training_records(world, persons, cfg.biographies), evals, cfg,
                              dtype, log, desc=f"finetune {name}")
        if not hist["reached"] and log is not None:
            log(f"warning: the {name} model reached {hist['acc']} after {hist['epochs']} epochs, "
                f"below the target {cfg.target_acc}")
        model.to("cpu")
        with atomic_dir(target) as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
            tok.save_pretrained(tmp)
            write_json_atomic(tmp / "real_world_meta.json",
                              {"base": base, "device": str(device), "dtype": dtype,
                               "finetune": asdict(cfg), "chat_template": chat_template,
                               "world": world_fingerprint(world), "history": hist})
        history[name] = hist
        del model
    return RealWorld(world, base, dirs["full"], dirs["gold"], history)
