#!/usr/bin/env bash
# The GPU benchmark in one command (about three minutes on one H100/H200):
#   bash benchmarks/gpu.sh                 # writes results/gpu.json and prints the table
#   PYTHON=/path/to/python bash benchmarks/gpu.sh --levels cnn,cnn-skip
# It installs nothing: it needs a Python whose torch is a CUDA build (scripts/run.sh's
# .venv holds the CPU wheel), plus numpy and tqdm, and runs this checkout's code.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec "${PYTHON:-python3}" -m benchmarks.gpu "$@"
