/* libFuzzer target: .safetensors parsing (header JSON, offsets, dtypes).
 * Seed with a few files written by omni_safetensors_write. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_weights(data, size, "fuzz.safetensors");
    return 0;
}
