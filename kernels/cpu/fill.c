/* kernels/cpu/fill.c - zero fill on the host. */
#include "fill.h"

#include <string.h>

void omni_zero_cpu(void *p, int64_t nbytes)
{
    if (nbytes > 0)
        memset(p, 0, (size_t)nbytes);
}
