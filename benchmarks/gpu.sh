#!/usr/bin/env bash
# Training and prediction throughput on a GPU, in under 5 minutes (benchmarks/gpu_throughput.py).
#
#   bash benchmarks/gpu.sh            # on the GPU machine, from the repository root
#   bash benchmarks/gpu.sh --quick    # smoke test anywhere (falls back to MPS or the CPU)
#
# Needs python3 with torch, timm and numpy; the package runs from src/ (PYTHONPATH), not installed.
# Results (gpu_throughput.json, gpu_throughput.md, gpu.log) go to $OUT if set, else
# benchmarks/out. Extra arguments go to gpu_throughput.py (see its --help). PYTHON=... picks the
# interpreter; otherwise python3 if it has torch, else .venv/bin/python.
set -euo pipefail
cd "$(dirname "$0")/.."

out="${OUT:-benchmarks/out}"
mkdir -p "$out"
log="$out/gpu.log"

if [[ -n "${PYTHON:-}" ]]; then
    py="$PYTHON"
elif python3 -c "import torch" >/dev/null 2>&1; then
    py=python3
elif [[ -x .venv/bin/python ]]; then
    py=.venv/bin/python
else
    echo "no python with torch found: set PYTHON=/path/to/python" >&2
    exit 2
fi

{
    echo "== benchmarks/gpu.sh $* : $(date -u +%Y-%m-%dT%H:%M:%SZ) on ${HOSTNAME:-?}, git $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
    if command -v nvidia-smi >/dev/null 2>&1; then
        nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,utilization.gpu,temperature.gpu,clocks.sm,clocks.max.sm,power.draw,power.limit \
            --format=csv || nvidia-smi || true
    else
        echo "nvidia-smi: not found"
    fi
    "$py" -c 'import sys, torch
print("python", sys.version.split()[0], "| torch", torch.__version__, "| CUDA", torch.version.cuda,
      "| cuDNN", torch.backends.cudnn.version(), "| cuda available", torch.cuda.is_available(),
      "| CPU threads", torch.get_num_threads())'
} 2>&1 | tee "$log"

rc=0
PYTHONPATH=src PYTHONUNBUFFERED=1 timeout -k 10 280 \
    "$py" benchmarks/gpu_throughput.py --out "$out" "$@" 2>&1 | tee -a "$log" || rc=$?
if [[ $rc -eq 124 || $rc -eq 137 ]]; then
    echo "gpu_throughput.py stopped by the 280 s timeout; $out/gpu_throughput.json holds what it measured" | tee -a "$log"
fi
exit "$rc"
