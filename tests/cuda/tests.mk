# tests/cuda: extra sources per GPU suite (a plain list of assignments).
check_cuda_stages_EXTRA := core/cli/bench_model.c
check_cuda_vq_EXTRA := core/cli/bench_model.c
