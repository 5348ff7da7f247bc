#!/usr/bin/env bash
# Full-size parity of the vision towers, the projector and the VQ decoder against PyTorch.
#
#   tests/fullsize/run.sh OUTDIR [--small]
#
# (a) python3 tests/fullsize/make_reference.py OUTDIR [--small]   random weights + float64 reference
# (b) omni on the same weights: the image -> towers -> projector pipeline with --dump, and each
#     stage alone (tests/fullsize/stage_run.c, built here against the omni build) on the
#     reference's own inputs; CPU, f32, OMNI_THREADS = all cores
# (c) python3 tests/fullsize/compare.py OUTDIR   table on stdout + OUTDIR/fullsize-parity.md;
#     exit status non-zero when a stage misses its tolerance
#
# Environment:
#   OMNI_BIN          omni CLI (default build/bin/omni)
#   OMNI_BUILD        the build dir holding lib/libomni.so (default: two levels above OMNI_BIN)
#   OMNI_PLUGIN_PATH  plugin dir (default $OMNI_BUILD/plugins)
#   OMNI_THREADS      CPU threads for omni (default: nproc)
#   PYTHON            interpreter with torch (+ timm, pillow, numpy) (default python3)
#   STAGE_RUN         a prebuilt stage_run binary (default: $OMNI_BUILD/bin/fullsize_stage_run when
#                     present, else compiled into OUTDIR with ${CC:-cc})
#   FULLSIZE_REUSE=1  keep an existing OUTDIR/ref.safetensors (skip step a)
# Run from anywhere; paths are relative to the repository root.
set -euo pipefail

usage() { echo "usage: $0 OUTDIR [--small]" >&2; exit 2; }
[[ $# -ge 1 && $# -le 2 ]] || usage
OUT=$1
SMALL=
if [[ $# -eq 2 ]]; then
    [[ $2 == --small ]] || usage
    SMALL=--small
fi

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
PY=${PYTHON:-python3}
OMNI_BIN=${OMNI_BIN:-build/bin/omni}
OMNI_BUILD=${OMNI_BUILD:-$(dirname "$(dirname "$OMNI_BIN")")}
OMNI_BUILD=$(cd "$OMNI_BUILD" && pwd)
export OMNI_PLUGIN_PATH=${OMNI_PLUGIN_PATH:-$OMNI_BUILD/plugins}
export OMNI_THREADS=${OMNI_THREADS:-$(nproc)}
LOG=$OUT/omni_log.txt

die() { echo "fullsize: $*" >&2; exit 1; }
[[ -x $OMNI_BIN ]] || die "omni CLI '$OMNI_BIN' not found or not executable (set OMNI_BIN)"
[[ -f $OMNI_BUILD/lib/libomni.so ]] || die "no $OMNI_BUILD/lib/libomni.so (set OMNI_BUILD)"
for p in image_load image_preprocess vit projector vq; do
    [[ -f $OMNI_PLUGIN_PATH/omni_$p.so ]] || die "plugin omni_$p.so not in OMNI_PLUGIN_PATH=$OMNI_PLUGIN_PATH"
done
"$PY" -c 'import torch, numpy, PIL' || die "$PY lacks torch / numpy / pillow (set PYTHON)"

echo "fullsize: OUTDIR=$OUT ${SMALL:-(full size)}; omni $OMNI_BIN, plugins $OMNI_PLUGIN_PATH, OMNI_THREADS=$OMNI_THREADS"
echo "fullsize: disk free in OUTDIR: $(df -h "$OUT" | awk 'NR==2 {print $4}')"

# ---- (a) reference
if [[ ${FULLSIZE_REUSE:-0} == 1 && -f $OUT/ref.safetensors && -f $OUT/stage_runs.sh ]]; then
    echo "fullsize: (a) reusing $OUT/ref.safetensors"
else
    echo "fullsize: (a) weights + PyTorch reference"
    t0=$SECONDS
    "$PY" tests/fullsize/make_reference.py "$OUT" $SMALL
    echo "fullsize: (a) took $((SECONDS - t0)) s"
fi

# ---- (b) omni
if [[ -z ${STAGE_RUN:-} && -x $OMNI_BUILD/bin/fullsize_stage_run ]]; then
    STAGE_RUN=$OMNI_BUILD/bin/fullsize_stage_run       # prebuilt (see README: no compiler needed)
elif [[ -z ${STAGE_RUN:-} ]]; then
    STAGE_RUN=$OUT/stage_run
    ${CC:-cc} -std=c11 -O2 -Wall -Wextra -Icore/include tests/fullsize/stage_run.c \
        -L"$OMNI_BUILD/lib" -lomni -Wl,-rpath,"$OMNI_BUILD/lib" -o "$STAGE_RUN" \
        || die "could not build tests/fullsize/stage_run.c (set CC, or STAGE_RUN to a prebuilt binary)"
fi
[[ -x $STAGE_RUN ]] || die "STAGE_RUN '$STAGE_RUN' is not executable"
export STAGE_RUN

: > "$LOG"
echo "fullsize: (b) omni pipeline: image -> image_load -> image_preprocess -> vit x2 -> projector"
rm -f "$OUT/omni_dump.safetensors"
t0=$(date +%s.%N)
"$OMNI_BIN" run "$OUT/pipeline.yaml" --image tests/fullsize/dog_bicycle.jpg \
    --dump "$OUT/omni_dump.safetensors" 2>&1 | tee -a "$LOG"
t1=$(date +%s.%N)
[[ -f $OUT/omni_dump.safetensors ]] || die "omni run wrote no $OUT/omni_dump.safetensors"
echo "pipeline wall $(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}') s (load + run, OMNI_THREADS=$OMNI_THREADS)" | tee -a "$LOG"

echo "fullsize: (b) omni stages alone on the reference's inputs"
rm -f "$OUT"/omni_stage_*.safetensors
# shellcheck source=/dev/null
source "$OUT/stage_runs.sh" 2>&1 | tee -a "$LOG"
for f in dino siglip projector vq; do
    [[ -f $OUT/omni_stage_$f.safetensors ]] || die "stage run '$f' wrote no output (see $LOG)"
done

# ---- (c) compare
echo "fullsize: (c) compare"
"$PY" tests/fullsize/compare.py "$OUT"
