#!/usr/bin/env bash
# One device call that checks a tree end to end (run on the GPU machine after
# `source tests/device/env.sh`; everything lands in $OUT):
#   suites.log     every GPU suite (OMNI_REQUIRE_CUDA=1), the full CPU-vs-CUDA parity included
#   bench.txt/json omni bench, all cases (T2I b1/b16, MMU, 16k context, VQ alone)
#   pipelines.log  tests/device/pipelines.sh (omni run on CUDA, graphs on/off, two requests)
#   ncu-*.txt      per-kernel times of one decode step (batch 1 and 16), when ncu exists
#   bench-state-DT.txt/json  omni bench --state-dtype DT (t2i_b16, mmu) for each DT in
#                  $STATE_DTYPES (default "bf16"; "" skips)
#   lab-*.txt      $OMNI_CARRY/gemv_lab prod, m16 and mix, when tests/device/gemv_lab.sh
#                  built it into the carried folder
# Each part has its own time limit (seconds, environment): SUITES_S, BENCH_S,
# PIPE_S, NCU_S, STATE_S, LAB_S; 0 skips a part. The bench weights live in $BENCH_DIR
# (/tmp/ob).
#   tests/device/check-all.sh [COMMIT]
set -uo pipefail
OUT=${OUT:-.}
COMMIT=${1:-${OMNI_COMMIT:-unknown}}
BENCH_DIR=${BENCH_DIR:-/tmp/ob}
T=$OMNI_BUILD/tests
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/gpu.txt" 2>&1
if [ "${SUITES_S:-240}" != 0 ]; then
  OMNI_REQUIRE_CUDA=1 timeout "${SUITES_S:-240}" tests/run-suites $(ls "$T"/check_cuda_* | sort) > "$OUT/suites.log" 2>&1
  echo "suites: rc=$? $(tail -1 "$OUT/suites.log")"
fi
if [ "${BENCH_S:-150}" != 0 ]; then
  timeout "${BENCH_S:-150}" "$OMNI_BIN" bench --dir "$BENCH_DIR" --commit "$COMMIT" --json "$OUT/bench.json" > "$OUT/bench.txt" 2>&1
  echo "bench: rc=$?"; grep "^|" "$OUT/bench.txt"
fi
if [ "${PIPE_S:-120}" != 0 ]; then
  timeout "${PIPE_S:-120}" tests/device/pipelines.sh "$BENCH_DIR" > /dev/null 2>&1
  echo "pipelines: rc=$?"; grep -h "captured\|replay\|rc=\|identical\|DIFFER\|equal" "$OUT/pipelines.log" | head -24
fi
if [ "${NCU_S:-120}" != 0 ] && command -v ncu > /dev/null; then
  for c in mmu_16k t2i_b16; do
    timeout "${NCU_S:-120}" ncu --csv --metrics gpu__time_duration.sum --clock-control none \
      "$OMNI_BIN" bench --cases "$c" --context 1 --tokens 1 --steps 1 --warmup 0 --no-graph --dir "$BENCH_DIR" \
      > "$OUT/ncu-$c.csv" 2> /dev/null
    python3 tests/device/ncu_summary.py "$OUT/ncu-$c.csv" "$c one step (ncu)" > "$OUT/ncu-$c.txt" 2>&1
    rm -f "$OUT/ncu-$c.csv"
    head -12 "$OUT/ncu-$c.txt"
  done
fi
if [ "${STATE_S:-120}" != 0 ]; then
  for dt in ${STATE_DTYPES-bf16}; do
    timeout "${STATE_S:-120}" "$OMNI_BIN" bench --cases t2i_b16,mmu --state-dtype "$dt" --dir "$BENCH_DIR" \
      --commit "$COMMIT" --json "$OUT/bench-state-$dt.json" > "$OUT/bench-state-$dt.txt" 2>&1
    echo "bench --state-dtype $dt: rc=$?"; grep "^|" "$OUT/bench-state-$dt.txt"
  done
fi
LAB=$(dirname "$OMNI_BUILD")/gemv_lab
if [ "${LAB_S:-90}" != 0 ] && [ -x "$LAB" ]; then
  for mode in prod m16 mix; do
    timeout "${LAB_S:-90}" "$LAB" $mode > "$OUT/lab-$mode.txt" 2>&1
    echo "gemv_lab $mode: rc=$?"; grep WRONG "$OUT/lab-$mode.txt" | grep -vc inexact | sed "s/^/  results off the reference (not counting the inexact variants): /"
  done
fi
