#!/usr/bin/env bash
# Download the released weights into a folder (default: weights/), resuming
# partial downloads and checking each file's SHA-256 against the checksum the
# Hugging Face hub publishes for it (the X-Linked-Etag of LFS files).
#   pipelines/fetch-weights.sh [DIR] [all|t2i|mmu|text]
set -euo pipefail
dir=${1:-weights}
what=${2:-all}
mkdir -p "$dir"
hub=${OMNI_HF_ENDPOINT:-https://huggingface.co}

# repo  file  local-name  size (for the message only)  needed-by
files=(
  "hustvl/OmniMamba OmniMamba-1.3b.pth OmniMamba-1.3b.pth 3.23GB t2i,mmu"
  "peizesun/llamagen_t2i vq_ds16_t2i.pt vq_ds16_t2i.pt 288MB t2i"
  "timm/vit_large_patch14_reg4_dinov2.lvd142m model.safetensors dinov2-l14-reg4.safetensors 1.22GB mmu"
  "timm/ViT-SO400M-14-SigLIP-384 open_clip_model.safetensors siglip-so400m-14-384.safetensors 3.51GB mmu"
  "EleutherAI/gpt-neox-20b tokenizer.json gpt-neox-20b-tokenizer.json 2.1MB t2i,mmu,text"
  "state-spaces/mamba2-130m pytorch_model.bin mamba2-130m/pytorch_model.bin 516MB text"
)

fetch() {
  local repo=$1 file=$2 name=$3 size=$4
  local url="$hub/$repo/resolve/main/$file" out="$dir/$name"
  mkdir -p "$(dirname "$out")"
  local sha
  sha=$(curl -fsSIL "$url" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-linked-etag"{gsub(/"/,"",$2); print $2}' | tail -n 1)
  if [ -f "$out" ] && [ -n "$sha" ] && echo "$sha  $out" | sha256sum -c --status; then
    echo "ok       $out (checksum matches)"; return
  fi
  echo "fetching $repo/$file ($size) -> $out"
  curl -fL --retry 5 --retry-delay 3 -C - -o "$out.part" "$url"
  if [ -n "$sha" ]; then
    echo "$sha  $out.part" | sha256sum -c --status || { echo "checksum mismatch for $out (expected $sha); delete $out.part and retry" >&2; exit 1; }
  else
    echo "warning: the hub published no checksum for $file; not verified" >&2
  fi
  mv "$out.part" "$out"
}

# the tokenizer ships with the project's shared data when present
if [ -f ../shared/data/tokenizer/gpt-neox-20b-tokenizer.json ] && [ ! -f "$dir/gpt-neox-20b-tokenizer.json" ]; then
  cp ../shared/data/tokenizer/gpt-neox-20b-tokenizer.json "$dir/"
fi
for f in "${files[@]}"; do
  set -- $f
  if [ "$what" != all ] && [[ ",$5," != *",$what,"* ]]; then continue; fi
  fetch "$1" "$2" "$3" "$4"
done
echo "weights in $dir: point OMNI_WEIGHTS at it (export OMNI_WEIGHTS=$dir)"
