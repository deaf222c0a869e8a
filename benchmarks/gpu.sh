#!/usr/bin/env bash
# Every GPU figure of issue 12 in one run (one H200: under 8 minutes end to end). Each figure is printed
# under the command that produced it, so the log can be pasted into benchmarks/RESULTS.md as it is.
#
#   1. rollout through make_vec (KV-cached policy in the env loop) against HF generate, batch 64/256/1024,
#      bf16, gpt2 shape, 64 new tokens                                       (benchmarks/rollout.py)
#   2. each algorithm's iteration samples/s, model FLOPs and fraction of the matmul rate, gpt2 shape,
#      batch 64, bf16 (PPO: TRL 0.11's work, 4 epochs and a reference)      (benchmarks/algo_iteration.py)
#   3. PPO against TRL 0.11's PPOTrainer at the same precision, when its venv exists (bash
#      shared/peers/setup.sh builds it; skipped otherwise)                   (shared/peers/trl_ppo.py)
#   4. LoRA against full fine-tuning on a larger shape (gpt2-large, 774M): trainable parameters, peak CUDA
#      memory, iteration time, first-step KL                                 (benchmarks/lora.py)
#
# usage: bash benchmarks/gpu.sh [--smoke] [--only "1 3"] [--trl-python PATH]
#   --smoke            CPU fallback on tiny sizes (checks that every command runs; figures meaningless)
#   --only LIST        run only these sections (e.g. to rerun the one that failed)
#   --trl-python PATH  interpreter of the TRL 0.11 venv (default /tmp/textenv-peers/bin/python)
# A command that fails or runs past its time limit is reported and the script goes on; the exit status
# is the number of failed commands.
set -uo pipefail

cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONWARNINGS=ignore TOKENIZERS_PARALLELISM=false
PY=${PYTHON:-python}
TRL_PY=/tmp/textenv-peers/bin/python
SMOKE=0
ONLY="1 2 3 4"
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) SMOKE=1 ;;
    --trl-python) TRL_PY=$2; shift ;;
    --only) ONLY=$2; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

if [ "$SMOKE" = 1 ]; then
  DEVICE=cpu; SIZE=tiny; ROLLOUT_BATCHES="4 8"; NEW=8; ALGO_BATCH=8; ITERS=1; LIMIT=300
  LORA_SIZE=tiny; LORA_BATCH=4; PREC=""; THREADS=2
else
  DEVICE=cuda; SIZE=gpt2; ROLLOUT_BATCHES="64 256 1024"; NEW=64; ALGO_BATCH=64; ITERS=2; LIMIT=150
  LORA_SIZE=gpt2-large; LORA_BATCH=16; PREC="--bf16"; THREADS=4
  if ! $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "no CUDA device: run with --smoke for the CPU check" >&2
    exit 2
  fi
fi

PRECISION=$([ -n "$PREC" ] && echo bf16 || echo fp32)
FAILED=0
want() { [[ " $ONLY " == *" $1 "* ]]; }
run() {  # run LIMIT_SECONDS CMD...: prints the command, then its output (or why it failed)
  local limit=$1; shift
  echo
  echo "\$ $*"
  local start=$SECONDS
  timeout "$limit" "$@" 2>&1 | grep -vE "Warning|warn\(|^\s*$" | tail -n 12
  local rc=${PIPESTATUS[0]}
  if [ "$rc" -ne 0 ]; then
    FAILED=$((FAILED + 1))
    [ "$rc" -eq 124 ] && echo "!! timed out after ${limit}s" || echo "!! failed with exit status $rc"
  fi
  echo "(${SECONDS}s in all, $((SECONDS - start))s for this command)"
}

echo "# textenv GPU benchmarks, $(date -u '+%Y-%m-%d %H:%M UTC'), git $(git rev-parse --short HEAD 2>/dev/null)"
$PY - <<'EOF'
import torch, transformers
dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
print(f"device: {dev}; torch {torch.__version__}; transformers {transformers.__version__}")
EOF

want 1 && echo && echo "## 1. rollout through make_vec vs HF generate ($SIZE shape${PREC:+, bf16})"
want 1 && for b in $ROLLOUT_BATCHES; do
  run "$LIMIT" $PY benchmarks/rollout.py --size "$SIZE" --batch "$b" --new-tokens "$NEW" --device "$DEVICE" \
    --repeats 2 --threads "$THREADS" $PREC
done

want 2 && echo && echo "## 2. iteration samples/s per algorithm ($SIZE shape, batch $ALGO_BATCH${PREC:+, bf16})"
want 2 && for algo in ppo grpo rloo reinforce++ scst; do
  run "$LIMIT" $PY benchmarks/algo_iteration.py --algo "$algo" --size "$SIZE" --batch "$ALGO_BATCH" \
    --new-tokens "$NEW" --iters "$ITERS" --device "$DEVICE" --threads "$THREADS" $PREC
done

want 3 && echo && echo "## 3. PPO against TRL 0.11 PPOTrainer ($SIZE shape, batch $ALGO_BATCH, both $PRECISION)"
PEERS=${PEERS:-}
for dir in shared/peers ../shared/peers ../../shared/peers; do
  [ -z "$PEERS" ] && [ -f "$dir/trl_ppo.py" ] && PEERS=$dir
done
if ! want 3; then
  :
elif [ -x "$TRL_PY" ] && [ -n "$PEERS" ]; then
  run "$LIMIT" $PY benchmarks/algo_iteration.py --algo ppo --size "$SIZE" --batch "$ALGO_BATCH" \
    --new-tokens "$NEW" --iters "$ITERS" --device "$DEVICE" --threads "$THREADS" $PREC
  run "$LIMIT" "$TRL_PY" "$PEERS/trl_ppo.py" "$SIZE" "$ALGO_BATCH" "$NEW" "$ITERS" $PREC
else
  echo "skipped: no TRL venv at $TRL_PY or no shared/peers/trl_ppo.py (PEERS=dir overrides;"
  echo "bash shared/peers/setup.sh builds the venv, which needs network for pip)"
fi

want 4 && echo && echo "## 4. LoRA vs full fine-tuning ($LORA_SIZE shape, PPO, batch $LORA_BATCH${PREC:+, bf16})"
want 4 && run $((LIMIT * 2)) $PY benchmarks/lora.py --size "$LORA_SIZE" --batch "$LORA_BATCH" --new-tokens 32 --iters 1 \
  --device "$DEVICE" --threads "$THREADS" $PREC

echo
echo "# done in ${SECONDS}s; failed commands: $FAILED"
exit "$FAILED"
