"""Question/answer tokenisation, with or without the tokenizer's chat template: the one place it is done.

Every QA row in the package (unlearning and relearning batches, MCQ and likelihood scoring, greedy
generation, the jailbreak's prefix rows) is built from :func:`prompt_parts` and :func:`answer_ids`,
so the answer span, and hence its loss, is the same in unlearning, evaluation and every attack.

- Without a template: ``<bos> question`` then ``answer`` (tokenized separately, as before).
- With a template (instruct models): the question is the user message of a one-turn chat and the
  answer the assistant's reply: ``HEAD question TAIL`` then ``answer`` with its leading whitespace
  removed (the template's generation prompt already ends the line). ``HEAD`` / ``TAIL`` are the
  template rendered around the user message (``add_generation_prompt=True``), computed once per
  tokenizer; no ``<bos>`` is added (the template brings its own start tokens). A trailing
  end-of-sequence token, where a caller asks for one, is the tokenizer's ``eos`` as without template.

Text records (``{"text": ...}``) never use the template.

Mode (``data.chat_template`` in a config): ``auto`` (default) uses the template when the tokenizer
has one, ``on`` requires one, ``off`` never uses it. :func:`set_chat_template` records the mode on
the tokenizer object (and in its ``init_kwargs``, so ``save_pretrained`` keeps it in
``tokenizer_config.json`` and a reloaded tokenizer formats the same way).
"""

from __future__ import annotations

import weakref

from ..errors import UnlearnError

MODES = ("auto", "on", "off")
_KEY = "unlearn_chat_template"
_SENTINEL = "\x00UNLEARN-QUESTION\x00"


def normalize_mode(mode) -> str:
    """``auto`` / ``on`` / ``off``; YAML's unquoted ``on`` / ``off`` arrive as booleans."""
    if mode is True:
        return "on"
    if mode is False:
        return "off"
    if mode is None:
        return "auto"
    if isinstance(mode, str) and mode.strip().lower() in MODES:
        return mode.strip().lower()
    raise UnlearnError(f"chat_template must be one of {', '.join(MODES)}, not {mode!r}")


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def set_chat_template(tokenizer, mode="auto") -> bool:
    """Record the mode on ``tokenizer``; returns whether QA rows will use the template."""
    mode = normalize_mode(mode)
    if mode == "on" and not has_chat_template(tokenizer):
        raise UnlearnError("data.chat_template is 'on' but the tokenizer has no chat template "
                           "(use 'auto' or 'off')")
    setattr(tokenizer, "_" + _KEY, mode)
    kwargs = getattr(tokenizer, "init_kwargs", None)
    if isinstance(kwargs, dict):
        if mode == "auto":
            kwargs.pop(_KEY, None)
        else:
            kwargs[_KEY] = mode
    return uses_chat_template(tokenizer)


def chat_mode(tokenizer) -> str:
    mode = getattr(tokenizer, "_" + _KEY, None)
    if mode is None:
        kwargs = getattr(tokenizer, "init_kwargs", None)
        mode = kwargs.get(_KEY) if isinstance(kwargs, dict) else None
    return normalize_mode(mode)


def uses_chat_template(tokenizer) -> bool:
    mode = chat_mode(tokenizer)
    return has_chat_template(tokenizer) and mode != "off"


# text -> token ids, per tokenizer object (weakly held) and its vocabulary size (a token added to
# the tokenizer starts a new table). The same prompts, answers and biographies are tokenized again
# at every epoch, evaluation and attack: remembered, they cost a dictionary lookup instead of
# ~30 µs each (15 % of a world model's pretraining step, 11 % of a warm `unlearn demo --quick`).
_MEMO: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
MEMO_SIZE = 1 << 16  # texts per tokenizer; the table is emptied when full


def text_ids(tokenizer, text: str) -> list[int]:
    """``tokenizer(text, add_special_tokens=False)["input_ids"]``, remembered; a new list each call."""
    if not text:
        return []
    try:
        size, memo = _MEMO.get(tokenizer, (None, None))
    except TypeError:  # an unhashable tokenizer-like object: no memo
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])
    if size != len(tokenizer) or len(memo) >= MEMO_SIZE:
        size, memo = len(tokenizer), {}
        _MEMO[tokenizer] = (size, memo)
    ids = memo.get(text)
    if ids is None:
        ids = memo[text] = tuple(tokenizer(text, add_special_tokens=False)["input_ids"])
    return list(ids)


def bos_ids(tokenizer) -> list[int]:
    """``[bos]``, or nothing for a tokenizer without one."""
    return [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []


def chat_frame(tokenizer) -> tuple[str, str]:
    """The template's text before and after a one-turn user message, with the generation prompt."""
    template = tokenizer.chat_template
    cached = getattr(tokenizer, "_unlearn_chat_frame", None)
    if cached is not None and cached[0] == template:
        return cached[1]
    text = tokenizer.apply_chat_template([{"role": "user", "content": _SENTINEL}], tokenize=False,
                                         add_generation_prompt=True)
    if not isinstance(text, str) or text.count(_SENTINEL) != 1:
        raise UnlearnError("the tokenizer's chat template does not render a user message verbatim; "
                           "set data.chat_template: off")
    head, tail = text.split(_SENTINEL)
    tokenizer._unlearn_chat_frame = (template, (head, tail))
    return head, tail


def prompt_parts(tokenizer, question: str, add_bos: bool = True) -> tuple[list[int], list[int]]:
    """``(lead, body)``: the tokens before the question (``<bos>`` or the template's head) and the
    question's own (with the template's tail). A jailbreak prefix goes between the two."""
    if uses_chat_template(tokenizer):
        head, tail = chat_frame(tokenizer)
        return text_ids(tokenizer, head), text_ids(tokenizer, question + tail)
    return (bos_ids(tokenizer) if add_bos else []), text_ids(tokenizer, question)


def prompt_ids(tokenizer, question: str, add_bos: bool = True) -> list[int]:
    lead, body = prompt_parts(tokenizer, question, add_bos)
    return lead + body


def answer_ids(tokenizer, answer: str, add_eos: bool = False) -> list[int]:
    """The answer's tokens (the scored / trained span), plus ``eos`` when asked."""
    if uses_chat_template(tokenizer):
        answer = answer.lstrip()
    ids = text_ids(tokenizer, answer)
    if add_eos and tokenizer.eos_token_id is not None:
        ids = ids + [tokenizer.eos_token_id]
    return ids
