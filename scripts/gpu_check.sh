#!/usr/bin/env bash
# One device run: the CUDA tests, then the GPU benchmark (gpu.sh alone: 96-104 s on one H200;
# the two together have not been timed on a GPU yet).
#   bash scripts/gpu_check.sh                  # logs and results/gpu.json in results/
#   OUT=/some/dir bash scripts/gpu_check.sh    # ... in /some/dir
# It installs nothing: it needs a Python (PYTHON=..., default python3) whose torch is a CUDA
# build (it brings Triton), plus numpy, tqdm, pytest and hypothesis. The CUDA tests are those a
# CPU machine skips or runs through Triton's interpreter: tests/test_cuda.py,
# tests/test_kernels.py and tests/test_bench_gpu.py. Both parts run even when the first fails;
# the exit status is 0 only when both pass, 2 when there is no CUDA device.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
py="${PYTHON:-python3}"
out="${OUT:-results}"
"$py" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 3)"
case $? in
  0) ;;
  3) echo "gpu_check: no CUDA device for $py (torch.cuda.is_available() is False)" >&2; exit 2 ;;
  *) echo "gpu_check: $py cannot import torch; set PYTHON= to a Python with a CUDA torch" >&2; exit 2 ;;
esac
mkdir -p "$out"
"$py" -c "import torch; print('torch', torch.__version__, 'on', torch.cuda.get_device_name())"
start=$SECONDS
"$py" -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_kernels.py \
  tests/test_bench_gpu.py 2>&1 | tee "$out/gpu_tests.log"
tests=${PIPESTATUS[0]}
echo "gpu_check: CUDA tests exit $tests after $((SECONDS - start)) s"
start=$SECONDS
PYTHON="$py" bash benchmarks/gpu.sh --out "$out/gpu.json" 2>&1 | tee "$out/gpu_bench.log"
bench=${PIPESTATUS[0]}
echo "gpu_check: benchmarks/gpu.sh exit $bench after $((SECONDS - start)) s"
[ "$tests" -eq 0 ] && [ "$bench" -eq 0 ]
