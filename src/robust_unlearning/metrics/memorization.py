"""MUSE's memorisation metrics (REFERENCES.md §4).

- **VerbMem**: ROUGE-L F1 between the model's greedy continuation (up to 128 new tokens) of a
  forget-text prefix and the true continuation, averaged.
- **KnowMem**: ROUGE-L F1 between the model's greedy answer (up to 32 new tokens) and the reference
  answer, for questions asked after a few in-context QA examples; on forget and on retain QA.

Prompt format for KnowMem (our choice; MUSE formats its examples the same way):
``"Question: {q}\\nAnswer: {a}\\n\\n"`` per in-context example, then ``"Question: {q}\\nAnswer:"``;
the generated answer is cut at the first blank line or ``"Question:"``.
"""

from __future__ import annotations

from statistics import fmean
from typing import Sequence

from .rouge import rouge_l_f1
from .scoring import greedy_generate

QA_TEMPLATE = "Question: {question}\nAnswer:"


def icl_prompt(question: str, examples: Sequence[dict] = ()) -> str:
    shots = "".join(QA_TEMPLATE.format(question=e["question"]) + " " + e["answer"].strip() + "\n\n"
                    for e in examples)
    return shots + QA_TEMPLATE.format(question=question)


def verbmem(model, tokenizer, prompts: Sequence[str], continuations: Sequence[str], max_new_tokens: int = 128,
            batch_size: int = 16, max_length: int = 2048) -> dict:
    gens = greedy_generate(model, tokenizer, prompts, max_new_tokens, batch_size, max_length)
    scores = rouge_l_f1(gens, continuations)
    return {"rougeL_f1": fmean(scores), "scores": scores, "generations": gens}


def knowmem(model, tokenizer, questions: Sequence[str], answers: Sequence[str], examples: Sequence[dict] = (),
            max_new_tokens: int = 32, batch_size: int = 32, max_length: int = 1024) -> dict:
    prompts = [icl_prompt(q, examples) for q in questions]
    gens = greedy_generate(model, tokenizer, prompts, max_new_tokens, batch_size, max_length,
                           stop=("\n\n", "Question:"))
    scores = rouge_l_f1(gens, answers)
    return {"rougeL_f1": fmean(scores), "scores": scores, "generations": gens}
