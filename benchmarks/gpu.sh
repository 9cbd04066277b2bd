#!/usr/bin/env bash
# The GPU benchmark in one command (96-104 s on one H200 in three runs):
#   bash benchmarks/gpu.sh                 # writes results/gpu.json and prints the table
#   bash benchmarks/gpu.sh --quick         # tiny sizes on the CPU: a plumbing check
#   PYTHON=/path/to/python bash benchmarks/gpu.sh --levels quickstart,micro
# It installs nothing: it needs a Python whose torch is a CUDA build (it brings Triton;
# scripts/run.sh's .venv holds the CPU wheel), plus numpy and tqdm, and runs this
# checkout's code; none of the project's other dependencies.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec "${PYTHON:-python3}" -m benchmarks.gpu "$@"
