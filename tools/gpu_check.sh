#!/usr/bin/env bash
# One call's worth of GPU work on a CUDA machine that has torch but no network (the lent H100):
# build with that machine's own python3, then the GPU tests, the GPU benchmarks and the whole
# suite. Logs go to $OUT (the device tool's folder) or build/gpu-logs.
#   bash tools/gpu_check.sh [gpu|bench|suite ...]   (default: all three, in that order)
set -u
OUT=${OUT:-build/gpu-logs}
mkdir -p "$OUT"
PY=${PY:-python3}
export PYTHONUNBUFFERED=1
steps=${*:-gpu bench suite}

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv,noheader | tee "$OUT/gpu.txt"
start=$(date +%s)
if ! $PY -m pip install -q --no-build-isolation --no-deps -e . >"$OUT/build.log" 2>&1; then
  tail -40 "$OUT/build.log"; exit 1
fi
echo "build: $(( $(date +%s) - start )) s"
$PY -c "import fastfeed, torch; print(fastfeed.build_info()); print('cuda_available', fastfeed.cuda_available(), 'torch', torch.__version__)"

for step in $steps; do
  case $step in
    gpu)   timeout 240 $PY -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_source_cache.py -rs 2>&1 | tee "$OUT/gpu_tests.log" | tail -40 ;;
    bench) timeout 300 $PY bench/gpu.py ${BENCH_ARGS:-} 2>&1 | tee "$OUT/gpu_bench.log" | tail -30 ;;
    suite) timeout 400 $PY -m pytest -q -p no:cacheprovider -n 8 tests 2>&1 | tee "$OUT/suite.log" | tail -30 ;;
  esac
done
