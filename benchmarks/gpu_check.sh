#!/usr/bin/env bash
# The GPU measurements as one script, run from the repository root on a machine with CUDA:
#   1. training speed of every method and trainer (alone on the card), 2. bf16 vs float32 quality,
#   3. the GLUE protocol on full training sets (SST-2 included), 8 workers sharing the card while
#      PROTOCOL_SECONDS last; runs already finished (carried in .device/protocol_gpu.tar.gz) are kept;
#   4. beside it, PATTERN_WORKERS workers of the tuning-pattern study (benchmarks/patterns.py, issue 9;
#      earlier runs carried in .device/patterns_gpu.tar.gz), then its analyses, which need the fully
#      fine-tuned models that exist only on this machine (too large to bring back).
# Expects, beside the code: .device/model (the bundled MiniLM saved in fp16 to fit the 64 MiB
# transfer; loaded back as float32) and .device/glue_data (RTE, MRPC, STS-B, CoLA, SST-2 train/dev).
# Writes ${OUT}/gpu_results.tar.gz (results/speed_gpu, results/precision_quality_gpu,
# results/glue_protocol_gpu, results/patterns_gpu as they belong in the repository) and ${OUT}/log.txt.
set -uo pipefail
OUT=${OUT:-/tmp/gpu_out}
SPEED_SECONDS=${SPEED_SECONDS:-170}
PROTOCOL_SECONDS=${PROTOCOL_SECONDS:-300}
WORKERS=${WORKERS:-8}
PATTERN_WORKERS=${PATTERN_WORKERS:-4}
# A dry run on a CPU (tiny data): SPEED_ARGS="--examples 32 --repeats 1 --only 'hadamard1, our trainer'" etc.
SPEED_ARGS=${SPEED_ARGS:---examples 8192 --batch-size 128 --repeats 3}
PROTOCOL_ARGS=${PROTOCOL_ARGS:-}
PRECISION_ARGS=${PRECISION_ARGS:-}
PATTERNS_ARGS=${PATTERNS_ARGS:-}
mkdir -p "$OUT"
export HADAMARD_LITE_MODEL="$PWD/.device/model" GLUE_DIR="$PWD/.device/glue_data" PYTHONUNBUFFERED=1 PYTHONPATH="$PWD"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
R=/tmp/gpu_results/results
mkdir -p "$R/glue_protocol_gpu" "$R/patterns_gpu"
[ -f .device/protocol_gpu.tar.gz ] && tar xzf .device/protocol_gpu.tar.gz -C "$R/glue_protocol_gpu"
[ -f .device/patterns_gpu.tar.gz ] && tar xzf .device/patterns_gpu.tar.gz -C "$R/patterns_gpu"
exec > >(tee "$OUT/log.txt") 2>&1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch, transformers, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__)"
date
# 1. Speed, alone on the card.
eval timeout "$SPEED_SECONDS" python3 benchmarks/speed.py --out "$R/speed_gpu" $SPEED_ARGS 2>&1 | grep -v "Loading weights"
date
# 2 and 3 share the card: quality does not depend on speed.
timeout $((PROTOCOL_SECONDS + 20)) python3 benchmarks/precision_quality.py --out "$R/precision_quality_gpu" \
    $PRECISION_ARGS > /tmp/gpu_results/precision_log.txt 2>&1 &
pids=$!
for i in $(seq "$WORKERS"); do
    OMP_NUM_THREADS=1 timeout $((PROTOCOL_SECONDS + 60)) python3 benchmarks/glue_protocol.py --out "$R/glue_protocol_gpu" \
        --sst2-limit 0 --seeds 3 --wait --time-budget "$PROTOCOL_SECONDS" $PROTOCOL_ARGS > "/tmp/gpu_results/protocol_w$i.log" 2>&1 &
    pids="$pids $!"
    sleep 2
done
for i in $(seq "$PATTERN_WORKERS"); do
    OMP_NUM_THREADS=1 timeout $((PROTOCOL_SECONDS + 60)) python3 benchmarks/patterns.py --protocol "$R/glue_protocol_gpu" \
        --out "$R/patterns_gpu" --sst2-limit 0 --wait --time-budget "$PROTOCOL_SECONDS" $PATTERNS_ARGS \
        > "/tmp/gpu_results/patterns_w$i.log" 2>&1 &
    pids="$pids $!"
    sleep 2
done
wait $pids  # a bare wait would also wait for the tee above, forever
date
grep -hv "Loading weights" /tmp/gpu_results/protocol_w*.log | grep -v "^$" | tail -80
tail -30 /tmp/gpu_results/precision_log.txt
python3 benchmarks/glue_protocol.py --out "$R/glue_protocol_gpu" --summarize 2>&1 | grep -v "Loading weights"
grep -hv "Loading weights" /tmp/gpu_results/patterns_w*.log | grep -v "^$" | tail -40
timeout 240 python3 benchmarks/patterns.py --protocol "$R/glue_protocol_gpu" --out "$R/patterns_gpu" --analyse \
    2>&1 | grep -v "Loading weights" | tail -60
rm -rf "$R/glue_protocol_gpu/claims" "$R/patterns_gpu/claims"
# The fully fine-tuned models (87 MB each) stay here: they would not fit the way back.
tar czf "$OUT/gpu_results.tar.gz" --exclude=./results/glue_protocol_gpu/models -C /tmp/gpu_results .
ls -la "$OUT"
