"""The evaluation protocol: named worlds, knowledge measures against gold, budget accounting,
paper presets, and the sweep's plan checks and selection rule (docs/protocol.md)."""

from __future__ import annotations

import json
import statistics

import pytest
import yaml

from robust_unlearning.benchmarks.world import is_world, world_spec
from robust_unlearning.config import build_config
from robust_unlearning.errors import UnlearnError
from robust_unlearning.loop import unlearn
from robust_unlearning.metrics.knowledge import by_budget, gap_rows, ks_distance, recovery
from robust_unlearning.world.benchmark import evaluate, unlearning_data
from robust_unlearning.world.generator import EVAL_SEEDS, TUNING_SEED, generate_world
from robust_unlearning.world.mcq import fact_mcq_scores


# -- worlds ----------------------------------------------------------------------------------------
def test_world_names_give_tuning_and_evaluation_worlds():
    assert world_spec("world").world.seed == EVAL_SEEDS[0]
    assert world_spec("world-tune").world.seed == TUNING_SEED
    assert world_spec("world:seed=2").world.seed == 2
    assert world_spec("world-quick-tune").world.n_persons == world_spec("world-quick").world.n_persons
    assert world_spec("world-quick-tune").world.seed == TUNING_SEED
    tune, ev = generate_world(world_spec("world-tune").world), generate_world(world_spec("world").world)
    assert set(tune.persons) != set(ev.persons)
    assert {(f.person, f.value) for f in tune.forget_eval}.isdisjoint(
        {(f.person, f.value) for f in ev.forget_eval}
    )
    assert is_world("world:seed=7") and is_world("world-quick-tune") and not is_world("tofu")
    for bad in ("worldx", "world:seed=x", "world:persons=3"):
        with pytest.raises(UnlearnError):
            world_spec(bad)


def test_world_options_set_depth_and_pretraining_length():
    base = world_spec("world-quick-tune")
    deep = world_spec("world-quick-tune:layers=8,stop=end")
    assert deep.world == base.world and deep.model.num_hidden_layers == 8
    assert deep.model.hidden_size == base.model.hidden_size
    assert deep.pretrain.target_acc > 1 >= base.pretrain.target_acc  # no accuracy reaches it: every epoch
    assert world_spec("world-quick-tune:stop=bar") == base
    assert world_spec("world:layers=2,seed=2").world.seed == 2
    keys = {world_spec(n).key() for n in ("world-quick-tune", "world-quick-tune:layers=8",
                                          "world-quick-tune:stop=end", "world-quick-tune:layers=8,stop=end")}
    assert len(keys) == 4  # each variant trains and caches its own models
    for bad in ("world:layers=0", "world:layers=x", "world:stop=never", "world:seed=1,",
                "world-smol:layers=8",
                "world-smol:stop=end"):
        with pytest.raises(UnlearnError, match="bad world option"):
            world_spec(bad)


# -- knowledge measures ----------------------------------------------------------------------------
def test_gap_is_symmetric_and_paired_by_draw():
    rows = [
        {"seed": 0, "samples": 4, "steps": 2, "forget_acc": 0.10, "forget_probs": [0.1, 0.1, 0.2]},
        {"seed": 1, "samples": 4, "steps": 2, "forget_acc": 0.40, "forget_probs": [0.9, 0.8, 0.7]},
    ]
    gold = [
        {"seed": 0, "samples": 4, "steps": 2, "forget_acc": 0.25, "forget_probs": [0.2, 0.3, 0.25]},
        {"seed": 1, "samples": 4, "steps": 2, "forget_acc": 0.30, "forget_probs": [0.2, 0.3, 0.25]},
    ]
    g = gap_rows(rows, gold)
    assert g[0]["acc_gap"] == pytest.approx(0.15) and g[0]["signed_gap"] == pytest.approx(-0.15)
    assert g[1]["acc_gap"] == pytest.approx(0.10) and g[1]["signed_gap"] == pytest.approx(0.10)
    # KS: sup |F_a − F_b|; model 0 has 2 of 3 items below gold's smallest value 0.2 -> D = 2/3
    assert g[0]["ks"] == pytest.approx(2 / 3)
    assert g[1]["ks"] == pytest.approx(1.0)  # every model item above every gold item
    b = by_budget(g)[0]
    assert b["acc_gap"] == pytest.approx(0.125) and b["acc_gap_draw_std"] == pytest.approx(0.025)
    with pytest.raises(ValueError, match="no gold row"):
        gap_rows(rows, gold[:1])


def test_ks_distance_and_recovery_by_hand():
    assert ks_distance([0.0, 1.0], [0.0, 1.0]) == 0.0
    assert ks_distance([0.1, 0.2, 0.3, 0.4], [0.35, 0.45, 0.55, 0.65]) == pytest.approx(0.75)
    assert recovery(pre=0.25, post=0.55, original=1.0) == pytest.approx(0.4)
    assert recovery(pre=1.0, post=1.0, original=1.0) is None


def test_mcq_scores_give_the_correct_option_probability(trained_tiny, tiny_tokenizer, tiny_world):
    from robust_unlearning.world.mcq import fact_mcq_accuracy

    facts = tiny_world.forget_eval[:12]
    acc, probs = fact_mcq_scores(trained_tiny, tiny_tokenizer, facts)
    assert acc == pytest.approx(fact_mcq_accuracy(trained_tiny, tiny_tokenizer, facts))
    assert len(probs) == len(facts) and all(0.0 <= p <= 1.0 for p in probs)
    # an item is answered correctly exactly when its option has the largest probability, > 1/4 then
    assert sum(p > 0.5 for p in probs) <= round(acc * len(facts))
    ev = evaluate(trained_tiny, tiny_tokenizer, tiny_world, details=True)
    assert set(ev) >= {"forget_acc", "retain_acc", "utility_nll", "retain_train_acc", "forget_probs"}
    assert ev["utility_nll"] > 0


# -- budget accounting and presets -----------------------------------------------------------------
def _run(model, tok, world, method, strategy=None, steps=3):
    forget, retain = unlearning_data(world)
    cfg = build_config(
        {"method": method, "strategy": strategy or {}, "train": {"steps": steps, "batch_size": 4, "lr": 1e-4}}
    )
    return unlearn(model, tok, forget, retain, cfg)


def test_budget_accounting_counts_every_sample_and_pass(tiny_model, tiny_tokenizer, tiny_world):
    import copy

    plain = _run(copy.deepcopy(tiny_model), tiny_tokenizer, tiny_world, "npo").metrics
    assert plain["forget_samples"] == 3 * 4 and plain["retain_samples"] == 3 * 4
    assert plain["passes"] == 3 * 2
    st = _run(
        copy.deepcopy(tiny_model),
        tiny_tokenizer,
        tiny_world,
        "npo+stableun",
        {"rules": ["gpn", "hws"], "T": 2, "M": 3},
    ).metrics
    # StableUN reads T fresh forget batches and M fresh retain batches per step
    assert st["forget_samples"] == 3 * 4 * (1 + 2) and st["retain_samples"] == 3 * 4 * (1 + 3)
    assert st["passes"] == 3 * (1 + 1 + 2 + 3)


def test_paper_presets(tiny_model, tiny_tokenizer, tiny_world):
    from robust_unlearning.strategies.base import STRATEGIES

    s = STRATEGIES.build("stableun", {"preset": "paper"})
    assert (s.M, s.rho, s.mu, s.T, s.w) == (5, 1e-7, 1e-7, 2, 5)
    assert STRATEGIES.build("stableun", {"preset": "paper", "M": 2}).M == 2  # explicit options win
    assert STRATEGIES.build("sam", {"preset": "paper"}).rho == 0.01
    with pytest.raises(UnlearnError, match="unknown preset"):
        STRATEGIES.build("sam", {"preset": "nope"})
    res = _run(tiny_model, tiny_tokenizer, tiny_world, "npo+wa", {"preset": "paper"}, steps=10)
    averaged = [e.get("averaged") for e in res.log]
    assert averaged[:8] == [None] * 8 and averaged[8:] == [1, 2]  # the last fifth: steps 9 and 10


# -- the sweep ----------------------------------------------------------------------------------------
PLAN = {
    "tuning_world": "world-quick-tune",
    "eval_worlds": ["world-quick"],
    "seeds": [0],
    "tune_seeds": [0],
    "attack": {"budgets": [[2, 1]], "lr": 1e-3, "batch_size": 2, "draws": 2},
    "methods": {
        "npo": {"candidates": [{}, {"train": {"lr": 5e-4}}]},
        "npo+sam": {"candidates": [{"strategy": {"rho": 0.01}}, {"strategy": {"rho": 0.1}}]},
    },
}


def test_plan_checks(tmp_path):
    from robust_unlearning.sweep import load_plan

    def write(plan):
        p = tmp_path / "plan.yaml"
        p.write_text(yaml.safe_dump(plan))
        return p

    assert load_plan(write(PLAN))["utility_drop"] == 0.02
    bad = json.loads(json.dumps(PLAN))
    bad["methods"]["npo"]["candidates"].append({})
    with pytest.raises(UnlearnError, match="same number of candidates"):
        load_plan(write(bad))
    bad = json.loads(json.dumps(PLAN))
    bad["eval_worlds"] = ["world-quick-tune"]
    with pytest.raises(UnlearnError, match="tuning world"):
        load_plan(write(bad))
    bad = json.loads(json.dumps(PLAN))
    bad["methods"]["npo+nope"] = {"candidates": [{}, {}]}
    with pytest.raises(UnlearnError, match="npo\\+nope"):
        load_plan(write(bad))
    assert load_plan(write(PLAN))["frontier_on_eval"] is True
    with pytest.raises(UnlearnError, match="frontier_on_eval"):
        load_plan(write({**PLAN, "frontier_on_eval": "no"}))


def _row(phase, label, cand, retain, acc, gold_acc=0.25, seed=0, world="w"):
    runs = [{"seed": d, "samples": 2, "steps": 1, "forget_acc": acc} for d in (0, 1)]
    if label == "gold":
        runs = [{"seed": d, "samples": 2, "steps": 1, "forget_acc": gold_acc} for d in (0, 1)]
    return {
        "phase": phase,
        "world": world,
        "label": label,
        "candidate": cand,
        "seed": seed,
        "forget_acc": acc,
        "retain_acc": retain,
        "original": {"forget_acc": 1.0, "retain_acc": 1.0},
        "relearn_runs": runs,
    }


def test_selection_rule_uses_the_tuning_world_only():
    from robust_unlearning.sweep import select, summarize

    rows = [
        _row("tune", "gold", 0, 0.95, 0.25),
        _row("tune", "npo", 0, 0.90, 0.40),
        _row("tune", "npo", 1, 0.95, 0.60),
        # sam #1 has the smallest gap but loses utility beyond the 0.02 allowance: not eligible
        _row("tune", "npo+sam", 0, 0.89, 0.30),
        _row("tune", "npo+sam", 1, 0.80, 0.25),
        # evaluation rows that would favour other candidates must not change the choice
        _row("eval", "gold", 0, 0.95, 0.25),
        _row("eval", "npo", 0, 0.90, 0.9),
        _row("eval", "npo", 1, 0.9, 0.25),
        _row("eval", "npo+sam", 0, 0.90, 0.5),
        _row("eval", "npo+sam", 1, 0.90, 0.25),
    ]
    chosen = select(PLAN, rows)
    assert chosen["npo"]["candidate"] == 0  # gap 0.15 < 0.35
    assert chosen["npo+sam"]["candidate"] == 0 and chosen["npo+sam"]["eligible"] == 1
    s = summarize(PLAN, rows, chosen)
    table = {r["label"]: r for r in s["table"]}
    assert table["npo"]["gap"] == pytest.approx(0.65) and table["npo+sam"]["gap"] == pytest.approx(0.25)
    assert table["npo"]["recovery"] == pytest.approx((0.9 - 0.9) / (1.0 - 0.9))
    assert len(s["frontier"]) == 4 and sum(p["chosen"] for p in s["frontier"]) == 2


def test_paired_comparison_against_the_reference():
    import math

    from scipy import stats

    from robust_unlearning.sweep import paired, render_markdown, select, summarize

    ref = {("w", 0): 0.30, ("w", 1): 0.20, ("v", 0): 0.40, ("v", 1): 0.10}
    mine = {("w", 0): 0.10, ("w", 1): 0.15, ("v", 0): 0.20, ("v", 1): 0.12, ("v", 2): 0.0}  # (v, 2): no pair
    q = paired(mine, ref)
    diffs = [0.20, 0.05, 0.20, -0.02]  # reference − mine, pair by pair
    mean = sum(diffs) / 4
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 3)
    assert q["models"] == 4 and q["smaller_in"] == 3
    assert q["gap_diff"] == pytest.approx(mean) and q["gap_diff_std"] == pytest.approx(sd)
    t = mean / (sd / 2)  # paired t statistic, 3 degrees of freedom
    assert q["p_t"] == pytest.approx(2 * stats.t.sf(abs(t), 3))
    assert 0 < q["p_wilcoxon"] <= 1
    assert paired({("w", 0): 0.1}, ref) is None  # one pair: nothing to compare
    assert paired({k: v for k, v in ref.items()}, ref)["p_t"] is None  # every difference 0: no test

    rows = [_row(ph, lab, 0, 0.95, acc, seed=sd_, world=w)
            for ph in ("tune", "eval") for w in ("w", "v") for sd_ in (0, 1)
            for lab, acc in (("gold", 0.25), ("npo", 0.45 + 0.05 * sd_), ("npo+sam", 0.30))]
    summary = summarize(PLAN, rows, select(PLAN, rows))
    table = {r["label"]: r for r in summary["table"]}
    assert "paired" not in table["npo"]  # its own reference
    sam = table["npo+sam"]["paired"]
    assert sam["models"] == 4 and sam["smaller_in"] == 4
    # npo's gaps |0.45 − 0.25|, |0.50 − 0.25| against sam's |0.30 − 0.25|, on both worlds
    assert sam["gap_diff"] == pytest.approx(statistics.fmean([0.15, 0.20, 0.15, 0.20]))
    assert "| npo+sam | npo | 0.175" in render_markdown(summary)


@pytest.mark.slow
def test_sweep_end_to_end_on_tiny_worlds(tmp_path, monkeypatch):
    """`unlearn sweep`: tune, select, evaluate, summarise; a rerun resumes without redoing a job, and
    `unlearn report` reads the directory."""
    from typer.testing import CliRunner

    from robust_unlearning.cli import app

    monkeypatch.setenv("ROBUST_UNLEARNING_CACHE", str(tmp_path / "cache"))
    plan = {"tuning_world": "world-tiny-tune", "eval_worlds": ["world-tiny"], "seeds": [0], "tune_seeds": [0],
            "attack": {"budgets": [[2, 1], [4, 2]], "lr": 1e-3, "batch_size": 2, "draws": 2},
            "methods": {"npo": {"candidates": [{"train": {"steps": 2}}, {"train": {"steps": 2, "lr": 1e-4}}]},
                        "npo+sam": {"candidates": [{"train": {"steps": 2}, "strategy": {"rho": 0.01}},
                                                   {"train": {"steps": 2}, "strategy": {"rho": 0.1}}]}}}
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["sweep", str(tmp_path / "plan.yaml"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in (out / "rows.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * (1 + 4)  # gold + 4 candidates, on the tuning world and on the evaluation world
    assert {r["phase"] for r in rows} == {"tune", "eval"}
    assert all(len(r["relearn_runs"]) == 2 * 2 for r in rows)  # 2 draws x 2 budgets
    summary = json.loads((out / "summary.json").read_text())
    assert {r["label"] for r in summary["table"]} == {"npo", "npo+sam"}
    for r in summary["table"]:
        assert r["forget_samples"] == 2 * 16 and r["passes"] == (4 if r["label"] == "npo" else 6)
        assert 0.0 <= r["gap"] <= 1.0 and r["ks"] is not None
    assert (out / "frontier.png").stat().st_size > 1000
    again = CliRunner().invoke(app, ["sweep", str(tmp_path / "plan.yaml"), "--out", str(out)])
    assert again.exit_code == 0 and "0 jobs to run" in again.output
    assert len((out / "rows.jsonl").read_text().splitlines()) == len(rows)
    rep = CliRunner().invoke(app, ["report", str(out), "--out", str(tmp_path / "report")])
    assert rep.exit_code == 0, rep.output
    assert "Chosen settings on the evaluation worlds" in (tmp_path / "report" / "report.md").read_text()
    # frontier_on_eval: false -> the evaluation world runs gold and the chosen candidates only
    (tmp_path / "chosen.yaml").write_text(yaml.safe_dump({**plan, "frontier_on_eval": False}))
    res = CliRunner().invoke(app, ["sweep", str(tmp_path / "chosen.yaml"), "--out", str(tmp_path / "chosen")])
    assert res.exit_code == 0, res.output
    chosen_rows = [json.loads(x) for x in (tmp_path / "chosen" / "rows.jsonl").read_text().splitlines()]
    ev = [r for r in chosen_rows if r["phase"] == "eval"]
    picked = {r["label"]: r["candidate"] for r in summary["table"]}
    assert sorted((r["label"], r["candidate"]) for r in ev) == sorted([("gold", 0), *picked.items()])


def _untimed(obj):
    """``obj`` without its timings (keys naming seconds), at any depth."""
    if isinstance(obj, dict):
        return {k: _untimed(v) for k, v in obj.items() if "seconds" not in k}
    if isinstance(obj, list):
        return [_untimed(v) for v in obj]
    return obj


@pytest.mark.slow
def test_sweep_in_worker_processes_gives_the_serial_rows(tmp_path, monkeypatch):
    """`unlearn sweep --workers 2` (parallel.worker_pool, one thread each) writes the rows a serial
    sweep on one thread writes, timings aside."""
    from typer.testing import CliRunner

    from robust_unlearning.cli import app

    monkeypatch.setenv("ROBUST_UNLEARNING_CACHE", str(tmp_path / "cache"))
    plan = {"tuning_world": "world-tiny-tune", "eval_worlds": ["world-tiny"], "seeds": [0], "tune_seeds": [0],
            "attack": {"budgets": [[2, 1]], "lr": 1e-3, "batch_size": 2, "draws": 1},
            "methods": {"npo": {"candidates": [{"train": {"steps": 2}},
                                               {"train": {"steps": 2, "lr": 1e-4}}]}}}
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
    rows = {}
    for name, extra in (("serial", ["--threads", "1"]), ("workers", ["--workers", "2"])):
        out = tmp_path / name
        res = CliRunner().invoke(app, ["sweep", str(tmp_path / "plan.yaml"), "--out", str(out),
                                       "--phase", "tune",
                                       *extra])
        assert res.exit_code == 0, res.output
        got = [json.loads(x) for x in (out / "rows.jsonl").read_text().splitlines()]
        rows[name] = sorted((_untimed(r) for r in got), key=lambda r: r["key"])
    assert len(rows["serial"]) == 3  # gold + 2 candidates
    assert rows["serial"] == rows["workers"]


def test_sweep_cli_bad_input_is_one_clear_error(tmp_path):
    from typer.testing import CliRunner

    from robust_unlearning.cli import app

    res = CliRunner().invoke(app, ["sweep", str(tmp_path / "missing.yaml")])
    assert res.exit_code == 2 and "not found" in res.output
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(PLAN))
    res = CliRunner().invoke(app, ["sweep", str(tmp_path / "p.yaml"), "--phase", "nope"])
    assert res.exit_code == 2 and "--phase" in res.output
    res = CliRunner().invoke(app, ["sweep", str(tmp_path / "p.yaml"), "--phase", "analyze", "--out",
                                   str(tmp_path / "none")])
    assert res.exit_code == 2 and "no rows" in res.output and not (tmp_path / "none").exists()
