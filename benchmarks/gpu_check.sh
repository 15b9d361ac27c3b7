#!/usr/bin/env bash
# The GPU measurements, as one script (run from the repository root on a machine with CUDA).
# Expects, beside the code: .device/model (the bundled MiniLM saved in fp16 to fit the 64 MiB
# transfer; loaded back as float32) and .device/glue_data (SST-2, MRPC, STS-B, RTE, CoLA train/dev).
# Writes its results under ${OUT:-results/gpu}.
set -uo pipefail
OUT=${OUT:-results/gpu}
mkdir -p "$OUT/bench"
export HADAMARD_LITE_MODEL="$PWD/.device/model" GLUE_DIR="$PWD/.device/glue_data" PYTHONUNBUFFERED=1
LOG=/tmp/gpu_check_stderr.txt
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/device.txt"
python3 -c "import torch, transformers, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__)" | tee -a "$OUT/device.txt"
# 1. The README's main job on the full SST-2 training set, then its reload.
python3 -m hadamard_lite train --task sst2 --output /tmp/sst2_adapter 2>>"$LOG" | tee "$OUT/main_job.txt"
python3 -m hadamard_lite evaluate /tmp/sst2_adapter 2>>"$LOG" | tee -a "$OUT/main_job.txt"
cp /tmp/sst2_adapter/run_summary.json "$OUT/"
# 2. Methods side by side: speed first, then quality on full training sets, seeds while time lasts.
python3 benchmarks/compare_methods.py --tasks mrpc stsb rte cola sst2 --limit 0 --eval-limit 0 --epochs 2 --seeds 0 1 2 \
    --speed-examples 16384 --speed-batch-size 256 --time-budget "${QUALITY_BUDGET:-200}" --out "$OUT/bench" \
    2>>"$LOG" | tee "$OUT/bench_log.txt"
tail -c 200000 "$LOG" > "$OUT/stderr_tail.txt"
