# Source on the device machine, in the repo root, after carrying .carry/ (tests/device/prepare.sh).
export LD_LIBRARY_PATH=$PWD/.carry/lib:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export OMNI_BUILD=.carry/build OMNI_BIN=$PWD/.carry/build/bin/omni OMNI_SHARED=$PWD/.carry/shared
export OMNI_PLUGIN_PATH=$PWD/.carry/build/plugins:$PWD/.carry/build/testplugins OMNI_TINY=$PWD/.carry/build/tiny
export OMNI_THREADS=$(nproc) CK_FORK=yes
