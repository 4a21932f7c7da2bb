#!/usr/bin/env bash
# The CUDA checks of MotionSqueeze's kernels, in one markdown report.
#
# Usage: bash tools/gpu_check.sh [OUT_DIR]      (default work_dirs/gpu_check)
#
# On a machine with a CUDA device (msnet_plugin installed, full mmcv and/or
# triton optional), in under 10 minutes:
#   1. the CUDA tests: python -m pytest -m cuda tests
#   2. every correlation kernel against the reference on the device, values
#      and gradients in float32 and under float16/bfloat16 autocast, and the
#      kernel 'auto' picks (tools/check_kernels.py)
#   3. tools/benchmark.py --device cuda: MSNet-R50 vs TSM-R50 for batches of
#      8 and 16 clips of 8 and 16 frames (training step, inference, peak
#      memory), and the correlation kernels alone ('fast', mmcv's
#      Correlation, Triton, the reference)
# and writes OUT_DIR/gpu_check.md (each step's raw output beside it). Every
# step runs even if an earlier one fails; the exit status is 1 if any did.
# Every step checks the msnet_plugin of this checkout, whatever is installed.
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT=${1:-work_dirs/gpu_check}
mkdir -p "$OUT"
REPORT="$OUT/gpu_check.md"
FAILED=0

run_step() {  # run_step NAME SECONDS COMMAND...: output to OUT/NAME.log
    local name=$1 limit=$2
    shift 2
    echo "== $name: $*"
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    local status=$?
    tail -n 3 "$OUT/$name.log"
    if [ "$status" -ne 0 ]; then
        FAILED=1
        echo "   $name exited with status $status"
    fi
    return "$status"
}

{
    echo "# GPU check of msnet-plugin"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(git rev-parse --short HEAD 2>/dev/null || echo 'no git'),"
    python -c "import torch; print(f'torch {torch.__version__}, CUDA {torch.version.cuda}, ' + (torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA device'))"
    echo
} > "$REPORT"

# Only the files that hold CUDA tests: the others need packages (decord)
# that a GPU image may lack.
CUDA_TEST_FILES=$(grep -l "pytest.mark.cuda" tests/test_*.py | tr '\n' ' ')
run_step cuda_tests 240 python -m pytest -m cuda $CUDA_TEST_FILES -q \
    -p no:cacheprovider
TESTS_STATUS=$?
{
    echo "## CUDA tests (\`python -m pytest -m cuda $CUDA_TEST_FILES\`, exit status $TESTS_STATUS)"
    echo
    echo '```'
    grep -E "passed|failed|skipped|error" "$OUT/cuda_tests.log" | tail -n 5
    grep -E "^(FAILED|ERROR|SKIPPED)" "$OUT/cuda_tests.log" | head -n 30
    echo '```'
    echo
} >> "$REPORT"

run_step check_kernels 180 python tools/check_kernels.py --device cuda \
    --out "$OUT/check_kernels.md"
KERNELS_STATUS=$?
{
    echo "## Kernels against the reference (\`python tools/check_kernels.py --device cuda\`, exit status $KERNELS_STATUS)"
    echo
    if [ -f "$OUT/check_kernels.md" ]; then cat "$OUT/check_kernels.md"; else tail -n 20 "$OUT/check_kernels.log"; fi
    echo
} >> "$REPORT"

BENCH_ARGS="--device cuda --batch-sizes 8 16 --frames 8 16 --models tsm msnet --rounds 5 --no-onnx --no-compile --out-dir $OUT/benchmark"
run_step benchmark 300 python tools/benchmark.py $BENCH_ARGS
BENCH_STATUS=$?
{
    echo "## Benchmark (\`python tools/benchmark.py $BENCH_ARGS\`, exit status $BENCH_STATUS)"
    echo
    if [ -f "$OUT/benchmark/benchmark.md" ]; then cat "$OUT/benchmark/benchmark.md"; else echo '```'; tail -n 20 "$OUT/benchmark.log"; echo '```'; fi
} >> "$REPORT"

echo "report: $REPORT"
exit "$FAILED"
