#!/usr/bin/env bash
# On the device machine (after `source tests/device/env.sh`): run the shipped
# pipelines through the executor on CUDA with the synthetic weights of
# `omni bench` (made in $BENCH_DIR on first use), graphs on and off, and check
# that both give the same tokens. Writes $OUT/pipelines.log.
#   tests/device/pipelines.sh [BENCH_DIR]
set -uo pipefail
B=${1:-/tmp/ob}
W=/tmp/omni-pipeline-weights
LOG=${OUT:-.}/pipelines.log
for f in omnimamba-1.3b vq16 dinov2-l14-reg4 siglip-so400m; do # the bench makes them on first use
  [ -f "$B/$f-random-1.safetensors" ] || { "$OMNI_BIN" bench --cases t2i_b1,mmu --tokens 1 --warmup 0 --dir "$B" >/dev/null; break; }
done
mkdir -p "$W"
ln -sf "$B"/omnimamba-1.3b-random-1.safetensors "$W"/OmniMamba-1.3b.pth
ln -sf "$B"/vq16-random-1.safetensors "$W"/vq_ds16_t2i.pt
ln -sf "$B"/dinov2-l14-reg4-random-1.safetensors "$W"/dinov2-l14-reg4.safetensors
ln -sf "$B"/siglip-so400m-random-1.safetensors "$W"/siglip-so400m-14-384.safetensors
ln -sf "$OMNI_SHARED"/data/tokenizer/gpt-neox-20b-tokenizer.json "$W"/gpt-neox-20b-tokenizer.json
export OMNI_WEIGHTS=$W
IMG="$OMNI_SHARED"/data/images/dog_bicycle.jpg
: > "$LOG"
run() { # name graphs args...
  local name=$1 g=$2; shift 2
  echo "-- $name OMNI_CUDA_GRAPHS=$g" >> "$LOG"
  OMNI_CUDA_GRAPHS=$g "$OMNI_BIN" run "$@" --device cuda --dtype bf16 -v > /tmp/p-$name-$g.out 2>> "$LOG"
  echo "rc=$?" >> "$LOG"
  grep -v "^omni: info: \(creating\|loading\)" /tmp/p-$name-$g.out | tail -3 >> "$LOG"
}
for g in 1 0; do
  run t2i $g pipelines/t2i.yaml --prompt "a red bicycle leaning on a wall" -o /tmp/t2i-$g.png
  run mmu $g pipelines/mmu.yaml --prompt "What is in the picture?" --image "$IMG" --max-tokens 64
done
# two requests of batch 1 in one process: the second updates the cached graph
printf 'a red bicycle leaning on a wall\na bowl of fruit on a table\n' > /tmp/two-prompts.txt
run t2i-two 1 pipelines/t2i.yaml --prompts /tmp/two-prompts.txt --batch 1 -o /tmp/t2i-two.png
cmp /tmp/t2i-1.png /tmp/t2i-0.png >> "$LOG" 2>&1 && echo "t2i: graphs on/off PNGs identical" >> "$LOG"
cmp /tmp/p-mmu-1.out /tmp/p-mmu-0.out >> "$LOG" 2>&1 && echo "mmu: graphs on/off output identical" >> "$LOG"
grep -h "prefill\|captured\|graph\|stopped\|rc=" "$LOG" | head -40
