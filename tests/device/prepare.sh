#!/usr/bin/env bash
# Build omni here and gather what a run on the GPU machine needs into .carry/
# (git-ignored through .git/info/exclude): the build outputs (no objects), the
# runtime libraries the device image lacks (libyaml, libzmq and its deps,
# protobuf-c, cJSON, utf8proc, PCRE2, libpng, libjpeg, subunit), the shared
# test data the suites read, and the unpacked tiny fixture.
#   tests/device/prepare.sh            then, on the device (device tool `run`, carry .carry):
#   source tests/device/env.sh && <command>
# CARRY=.carry-x names another folder (for several builds side by side); then run
# `OMNI_CARRY=.carry-x source tests/device/env.sh` there and carry .carry-x.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build/dev}
make -j2 BUILD="$BUILD" CUDA=1 all tests tiny >/dev/null
C=${CARRY:-.carry}
case "$C" in .carry|.carry-*) ;; *) echo "prepare.sh: CARRY must be .carry or .carry-NAME" >&2; exit 2 ;; esac
X=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$X")"
grep -qx '/.carry*/' "$X" 2>/dev/null || echo '/.carry*/' >> "$X"
rm -rf "$C"
mkdir -p "$C/build" "$C/lib" "$C/shared/data"
for d in lib plugins bin tests testplugins tiny; do cp -a "$BUILD/$d" "$C/build/"; done
rm -f "$C/build/lib/libomni.a"
bins=$(ls $C/build/lib/*.so $C/build/bin/omni $C/build/plugins/*.so $C/build/testplugins/*.so $C/build/tests/check_*)
for so in $(ldd $bins 2>/dev/null | awk '/=> \//{print $3}' | sort -u); do
  case "$(basename "$so")" in
    libc.so*|libm.so*|libpthread*|libresolv*|libdl.so*|librt.so*|ld-linux*|libcuda*|libcudart*|libcublas*|libstdc++*|libgcc_s*|libomni.so|libz.so*) continue ;;
  esac
  cp -L "$so" "$C/lib/"
done
cp -r ../shared/data/tokenizer ../shared/data/images "$C/shared/data/"
du -sh "$C"
