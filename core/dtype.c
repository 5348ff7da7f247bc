/* dtypes and exact f16 conversions. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "omni/dtype.h"

size_t omni_dtype_size(int dtype)
{
    switch (dtype) {
    case OMNI_DTYPE_F32: return 4;
    case OMNI_DTYPE_F16: return 2;
    case OMNI_DTYPE_BF16: return 2;
    case OMNI_DTYPE_I32: return 4;
    case OMNI_DTYPE_I64: return 8;
    case OMNI_DTYPE_U8: return 1;
    case OMNI_DTYPE_F64: return 8;
    }
    return 0;
}

const char *omni_dtype_name(int dtype)
{
    switch (dtype) {
    case OMNI_DTYPE_F32: return "f32";
    case OMNI_DTYPE_F16: return "f16";
    case OMNI_DTYPE_BF16: return "bf16";
    case OMNI_DTYPE_I32: return "i32";
    case OMNI_DTYPE_I64: return "i64";
    case OMNI_DTYPE_U8: return "u8";
    case OMNI_DTYPE_F64: return "f64";
    }
    return "invalid";
}

int omni_dtype_parse(const char *s)
{
    static const struct { const char *name; int dtype; } names[] = {
        {"f32", OMNI_DTYPE_F32},   {"float32", OMNI_DTYPE_F32}, {"fp32", OMNI_DTYPE_F32},
        {"f16", OMNI_DTYPE_F16},   {"float16", OMNI_DTYPE_F16}, {"fp16", OMNI_DTYPE_F16},
        {"half", OMNI_DTYPE_F16},  {"bf16", OMNI_DTYPE_BF16},   {"bfloat16", OMNI_DTYPE_BF16},
        {"i32", OMNI_DTYPE_I32},   {"int32", OMNI_DTYPE_I32},   {"i64", OMNI_DTYPE_I64},
        {"int64", OMNI_DTYPE_I64}, {"u8", OMNI_DTYPE_U8},       {"uint8", OMNI_DTYPE_U8},
        {"f64", OMNI_DTYPE_F64},   {"float64", OMNI_DTYPE_F64},
    };
    if (!s)
        return OMNI_DTYPE_INVALID;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcasecmp(s, names[i].name))
            return names[i].dtype;
    return OMNI_DTYPE_INVALID;
}

int omni_dtype_is_float(int dtype)
{
    return dtype == OMNI_DTYPE_F32 || dtype == OMNI_DTYPE_F16 || dtype == OMNI_DTYPE_BF16 ||
           dtype == OMNI_DTYPE_F64;
}

const char *omni_dtype_mask_str(uint32_t mask, char *buf, size_t n)
{
    size_t used = 0;
    if (!mask)
        return "any";
    if (n)
        buf[0] = '\0';
    for (int d = 1; d < OMNI_DTYPE_COUNT; d++)
        if (mask & (1u << d))
            used += (size_t)snprintf(buf + used, used < n ? n - used : 0, "%s%s", used ? "|" : "", omni_dtype_name(d));
    return buf;
}

float omni_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ffu;
    if (exp == 0x1f) /* inf / nan */
        return omni__bits_f32(sign | 0x7f800000u | (man << 13));
    if (exp == 0) {
        if (man == 0)
            return omni__bits_f32(sign);
        /* subnormal: value = man * 2^-24, exact in f32 */
        float v = (float)man * 5.9604644775390625e-8f;
        return sign ? -v : v;
    }
    return omni__bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

uint16_t omni_f32_to_f16(float f)
{
    uint32_t u = omni__f32_bits(f);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) /* NaN: quiet, keep top payload bits */
        return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
    if (a >= 0x477ff000u) /* >= 65520 rounds to inf */
        return (uint16_t)(sign | 0x7c00u);
    if (a < 0x38800000u) { /* below the smallest normal half (2^-14): subnormal or zero */
        if (a < 0x33000000u) /* < 2^-25: rounds to zero (2^-25 itself ties to even = 0) */
            return (uint16_t)sign;
        uint32_t exp = a >> 23;
        uint32_t man = (a & 0x7fffffu) | 0x800000u;
        /* in units of 2^-24 the value is man * 2^(exp-126) = man >> (126-exp) */
        uint32_t sh = 126 - exp;
        uint32_t res = man >> sh;
        uint32_t rem = man & ((1u << sh) - 1u);
        uint32_t halfway = 1u << (sh - 1);
        if (rem > halfway || (rem == halfway && (res & 1u)))
            res++;
        return (uint16_t)(sign | res);
    }
    /* normal: rebias exponent, round mantissa to 10 bits, nearest even */
    uint32_t r = a - 0x38000000u; /* exponent rebias 127 -> 15 */
    r += 0xfffu + ((r >> 13) & 1u);
    return (uint16_t)(sign | (r >> 13));
}

static double load_elem(const void *src, int dtype, size_t i)
{
    switch (dtype) {
    case OMNI_DTYPE_F32: return ((const float *)src)[i];
    case OMNI_DTYPE_F16: return omni_f16_to_f32(((const uint16_t *)src)[i]);
    case OMNI_DTYPE_BF16: return omni_bf16_to_f32(((const uint16_t *)src)[i]);
    case OMNI_DTYPE_F64: return ((const double *)src)[i];
    case OMNI_DTYPE_I32: return ((const int32_t *)src)[i];
    case OMNI_DTYPE_I64: return (double)((const int64_t *)src)[i];
    case OMNI_DTYPE_U8: return ((const uint8_t *)src)[i];
    }
    return 0;
}

int omni_dtype_convert(void *dst, int dst_dtype, const void *src, int src_dtype, size_t n)
{
    if (!omni_dtype_size(dst_dtype) || !omni_dtype_size(src_dtype))
        return OMNI_EDTYPE;
    if (dst_dtype == src_dtype) {
        memmove(dst, src, n * omni_dtype_size(dst_dtype));
        return OMNI_OK;
    }
    /* integer <-> integer keeps exact 64-bit values */
    if ((dst_dtype == OMNI_DTYPE_I64 || dst_dtype == OMNI_DTYPE_I32 || dst_dtype == OMNI_DTYPE_U8) &&
        (src_dtype == OMNI_DTYPE_I64 || src_dtype == OMNI_DTYPE_I32 || src_dtype == OMNI_DTYPE_U8)) {
        for (size_t i = 0; i < n; i++) {
            int64_t v = src_dtype == OMNI_DTYPE_I64   ? ((const int64_t *)src)[i]
                        : src_dtype == OMNI_DTYPE_I32 ? ((const int32_t *)src)[i]
                                                      : ((const uint8_t *)src)[i];
            if (dst_dtype == OMNI_DTYPE_I64) ((int64_t *)dst)[i] = v;
            else if (dst_dtype == OMNI_DTYPE_I32) ((int32_t *)dst)[i] = (int32_t)v;
            else ((uint8_t *)dst)[i] = (uint8_t)v;
        }
        return OMNI_OK;
    }
    for (size_t i = 0; i < n; i++) {
        double v = load_elem(src, src_dtype, i);
        switch (dst_dtype) {
        case OMNI_DTYPE_F32: ((float *)dst)[i] = (float)v; break;
        case OMNI_DTYPE_F16: ((uint16_t *)dst)[i] = omni_f32_to_f16((float)v); break;
        case OMNI_DTYPE_BF16: ((uint16_t *)dst)[i] = omni_f32_to_bf16((float)v); break;
        case OMNI_DTYPE_F64: ((double *)dst)[i] = v; break;
        case OMNI_DTYPE_I32: ((int32_t *)dst)[i] = (int32_t)v; break;
        case OMNI_DTYPE_I64: ((int64_t *)dst)[i] = (int64_t)v; break;
        case OMNI_DTYPE_U8: ((uint8_t *)dst)[i] = (uint8_t)v; break;
        }
    }
    return OMNI_OK;
}
