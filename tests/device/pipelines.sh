#!/usr/bin/env bash
# On the device machine (after `source tests/device/env.sh`): run the shipped
# pipelines through the executor on CUDA with the synthetic weights of
# `omni bench` (made in $BENCH_DIR on first use), graphs on and off, and check
# that both give the same tokens and image (exit 1 when not, or when a run fails).
# Writes $OUT/pipelines.log.
#   tests/device/pipelines.sh [BENCH_DIR]
set -uo pipefail
B=${1:-/tmp/ob}
source "$(dirname "$0")/weights.sh"
LOG=${OUT:-.}/pipelines.log
V=-v
IMG="$OMNI_SHARED"/data/images/dog_bicycle.jpg
: > "$LOG"
run() { # name graphs args... ($V: verbosity, -v unless set)
  local name=$1 g=$2; shift 2
  echo "-- $name OMNI_CUDA_GRAPHS=$g" >> "$LOG"
  OMNI_CUDA_GRAPHS=$g "$OMNI_BIN" run "$@" --device cuda --dtype bf16 $V > /tmp/p-$name-$g.out 2>> "$LOG"
  echo "rc=$?" >> "$LOG"
  grep -v "^omni: info: \(creating\|loading\)" /tmp/p-$name-$g.out | tail -3 >> "$LOG"
}
for g in 1 0; do
  run t2i $g pipelines/t2i.yaml --prompt "a red bicycle leaning on a wall" -o /tmp/t2i-$g.png
  run mmu $g pipelines/mmu.yaml --prompt "What is in the picture?" --image "$IMG" --max-tokens 64
done
# two requests of batch 1 in one process (the loop states are kept between requests of
# batch <= 2, so the second may replay the loop graph the first recorded); each equals its
# single run (the second's run eagerly)
printf 'a red bicycle leaning on a wall\na bowl of fruit on a table\n' > /tmp/two-prompts.txt
V="-v -v" run t2i-two 1 pipelines/t2i.yaml --prompts /tmp/two-prompts.txt --batch 1 -o /tmp/t2i-two.png
run t2i-p2 0 pipelines/t2i.yaml --prompt "a bowl of fruit on a table" -o /tmp/t2i-p2.png
# two requests of batch 16, over OMNI_KEEP_LOOP_STATES (default 2): the states are kept
# parked between them (memory handed back, addresses kept) and the second request replays;
# graphs on and off give the same 32 images
for i in $(seq 1 32); do echo "a watercolor of $i red apples in a blue bowl"; done > /tmp/b16-prompts.txt
for g in 1 0; do
  run t2i-b16 $g pipelines/t2i.yaml --prompts /tmp/b16-prompts.txt --batch 16 -o /tmp/t2i-b16-$g.png
done
# graphs on and off must agree (greedy, same seed): exit 1 when they do not
fail=0
if cmp /tmp/t2i-1.png /tmp/t2i-0.png >> "$LOG" 2>&1; then echo "t2i: graphs on/off PNGs identical" >> "$LOG"
else echo "t2i: graphs on/off PNGs DIFFER" >> "$LOG"; fail=1; fi
if cmp /tmp/p-mmu-1.out /tmp/p-mmu-0.out >> "$LOG" 2>&1; then echo "mmu: graphs on/off output identical" >> "$LOG"
else echo "mmu: graphs on/off output DIFFERS" >> "$LOG"; fail=1; fi
if cmp /tmp/t2i-two-batch0.png /tmp/t2i-1.png >> "$LOG" 2>&1 && cmp /tmp/t2i-two-batch1.png /tmp/t2i-p2.png >> "$LOG" 2>&1
then echo "t2i: two requests in one process equal their single runs" >> "$LOG"
else echo "t2i: two requests in one process DIFFER from their single runs" >> "$LOG"; fail=1; fi
# the first request pays the capture once: the second (same batch, another prompt)
# replays the graph the first recorded (-vv logs which key word differed if not)
if sed -n '/^-- t2i-two OMNI_CUDA_GRAPHS=1/,/^rc=/p' "$LOG" | grep -q "replaying the CUDA graph"; then echo "t2i: the second request replayed the first one's loop graph" >> "$LOG"
else echo "t2i: the second request re-recorded the loop graph (FAIL; -vv logs which key word differed)" >> "$LOG"; fail=1; fi
n_park=$(sed -n '/^-- t2i-b16 OMNI_CUDA_GRAPHS=1/,/^rc=/p' "$LOG" | grep -c "replaying the CUDA graph")
if [ "$n_park" = 1 ]; then echo "t2i batch 16, parked states: the second request replayed the first one's loop graph" >> "$LOG"
else echo "t2i batch 16, parked states: $n_park replays instead of 1 (FAIL)" >> "$LOG"; fail=1; fi
park_same=1 n_png=0
for f in /tmp/t2i-b16-0-batch*.png; do [ -e "$f" ] || continue; n_png=$((n_png + 1)); cmp "$f" "${f/b16-0/b16-1}" >> "$LOG" 2>&1 || park_same=0; done
if [ $park_same = 1 ] && [ $n_png = 32 ]; then echo "t2i batch 16, parked states: graphs on/off PNGs identical (32)" >> "$LOG"
else echo "t2i batch 16, parked states: graphs on/off PNGs DIFFER or missing ($n_png of 32)" >> "$LOG"; fail=1; fi
grep -c "^rc=[1-9]" "$LOG" > /dev/null && fail=1
grep -h "prefill\|captured\|graph\|stopped\|rc=\|DIFFER\|equal\|replay\|memory held" "$LOG" | head -60
exit $fail
