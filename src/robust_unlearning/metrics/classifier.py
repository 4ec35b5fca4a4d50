"""The probability a text classifier gives one class, averaged over texts: open-unlearning's
``classification_prob`` metric, used on TOFU's forget generations with a gibberish detector
(``forget_Q_A_gibberish``: the model ``madhurjindal/autonlp-Gibberish-Detector-492513457``, class 0 =
"clean"). A higher value means more fluent answers: an unlearned model that answers forget questions
with noise scores low even when its probability and ROUGE metrics look forgotten.

    score_i = softmax(classifier(text_i))[class_id],      value = mean_i score_i

Texts are truncated to ``max_length`` tokens and batched with padding (the classifier's tokenizer
pads; a classifier without a padding token gets its end-of-text token as one). The classifier is any
Hugging Face sequence-classification model directory or hub id, loaded from safetensors without
remote code; none ships with this project (no hub access is assumed), so the metric runs when you
give one.
"""

from __future__ import annotations

import torch


def load_classifier(path: str):
    """``(model, tokenizer)`` of a sequence-classification model (safetensors, no remote code)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ..errors import UnlearnError

    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
        model = AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=False,
                                                                   use_safetensors=True)
    except (OSError, ValueError) as exc:
        raise UnlearnError(f"cannot load the text classifier {path!r}: {str(exc).splitlines()[0]}") from exc
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tok.pad_token_id
    return model.eval(), tok


@torch.no_grad()
def classification_prob(model, tokenizer, texts: list[str], class_id: int = 0, batch_size: int = 32,
                        max_length: int = 512) -> dict:
    """``{"value": mean score, "scores": per-text P(class_id)}``."""
    from ..errors import UnlearnError

    n_labels = model.config.num_labels
    if not 0 <= class_id < n_labels:
        raise UnlearnError(f"class {class_id} of a classifier with {n_labels} classes")
    device = next(model.parameters()).device
    scores: list[float] = []
    for i in range(0, len(texts), batch_size):
        enc = tokenizer(texts[i:i + batch_size], return_tensors="pt", padding=True, truncation=True,
                        max_length=max_length).to(device)
        probs = torch.softmax(model(**enc).logits.float(), -1)[:, class_id]
        scores += probs.tolist()
    return {"value": sum(scores) / len(scores) if scores else float("nan"), "scores": scores}
