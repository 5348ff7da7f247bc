/* tests/kernels/check_vq_ops.c - omni_op_l2_normalize and omni_op_vq_nearest
 * on hand-worked values (the model-level parity of both is in
 * tests/plugins/check_vq.c against PyTorch). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/testutil.h"
#include "omni/ops/vq.h"

static float *fdata(const struct omni_tensor *t) { return omni_tensor_data(t); }

START_TEST(test_l2_normalize_hand_worked)
{
    long live = omni_buffer_live_count();
    struct omni_tensor x, y;
    struct omni_error err = {0};
    ck_assert_int_eq(omni_tensor_alloc_host(&x, OMNI_DTYPE_F32, 2, (int64_t)4, (int64_t)2), 0);
    ck_assert_int_eq(omni_tensor_alloc_host(&y, OMNI_DTYPE_F32, 2, (int64_t)4, (int64_t)2), 0);
    /* [3,4] -> [0.6,0.8]; zero row stays zero; a row shorter than eps is
     * divided by eps (F.normalize's clamp_min); [-5,12] -> [-5/13, 12/13] */
    const float xv[8] = {3, 4, 0, 0, 3e-13f, -4e-13f, -5, 12};
    memcpy(fdata(&x), xv, sizeof xv);
    ck_assert_int_eq(omni_op_l2_normalize(&y, &x, 1e-12f, &err), OMNI_OK);
    const float *o = fdata(&y);
    ck_assert_float_eq_tol(o[0], 0.6f, 1e-7f);
    ck_assert_float_eq_tol(o[1], 0.8f, 1e-7f);
    ck_assert(o[2] == 0.0f && o[3] == 0.0f);
    ck_assert_float_eq_tol(o[4], 0.3f, 1e-6f);
    ck_assert_float_eq_tol(o[5], -0.4f, 1e-6f);
    ck_assert_float_eq_tol(o[6], -5.0f / 13.0f, 1e-7f);
    ck_assert_float_eq_tol(o[7], 12.0f / 13.0f, 1e-7f);
    /* in place */
    ck_assert_int_eq(omni_op_l2_normalize(&x, &x, 1e-12f, &err), OMNI_OK);
    ck_assert(memcmp(fdata(&x), o, sizeof xv) == 0);
    omni_tensor_release(&x);
    omni_tensor_release(&y);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_vq_nearest_hand_worked_and_ties)
{
    long live = omni_buffer_live_count();
    struct omni_tensor z, e, ids;
    struct omni_error err = {0};
    /* codebook: e0 = [1,0], e1 = [0,1], e2 = [1,0] (a duplicate of e0), e3 = [-1,0] */
    ck_assert_int_eq(omni_tensor_alloc_host(&e, OMNI_DTYPE_F32, 2, (int64_t)4, (int64_t)2), 0);
    const float ev[8] = {1, 0, 0, 1, 1, 0, -1, 0};
    memcpy(fdata(&e), ev, sizeof ev);
    /* z rows: near e1; exactly e0 = e2 (tie -> 0); near e3; equidistant from
     * e0/e2 and e1 ([s, s]: tie -> 0) */
    ck_assert_int_eq(omni_tensor_alloc_host(&z, OMNI_DTYPE_F32, 3, (int64_t)2, (int64_t)2, (int64_t)2), 0);
    const float s = 0.70710677f;
    const float zv[8] = {0.1f, 0.9f, 1, 0, -0.8f, 0.3f, s, s};
    memcpy(fdata(&z), zv, sizeof zv);
    ck_assert_int_eq(omni_tensor_alloc_host(&ids, OMNI_DTYPE_I32, 2, (int64_t)2, (int64_t)2), 0);
    ck_assert_int_eq(omni_op_vq_nearest(&ids, &z, &e, &err), OMNI_OK);
    const int32_t *id = omni_tensor_data(&ids);
    ck_assert_int_eq(id[0], 1);
    ck_assert_int_eq(id[1], 0);
    ck_assert_int_eq(id[2], 3);
    ck_assert_int_eq(id[3], 0);
    omni_tensor_release(&z);
    omni_tensor_release(&e);
    omni_tensor_release(&ids);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_vq_nearest_matches_brute_force_on_random_rows)
{
    /* distances in double as the reference; rows whose best and second-best
     * distances are closer than f32 noise are skipped */
    const int64_t N = 300, V = 257, D = 8;
    struct omni_tensor z, e, ids;
    struct omni_error err = {0};
    struct tu_rng rng;
    tu_rng_seed(&rng, 11);
    ck_assert_int_eq(omni_tensor_alloc_host(&z, OMNI_DTYPE_F32, 2, N, D), 0);
    ck_assert_int_eq(omni_tensor_alloc_host(&e, OMNI_DTYPE_F32, 2, V, D), 0);
    ck_assert_int_eq(omni_tensor_alloc_host(&ids, OMNI_DTYPE_I32, 1, N), 0);
    tu_fill_normal(&rng, fdata(&z), (size_t)(N * D), 1.0f);
    tu_fill_normal(&rng, fdata(&e), (size_t)(V * D), 1.0f);
    ck_assert_int_eq(omni_op_vq_nearest(&ids, &z, &e, &err), OMNI_OK);
    int checked = 0;
    for (int64_t n = 0; n < N; n++) {
        double best = INFINITY, second = INFINITY;
        int64_t arg = -1;
        for (int64_t v = 0; v < V; v++) {
            double d = 0;
            for (int64_t k = 0; k < D; k++) {
                double t = (double)fdata(&z)[n * D + k] - fdata(&e)[v * D + k];
                d += t * t;
            }
            if (d < best) {
                second = best;
                best = d;
                arg = v;
            } else if (d < second) {
                second = d;
            }
        }
        if (second - best < 1e-4)
            continue;
        ck_assert_int_eq(((int32_t *)omni_tensor_data(&ids))[n], arg);
        checked++;
    }
    ck_assert_int_gt(checked, N * 9 / 10);
    omni_tensor_release(&z);
    omni_tensor_release(&e);
    omni_tensor_release(&ids);
}
END_TEST

START_TEST(test_vq_ops_reject_bad_shapes)
{
    long live = omni_buffer_live_count();
    struct omni_tensor z, e, ids, y;
    struct omni_error err = {0};
    ck_assert_int_eq(omni_tensor_alloc_host(&z, OMNI_DTYPE_F32, 2, (int64_t)3, (int64_t)8), 0);
    ck_assert_int_eq(omni_tensor_alloc_host(&e, OMNI_DTYPE_F32, 2, (int64_t)5, (int64_t)7), 0);
    ck_assert_int_eq(omni_tensor_alloc_host(&ids, OMNI_DTYPE_I32, 1, (int64_t)3), 0);
    ck_assert_int_eq(omni_tensor_alloc_host(&y, OMNI_DTYPE_F32, 2, (int64_t)3, (int64_t)7), 0);
    ck_assert_int_eq(omni_op_vq_nearest(&ids, &z, &e, &err), OMNI_ESHAPE);
    ck_assert_msg(strstr(err.msg, "[3,8]") && strstr(err.msg, "[5,7]"), "%s", err.msg);
    ck_assert_int_eq(omni_op_l2_normalize(&y, &z, 1e-12f, &err), OMNI_ESHAPE);
    omni_tensor_release(&e);
    ck_assert_int_eq(omni_tensor_alloc_host(&e, OMNI_DTYPE_F32, 2, (int64_t)5, (int64_t)8), 0);
    omni_tensor_release(&ids);
    ck_assert_int_eq(omni_tensor_alloc_host(&ids, OMNI_DTYPE_I32, 1, (int64_t)4), 0);
    ck_assert_int_eq(omni_op_vq_nearest(&ids, &z, &e, &err), OMNI_ESHAPE);
    ck_assert_msg(strstr(err.msg, "3 elements"), "%s", err.msg);
    omni_tensor_release(&z);
    omni_tensor_release(&e);
    omni_tensor_release(&ids);
    omni_tensor_release(&y);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("vq_ops");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_l2_normalize_hand_worked);
    tcase_add_test(tc, test_vq_nearest_hand_worked_and_ties);
    tcase_add_test(tc, test_vq_nearest_matches_brute_force_on_random_rows);
    tcase_add_test(tc, test_vq_ops_reject_bad_shapes);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_set_fork_status(sr, CK_FORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
