#!/usr/bin/env bash
# Build tests/device/gemv_lab.cu (with the engine's GEMV linked from libomni.a) into
# $CARRY/gemv_lab; run it on the GPU machine as `$OMNI_CARRY/gemv_lab [prod]`.
#   BUILD=build/lead CARRY=.carry-lead tests/device/gemv_lab.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build/dev}
C=${CARRY:-.carry}
make -j2 BUILD="$BUILD" CUDA=1 "$BUILD/lib/libomni.a" > /dev/null
nvcc -O3 -arch=sm_90 -std=c++17 -DLAB_PROD -DOMNI_HAVE_CUDA -Icore/include -o "$C/gemv_lab" \
  tests/device/gemv_lab.cu "$BUILD/lib/libomni.a" \
  $(pkg-config --libs yaml-0.1 libzmq libprotobuf-c libcjson libpng libjpeg) -ldl -lm -lrt -lcublasLt -lcublas
