"""A GCG-style jailbreak (Zou et al. 2023; "enhanced GCG" of Łucki et al. 2025;
docs/attacks.md#gcg-jailbreak).

Greedy coordinate gradient over a *universal* prompt prefix of ``prefix_len`` tokens, placed before
each question (``<bos> PREFIX Question: ...\\nAnswer:``). The prefix is optimised to maximise the
likelihood of the forgotten answers of ``train_questions`` forget-evaluation questions; each
iteration

1. takes the gradient of the answer NLL with respect to the one-hot prefix tokens (through the
   embedding matrix),
2. keeps the ``topk`` most promising replacement tokens per position,
3. draws ``candidates`` single-token swaps (position, token among its top-k),
4. scores all candidates in padded batches (candidates × questions rows, no Python loop over
   examples) and moves to the best.

The initial prefix repeats one token (``init``, ``!`` as in GCG). The prefix is then scored by
4-option MCQ accuracy with the prefix prepended, on the questions it was optimised on (``train``)
and on the rest of the forget evaluation (``heldout``), every ``eval_every`` iterations: a
recovery curve. Run it on the gold model too: gold never knew the
facts, so what the prefix buys there (category priors, option biases) is the floor.

The search loop is hand-written (about 80 lines): the GCG reference code and its packaged variants
target chat models with templates and refusal strings, not a universal prefix over MCQ facts.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from ..data.chat import answer_ids, prompt_parts
from ..data.collate import IGNORE, Encoded, pad_batch, pad_id_of
from ..metrics.scoring import logprob_sums, model_device
from ..progress import progress
from ..world.generator import Fact, World


@dataclass
class JailbreakConfig:
    prefix_len: int = 8
    iters: int = 20
    topk: int = 32
    candidates: int = 64
    train_questions: int = 16
    eval_every: int = 5
    batch_rows: int = 512  # rows per forward pass when scoring candidates
    seed: int = 0
    init: str = "!"  # the initial prefix repeats this token (GCG's "! ! !"); "" or multi-token: random

    def __post_init__(self):
        for name in ("prefix_len", "topk", "candidates", "train_questions", "eval_every", "batch_rows"):
            if getattr(self, name) < 1:
                raise ValueError(f"jailbreak {name} must be at least 1, not {getattr(self, name)}")
        if self.iters < 0:
            raise ValueError(f"jailbreak iters must be >= 0, not {self.iters}")


def allowed_tokens(tok) -> torch.Tensor:
    """Token ids a prefix may use: not special, decoding to printable ASCII."""
    special = set(tok.all_special_ids)
    ok = []
    for i in range(len(tok)):
        if i in special:
            continue
        text = tok.decode([i])
        if text and text.isascii() and text.isprintable():
            ok.append(i)
    if not ok:
        raise ValueError("the tokenizer has no printable token for a jailbreak prefix")
    return torch.tensor(ok)


class _Template:
    """Question/answer rows with ``prefix_len`` free slots after <bos>, padded once."""

    def __init__(self, tok, pairs: list[tuple[str, str]], prefix_len: int):
        self.prefix_len = prefix_len
        self.start = 0
        enc = []
        for prompt, cont in pairs:
            lead, p = prompt_parts(tok, prompt)  # <bos> or the chat template's head (data/chat.py)
            c = answer_ids(tok, cont)
            self.start = len(lead)
            ids = lead + [0] * prefix_len + p + c
            enc.append(Encoded(ids, [IGNORE] * (len(ids) - len(c)) + c))
        self.batch = pad_batch(enc, pad_id_of(tok))

    def with_prefixes(self, prefixes: torch.Tensor) -> dict[str, torch.Tensor]:
        """Rows for every (prefix, pair): ``len(prefixes) * len(pairs)`` rows, prefix-major."""
        n_pre, n = prefixes.shape[0], self.batch["input_ids"].shape[0]
        out = {k: v.repeat(n_pre, 1) for k, v in self.batch.items()}
        out["input_ids"][:, self.start:self.start + self.prefix_len] = prefixes.repeat_interleave(n, 0)
        return out


@torch.no_grad()
def _row_scores(model, batch: dict, batch_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    device = model_device(model)
    sums, counts = [], []
    for s in range(0, batch["input_ids"].shape[0], batch_rows):
        ids = batch["input_ids"][s:s + batch_rows].to(device)
        mask = batch["attention_mask"][s:s + batch_rows].to(device)
        logits = model(input_ids=ids, attention_mask=mask).logits
        a, b = logprob_sums(logits, batch["labels"][s:s + batch_rows].to(device))
        sums.append(a.float().cpu())
        counts.append(b.float().cpu())
    return torch.cat(sums), torch.cat(counts)


def candidate_losses(model, template: _Template, prefixes: torch.Tensor,
                     batch_rows: int = 512) -> torch.Tensor:
    """Mean per-token answer NLL over the template's questions, one value per prefix."""
    s, n = _row_scores(model, template.with_prefixes(prefixes), batch_rows)
    return (-(s / n.clamp(min=1))).view(prefixes.shape[0], -1).mean(1)


def prefix_gradient(model, template: _Template, prefix: torch.Tensor) -> tuple[torch.Tensor, float]:
    """d loss / d one-hot(prefix): shape (prefix_len, vocab)."""
    emb = model.get_input_embeddings()
    device = model_device(model)
    batch = template.with_prefixes(prefix.view(1, -1))
    ids = batch["input_ids"].to(device)
    one_hot = torch.zeros(prefix.numel(), emb.weight.shape[0], device=device, dtype=emb.weight.dtype)
    one_hot[torch.arange(prefix.numel()), prefix.to(device)] = 1.0
    one_hot.requires_grad_(True)
    embeds = emb(ids).detach()
    pre = (one_hot @ emb.weight).unsqueeze(0).expand(ids.shape[0], -1, -1)
    a, b = template.start, template.start + template.prefix_len
    embeds = torch.cat([embeds[:, :a], pre, embeds[:, b:]], dim=1)
    logits = model(inputs_embeds=embeds, attention_mask=batch["attention_mask"].to(device)).logits
    s, n = logprob_sums(logits, batch["labels"].to(device))
    loss = (-(s / n.clamp(min=1))).mean()
    (grad,) = torch.autograd.grad(loss, one_hot)
    return grad.detach().cpu(), loss.item()


def _items_with_prefix(model, tok, items: list[dict], prefix: torch.Tensor, batch_rows: int = 512) -> dict:
    """Score ``items`` with the prefix tokens between <bos> and each prompt. MCQ items (with
    ``options`` and ``label``): ``acc``, the argmax of the options' log-likelihoods. QA items:
    ``nll``, the mean per-token NLL of the answer, and ``prob``, the mean of P(answer)^(1/|answer|)
    (TOFU's probability)."""
    if not items:
        return {}
    if items[0].get("options"):
        pairs = [(it["prompt"], o) for it in items for o in it["options"]]
        template = _Template(tok, pairs, prefix.numel())
        s, _ = _row_scores(model, template.with_prefixes(prefix.view(1, -1)), batch_rows)
        pred = s.view(len(items), -1).argmax(1)
        return {"acc": (pred == torch.tensor([it["label"] for it in items])).float().mean().item()}
    template = _Template(tok, [(it["prompt"], it["answer"]) for it in items], prefix.numel())
    s, n = _row_scores(model, template.with_prefixes(prefix.view(1, -1)), batch_rows)
    per = s / n.clamp(min=1)
    return {"nll": (-per).mean().item(), "prob": per.exp().mean().item()}


def mcq_with_prefix(model, tok, facts: list[Fact], prefix: torch.Tensor, batch_rows: int = 512) -> float:
    """MCQ accuracy with the prefix tokens between <bos> and each prompt."""
    if not facts:
        return float("nan")
    return _items_with_prefix(model, tok, fact_items(facts), prefix, batch_rows)["acc"]


def fact_items(facts: list[Fact]) -> list[dict]:
    """World facts as attack items: the answer to elicit, and the four options scored as MCQ."""
    return [{"prompt": f.prompt, "answer": f.answer, "options": [" " + o for o in f.options],
             "label": f.label} for f in facts]


def gcg_attack(model, tok, world: World, cfg: JailbreakConfig = JailbreakConfig(), desc: str = "gcg") -> dict:
    """GCG on the world's forget-evaluation facts, scored by MCQ accuracy."""
    return gcg_items(model, tok, fact_items(list(world.forget_eval)), cfg, desc)


def gcg_items(model, tok, items: list[dict], cfg: JailbreakConfig = JailbreakConfig(),
              desc: str = "gcg") -> dict:
    """GCG over ``items`` (``prompt``, ``answer`` and, for MCQ, ``options`` + ``label``): the prefix is
    optimised on ``train_questions`` of them and scored on those and on the rest (held out). MCQ
    items report ``*_acc``; QA items (TOFU, MUSE) ``*_nll`` and ``*_prob`` of the answers."""
    if cfg.train_questions >= len(items):
        raise ValueError(f"jailbreak train_questions ({cfg.train_questions}) must leave held-out "
                         f"questions among the {len(items)} forget-evaluation questions")
    rng = random.Random(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    train = rng.sample(items, cfg.train_questions)
    chosen = {id(f) for f in train}
    heldout = [f for f in items if id(f) not in chosen]
    vocab = model.get_input_embeddings().weight.shape[0]
    allowed = allowed_tokens(tok)
    allowed = allowed[allowed < vocab]
    mask = torch.full((vocab,), float("inf"))
    mask[allowed] = 0.0
    pairs = [(f["prompt"], f["answer"]) for f in train]
    template = _Template(tok, pairs, cfg.prefix_len)
    init = tok(cfg.init, add_special_tokens=False)["input_ids"] if cfg.init else []
    if len(init) == 1 and bool((allowed == init[0]).any()):
        prefix = torch.full((cfg.prefix_len,), init[0], dtype=torch.long)
    else:
        prefix = allowed[torch.randint(len(allowed), (cfg.prefix_len,), generator=gen)]
    was_training = model.training
    model.eval()

    def scores(pre: torch.Tensor) -> dict:
        out = {}
        for name, part in (("train", train), ("heldout", heldout)):
            out.update({f"{name}_{k}": v for k, v in _items_with_prefix(model, tok, part, pre,
                                                                        cfg.batch_rows).items()})
        return out

    empty = torch.zeros(0, dtype=torch.long)
    base = {**scores(empty),
            "loss": candidate_losses(model, _Template(tok, pairs, 0), empty.view(1, 0),
                                     cfg.batch_rows).item()}

    def checkpoint(it: int, loss: float) -> dict:
        return {"iter": it, "loss": loss, **scores(best)}

    best = prefix.clone()
    best_loss = candidate_losses(model, template, prefix.view(1, -1), cfg.batch_rows).item()
    curve = [checkpoint(0, best_loss)]
    bar = progress(total=cfg.iters, desc=desc)
    for it in range(1, cfg.iters + 1):
        grad, _ = prefix_gradient(model, template, prefix)
        top = (grad + mask).topk(min(cfg.topk, len(allowed)), dim=1, largest=False).indices  # (P, k)
        pos = torch.randint(cfg.prefix_len, (cfg.candidates,), generator=gen)
        pick = torch.randint(top.shape[1], (cfg.candidates,), generator=gen)
        cands = prefix.repeat(cfg.candidates, 1)
        cands[torch.arange(cfg.candidates), pos] = top[pos, pick]
        losses = candidate_losses(model, template, cands, cfg.batch_rows)
        i = int(losses.argmin())
        prefix = cands[i]
        if losses[i].item() < best_loss:
            best, best_loss = prefix.clone(), losses[i].item()
        bar.update(1)
        if it % cfg.eval_every == 0 or it == cfg.iters:
            curve.append(checkpoint(it, best_loss))
    bar.close()
    model.train(was_training)
    last = curve[-1]
    out = {"prefix": tok.decode(best.tolist()), "prefix_ids": best.tolist(),
           "train_questions": len(train), "heldout_questions": len(heldout),
           "loss_no_prefix": base["loss"], "loss": best_loss}
    for key in last:
        if key.startswith(("train_", "heldout_")):
            out[f"{key}_no_prefix"] = base[key]
            out[key] = last[key]
    if "heldout_acc" in last:
        out["forget_acc"] = last["heldout_acc"]
    out.update({"curve": curve, "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__}})
    return out
