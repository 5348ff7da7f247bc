/* tests/kernels/check_embed.c - embedding gather on the CPU: hand-worked rows
 * for f32/f16/bf16 tables and i32/i64 ids, views, range and argument errors. */
#include "ktest.h"

START_TEST(test_embedding_gathers_rows_f32_i32)
{
    /* table row v = [10v, 10v+1, 10v+2], V = 4; ids [2,0,3] -> rows 2, 0, 3 */
    struct omni_tensor t, ids, out;
    struct omni_error e;
    float *tp = kt_tensorv(&t, OMNI_DTYPE_F32, 2, (int64_t)4, (int64_t)3);
    int32_t *ip = kt_tensorv(&ids, OMNI_DTYPE_I32, 1, (int64_t)3);
    float *op = kt_tensorv(&out, OMNI_DTYPE_F32, 2, (int64_t)3, (int64_t)3);
    for (int v = 0; v < 4; v++)
        for (int d = 0; d < 3; d++)
            tp[v * 3 + d] = (float)(10 * v + d);
    ip[0] = 2, ip[1] = 0, ip[2] = 3;
    ck_assert_int_eq(omni_op_embedding(&out, &t, &ids, &e), OMNI_OK);
    const float want[9] = {20, 21, 22, 0, 1, 2, 30, 31, 32};
    for (int i = 0; i < 9; i++)
        ck_assert_float_eq(op[i], want[i]);
    kt_release(&t), kt_release(&ids), kt_release(&out);
}
END_TEST

START_TEST(test_embedding_half_tables_and_i64_ids_with_batch_shape)
{
    /* f16/bf16 tables hold exactly representable values (v + d/4), ids (2,2) i64
     * [[1,1],[0,2]] -> out (2,2,2) */
    struct omni_tensor t16, tb, ids, out;
    struct omni_error e;
    uint16_t *hp = kt_tensorv(&t16, OMNI_DTYPE_F16, 2, (int64_t)3, (int64_t)2);
    uint16_t *bp = kt_tensorv(&tb, OMNI_DTYPE_BF16, 2, (int64_t)3, (int64_t)2);
    int64_t *ip = kt_tensorv(&ids, OMNI_DTYPE_I64, 2, (int64_t)2, (int64_t)2);
    float *op = kt_tensorv(&out, OMNI_DTYPE_F32, 3, (int64_t)2, (int64_t)2, (int64_t)2);
    for (int v = 0; v < 3; v++)
        for (int d = 0; d < 2; d++) {
            hp[v * 2 + d] = omni_f32_to_f16((float)v + 0.25f * (float)d);
            bp[v * 2 + d] = omni_f32_to_bf16(-(float)v - 0.25f * (float)d);
        }
    ip[0] = 1, ip[1] = 1, ip[2] = 0, ip[3] = 2;
    const float want[8] = {1, 1.25f, 1, 1.25f, 0, 0.25f, 2, 2.25f};
    ck_assert_int_eq(omni_op_embedding(&out, &t16, &ids, &e), OMNI_OK);
    for (int i = 0; i < 8; i++)
        ck_assert_float_eq(op[i], want[i]);
    ck_assert_int_eq(omni_op_embedding(&out, &tb, &ids, &e), OMNI_OK);
    for (int i = 0; i < 8; i++)
        ck_assert_float_eq(op[i], -want[i]);
    kt_release(&t16), kt_release(&tb), kt_release(&ids), kt_release(&out);
}
END_TEST

START_TEST(test_embedding_table_view_with_row_stride)
{
    /* table = columns [1,3) of a (3,4) buffer of 0..11: row v = [4v+1, 4v+2] */
    struct omni_tensor buf, ids, out;
    struct omni_error e;
    float *bp = kt_tensorv(&buf, OMNI_DTYPE_F32, 2, (int64_t)3, (int64_t)4);
    int32_t *ip = kt_tensorv(&ids, OMNI_DTYPE_I32, 1, (int64_t)2);
    float *op = kt_tensorv(&out, OMNI_DTYPE_F32, 2, (int64_t)2, (int64_t)2);
    for (int i = 0; i < 12; i++)
        bp[i] = (float)i;
    ip[0] = 2, ip[1] = 1;
    struct omni_tensor t = kt_slice_last(&buf, 1, 2);
    ck_assert_int_eq(omni_op_embedding(&out, &t, &ids, &e), OMNI_OK);
    ck_assert_float_eq(op[0], 9);
    ck_assert_float_eq(op[1], 10);
    ck_assert_float_eq(op[2], 5);
    ck_assert_float_eq(op[3], 6);
    kt_release(&buf), kt_release(&ids), kt_release(&out);
}
END_TEST

START_TEST(test_embedding_out_of_range_id_names_id_index_and_V)
{
    struct omni_tensor t, ids, out;
    struct omni_error e;
    kt_tensorv(&t, OMNI_DTYPE_F32, 2, (int64_t)4, (int64_t)3);
    int32_t *ip = kt_tensorv(&ids, OMNI_DTYPE_I32, 1, (int64_t)3);
    float *op = kt_tensorv(&out, OMNI_DTYPE_F32, 2, (int64_t)3, (int64_t)3);
    memset(kt_f(&t), 0, 48);
    ip[0] = 1, ip[1] = 4, ip[2] = 0;
    KT_ASSERT_ERR(omni_op_embedding(&out, &t, &ids, &e), e, OMNI_ERANGE, "omni_op_embedding", "id 4",
                  "index 1", "V=4");
    ck_assert(tu_has_nan(op, 9) && op[0] != 0.0f); /* nothing written */
    ip[1] = 1, ip[2] = -1;
    KT_ASSERT_ERR(omni_op_embedding(&out, &t, &ids, &e), e, OMNI_ERANGE, "id -1", "index 2");
    kt_release(&t), kt_release(&ids), kt_release(&out);
}
END_TEST

START_TEST(test_embedding_add_adds_the_indexed_row_to_every_row)
{
    /* out (3,2) = [[1,2],[3,4],[5,6]] (row stride 3 inside a (3,3) buffer);
     * table (4,2) bf16 row v = [v, -v/2]; index 2 (i64) adds [2,-1] to each row */
    struct omni_tensor buf, tab, idx, i32;
    struct omni_error e;
    float *bp = kt_tensorv(&buf, OMNI_DTYPE_F32, 2, (int64_t)3, (int64_t)3);
    uint16_t *tp = kt_tensorv(&tab, OMNI_DTYPE_BF16, 2, (int64_t)4, (int64_t)2);
    int64_t *ip = kt_tensorv(&idx, OMNI_DTYPE_I64, 1, (int64_t)1);
    int32_t *jp = kt_tensorv(&i32, OMNI_DTYPE_I32, 2, (int64_t)1, (int64_t)1);
    for (int i = 0; i < 9; i++)
        bp[i] = -100.0f;
    for (int r = 0; r < 3; r++)
        bp[r * 3] = (float)(2 * r + 1), bp[r * 3 + 1] = (float)(2 * r + 2);
    for (int v = 0; v < 4; v++)
        tp[v * 2] = omni_f32_to_bf16((float)v), tp[v * 2 + 1] = omni_f32_to_bf16(-0.5f * (float)v);
    struct omni_tensor out = buf;
    out.shape[1] = 2; /* view: columns [0, 2) */
    *ip = 2;
    ck_assert_int_eq(omni_op_embedding_add(&out, &tab, &idx, &e), OMNI_OK);
    const float want[9] = {3, 1, -100, 5, 3, -100, 7, 5, -100};
    for (int i = 0; i < 9; i++)
        ck_assert_float_eq(bp[i], want[i]);
    *jp = 3; /* i32 index of shape (1,1): adds [3,-1.5] */
    ck_assert_int_eq(omni_op_embedding_add(&out, &tab, &i32, &e), OMNI_OK);
    ck_assert_float_eq(bp[0], 6.0f);
    ck_assert_float_eq(bp[1], -0.5f);
    /* out of range: nothing written, the message names index and V */
    *ip = 4;
    ck_assert_int_eq(omni_op_embedding_add(&out, &tab, &idx, &e), OMNI_ERANGE);
    ck_assert_ptr_nonnull(strstr(e.msg, "index 4"));
    ck_assert_ptr_nonnull(strstr(e.msg, "V=4"));
    ck_assert_float_eq(bp[0], 6.0f);
    *ip = -1;
    ck_assert_int_eq(omni_op_embedding_add(&out, &tab, &idx, &e), OMNI_ERANGE);
    /* width mismatch */
    out.shape[1] = 3;
    *ip = 0;
    ck_assert_int_eq(omni_op_embedding_add(&out, &tab, &idx, &e), OMNI_ESHAPE);
    kt_release(&buf), kt_release(&tab), kt_release(&idx), kt_release(&i32);
}
END_TEST

START_TEST(test_embedding_rejects_wrong_dtype_and_shape)
{
    struct omni_tensor t, ids, idf, out, out2;
    struct omni_error e;
    kt_tensorv(&t, OMNI_DTYPE_F32, 2, (int64_t)4, (int64_t)3);
    kt_tensorv(&ids, OMNI_DTYPE_I32, 1, (int64_t)2);
    kt_tensorv(&idf, OMNI_DTYPE_F32, 1, (int64_t)2);
    kt_tensorv(&out, OMNI_DTYPE_F32, 2, (int64_t)2, (int64_t)3);
    kt_tensorv(&out2, OMNI_DTYPE_F32, 2, (int64_t)2, (int64_t)4);
    KT_ASSERT_ERR(omni_op_embedding(&out, &t, &idf, &e), e, OMNI_EDTYPE, "ids has dtype f32");
    KT_ASSERT_ERR(omni_op_embedding(&out2, &t, &ids, &e), e, OMNI_ESHAPE, "out has shape [2,4]", "expected [2,3]");
    t.dtype = OMNI_DTYPE_U8;
    KT_ASSERT_ERR(omni_op_embedding(&out, &t, &ids, &e), e, OMNI_EDTYPE, "table has dtype u8");
    t.dtype = OMNI_DTYPE_F32;
    kt_release(&t), kt_release(&ids), kt_release(&idf), kt_release(&out), kt_release(&out2);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("embed");
    TCase *tc = tcase_create("cpu");
    tcase_add_checked_fixture(tc, kt_setup, kt_teardown);
    tcase_add_test(tc, test_embedding_gathers_rows_f32_i32);
    tcase_add_test(tc, test_embedding_half_tables_and_i64_ids_with_batch_shape);
    tcase_add_test(tc, test_embedding_table_view_with_row_stride);
    tcase_add_test(tc, test_embedding_out_of_range_id_names_id_index_and_V);
    tcase_add_test(tc, test_embedding_rejects_wrong_dtype_and_shape);
    tcase_add_test(tc, test_embedding_add_adds_the_indexed_row_to_every_row);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
