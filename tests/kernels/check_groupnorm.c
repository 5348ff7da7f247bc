/* tests/kernels/check_groupnorm.c - omni_op_groupnorm.
 *
 * Expected values: a hand-worked case and PyTorch fixtures from
 * tests/fixtures/gen_vq.py (F.group_norm in float64, eps 1e-6). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/testutil.h"

#define FIX "tests/fixtures/data/vq/ops.safetensors"

static float *fdata(const struct omni_tensor *t) { return omni_tensor_data(t); }

static void load(struct omni_weights *w, const char *key, int dtype, struct omni_tensor *t)
{
    struct omni_error err = {0};
    int rc = omni_weights_load(w, NULL, key, dtype, 0, NULL, t, &err);
    ck_assert_msg(rc == OMNI_OK, "load %s: %s", key, err.msg);
}

START_TEST(test_groupnorm_hand_worked)
{
    /* B 1, C 4, S 2, 2 groups: group 0 = {1,3,5,7} (mean 4, var 5),
     * group 1 = {2,2,2,2} (var 0 -> (x-mu) = 0 -> bias only). */
    struct omni_tensor x, w, b, y;
    struct omni_error err = {0};
    ck_assert_int_eq(omni_tensor_alloc_host(&x, OMNI_DTYPE_F32, 3, (int64_t)1, (int64_t)4, (int64_t)2), 0);
    ck_assert_int_eq(omni_tensor_alloc_host(&y, OMNI_DTYPE_F32, 3, (int64_t)1, (int64_t)4, (int64_t)2), 0);
    ck_assert_int_eq(omni_tensor_alloc_host(&w, OMNI_DTYPE_F32, 1, (int64_t)4), 0);
    ck_assert_int_eq(omni_tensor_alloc_host(&b, OMNI_DTYPE_F32, 1, (int64_t)4), 0);
    const float xv[8] = {1, 3, 5, 7, 2, 2, 2, 2};
    memcpy(fdata(&x), xv, sizeof(xv));
    const float wv[4] = {1, 2, 1, 1}, bv[4] = {0, 1, 0.5f, -0.5f};
    memcpy(fdata(&w), wv, sizeof(wv));
    memcpy(fdata(&b), bv, sizeof(bv));
    ck_assert_int_eq(omni_op_groupnorm(&y, &x, &w, &b, 2, 1e-6f, &err), OMNI_OK);
    const double r = 1.0 / sqrt(5.0 + 1e-6);
    const double want[8] = {-3 * r, -1 * r, 2 * (1 * r) + 1, 2 * (3 * r) + 1, 0.5, 0.5, -0.5, -0.5};
    for (int i = 0; i < 8; i++)
        ck_assert_msg(fabs(fdata(&y)[i] - want[i]) < 1e-6, "[%d] %g != %g", i, fdata(&y)[i], want[i]);
    /* no affine */
    ck_assert_int_eq(omni_op_groupnorm(&y, &x, NULL, NULL, 2, 1e-6f, &err), OMNI_OK);
    ck_assert(fabs(fdata(&y)[0] + 3 * r) < 1e-6 && fdata(&y)[5] == 0.0f);
    omni_tensor_release(&x); omni_tensor_release(&y);
    omni_tensor_release(&w); omni_tensor_release(&b);
}
END_TEST

START_TEST(test_groupnorm_matches_torch)
{
    long live = omni_buffer_live_count();
    struct omni_weights *fw = NULL;
    struct omni_error err = {0};
    ck_assert_msg(omni_weights_open(&fw, tu_repo_path(FIX), &err) == OMNI_OK, "%s", err.msg);
    int ncases = 0;
    for (int c = 0;; c++) {
        char key[64];
        snprintf(key, sizeof(key), "gn%d_cfg", c);
        if (!omni_weights_has(fw, NULL, key))
            break;
        struct omni_tensor cfg, x, w, b, ref, y;
        load(fw, key, OMNI_DTYPE_I32, &cfg);
        snprintf(key, sizeof(key), "gn%d_x", c);
        load(fw, key, OMNI_DTYPE_F32, &x);
        snprintf(key, sizeof(key), "gn%d_w", c);
        load(fw, key, OMNI_DTYPE_F32, &w);
        snprintf(key, sizeof(key), "gn%d_b", c);
        load(fw, key, OMNI_DTYPE_F32, &b);
        snprintf(key, sizeof(key), "gn%d_out", c);
        load(fw, key, OMNI_DTYPE_F32, &ref);
        int groups = ((const int32_t *)omni_tensor_data(&cfg))[0];
        size_t n = (size_t)omni_tensor_numel(&x);
        ck_assert_int_eq(omni_tensor_alloc(&y, OMNI_DTYPE_F32, x.ndim, x.shape, OMNI_CPU, &err), 0);
        ck_assert_msg(omni_op_groupnorm(&y, &x, &w, &b, groups, 1e-6f, &err) == OMNI_OK, "%s", err.msg);
        double e = tu_rel_err(fdata(&y), fdata(&ref), n);
        ck_assert_msg(e < 2e-6, "case %d (%d groups): rel err %g", c, groups, e);
        /* in place */
        ck_assert_int_eq(omni_op_groupnorm(&x, &x, &w, &b, groups, 1e-6f, &err), OMNI_OK);
        ck_assert(memcmp(fdata(&x), fdata(&y), n * sizeof(float)) == 0);
        omni_tensor_release(&cfg); omni_tensor_release(&x); omni_tensor_release(&w);
        omni_tensor_release(&b); omni_tensor_release(&ref); omni_tensor_release(&y);
        ncases++;
    }
    ck_assert_int_ge(ncases, 4);
    omni_weights_close(fw);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_groupnorm_large_group_stays_accurate)
{
    /* one group of 128 x 64 x 64 values with mean 50 and spread 0.01: a
     * one-pass E[x^2] - E[x]^2 in f32 would lose the variance entirely */
    const int64_t C = 128, S = 64 * 64, n = C * S;
    struct omni_tensor x, y;
    struct omni_error err = {0};
    struct tu_rng rng;
    tu_rng_seed(&rng, 3);
    ck_assert_int_eq(omni_tensor_alloc_host(&x, OMNI_DTYPE_F32, 3, (int64_t)1, C, S), 0);
    ck_assert_int_eq(omni_tensor_alloc_host(&y, OMNI_DTYPE_F32, 3, (int64_t)1, C, S), 0);
    float *xv = fdata(&x);
    tu_fill_normal(&rng, xv, (size_t)n, 0.01f);
    double mu = 0, var = 0;
    for (int64_t i = 0; i < n; i++) {
        xv[i] += 50.0f;
        mu += xv[i];
    }
    mu /= (double)n;
    for (int64_t i = 0; i < n; i++)
        var += (xv[i] - mu) * (xv[i] - mu);
    var /= (double)n;
    ck_assert_int_eq(omni_op_groupnorm(&y, &x, NULL, NULL, 1, 1e-6f, &err), OMNI_OK);
    double maxd = 0;
    for (int64_t i = 0; i < n; i++) {
        double want = (xv[i] - mu) / sqrt(var + 1e-6);
        double d = fabs(fdata(&y)[i] - want);
        if (d > maxd)
            maxd = d;
    }
    ck_assert_msg(maxd < 1e-4, "max abs err %g", maxd);
    omni_tensor_release(&x); omni_tensor_release(&y);
}
END_TEST

START_TEST(test_groupnorm_rejects_bad_arguments)
{
    long live = omni_buffer_live_count();
    struct omni_tensor x, y, w3, y2;
    struct omni_error err = {0};
    ck_assert_int_eq(omni_tensor_alloc_host(&x, OMNI_DTYPE_F32, 4, (int64_t)1, (int64_t)6, (int64_t)2, (int64_t)2), 0);
    ck_assert_int_eq(omni_tensor_alloc_host(&y, OMNI_DTYPE_F32, 4, (int64_t)1, (int64_t)6, (int64_t)2, (int64_t)2), 0);
    ck_assert_int_eq(omni_tensor_alloc_host(&y2, OMNI_DTYPE_F32, 4, (int64_t)1, (int64_t)6, (int64_t)4, (int64_t)1), 0);
    ck_assert_int_eq(omni_tensor_alloc_host(&w3, OMNI_DTYPE_F32, 1, (int64_t)3), 0);
    ck_assert_int_eq(omni_op_groupnorm(&y, &x, NULL, NULL, 4, 1e-6f, &err), OMNI_EINVAL);
    ck_assert_msg(strstr(err.msg, "4 groups") && strstr(err.msg, "6 channels"), "%s", err.msg);
    ck_assert_int_eq(omni_op_groupnorm(&y, &x, NULL, NULL, 0, 1e-6f, &err), OMNI_EINVAL);
    ck_assert_int_eq(omni_op_groupnorm(&y, &x, &w3, NULL, 3, 1e-6f, &err), OMNI_ESHAPE);
    ck_assert_msg(strstr(err.msg, "w has shape [3]"), "%s", err.msg);
    ck_assert_int_eq(omni_op_groupnorm(&y2, &x, NULL, NULL, 3, 1e-6f, &err), OMNI_ESHAPE);
    ck_assert_int_eq(omni_op_groupnorm(&y, &x, NULL, NULL, 3, -1.0f, &err), OMNI_EINVAL);
    omni_tensor_release(&x); omni_tensor_release(&y); omni_tensor_release(&y2);
    omni_tensor_release(&w3);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("groupnorm");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_groupnorm_hand_worked);
    tcase_add_test(tc, test_groupnorm_matches_torch);
    tcase_add_test(tc, test_groupnorm_large_group_stays_accurate);
    tcase_add_test(tc, test_groupnorm_rejects_bad_arguments);
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
