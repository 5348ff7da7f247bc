/* Core units: status strings, error record, dtypes and exact half
 * conversions, tensors and buffers, the arena, YAML params. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

START_TEST(test_status_strings_cover_every_code)
{
    ck_assert_str_eq(omni_status_str(OMNI_OK), "success");
    ck_assert_str_eq(omni_status_name(OMNI_EINVAL), "OMNI_EINVAL");
    ck_assert_str_eq(omni_status_str(OMNI_EREFUSED), "refused (unsafe or disallowed content)");
    ck_assert_str_eq(omni_status_str(12345), "unknown status");
    for (int s = OMNI_EINTERNAL; s <= OMNI_DONE; s++)
        ck_assert_str_ne(omni_status_str(s), "unknown status");
}
END_TEST

START_TEST(test_error_prefix_keeps_the_message)
{
    struct omni_error err;
    omni_error_clear(&err);
    ck_assert_int_eq(omni_error_set(&err, OMNI_ESHAPE, "shape %d", 3), OMNI_ESHAPE);
    ck_assert_int_eq(omni_error_prefix(&err, "%s:%d: ", "f.yaml", 7), OMNI_ESHAPE);
    ck_assert_str_eq(err.msg, "f.yaml:7: shape 3");
    ck_assert_int_eq(omni_error_set(NULL, OMNI_EIO, "no record"), OMNI_EIO);
}
END_TEST

START_TEST(test_f16_conversion_exact_on_every_half)
{
    /* every finite half converts to f32 and back to the same bits */
    for (uint32_t h = 0; h < 0x10000; h++) {
        uint16_t x = (uint16_t)h;
        float f = omni_f16_to_f32(x);
        if (isnan(f))
            continue;
        ck_assert_msg(omni_f32_to_f16(f) == x, "half 0x%04x -> %g -> 0x%04x", h, f, omni_f32_to_f16(f));
    }
    /* hand-worked values */
    ck_assert_float_eq(omni_f16_to_f32(0x3c00), 1.0f);
    ck_assert_float_eq(omni_f16_to_f32(0xc000), -2.0f);
    ck_assert_float_eq(omni_f16_to_f32(0x0001), 5.9604644775390625e-8f); /* smallest subnormal */
    ck_assert_float_eq(omni_f16_to_f32(0x7bff), 65504.0f);
    ck_assert_uint_eq(omni_f32_to_f16(65520.0f), 0x7c00);                 /* rounds to inf */
    ck_assert_uint_eq(omni_f32_to_f16(1.0f + 1.0f / 2048), 0x3c00);       /* tie -> even */
    ck_assert_uint_eq(omni_f32_to_f16(1.0f + 3.0f / 2048), 0x3c02);       /* tie -> even (up) */
    ck_assert_uint_eq(omni_f32_to_f16(2.98023223876953125e-8f), 0x0000);  /* 2^-25: tie -> 0 */
    ck_assert_uint_eq(omni_f32_to_f16(2.9802326e-8f), 0x0001);            /* just above 2^-25 */
    ck_assert(isnan(omni_f16_to_f32(omni_f32_to_f16(NAN))));
}
END_TEST

START_TEST(test_bf16_conversion_rounds_to_nearest_even)
{
    ck_assert_uint_eq(omni_f32_to_bf16(1.0f), 0x3f80);
    ck_assert_float_eq(omni_bf16_to_f32(0x3f80), 1.0f);
    /* 1 + 2^-8 is exactly halfway between bf16 1.0 and 1.0078125: ties to even (1.0) */
    ck_assert_uint_eq(omni_f32_to_bf16(1.00390625f), 0x3f80);
    /* 1 + 3*2^-8 is halfway between 1.0078125 (odd) and 1.015625: to even (up) */
    ck_assert_uint_eq(omni_f32_to_bf16(1.01171875f), 0x3f82);
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = omni_bf16_to_f32((uint16_t)h);
        if (!isnan(f))
            ck_assert_uint_eq(omni_f32_to_bf16(f), h);
    }
}
END_TEST

START_TEST(test_dtype_names_and_sizes)
{
    ck_assert_int_eq(omni_dtype_parse("bfloat16"), OMNI_DTYPE_BF16);
    ck_assert_int_eq(omni_dtype_parse("F32"), OMNI_DTYPE_F32);
    ck_assert_int_eq(omni_dtype_parse("f8"), OMNI_DTYPE_INVALID);
    ck_assert_uint_eq(omni_dtype_size(OMNI_DTYPE_I64), 8);
    ck_assert_uint_eq(omni_dtype_size(99), 0);
    ck_assert_str_eq(omni_dtype_name(OMNI_DTYPE_U8), "u8");
    float src[3] = {1.5f, -2.25f, 1e-3f};
    uint16_t h[3];
    float back[3];
    ck_assert_int_eq(omni_dtype_convert(h, OMNI_DTYPE_F16, src, OMNI_DTYPE_F32, 3), OMNI_OK);
    ck_assert_int_eq(omni_dtype_convert(back, OMNI_DTYPE_F32, h, OMNI_DTYPE_F16, 3), OMNI_OK);
    ck_assert_float_eq(back[0], 1.5f);
    ck_assert_float_eq(back[1], -2.25f);
    ck_assert_float_eq_tol(back[2], 1e-3f, 1e-6f);
}
END_TEST

START_TEST(test_tensor_alloc_view_and_release)
{
    long before = omni_buffer_live_count();
    struct omni_tensor t, v, c;
    struct omni_error err;
    int64_t shape[2] = {3, 4};
    ck_assert_int_eq(omni_tensor_alloc(&t, OMNI_DTYPE_F32, 2, shape, OMNI_CPU, &err), OMNI_OK);
    ck_assert_int_eq(omni_tensor_numel(&t), 12);
    ck_assert_uint_eq(omni_tensor_nbytes(&t), 48);
    ck_assert_int_eq(t.strides[0], 4);
    ck_assert(omni_tensor_is_contiguous(&t));
    float *d = omni_tensor_data(&t);
    for (int i = 0; i < 12; i++) {
        ck_assert_float_eq(d[i], 0.0f); /* zero-filled */
        d[i] = (float)i;
    }
    /* transpose view, then a contiguous copy gathers it */
    v = t;
    omni_buffer_ref(v.buf);
    v.shape[0] = 4;
    v.shape[1] = 3;
    v.strides[0] = 1;
    v.strides[1] = 4;
    ck_assert(!omni_tensor_is_contiguous(&v));
    ck_assert_int_eq(omni_tensor_copy_to(&c, &v, OMNI_CPU, &err), OMNI_OK);
    const float *cd = omni_tensor_data(&c);
    ck_assert_float_eq(cd[1], 4.0f); /* element (0,1) of the transpose = t[1][0] */
    ck_assert_float_eq(cd[3], 1.0f);
    char buf[64];
    ck_assert_str_eq(omni_tensor_str(&c, buf, sizeof buf), "f32[4,3]@cpu");
    int64_t bad[1] = {5};
    ck_assert_int_eq(omni_tensor_reshape(&c, 1, bad, &err), OMNI_ESHAPE);
    ck_assert_ptr_nonnull(strstr(err.msg, "[4,3]"));
    omni_tensor_release(&v);
    omni_tensor_release(&c);
    omni_tensor_release(&t);
    omni_tensor_release(&t); /* releasing twice is safe */
    TU_ASSERT_NO_LEAK(before);
}
END_TEST

START_TEST(test_tensor_view_bounds_checked)
{
    struct omni_error err;
    struct omni_buffer *b = omni_buffer_new(OMNI_CPU, 16, &err);
    struct omni_tensor t;
    int64_t shape[1] = {5};
    ck_assert_int_eq(omni_tensor_view(&t, b, 0, OMNI_DTYPE_F32, 1, shape, &err), OMNI_ERANGE);
    shape[0] = 3;
    ck_assert_int_eq(omni_tensor_view(&t, b, 4, OMNI_DTYPE_F32, 1, shape, &err), OMNI_OK);
    omni_tensor_release(&t);
    omni_buffer_unref(b);
}
END_TEST

START_TEST(test_cuda_device_without_cuda_is_a_clear_error)
{
    struct omni_device dev;
    struct omni_error err;
    ck_assert_int_eq(omni_device_parse("cuda:1", &dev, &err), OMNI_OK);
    ck_assert_int_eq(dev.index, 1);
    ck_assert_int_eq(omni_device_parse("gpu", &dev, &err), OMNI_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "gpu"));
    if (omni_cuda_device_count() == 0) {
        struct omni_tensor t;
        int64_t shape[1] = {4};
        struct omni_device cuda = {OMNI_DEVICE_CUDA, 0};
        ck_assert_int_ne(omni_tensor_alloc(&t, OMNI_DTYPE_F32, 1, shape, cuda, &err), OMNI_OK);
        ck_assert(err.msg[0]);
    }
}
END_TEST

START_TEST(test_arena_alignment_and_reset)
{
    struct omni_arena *a = omni_arena_new(256);
    ck_assert_ptr_nonnull(a);
    void *p = omni_arena_alloc(a, 10), *q = omni_arena_alloc(a, 1000);
    ck_assert_ptr_nonnull(p);
    ck_assert_ptr_nonnull(q);
    ck_assert_uint_eq((uintptr_t)p % 64, 0);
    ck_assert_uint_eq((uintptr_t)q % 64, 0);
    ck_assert_uint_ge(omni_arena_used(a), 1010);
    omni_arena_reset(a);
    ck_assert_uint_eq(omni_arena_used(a), 0);
    omni_arena_free(a);
}
END_TEST

static void sink(int level, const char *file, int line, const char *msg, void *user)
{
    snprintf(user, 256, "%d:%s", level, msg);
}

START_TEST(test_log_goes_to_the_installed_sink_only)
{
    char got[256] = "";
    omni_log_set_level(OMNI_LOG_INFO);
    omni_log_set_sink(sink, got);
    OMNI_LOG(OMNI_LOG_DEBUG, "hidden %d", 1);
    ck_assert_str_eq(got, "");
    OMNI_LOG(OMNI_LOG_WARN, "shown %d", 2);
    ck_assert_str_eq(got, "1:shown 2");
    omni_log_set_sink(NULL, NULL);
    ck_assert_int_eq(omni_log_level_parse("debug"), OMNI_LOG_DEBUG);
    ck_assert_int_eq(omni_log_level_parse("loud"), -1);
}
END_TEST

/* On the host a reserved buffer is a plain zero-filled one: it has no pages to drop, so
 * dropping keeps its memory and contents, and restoring is a no-op. */
START_TEST(test_reserved_buffer_on_the_host_keeps_its_memory)
{
    long before = omni_buffer_live_count();
    struct omni_error err;
    struct omni_buffer *b = omni_buffer_new_reserved(OMNI_CPU, 100, &err);
    ck_assert_ptr_nonnull(b);
    ck_assert_uint_eq(omni_buffer_size(b), 100);
    ck_assert_int_eq(omni_buffer_kind(b), OMNI_BUFFER_HOST);
    unsigned char *p = omni_buffer_data(b);
    for (int i = 0; i < 100; i++) {
        ck_assert_uint_eq(p[i], 0);
        p[i] = (unsigned char)(i * 7 + 1);
    }
    ck_assert_int_eq(omni_buffer_drop_pages(b), 0);
    ck_assert_int_eq(omni_buffer_has_pages(b), 1);
    ck_assert_int_eq(omni_buffer_restore_pages(b, &err), OMNI_OK);
    ck_assert_ptr_eq(omni_buffer_data(b), p);
    for (int i = 0; i < 100; i++)
        ck_assert_uint_eq(p[i], (unsigned char)(i * 7 + 1));
    ck_assert_int_eq(omni_buffer_drop_pages(NULL), 0);
    ck_assert_int_eq(omni_buffer_has_pages(NULL), 0);
    omni_buffer_unref(b);
    TU_ASSERT_NO_LEAK(before);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("core");
    TCase *tc = tcase_create("units");
    tcase_add_test(tc, test_status_strings_cover_every_code);
    tcase_add_test(tc, test_error_prefix_keeps_the_message);
    tcase_add_test(tc, test_f16_conversion_exact_on_every_half);
    tcase_add_test(tc, test_bf16_conversion_rounds_to_nearest_even);
    tcase_add_test(tc, test_dtype_names_and_sizes);
    tcase_add_test(tc, test_tensor_alloc_view_and_release);
    tcase_add_test(tc, test_reserved_buffer_on_the_host_keeps_its_memory);
    tcase_add_test(tc, test_tensor_view_bounds_checked);
    tcase_add_test(tc, test_cuda_device_without_cuda_is_a_clear_error);
    tcase_add_test(tc, test_arena_alignment_and_reset);
    tcase_add_test(tc, test_log_goes_to_the_installed_sink_only);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
