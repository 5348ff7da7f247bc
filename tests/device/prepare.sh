#!/usr/bin/env bash
# Build omni here and gather what a run on the GPU machine needs into .carry/
# (git-ignored through .git/info/exclude): the build outputs (no objects), the
# runtime libraries the device image lacks (libyaml, libzmq and its deps,
# protobuf-c, cJSON, utf8proc, PCRE2, libpng, libjpeg, subunit), the shared
# test data the suites read, and the unpacked tiny fixture.
#   tests/device/prepare.sh            then, on the device (device tool `run`, carry .carry):
#   source tests/device/env.sh && <command>
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build/dev}
make -j2 BUILD="$BUILD" CUDA=1 all tests tiny >/dev/null
grep -qx '/.carry/' .git/info/exclude 2>/dev/null || echo '/.carry/' >> .git/info/exclude
rm -rf .carry
mkdir -p .carry/build .carry/lib .carry/shared/data
for d in lib plugins bin tests testplugins tiny; do cp -a "$BUILD/$d" .carry/build/; done
rm -f .carry/build/lib/libomni.a
bins=$(ls .carry/build/lib/*.so .carry/build/bin/omni .carry/build/plugins/*.so .carry/build/testplugins/*.so .carry/build/tests/check_*)
for so in $(ldd $bins 2>/dev/null | awk '/=> \//{print $3}' | sort -u); do
  case "$(basename "$so")" in
    libc.so*|libm.so*|libpthread*|libresolv*|libdl.so*|librt.so*|ld-linux*|libcuda*|libcudart*|libcublas*|libstdc++*|libgcc_s*|libomni.so|libz.so*) continue ;;
  esac
  cp -L "$so" .carry/lib/
done
cp -r ../shared/data/tokenizer ../shared/data/images .carry/shared/data/
du -sh .carry
