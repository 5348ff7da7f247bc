/* libFuzzer target: arbitrary bytes as a pipeline YAML file through the
 * parser, variable expansion, --set overrides and the checker.
 * Build: make fuzz; run: build/fuzz/fuzz_yaml -max_total_time=60 corpus/ */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "omni/pipeline.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        fd = memfd_create("fuzz_yaml", 0);
        if (fd < 0)
            abort();
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        setenv("OMNI_PLUGIN_PATH", "/nonexistent", 1);
    }
    if (ftruncate(fd, 0) || pwrite(fd, data, size, 0) != (ssize_t)size)
        abort();
    const char *sets[] = {"a.b=1", "loop.max_tokens=3", "x.params.y=[1, 2]"};
    struct omni_pipeline_options po = {.size = sizeof po, .sets = sets, .n_sets = (int)(size % 4)};
    struct omni_error err;
    omni_pipeline_validate(path, &po, &err);
    return 0;
}
