#!/usr/bin/env bash
# First of two commands on a GPU machine (see benchmarks/gpu/README.md): installs the carried wheels,
# copies the repository to /tmp/repo and starts the world protocol (CPU cores) in the background, in
# its own session so that it outlives this command. Usage: bash benchmarks/gpu/start.sh WORKERS BUDGET_S
set -u
WORKERS=${1:-13}
BUDGET=${2:-560}
mkdir -p /tmp/smol /tmp/site
cp .smol/part00 /tmp/smol/ 2>/dev/null || true
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
rm -rf /tmp/repo && mkdir -p /tmp/repo && cp -r src benchmarks configs pyproject.toml /tmp/repo/
cd /tmp/repo
export PYTHONPATH=/tmp/site:/tmp/repo/src ROBUST_UNLEARNING_CACHE=/tmp/cache ROBUST_UNLEARNING_QUIET=1
export CUDA_VISIBLE_DEVICES="" OMP_NUM_THREADS=1 TRANSFORMERS_VERBOSITY=error
date +%s > /tmp/wp.start
setsid nohup python3 benchmarks/world_protocol.py --workers "$WORKERS" --budget "$BUDGET" --out /tmp/wp \
    > /tmp/wp.log 2>&1 < /dev/null &
sleep 15
python3 -c "import torch, transformers, pydantic; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__, 'pydantic', pydantic.__version__)"
nproc; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
cat /tmp/wp.log
