"""Forget quality (docs/metrics.md#forget-quality, TOFU).

Definition: the p-value of a two-sample Kolmogorov-Smirnov test between the truth-ratio distribution
of the unlearned model and that of the retain-only model on the forget split
(``scipy.stats.ks_2samp``). High (close to 1) means indistinguishable from never having learned it.

The retain-only model's truth ratios come from that model directly, or from a saved reference file:
the JSON that ``unlearn eval --benchmark tofu`` writes (``tofu.forget.truth_ratios``), a JSON with a
``truth_ratios`` list, a bare JSON list, TOFU's own ``eval_log_forget.json``
(``avg_paraphrased_loss`` and ``average_perturb_loss``, turned into ratios with TOFU's geometric mean),
or open-unlearning's TOFU eval JSON (``TOFU_EVAL.json``, its ``retain_logs_path``):
``forget_truth_ratio.value_by_index`` maps item index to ``{"score": R}``, R = P(perturbed)/P(paraphrased)
with the perturbed losses averaged (the geometric mean, as here); read in index order.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

from ..errors import UnlearnError


def forget_quality(unlearned_truth_ratios: Sequence[float], retain_truth_ratios: Sequence[float]) -> float:
    from scipy.stats import ks_2samp

    if len(unlearned_truth_ratios) == 0 or len(retain_truth_ratios) == 0:
        raise ValueError("forget quality needs truth ratios from both models")
    return float(ks_2samp(list(unlearned_truth_ratios), list(retain_truth_ratios)).pvalue)


def _find(obj, path: list[str]):
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    return obj


def _open_unlearning(path: Path, by_index: dict) -> list:
    try:
        keys = sorted(by_index, key=int)
    except ValueError as exc:
        raise UnlearnError(f"{path}: forget_truth_ratio.value_by_index keys must be item indices") from exc
    scores = [by_index[k].get("score") if isinstance(by_index[k], dict) else None for k in keys]
    if any(s is None for s in scores):
        raise UnlearnError(f"{path}: forget_truth_ratio.value_by_index entries need a 'score'")
    return scores


def read_reference_truth_ratios(path: str | Path) -> list[float]:
    path = Path(path)
    if not path.is_file():
        raise UnlearnError(f"reference file not found: {path}")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UnlearnError(f"{path}: not a JSON file ({exc})") from exc
    ratios = None
    if isinstance(obj, list):
        ratios = obj
    else:
        for where in (["tofu", "forget", "truth_ratios"], ["forget", "truth_ratios"], ["truth_ratios"]):
            ratios = _find(obj, where)
            if ratios is not None:
                break
        if ratios is None and isinstance(_find(obj, ["forget_truth_ratio", "value_by_index"]), dict):
            ratios = _open_unlearning(path, obj["forget_truth_ratio"]["value_by_index"])
        if ratios is None and isinstance(obj, dict) and "avg_paraphrased_loss" in obj:
            para = obj["avg_paraphrased_loss"]
            pert = obj.get("average_perturb_loss")
            if not isinstance(para, dict) or not isinstance(pert, dict):
                raise UnlearnError(f"{path}: avg_paraphrased_loss / average_perturb_loss must be mappings")
            ratios = []
            for key, loss in para.items():
                losses = pert.get(key)
                if not isinstance(losses, list) or not losses:
                    raise UnlearnError(f"{path}: average_perturb_loss has no list for item {key!r}")
                ratios.append(math.exp(loss - sum(losses) / len(losses)))  # R = P(pert) / P(para)
    if not isinstance(ratios, list) or not ratios:
        raise UnlearnError(f"{path}: no truth ratios found (expected tofu.forget.truth_ratios, "
                           "truth_ratios, a list, TOFU's eval_log_forget.json or open-unlearning's "
                           "forget_truth_ratio.value_by_index)")
    if not all(isinstance(r, (int, float)) and not isinstance(r, bool) and math.isfinite(r) for r in ratios):
        raise UnlearnError(f"{path}: truth ratios must be finite numbers")
    return [float(r) for r in ratios]
