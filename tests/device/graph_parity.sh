#!/usr/bin/env bash
# On the device machine (after `source tests/device/env.sh`): run the t2i pipeline
# (greedy) with CUDA graphs on and off, with and without programmatic dependent launch
# (OMNI_DEC_GEMV_FLAGS=1), dump every loop output, and report the first step and tensor where
# graphs on and off differ. Writes $OUT/graph-parity.log.
set -uo pipefail
source "$(dirname "$0")/weights.sh"
LOG=${OUT:-.}/graph-parity.log
: > "$LOG"
for fl in 0 1; do
  for g in 1 0; do
    OMNI_DEC_GEMV_FLAGS=$fl OMNI_CUDA_GRAPHS=$g "$OMNI_BIN" run pipelines/t2i.yaml --device cuda --dtype bf16 -q \
      --prompt "a red bicycle leaning on a wall" -o /tmp/gp-$fl-$g.png --dump /tmp/gp-$fl-$g.safetensors >> "$LOG" 2>&1
    echo "flags=$fl graphs=$g rc=$?" >> "$LOG"
  done
  python3 - "$fl" >> "$LOG" 2>&1 <<'PY'
import sys
from safetensors.numpy import load_file
fl = sys.argv[1]
a = load_file(f"/tmp/gp-{fl}-1.safetensors"); b = load_file(f"/tmp/gp-{fl}-0.safetensors")
def key(k):
    s = k.rsplit(".step", 1)
    return (int(s[1]) if len(s) == 2 and s[1].isdigit() else -1, k)
ks = sorted(set(a) & set(b), key=key)
print(f"flags={fl}: {len(ks)} common tensors, only graphs-on {len(set(a)-set(b))}, only off {len(set(b)-set(a))}")
n = 0
for k in ks:
    x, y = a[k], b[k]
    if x.shape != y.shape or (x != y).any():
        d = abs(x.astype('float64') - y.astype('float64')).max() if x.shape == y.shape else None
        print(f"  differs: {k} shape {x.shape} vs {y.shape} max|diff| {d}")
        n += 1
        if n >= 12: break
if n == 0: print("  all equal")
PY
done
cmp /tmp/gp-0-1.png /tmp/gp-0-0.png >> "$LOG" 2>&1 && echo "PDL on: PNGs identical" >> "$LOG"
cmp /tmp/gp-1-1.png /tmp/gp-1-0.png >> "$LOG" 2>&1 && echo "PDL off: PNGs identical" >> "$LOG"
cat "$LOG"
