/* omni/dtype.h - element types and exact half-precision conversions. */
#ifndef OMNI_DTYPE_H
#define OMNI_DTYPE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "omni/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Values are part of the ABI and the wire format: append only. */
enum omni_dtype {
    OMNI_DTYPE_INVALID = 0,
    OMNI_DTYPE_F32 = 1,
    OMNI_DTYPE_F16 = 2,
    OMNI_DTYPE_BF16 = 3,
    OMNI_DTYPE_I32 = 4,
    OMNI_DTYPE_I64 = 5,
    OMNI_DTYPE_U8 = 6,
    OMNI_DTYPE_F64 = 7, /* weights files only (converted on load) */
    OMNI_DTYPE_COUNT
};

/* Bytes per element, 0 for OMNI_DTYPE_INVALID or unknown values. */
OMNI_API size_t omni_dtype_size(int dtype);
/* "f32", "f16", "bf16", "i32", "i64", "u8", "f64"; "invalid" otherwise. */
OMNI_API const char *omni_dtype_name(int dtype);
/* Parse the names above (also "float32", "float16", "bfloat16", "fp32",
 * "fp16"); returns OMNI_DTYPE_INVALID when unknown. */
OMNI_API int omni_dtype_parse(const char *s);
OMNI_API int omni_dtype_is_float(int dtype);
/* "f32|f16|bf16" for a mask of (1 << dtype) bits (OMNI_DTYPE_BIT); "any" for 0.
 * Writes into buf (returns buf, or the literal "any"). */
OMNI_API const char *omni_dtype_mask_str(uint32_t mask, char *buf, size_t n);

/* Exact conversions. f32 -> f16/bf16 rounds to nearest even; NaN stays NaN
 * (quiet), overflow gives infinity; subnormals are handled exactly. */
static inline uint32_t omni__f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float omni__bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

static inline float omni_bf16_to_f32(uint16_t h) { return omni__bits_f32((uint32_t)h << 16); }

static inline uint16_t omni_f32_to_bf16(float f)
{
    uint32_t u = omni__f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep sign, force quiet */
        return (uint16_t)((u >> 16) | 0x0040u);
    u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest even */
    return (uint16_t)(u >> 16);
}

OMNI_API float omni_f16_to_f32(uint16_t h);
OMNI_API uint16_t omni_f32_to_f16(float f);

/* Convert n elements between dtypes (float types and integer types; float ->
 * integer truncates toward zero). Returns OMNI_EDTYPE for unsupported pairs. */
OMNI_API int omni_dtype_convert(void *dst, int dst_dtype, const void *src, int src_dtype,
                                size_t n);

#ifdef __cplusplus
}
#endif
#endif
