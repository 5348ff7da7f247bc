# tests/core: extra sources per suite (a plain list of assignments).
# check_memlog tests internal code (hidden in libomni): it builds its own copy.
check_memlog_EXTRA := core/memlog.c core/cli/bench_mem.c
