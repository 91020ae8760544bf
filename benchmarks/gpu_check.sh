#!/usr/bin/env bash
# One GPU check in one table: our image trainer vs the authors'-style loop at 128 px, batch 64
# (fp32, TF32, bf16 autocast, torch.compile), peak GPU memory, and an fp32-vs-bf16 A/B of our
# trainer with a smoke FID. Details: benchmarks/gpu_check.py --help and benchmarks/README.md.
#
#   benchmarks/gpu_check.sh                       # needs CUDA; at most 9 minutes (it plans for 8)
#   benchmarks/gpu_check.sh --out gpu_check.json  # also writes the figures as JSON
#   benchmarks/gpu_check.sh --cpu-smoke           # tiny sizes on the CPU, to test the script
#
# Without CUDA (and without --cpu-smoke) it prints one line and exits 0.
# Python: $PYTHON, else the checkout's .venv, else python3 on PATH.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
py="${PYTHON:-}"
if [[ -z "$py" ]]; then
    if [[ -x "$here/../.venv/bin/python" ]]; then py="$here/../.venv/bin/python"; else py="$(command -v python3)"; fi
fi
limit=540  # 9 minutes; the script itself plans for --budget-s (8 minutes)
rc=0
timeout --kill-after=10 "$limit" "$py" "$here/gpu_check.py" "$@" || rc=$?
if [[ $rc -eq 124 || $rc -eq 137 ]]; then
    echo "gpu_check: stopped at the ${limit} s limit before the table was printed; rerun with a smaller --budget-s" >&2
fi
exit "$rc"
