"""Alternate answers for AltPO (Mekala et al. 2024): for each forget question, answers sampled from
the model to be unlearned itself, so that the preferred answer is in-distribution and plausible but
not the true one. The paper (and open-unlearning's ``community/methods/AltPO/generate.py``) samples
several answers per question at temperature 1; the objective draws one per question.

    records = generate_alternates(model, tokenizer, forget, n=5, seed=0)
    # each record gains "alternate": [5 strings], none equal to its answer

Samples equal to the true answer (after whitespace and case folding) or empty are drawn again, up to
``tries`` rounds; a question left without any alternate is one clear error.
"""

from __future__ import annotations

import torch

from ..errors import UnlearnError
from .chat import prompt_ids
from .collate import IGNORE, Encoded, pad_batch, pad_id_of


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def generate_alternates(model, tokenizer, records: list[dict], n: int = 5, max_new_tokens: int = 64,
                        temperature: float = 1.0, seed: int = 0, tries: int = 3,
                        batch_size: int = 16) -> list[dict]:
    """Copies of the question/answer ``records`` with an ``alternate`` list of ``n`` sampled answers."""
    if n < 1 or tries < 1 or max_new_tokens < 1 or not temperature > 0:
        raise UnlearnError("alternates need n, tries and max_new_tokens >= 1 and a positive temperature")
    bad = [i for i, r in enumerate(records) if not isinstance(r.get("question"), str) or "answer" not in r]
    if bad:
        raise UnlearnError(f"alternates need question/answer records; record {bad[0]} is not one")
    device = next(model.parameters()).device
    pad = pad_id_of(tokenizer)
    found: list[list[str]] = [[] for _ in records]
    was_training = model.training
    model.eval()
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.no_grad():
            torch.manual_seed(seed)
            for _ in range(tries):
                todo = [i for i, f in enumerate(found) if len(f) < n]
                for start in range(0, len(todo), batch_size):
                    idx = todo[start:start + batch_size]
                    enc = [Encoded(ids, [IGNORE] * len(ids))
                           for ids in (prompt_ids(tokenizer, records[i]["question"]) for i in idx)]
                    batch = pad_batch(enc, pad, side="left")
                    out = model.generate(input_ids=batch["input_ids"].to(device),
                                         attention_mask=batch["attention_mask"].to(device),
                                         do_sample=True, temperature=temperature, top_k=0, top_p=1.0,
                                         num_return_sequences=n, max_new_tokens=max_new_tokens,
                                         pad_token_id=pad, eos_token_id=tokenizer.eos_token_id)
                    new = out[:, batch["input_ids"].shape[1]:].cpu()
                    for row in range(new.shape[0]):
                        i = idx[row // n]
                        ids = new[row].tolist()
                        if tokenizer.eos_token_id is not None and tokenizer.eos_token_id in ids:
                            ids = ids[: ids.index(tokenizer.eos_token_id)]
                        text = tokenizer.decode(ids, skip_special_tokens=True).strip()
                        answer = str(records[i]["answer"])
                        if text and _norm(text) != _norm(answer) and len(found[i]) < n:
                            found[i].append((" " if answer.startswith(" ") else "") + text)
    finally:
        model.train(was_training)
    empty = [records[i]["question"] for i, f in enumerate(found) if not f]
    if empty:
        raise UnlearnError(f"no alternate answer differing from the true one was sampled for "
                           f"{len(empty)} question(s), e.g. {empty[0]!r}; raise tries or temperature")
    return [{**r, "alternate": f} for r, f in zip(records, found, strict=True)]
