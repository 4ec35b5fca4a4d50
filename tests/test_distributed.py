"""Two processes (torchrun, DDP over gloo on the CPU) give the update of one process on the same
global batch, for the plain step, SAM (global gradient norm), StableUN (global dot products and
norms, seeded noise and rule draws, fresh feedback batches), RS (seeded noise), and GP and CR
(double backward: gradients from ``torch.autograd.grad``, which DDP does not average, are averaged
through ``ctx.average_grads``; one micro-batch and an accumulation group of two). plain, sam and
stableun also under FSDP2 (accelerate's fully_shard over gloo; sharded weights and gradients, the
full state dict gathered for the output), in the same torchrun launch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import save_model
from safetensors.torch import load_file

from robust_unlearning.runner import run_config
from robust_unlearning.strategies.base import STRATEGIES
from robust_unlearning.world.benchmark import unlearning_data

# every process runs `unlearn run` on each config; only the main process writes the outputs. Then a
# NaN loss on process 1 only (its 2nd forget loss: step 1): every process must stop there, none hang.
WORKER = """
import sys
from accelerate import PartialState
from robust_unlearning.errors import NonFiniteLossError
from robust_unlearning.objectives.graddiff import GradDiff
from robust_unlearning.runner import run_config
sep = sys.argv.index("--fsdp")
*paths, nan_path = sys.argv[1:sep]
for path in paths:
    run_config(path, [], log=lambda *_: None)
orig, calls = GradDiff.forget_loss, [0]
def nan_on_one(self, model, batch, ref):
    loss = orig(self, model, batch, ref)
    calls[0] += 1
    return loss * float("nan") if calls[0] == 2 and PartialState().process_index == 1 else loss
GradDiff.forget_loss = nan_on_one
try:
    run_config(nan_path, [], log=lambda *_: None)
except NonFiniteLossError as exc:
    print(f"process {PartialState().process_index} stopped: {exc}", flush=True)
GradDiff.forget_loss = orig
# FSDP2: accelerate resolves FSDP to DDP on the CPU (its FSDP branch is for accelerators only), so
# the state is set to FSDP2 by hand; accelerate's own FSDP2 code then runs (fully_shard over gloo)
from accelerate.state import AcceleratorState
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin
state = AcceleratorState()
state.distributed_type = PartialState().distributed_type = DistributedType.FSDP
state.fsdp_plugin = FullyShardedDataParallelPlugin(
    fsdp_version=2, auto_wrap_policy="transformer_based_wrap", state_dict_type="FULL_STATE_DICT",
    reshard_after_forward=True)
import robust_unlearning.loop as loop
gather = loop.gathered_model
def spy(model, cls, main):  # the trained parameters were sharded DTensors
    kind = type(next(model.parameters())).__name__
    print(f"process {PartialState().process_index} gathers {kind}", flush=True)
    return gather(model, cls, main)
loop.gathered_model = spy
for path in sys.argv[sep + 1:]:
    run_config(path, [], log=lambda *_: None)
"""

CASES = {  # case: (method, strategy options, train overrides)
    "plain": ("graddiff", {}, {"eval_every": 1}),  # scoring during training on every process
    "sam": ("npo+sam", {"rho": 0.05}, {}),
    "stableun": ("graddiff+stableun", {"rules": ["sap", "gpn", "gap", "hws"], "T": 3, "M": 1, "rho": 1e-3,
                                       "mu": 1e-2, "w": 3}, {}),
    "rs": ("graddiff+rs", {"sigma": 1e-3, "samples": 2}, {}),
    "gp": ("graddiff+gp", {"coef": 0.5}, {}),
    "gp-accum": ("npo+gp", {"coef": 0.5}, {"grad_accum": 2, "steps": 2}),
    "cr": ("npo+cr", {"coef": 0.5, "h": 0.01}, {}),
    "cr-accum": ("graddiff+cr", {"coef": 0.5, "h": 0.01}, {"grad_accum": 2, "steps": 2}),
}
# also run under FSDP2 (sharded weights and gradients): the strategies that declare they support it
FSDP_CASES = [c for c in CASES if c in STRATEGIES.names() and STRATEGIES.get(c).supports_fsdp]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_init, tiny_tokenizer, tiny_world):
    if shutil.which("torchrun") is None:
        pytest.skip("torchrun not found")
    root = tmp_path_factory.mktemp("ddp")
    save_model(tiny_model_init, tiny_tokenizer, root / "model")
    forget, retain = unlearning_data(tiny_world)
    for name, records in (("forget", forget[:14]), ("retain", retain[:14])):
        (root / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    configs = {}
    for procs in (1, 2):
        for case, (method, strategy, train) in CASES.items():
            cfg = {
                "model": str(root / "model"), "method": method, "strategy": strategy,
                "data": {"forget": str(root / "forget.jsonl"), "retain": str(root / "retain.jsonl")},
                # global batch 5: split 3 + 2 over two processes (weighted); 14 records end each
                # epoch with a batch of 4 (2 + 2); StableUN's fresh batches cross the epoch boundary
                "train": {"steps": 3, "batch_size": 5, "lr": 1e-3, "max_length": 48, "scheduler": "linear",
                          **train},
                "output_dir": str(root / f"{case}-{procs}"), "evaluate": False,
            }
            configs[case, procs] = root / f"{case}-{procs}.yaml"
            configs[case, procs].write_text(yaml.safe_dump(cfg))
            if (case, procs) == ("plain", 1):
                cfg["output_dir"] = str(root / "nan-2")
                (root / "nan-2.yaml").write_text(yaml.safe_dump(cfg))
            if procs == 2 and case in FSDP_CASES:
                cfg["output_dir"] = str(root / f"{case}-fsdp")
                # no eval_every under FSDP2 here: its forward leaves the root unsharded, which the
                # sharding spy below would misread (tried: the weights still matched one process)
                cfg["train"] = {k: v for k, v in cfg["train"].items() if k != "eval_every"}
                configs[case, "fsdp"] = root / f"{case}-fsdp.yaml"
                configs[case, "fsdp"].write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ROBUST_UNLEARNING_QUIET": "1"}
    proc = subprocess.run(
        ["torchrun", "--standalone", "--nproc_per_node", "2", "--no-python", sys.executable, "-c", WORKER,
         *[str(configs[c, 2]) for c in CASES], str(configs["plain", 1]).replace("plain-1", "nan-2"),
         "--fsdp", *[str(configs[c, "fsdp"]) for c in FSDP_CASES]],
        capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-5000:])
    for case in CASES:  # the same configs in this one process
        run_config(configs[case, 1], [], log=lambda *_: None)
    return root, proc.stdout


def assert_same_weights(w1: dict, w2: dict) -> None:
    """The same weights up to the rounding of a different reduction order. Adam divides by the root
    of the squared gradients, so on an element whose gradient is near zero that rounding can grow to
    about 1e-5 in three steps (seen on one element of 39,840 on one machine, 1e-7 on the rest):
    every element within a tenth of one step (lr 1e-3), and all but 0.1 % of them within 1e-6. A
    process that skipped the all-reduce, or weighted it wrongly, moves most elements by 1e-4 or more."""
    diff = torch.cat([(w2[k] - w1[k]).abs().flatten() for k in w1])
    worst = max(w1, key=lambda k: float((w2[k] - w1[k]).abs().max()))
    assert float(diff.max()) <= 1e-4, f"{worst}: differs by {float(diff.max()):.3g}"
    assert int((diff > 1e-6).sum()) <= 1e-3 * diff.numel(), \
        f"{int((diff > 1e-6).sum())} of {diff.numel()} elements differ by more than 1e-6"


@pytest.mark.slow  # several processes (torchrun)
@pytest.mark.parametrize("case", list(CASES) + [f"{c}-fsdp" for c in FSDP_CASES])
def test_two_processes_match_one_process(case, runs):
    """DDP (and, for -fsdp, FSDP2: the output is gathered on the main process) over 2 processes."""
    runs, _ = runs
    base = case.removesuffix("-fsdp")
    one, two = runs / f"{base}-1", runs / (case if case.endswith("-fsdp") else f"{case}-2")
    w1, w2 = load_file(str(one / "model.safetensors")), load_file(str(two / "model.safetensors"))
    w0 = load_file(str(runs / "model" / "model.safetensors"))
    assert w1.keys() == w2.keys()
    moved = max(float((w1[k] - w0[k]).abs().max()) for k in w1)
    assert moved > 1e-4  # the steps did change the weights
    assert_same_weights(w1, w2)
    m1, m2 = (json.loads((d / "metrics.json").read_text()) for d in (one, two))
    assert (m1["processes"], m2["processes"]) == (1, 2)
    assert m1["passes_per_step"] == m2["passes_per_step"]
    l1, l2 = ([json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()] for d in (one, two))
    for a, b in zip(l1, l2, strict=True):  # logged losses are the global batch's, not one process's
        assert b["forget_loss"] == pytest.approx(a["forget_loss"], rel=1e-5)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-4)
    assert not list(Path(runs).glob(f".{two.name}.tmp-*"))  # only the main process wrote an output


@pytest.mark.slow  # several processes (torchrun)
def test_fsdp_runs_were_sharded(runs):
    _, stdout = runs
    for rank in (0, 1):
        assert stdout.count(f"process {rank} gathers DTensor") == len(FSDP_CASES), stdout


@pytest.mark.slow  # several processes (torchrun)
def test_a_non_finite_loss_on_one_process_stops_every_process(runs):
    root, stdout = runs
    for rank in (0, 1):
        assert f"process {rank} stopped: non-finite loss at step 1" in stdout, stdout
    assert not (root / "nan-2").exists()


@pytest.mark.parametrize("fsdp2,method,train,match", [
    (False, "graddiff", {}, "fsdp_version: 2"),
    (True, "graddiff+gp", {}, "strategy 'gp' is not supported under FSDP"),
    (True, "graddiff+sam+lora", {}, "parameterization 'lora' is not supported under FSDP"),
    (True, "graddiff+stableun", {"checkpoint_every": 1}, "checkpoint_every is not supported under FSDP"),
])
def test_fsdp_refuses_what_it_does_not_support(fsdp2, method, train, match):
    from types import SimpleNamespace

    from robust_unlearning.config import build_config
    from robust_unlearning.distributed import check_fsdp
    from robust_unlearning.errors import UnlearnError
    from robust_unlearning.method import parse_method

    cfg = build_config({"method": method, "train": train})
    with pytest.raises(UnlearnError, match=match):
        check_fsdp(SimpleNamespace(is_fsdp2=fsdp2), parse_method(cfg.method), cfg.train)
    check_fsdp(SimpleNamespace(is_fsdp2=True), parse_method("npo+sam"), build_config({}).train)
