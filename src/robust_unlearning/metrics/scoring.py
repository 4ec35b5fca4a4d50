"""The one scoring module: batched model calls shared by every metric, attack and evaluation —
per-token log-probabilities (:func:`token_logprobs` from logits, which the training loss negates
too; :func:`target_logprobs` from a model, the output layer at target positions only where it may),
answer log-likelihoods, the mean per-token NLL of records, per-token log-probs of texts, and greedy
generation; the model's device (:func:`model_device`).

Target positions only: scoring an answer needs ``log P(token)`` at a few answer positions, yet
``model(...).logits`` projects every position of every row onto the vocabulary (on SmolLM2, 49 k
tokens, a batch of 128 rows × 64 tokens is 1.6 GB of float32 logits, and the projection is most of
the forward's cost). For the model families whose output is exactly ``lm_head(decoder(x))``
(``FAST_FAMILIES``: no logit soft-capping or scaling) the head is applied at the target positions
only; every other model takes the full-logits path. Both give the same values up to float rounding
(tests/test_target_logp.py).

No metric loops over examples calling the model: rows are sorted by length, padded into batches and
sent through the model together; results are scattered back into input order.

Masks and labels come from *positions* (:func:`~robust_unlearning.data.collate.pad_batch`), never
from comparing ids with ``pad_token_id``: when the pad token is the end-of-sequence token, a real
end token is still scored (``add_eos=True``) and a generated end token still ends the answer.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F

from ..data.chat import answer_ids, bos_ids, prompt_ids, text_ids
from ..data.collate import IGNORE, Encoded, encode_record, pad_batch, pad_id_of


def model_device(model) -> torch.device:
    """Where the model's (first) parameters live: where its inputs go."""
    return next(model.parameters()).device


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Shifted per-position target log-probs (zero where masked) and the target mask (``IGNORE``
    labels masked); computed in fp32. Every log-likelihood and NLL of the package is this, summed."""
    target = labels[:, 1:]
    mask = target != IGNORE
    logp = -F.cross_entropy(logits[:, :-1].float().transpose(1, 2), target.clamp(min=0), reduction="none")
    return logp * mask, mask


# output = lm_head(final-norm hidden states), nothing after the head (Gemma's soft-capping, Cohere's
# logit_scale and Granite's logits_scaling are why this is a list and not a duck-typed check)
FAST_FAMILIES = frozenset({"llama", "mistral", "qwen2", "qwen3", "phi3", "olmo", "olmo2"})


def _split(model):
    cfg = getattr(model, "config", None)
    if getattr(cfg, "model_type", None) not in FAST_FAMILIES:
        return None
    if hasattr(model, "get_base_model"):  # a peft wrapper: its adapters live inside the base model
        model = model.get_base_model()
    decoder, head = getattr(model, "model", None), getattr(model, "lm_head", None)
    if decoder is None or hasattr(decoder, "lm_head") or not isinstance(head, torch.nn.Linear):
        return None
    return decoder, head


def target_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`token_logprobs` of the model's output on ``input_ids``, computing the output layer at
    the target positions only where the model's family allows (module docstring)."""
    split = _split(model)
    if split is None:
        return token_logprobs(model(input_ids=input_ids, attention_mask=attention_mask).logits, labels)
    target = labels[:, 1:]
    mask = target != IGNORE
    decoder, head = split
    hidden = decoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state[:, :-1]
    out = torch.zeros(mask.shape, dtype=torch.float32, device=hidden.device)
    out[mask] = -F.cross_entropy(head(hidden[mask]).float(), target[mask], reduction="none")
    return out, mask


def target_nll(model, batch: dict) -> torch.Tensor:
    """Mean NLL over the target tokens of a batch (``input_ids``, ``attention_mask``, ``labels``): the
    value of ``model(**batch).loss`` for a causal LM, with gradient, from :func:`target_logprobs`
    (the output layer at the target positions only where it may)."""
    logp, mask = target_logprobs(model, batch["input_ids"], batch["attention_mask"], batch["labels"])
    return -logp.sum() / mask.sum()


def logprob_sums(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sequence summed target log-prob and target count."""
    logp, mask = token_logprobs(logits, labels)
    return logp.sum(1), mask.sum(1)


def encode_pair(tokenizer, prompt: str, answer: str, add_eos: bool = False, max_length: int = 512,
                add_bos: bool = True) -> Encoded:
    """``bos + prompt + answer [+ eos]`` with labels on the answer (and eos) positions only.

    Prompt and answer are tokenized separately, as in training (``data/collate.py``). Too-long rows
    lose prompt tokens from the left first, so the scored answer survives.
    """
    p = prompt_ids(tokenizer, prompt, add_bos)  # <bos> or the chat template (data/chat.py)
    a = answer_ids(tokenizer, answer, add_eos)
    a = a[: max_length - 1]
    p = p[-(max_length - len(a)):]
    return Encoded(p + a, [IGNORE] * len(p) + a)


@contextlib.contextmanager
def _scoring(model) -> Iterator[None]:
    """Eval mode without gradients; the model's mode is restored."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def padded_batches(tokenizer, enc: list[Encoded], batch_size: int, sort: bool = True,
                   side: str = "right") -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
    """``(idx, batch)``: the rows ``idx`` of ``enc`` padded on ``side``, ``batch_size`` at a time,
    length-sorted (little padding) unless ``sort`` is off; results go back to input order by ``idx``."""
    order = sorted(range(len(enc)), key=lambda i: len(enc[i].input_ids)) if sort else list(range(len(enc)))
    pad = pad_id_of(tokenizer)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        yield idx, pad_batch([enc[i] for i in idx], pad, side=side)


def run_batches(model, tokenizer, enc: list[Encoded], batch_size: int, fn, sort: bool = True) -> None:
    """Call ``fn(logp, mask, idx)`` with the :func:`target_logprobs` of padded batches of ``enc``
    (:func:`padded_batches`), in eval mode without gradients."""
    device = model_device(model)
    with _scoring(model):
        for idx, batch in padded_batches(tokenizer, enc, batch_size, sort):
            logp, mask = target_logprobs(model, batch["input_ids"].to(device),
                                         batch["attention_mask"].to(device), batch["labels"].to(device))
            fn(logp, mask, idx)


def run_logits_batches(model, tokenizer, enc: list[Encoded], batch_size: int, fn, sort: bool = True) -> None:
    """Call ``fn(logits, labels, idx)`` with the full logits of padded batches of ``enc``, for what
    needs the whole distribution (entropy, argmax: :mod:`.token_stats`); otherwise as
    :func:`run_batches`."""
    device = model_device(model)
    with _scoring(model):
        for idx, batch in padded_batches(tokenizer, enc, batch_size, sort):
            logits = model(input_ids=batch["input_ids"].to(device),
                           attention_mask=batch["attention_mask"].to(device)).logits
            fn(logits, batch["labels"].to(device), idx)


def answer_logprobs(model, tokenizer, prompts: Sequence[str], answers: Sequence[str], add_eos: bool = False,
                    batch_size: int = 64, max_length: int = 512, add_bos: bool = True,
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed ``log P(answer | prompt)`` and the number of scored tokens, one per pair."""
    if len(prompts) != len(answers):
        raise ValueError("prompts and answers differ in length")
    enc = [encode_pair(tokenizer, p, a, add_eos, max_length, add_bos)
           for p, a in zip(prompts, answers, strict=True)]
    sums = torch.zeros(len(enc), dtype=torch.float64)
    counts = torch.zeros(len(enc), dtype=torch.float64)

    def take(logp, mask, idx):
        sums[idx] = logp.sum(1).double().cpu()
        counts[idx] = mask.sum(1).double().cpu()

    if enc:
        run_batches(model, tokenizer, enc, batch_size, take)
    return sums, counts


def mean_token_nll(model, tokenizer, records: list[dict], batch_size: int = 8,
                   max_length: int = 512) -> float:
    """Mean over records of the per-token NLL of their targets (the answer of a QA record, the whole
    text of a text record, as trained: :func:`~..data.collate.encode_record`), batched in order."""
    enc = [encode_record(tokenizer, r, max_length) for r in records]
    total = [0.0]

    def take(logp, mask, idx):
        total[0] += float((-logp.sum(1) / mask.sum(1).clamp(min=1)).sum())

    run_batches(model, tokenizer, enc, batch_size, take, sort=False)
    return total[0] / len(records)


def text_token_logprobs(model, tokenizer, texts: Sequence[str], batch_size: int = 16,
                        max_length: int = 512) -> list[torch.Tensor]:
    """Log-prob of every token of each text (after the first) given its prefix, one tensor per text."""
    enc = []
    for t in texts:
        bos = bos_ids(tokenizer)
        ids = (bos + text_ids(tokenizer, t))[:max_length]
        enc.append(Encoded(ids, [IGNORE] * len(bos) + ids[len(bos):]))
    out: list[torch.Tensor] = [torch.zeros(0)] * len(enc)

    def take(logp, mask, idx):
        for row, i in enumerate(idx):
            out[i] = logp[row][mask[row]].double().cpu()

    if enc:
        run_batches(model, tokenizer, enc, batch_size, take)
    return out


def greedy_generate(model, tokenizer, prompts: Sequence[str], max_new_tokens: int = 32, batch_size: int = 32,
                    max_length: int = 512, stop: Sequence[str] = ()) -> list[str]:
    """Greedy continuations of left-padded prompts, decoded without special tokens.

    Generation of a row ends at its end-of-sequence token (``generate`` fills the rest with the pad
    token, which is dropped by ``skip_special_tokens``); ``stop`` strings cut the text further.
    """
    device = model_device(model)
    pad = pad_id_of(tokenizer)
    room = max(1, max_length - max_new_tokens)
    enc = []
    for p in prompts:
        ids = prompt_ids(tokenizer, p)[-room:]
        enc.append(Encoded(ids, [IGNORE] * len(ids)))
    texts = [""] * len(enc)
    with _scoring(model):
        for idx, batch in padded_batches(tokenizer, enc, batch_size, side="left"):
            gen = model.generate(input_ids=batch["input_ids"].to(device),
                                 attention_mask=batch["attention_mask"].to(device),
                                 max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad,
                                 eos_token_id=tokenizer.eos_token_id)
            new = gen[:, batch["input_ids"].shape[1]:].cpu()
            for row, i in enumerate(idx):
                ids = new[row].tolist()
                if tokenizer.eos_token_id is not None and tokenizer.eos_token_id in ids:
                    ids = ids[: ids.index(tokenizer.eos_token_id)]
                texts[i] = tokenizer.decode(ids, skip_special_tokens=True)
    for i, t in enumerate(texts):
        for s in stop:
            if s and s in t:
                t = t[: t.index(s)]
        texts[i] = t.strip()
    return texts
