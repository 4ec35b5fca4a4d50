"""MUSE's memorisation metrics (docs/metrics.md#muse; docs/conventions.md), with MUSE's defaults
(``swj0419/muse_bench``: ``metrics/verbmem.py``, ``metrics/knowmem.py``, ``metrics/logger.py``).

- **VerbMem**: ROUGE-L F1 (no stemmer) between the model's greedy continuation (up to
  ``max_new_tokens`` = 128 new tokens) of a forget-text prefix and the true continuation *truncated
  to its first ``max_new_tokens`` tokens* (:func:`truncate_reference`: MUSE encodes the reference
  with the tokenizer's special tokens, keeps the first 128 ids (so a BOS counts: 127 text tokens on
  Llama) and decodes them back), averaged over items. ``truncate=False`` scores the whole reference.
- **KnowMem**: ROUGE-L F1 (no stemmer) between the model's greedy answer (up to 32 new tokens) and
  the reference answer, for questions asked after a few in-context QA examples; on forget and on
  retain QA. Prompt, exactly MUSE's: ``"Question: {q}\\nAnswer: {a}\\n\\n"`` per in-context example,
  then ``"Question: {q}\\nAnswer: "`` (trailing space); the answer is cut before the first
  ``"\\n\\n"``, ``"\\nQuestion"`` or ``"Question:"`` (:data:`KNOWMEM_STOP`).

MUSE decodes with ``clean_up_tokenization_spaces=True``; here the tokenizer's own setting is used
(recent ``transformers`` ignore that clean-up for BPE tokenizers, and ROUGE's tokenizer drops the
punctuation it moves).
``use_stemmer=True`` stems before ROUGE (not MUSE's convention; TOFU's ROUGE stems).
"""

from __future__ import annotations

from statistics import fmean
from typing import Sequence

from .rouge import rouge_l_f1
from .scoring import greedy_generate

QA_TEMPLATE = "Question: {question}\nAnswer: "
KNOWMEM_STOP = ("\n\n", "\nQuestion", "Question:")


def icl_prompt(question: str, examples: Sequence[dict] = ()) -> str:
    shots = "".join(QA_TEMPLATE.format(question=e["question"]) + e["answer"] + "\n\n" for e in examples)
    return shots + QA_TEMPLATE.format(question=question)


def truncate_reference(tokenizer, text: str, max_tokens: int = 128) -> str:
    """MUSE's VerbMem reference: the first ``max_tokens`` ids of ``tokenizer(text)`` (special tokens
    included), decoded without special tokens."""
    ids = tokenizer(text, add_special_tokens=True)["input_ids"][:max_tokens]
    return tokenizer.decode(ids, skip_special_tokens=True)


def verbmem(model, tokenizer, prompts: Sequence[str], continuations: Sequence[str], max_new_tokens: int = 128,
            batch_size: int = 16, max_length: int = 2048, truncate: bool = True,
            use_stemmer: bool = False) -> dict:
    gens = greedy_generate(model, tokenizer, prompts, max_new_tokens, batch_size, max_length)
    refs = ([truncate_reference(tokenizer, c, max_new_tokens) for c in continuations] if truncate
            else list(continuations))
    scores = rouge_l_f1(gens, refs, use_stemmer)
    return {"rougeL_f1": fmean(scores), "scores": scores, "generations": gens, "references": refs}


def knowmem(model, tokenizer, questions: Sequence[str], answers: Sequence[str], examples: Sequence[dict] = (),
            max_new_tokens: int = 32, batch_size: int = 32, max_length: int = 1024,
            use_stemmer: bool = False) -> dict:
    prompts = [icl_prompt(q, examples) for q in questions]
    gens = greedy_generate(model, tokenizer, prompts, max_new_tokens, batch_size, max_length,
                           stop=KNOWMEM_STOP)
    scores = rouge_l_f1(gens, answers, use_stemmer)
    return {"rougeL_f1": fmean(scores), "scores": scores, "generations": gens}
