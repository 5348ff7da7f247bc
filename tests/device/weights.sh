# Sourced by the device scripts (after `source tests/device/env.sh`): the synthetic weights
# of `omni bench` in $B (default /tmp/ob; made on first use), linked under the names the
# shipped pipelines read, in $OMNI_WEIGHTS=/tmp/omni-pipeline-weights.
B=${B:-/tmp/ob}
W=/tmp/omni-pipeline-weights
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
