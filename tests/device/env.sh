# Source on the device machine, in the repo root, after carrying .carry/ (tests/device/prepare.sh).
# OMNI_CARRY=.carry-NAME selects a folder made by CARRY=.carry-NAME tests/device/prepare.sh.
C=$PWD/${OMNI_CARRY:-.carry}
export LD_LIBRARY_PATH=$C/lib:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export OMNI_BUILD=$C/build OMNI_BIN=$C/build/bin/omni OMNI_SHARED=$C/shared
export OMNI_PLUGIN_PATH=$C/build/plugins:$C/build/testplugins OMNI_TINY=$C/build/tiny
export OMNI_THREADS=$(nproc) CK_FORK=yes
