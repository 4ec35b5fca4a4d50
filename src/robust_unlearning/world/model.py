"""The world model and the gold model: a BPE tokenizer and a small Llama trained on the world.

Both are ordinary Hugging Face directories (``config.json``, ``model.safetensors``, tokenizer
files) cached under ``$ROBUST_UNLEARNING_CACHE`` (default ``~/.cache/robust_unlearning``), keyed by
a hash of the world, model and training configs, and reused. The *full* model is trained on every
person, the *gold* model on the retain persons only: the retrain-from-scratch ideal.

The pre-training loop below is deliberately plain (nanoGPT style); the unlearning loop lives in
:mod:`robust_unlearning.loop`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..data.collate import Collator
from ..progress import progress
from .generator import QUICK_WORLD, World, WorldConfig, generate_world
from .mcq import fact_mcq_accuracy

CACHE_VERSION = "1"


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int = 2048
    hidden_size: int = 128
    intermediate_size: int = 384
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    max_position_embeddings: int = 192


@dataclass(frozen=True)
class PretrainConfig:
    epochs: int = 60
    batch_size: int = 64  # QA pairs per batch
    text_batch_size: int = 8  # biographies per batch: dense targets, where most facts are learnt
    lr: float = 3e-3
    warmup_frac: float = 0.05
    target_acc: float = 0.97  # stop early once both forget and retain MCQ reach this
    eval_every: int = 5
    seed: int = 0


QUICK_MODEL = ModelConfig(hidden_size=96, intermediate_size=256, num_hidden_layers=3)
QUICK_PRETRAIN = PretrainConfig(epochs=60)


@dataclass(frozen=True)
class WorldSpec:
    world: WorldConfig = WorldConfig()
    model: ModelConfig = ModelConfig()
    pretrain: PretrainConfig = PretrainConfig()

    def key(self) -> str:
        blob = json.dumps({"v": CACHE_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


DEFAULT_SPEC = WorldSpec()
QUICK_SPEC = WorldSpec(QUICK_WORLD, QUICK_MODEL, QUICK_PRETRAIN)
# seconds to build: for tests and smoke runs of the whole protocol, not for figures
TINY_SPEC = WorldSpec(WorldConfig(n_persons=40, relearn_pool=8, retain_eval=40),
                      ModelConfig(vocab_size=600, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                  num_attention_heads=2, max_position_embeddings=128),
                      PretrainConfig(epochs=15, batch_size=16, lr=5e-3, eval_every=100))


def cache_root() -> Path:
    return Path(os.environ.get("ROBUST_UNLEARNING_CACHE",
                               Path.home() / ".cache" / "robust_unlearning"))


def train_tokenizer(world: World, vocab_size: int):
    """Byte-level BPE (``tokenizers``) wrapped as a ``PreTrainedTokenizerFast``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    corpus = [r.get("text") or (r["question"] + r["answer"])
              for r in world.training_records(world.persons)]
    tok.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>")


def new_model(cfg: ModelConfig, tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size, num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads, num_key_value_heads=cfg.num_attention_heads,
        max_position_embeddings=cfg.max_position_embeddings, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config)


def pretrain(model, tokenizer, records: list[dict], cfg: PretrainConfig, eval_sets: dict,
             desc: str = "pretrain") -> dict:
    """Next-token training on ``records`` until every set in ``eval_sets`` reaches the target."""
    rng = random.Random(cfg.seed)
    torch.manual_seed(cfg.seed)
    collate = Collator(tokenizer)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0, betas=(0.9, 0.98))
    steps_per_epoch = len(_length_bucketed(records, cfg, random.Random(0)))
    total = cfg.epochs * steps_per_epoch
    warmup = max(1, int(cfg.warmup_frac * total))

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    history: dict = {"epochs": 0, "acc": {}}
    model.train()
    bar = progress(total=total, desc=desc)
    for epoch in range(cfg.epochs):
        for chunk in _length_bucketed(records, cfg, rng):
            loss = _target_loss(model, collate(chunk))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
        history["epochs"] = epoch + 1
        if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
            accs = {k: fact_mcq_accuracy(model, tokenizer, v) for k, v in eval_sets.items()}
            history["acc"] = accs
            bar.set_postfix(**{k: f"{v:.2f}" for k, v in accs.items()})
            if all(a >= cfg.target_acc for a in accs.values()):
                break
    bar.close()
    model.eval()
    return history


def _target_loss(model, batch: dict) -> torch.Tensor:
    """Causal-LM loss with the output layer applied only at target positions: a QA pair has a
    couple of answer tokens and a dozen prompt tokens, and the vocabulary projection dominates the
    cost of such a small model."""
    out = model.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    hidden = out.last_hidden_state
    target = batch["labels"][:, 1:]
    keep = target != -100
    logits = model.lm_head(hidden[:, :-1][keep])
    return torch.nn.functional.cross_entropy(logits.float(), target[keep])


def _length_bucketed(records: list[dict], cfg: PretrainConfig, rng: random.Random) -> list[list[dict]]:
    """Shuffled batches that each hold records of one kind (QA or text), so short QA pairs are not
    padded to biography length."""
    batches = []
    for kind, batch_size in (("question", cfg.batch_size), ("text", cfg.text_batch_size)):
        group = [r for r in records if kind in r]
        rng.shuffle(group)
        batches += [group[i:i + batch_size] for i in range(0, len(group), batch_size)]
    rng.shuffle(batches)
    return batches


def _save_dir_atomic(model, tokenizer, target: Path, meta: dict) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "world_meta.json").write_text(json.dumps(meta, indent=2))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def train_one(spec: WorldSpec, force: bool, which: str, threads: int) -> None:
    """Train one of a world's two models (``which``: full or gold) on ``threads`` threads, quietly:
    the body of a process that trains it beside others."""
    os.environ.setdefault("ROBUST_UNLEARNING_QUIET", "1")  # one progress display: the full model's
    torch.set_num_threads(threads)
    build_world(spec, force, only=(which,), parallel=False)


def _train_side_by_side(spec: WorldSpec, force: bool) -> None:
    """The gold model in a spawned process, the full model here, each with half of the threads."""
    import multiprocessing

    threads = torch.get_num_threads()
    mine, theirs = threads - threads // 2, threads // 2
    ctx = multiprocessing.get_context("spawn")
    child = ctx.Process(target=train_one, args=(spec, force, "gold", theirs))
    child.start()
    try:
        torch.set_num_threads(mine)
        build_world(spec, force, only=("full",), parallel=False)
    except BaseException:
        child.terminate()
        raise
    finally:
        torch.set_num_threads(threads)
        child.join()
    if child.exitcode != 0:
        raise RuntimeError(f"training the gold model failed in its process (exit code {child.exitcode})")


@dataclass
class WorldBundle:
    spec: WorldSpec
    world: World
    full_dir: Path
    gold_dir: Path


def build_world(spec: WorldSpec = DEFAULT_SPEC, force: bool = False,
                only: tuple[str, ...] = ("full", "gold"), parallel: bool | None = None) -> WorldBundle:
    """Generate the world and load or train the full and gold models (cached). ``only``: train just
    these of the two (several processes can then train one world's models side by side).
    ``parallel`` (default: with at least two threads, unless ``ROBUST_UNLEARNING_PARALLEL_WORLD=0``):
    when both models are to be trained, the gold model is trained in a second process with half of
    the threads while this one trains the full model. Each model's training is the same either way
    (its own seed); the thread count only changes float rounding."""
    world = generate_world(spec.world)
    root = cache_root() / f"world-{spec.key()}"
    full_dir, gold_dir = root / "full", root / "gold"
    missing = [n for n, d in (("full", full_dir), ("gold", gold_dir))
               if n in only and (force or not (d / "model.safetensors").exists())]
    if parallel is None:
        parallel = torch.get_num_threads() >= 2 and os.environ.get("ROBUST_UNLEARNING_PARALLEL_WORLD") != "0"
    if parallel and len(missing) == 2:
        _train_side_by_side(spec, force)
        return WorldBundle(spec, world, full_dir, gold_dir)
    cached = (full_dir / "model.safetensors").exists() and (gold_dir / "model.safetensors").exists()
    if force or not cached:
        torch.manual_seed(spec.pretrain.seed)
        tokenizer = train_tokenizer(world, spec.model.vocab_size)
        eval_full = {"forget": world.forget_eval, "retain": world.retain_eval}
        for name, persons, evals, target in (
            ("full", world.persons, eval_full, full_dir),
            ("gold", world.retain_persons, {"retain": world.retain_eval}, gold_dir),
        ):
            if name not in only or (not force and (target / "model.safetensors").exists()):
                continue
            torch.manual_seed(spec.pretrain.seed)
            model = new_model(spec.model, tokenizer)
            hist = pretrain(model, tokenizer, world.training_records(persons), spec.pretrain,
                            evals, desc=f"train {name} model")
            _save_dir_atomic(model, tokenizer, target, {"spec": asdict(spec), "history": hist})
    return WorldBundle(spec, world, full_dir, gold_dir)
