#!/usr/bin/env bash
# GPU checks, part 2 (run from the repository root on a machine with CUDA, after gpu_check.sh):
#   1. multi-task throughput on the GPU (benchmarks/multitask_throughput.py --device cuda),
#   2. every notebook top to bottom on the GPU: under nbval if it is installed or carried as wheels in
#      .whl/, else all at once with benchmarks/run_notebooks.py (the GPU machine had PyTorch but not
#      Jupyter or nbval when last lent). SUBSETS=1 (the default here) sets
#      HADAMARD_LITE_SUBSETS=1 so the notebooks train on their CPU subsets and finish in minutes:
#      this checks that every cell runs on CUDA, not the full-data numbers.
# Same .device/ folder as gpu_check.sh. Writes ${OUT}/gpu_results2.tar.gz and ${OUT}/log.txt.
set -uo pipefail
OUT=${OUT:-/tmp/gpu_out}
MULTITASK_SECONDS=${MULTITASK_SECONDS:-150}
NOTEBOOK_SECONDS=${NOTEBOOK_SECONDS:-190}
mkdir -p "$OUT" /tmp/gpu_results2/results /tmp/gpu_results2/notebook_logs
export HADAMARD_LITE_MODEL="$PWD/.device/model" GLUE_DIR="$PWD/.device/glue_data" PYTHONUNBUFFERED=1 PYTHONPATH="$PWD"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false HADAMARD_LITE_SUBSETS=${SUBSETS:-1}
exec > >(tee "$OUT/log.txt") 2>&1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
date
timeout "$MULTITASK_SECONDS" python3 benchmarks/multitask_throughput.py --device cuda \
    --out /tmp/gpu_results2/results/multitask_cuda 2>&1 | grep -v "Loading weights"
date
# nbval itself when it can be had: installed, or from wheels carried in .whl/ (pip download nbval
# --dest .whl for the GPU machine's Python); otherwise the plain runner.
if ! python3 -c "import nbval" 2>/dev/null && [ -d .whl ]; then
    python3 -m pip install -q --no-index --find-links .whl nbval 2>&1 | tail -3
fi
if python3 -c "import nbval" 2>/dev/null; then
    timeout "$NOTEBOOK_SECONDS" python3 -m pytest notebooks/[0-9][0-9]_*.ipynb --nbval-lax \
        --nbval-sanitize-with notebooks/sanitize.cfg -p no:cacheprovider -q 2>&1 | tail -40
else
    timeout "$NOTEBOOK_SECONDS" python3 benchmarks/run_notebooks.py notebooks/[0-9][0-9]_*.ipynb --parallel 8 \
        --timeout $((NOTEBOOK_SECONDS - 10)) --logs /tmp/gpu_results2/notebook_logs
fi
date
tar czf "$OUT/gpu_results2.tar.gz" -C /tmp/gpu_results2 .
ls -la "$OUT"
