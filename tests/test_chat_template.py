"""Chat templates (data/chat.py): with and without a template, every QA row of the package (training
batches, likelihood scoring, MCQ, jailbreak rows) has the same answer span and mask."""

from __future__ import annotations

import copy

import pytest

from robust_unlearning.attacks.jailbreak import _Template
from robust_unlearning.config import build_config, load_config
from robust_unlearning.data.chat import chat_frame, set_chat_template, uses_chat_template
from robust_unlearning.data.collate import IGNORE, encode_record
from robust_unlearning.errors import UnlearnError
from robust_unlearning.metrics.scoring import encode_pair

TEMPLATE = ("{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
            "{% if add_generation_prompt %}<s>assistant\n{% endif %}")
Q, A = "Question: Where was Alder Voss born?\nAnswer:", " Veloria"


@pytest.fixture
def tok(tiny_tokenizer):
    return copy.deepcopy(tiny_tokenizer)


@pytest.fixture
def chat_tok(tiny_tokenizer):
    t = copy.deepcopy(tiny_tokenizer)
    t.chat_template = TEMPLATE
    return t


def _ids(t, text):
    return t(text, add_special_tokens=False)["input_ids"]


def _answer_span(enc):
    return [i for i, lab in zip(enc.input_ids, enc.labels, strict=True) if lab != IGNORE]


def test_without_template_the_rows_are_bos_question_answer(tok):
    assert not uses_chat_template(tok)
    enc = encode_record(tok, {"question": Q, "answer": A})
    prompt = [tok.bos_token_id] + _ids(tok, Q)
    answer = _ids(tok, A) + [tok.eos_token_id]
    assert enc.input_ids == prompt + answer
    assert enc.labels == [IGNORE] * len(prompt) + answer
    assert encode_pair(tok, Q, A, add_eos=True) == enc


def test_with_template_the_question_is_the_user_turn_and_only_the_reply_is_scored(chat_tok):
    assert uses_chat_template(chat_tok)
    head, tail = chat_frame(chat_tok)
    assert head == "<s>user\n" and tail == "</s>\n<s>assistant\n"
    enc = encode_record(chat_tok, {"question": Q, "answer": A})
    prompt = _ids(chat_tok, head) + _ids(chat_tok, Q + tail)
    answer = _ids(chat_tok, A.lstrip()) + [chat_tok.eos_token_id]
    assert enc.input_ids == prompt + answer
    assert enc.labels == [IGNORE] * len(prompt) + answer
    assert chat_tok.decode(_answer_span(enc), skip_special_tokens=True) == "Veloria"
    # scoring (with and without eos) and the jailbreak's rows mark the same answer tokens
    assert encode_pair(chat_tok, Q, A, add_eos=True) == enc
    scored = encode_pair(chat_tok, Q, A)
    assert _answer_span(scored) == answer[:-1] and scored.input_ids == prompt + answer[:-1]
    rows = _Template(chat_tok, [(Q, A)], prefix_len=3)
    assert rows.start == len(_ids(chat_tok, head))
    labels = rows.batch["labels"][0].tolist()
    assert [x for x in labels if x != IGNORE] == answer[:-1]
    assert labels.index(answer[0]) == len(prompt) + 3


def test_modes_and_their_persistence(chat_tok, tok, tmp_path):
    assert set_chat_template(chat_tok, "off") is False
    assert encode_record(chat_tok, {"question": Q, "answer": A}) == encode_record(tok, {"question": Q,
                                                                                       "answer": A})
    chat_tok.save_pretrained(tmp_path)
    from transformers import AutoTokenizer

    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded.chat_template and not uses_chat_template(reloaded)  # "off" survives save/reload
    assert set_chat_template(chat_tok, "auto") is True
    with pytest.raises(UnlearnError, match="no chat template"):
        set_chat_template(tok, "on")
    with pytest.raises(UnlearnError, match="one of auto, on, off"):
        set_chat_template(tok, "maybe")


def test_config_accepts_yaml_on_off(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  chat_template: off\n")
    assert load_config(path).data.chat_template == "off"
    assert build_config({"data": {"chat_template": True}}).data.chat_template == "on"
    assert build_config({}).data.chat_template == "auto"
    with pytest.raises(UnlearnError):
        build_config({"data": {"chat_template": "sometimes"}})


def test_unlearning_with_off_records_it_on_the_tokenizer(chat_tok, tiny_model):
    from robust_unlearning.loop import unlearn

    recs = [{"question": Q, "answer": A}] * 2
    cfg = build_config({"method": "ga", "data": {"chat_template": "off"},
                        "train": {"steps": 1, "batch_size": 2}})
    unlearn(tiny_model, chat_tok, recs, None, cfg)
    assert not uses_chat_template(chat_tok)  # evaluation and attacks afterwards format as training did


def test_text_ids_are_remembered_per_tokenizer_and_vocabulary(tok):
    """Tokenization is remembered (data/chat.py: text_ids); the ids stay the tokenizer's own, each
    call gets its own list, and a token added to the tokenizer is seen at once."""
    from robust_unlearning.data import chat

    first = chat.text_ids(tok, A)
    assert first == _ids(tok, A)
    first.append(-1)  # the caller's list, not the remembered one
    assert chat.text_ids(tok, A) == _ids(tok, A)
    assert A in chat._MEMO[tok][1]
    before = chat.text_ids(tok, A)
    tok.add_tokens(["Veloria"])
    after = chat.text_ids(tok, A)
    assert after == _ids(tok, A) and after != before
    assert chat.text_ids(tok, "") == []


def test_pad_batch_on_either_side():
    from robust_unlearning.data.collate import Encoded, pad_batch

    enc = [Encoded([5, 6, 7], [IGNORE, 6, 7]), Encoded([8], [8])]
    right = pad_batch(enc, pad_id=0)
    assert right["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert right["labels"].tolist() == [[IGNORE, 6, 7], [8, IGNORE, IGNORE]]
    assert right["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    left = pad_batch(enc, pad_id=0, side="left")
    assert left["input_ids"].tolist() == [[5, 6, 7], [0, 0, 8]]
    assert left["labels"].tolist() == [[IGNORE, 6, 7], [IGNORE, IGNORE, 8]]
    assert left["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]
    with pytest.raises(ValueError, match="pad side"):
        pad_batch(enc, pad_id=0, side="middle")
