"""Target-token log-probs: the head-at-targets path equals the full-logits path (metrics/scoring.py)."""

import torch
import torch.nn.functional as F

from robust_unlearning.data.collate import IGNORE
from robust_unlearning.metrics import scoring as target_logp
from robust_unlearning.metrics.scoring import target_logprobs


def _batch(vocab: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (4, 12), generator=g)
    att = torch.ones_like(ids)
    att[1, 9:] = 0  # a padded row
    labels = torch.full_like(ids, IGNORE)
    labels[:, 7:9] = ids[:, 7:9]  # two answer tokens per row
    labels[0, 11] = ids[0, 11]
    return ids, att, labels


def _reference(model, ids, att, labels):
    """The definition, written out: log-softmax of the full logits, gathered at the shifted targets."""
    logp = F.log_softmax(model(input_ids=ids, attention_mask=att).logits[:, :-1].float(), -1)
    target = labels[:, 1:]
    mask = target != IGNORE
    return logp.gather(-1, target.clamp(min=0)[..., None])[..., 0] * mask, mask


def test_fast_path_equals_full_logits(tiny_model):
    assert target_logp._split(tiny_model) is not None  # the tiny Llama takes the fast path
    ids, att, labels = _batch(tiny_model.config.vocab_size)
    with torch.no_grad():
        got, mask = target_logprobs(tiny_model, ids, att, labels)
        want, want_mask = _reference(tiny_model, ids, att, labels)
    assert torch.equal(mask, want_mask) and int(mask.sum()) == 9
    assert torch.allclose(got, want, atol=1e-5)
    assert (got[~mask] == 0).all() and (got[mask] < 0).all()


def test_other_families_take_the_full_logits_path(tiny_model, monkeypatch):
    monkeypatch.setattr(target_logp, "FAST_FAMILIES", frozenset())
    assert target_logp._split(tiny_model) is None
    ids, att, labels = _batch(tiny_model.config.vocab_size, seed=1)
    with torch.no_grad():
        got, _ = target_logprobs(tiny_model, ids, att, labels)
        want, _ = _reference(tiny_model, ids, att, labels)
    assert torch.allclose(got, want, atol=1e-5)


def test_a_head_with_a_bias_or_scale_is_not_assumed(tiny_model):
    class Scaled(torch.nn.Module):  # e.g. logit soft-capping: the head is not the last op
        def __init__(self, m):
            super().__init__()
            self.model, self.lm_head, self.config = m.model, m.lm_head, m.config

    wrapped = Scaled(tiny_model)
    wrapped.config = type("C", (), {"model_type": "gemma2"})()
    assert target_logp._split(wrapped) is None


def test_target_nll_is_the_models_loss_with_its_gradient(tiny_model):
    ids, att, labels = _batch(tiny_model.config.vocab_size, seed=2)
    batch = {"input_ids": ids, "attention_mask": att, "labels": labels}
    want = tiny_model(**batch).loss
    (g_want,) = torch.autograd.grad(want, tiny_model.lm_head.weight)
    got = target_logp.target_nll(tiny_model, batch)
    (g_got,) = torch.autograd.grad(got, tiny_model.lm_head.weight)
    assert torch.allclose(got, want, atol=1e-5)
    assert torch.allclose(g_got, g_want, atol=1e-6)
