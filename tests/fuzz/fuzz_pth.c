/* libFuzzer target: torch.save zip + restricted unpickler. Seed with
 * shared/data/weights-fixtures/ and tests/fixtures/data/weights_NAME.pth files. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_weights(data, size, "fuzz.pth");
    return 0;
}
