/* tests/plugins/check_mmu_assemble.c - the MMU prefill sequence on tiny
 * weights written by the test: [mmu, soi, visual, eoi, sot, question] with
 * mmu_pos_embed added at every position (spec/omnimamba.md §6.6), and the
 * refusal of sequences longer than the 1500-row table. */
#include <stdio.h>
#include <string.h>

#include "../common/testutil.h"
#include "omni/harness.h"

static struct omni_error err;

#define OK(call)                                                                         \
    do {                                                                                 \
        omni_error_clear(&err);                                                          \
        int rc_ = (call);                                                                \
        ck_assert_msg(rc_ == 0, "%s -> %s: %s", #call, omni_status_name(rc_), err.msg); \
    } while (0)

#define V 50288
#define D 3
#define R 1500
#define PFX "llm_backbone.mamba.backbone."

static float E[V * D], POS[R * D];

static const char *write_weights(int pos_width)
{
    static char path[1024];
    struct tu_rng r;
    tu_rng_seed(&r, 99);
    tu_fill_normal(&r, E, V * D, 1.0f);
    tu_fill_normal(&r, POS, R * D, 0.2f);
    struct omni_tensor t[2];
    OK(omni_tensor_alloc_host(&t[0], OMNI_DTYPE_F32, 2, (int64_t)V, (int64_t)D));
    OK(omni_tensor_alloc_host(&t[1], OMNI_DTYPE_F32, 3, (int64_t)1, (int64_t)R, (int64_t)pos_width));
    memcpy(omni_tensor_data(&t[0]), E, sizeof E);
    for (int64_t i = 0; i < (int64_t)R * pos_width; i++)
        ((float *)omni_tensor_data(&t[1]))[i] = POS[i % (R * D)];
    const char *names[2] = {PFX "embedding.weight", PFX "mmu_pos_embed"};
    snprintf(path, sizeof path, "%s/mmu%d.safetensors", tu_tmpdir(), pos_width);
    OK(omni_safetensors_write(path, 2, names, t, &err));
    omni_tensor_release(&t[0]);
    omni_tensor_release(&t[1]);
    return path;
}

static struct omni_harness *stage(void)
{
    struct omni_harness *h;
    OK(omni_harness_new(&h, "mmu_assemble", NULL, &err));
    OK(omni_harness_load_weights(h, write_weights(D), PFX, &err));
    return h;
}

/* visual (B, Nv, D) with recognisable values; ids (B, nq). */
static void push(struct omni_harness *h, int64_t B, int64_t Nv, int64_t nq, const int32_t *q, struct omni_tensor *vis)
{
    struct omni_tensor ids;
    OK(omni_tensor_alloc_host(vis, OMNI_DTYPE_F32, 3, B, Nv, (int64_t)D));
    float *v = omni_tensor_data(vis);
    for (int64_t i = 0; i < B * Nv * D; i++)
        v[i] = 100.0f + (float)i * 0.5f;
    OK(omni_tensor_alloc_host(&ids, OMNI_DTYPE_I32, 2, B, nq));
    if (B > 0 && nq > 0)
        memcpy(omni_tensor_data(&ids), q, sizeof(int32_t) * (size_t)(B * nq));
    OK(omni_harness_push(h, "visual", vis, &err));
    OK(omni_harness_push(h, "ids", &ids, &err));
    omni_tensor_release(&ids);
}

/* Expected row p of batch b: the source row (a table id or a visual row) + POS[p]. */
static void check_layout(const struct omni_tensor *out, const struct omni_tensor *vis, int64_t b, int64_t Nv,
                         int64_t nq, const int32_t *q)
{
    const int64_t L = Nv + 4 + nq;
    const float *o = (const float *)omni_tensor_data(out) + b * L * D, *v = omni_tensor_data(vis);
    for (int64_t p = 0; p < L; p++) {
        const float *src;
        int64_t id = -1;
        if (p == 0)
            id = 50283; /* <|mmu|> */
        else if (p == 1)
            id = 50278; /* <|soi|> */
        else if (p < 2 + Nv)
            id = -2;
        else if (p == 2 + Nv)
            id = 50279; /* <|eoi|> */
        else if (p == 3 + Nv)
            id = 50280; /* <|sot|> */
        else
            id = q[b * nq + p - 4 - Nv];
        src = id == -2 ? v + (b * Nv + p - 2) * D : E + id * D;
        for (int i = 0; i < D; i++) {
            const float want = src[i] + POS[p * D + i]; /* one f32 add, as the op */
            ck_assert_msg(o[p * D + i] == want, "batch %lld position %lld dim %d: %g, expected %g (source %s %lld)",
                          (long long)b, (long long)p, i, (double)o[p * D + i], (double)want,
                          id == -2 ? "visual row" : "table id", (long long)(id == -2 ? p - 2 : id));
        }
    }
}

START_TEST(test_sequence_layout_and_positions)
{
    long live = omni_buffer_live_count();
    struct omni_harness *h = stage();
    const int32_t q[3] = {23131, 27, 7764};
    struct omni_tensor vis;
    push(h, 1, 5, 3, q, &vis);
    OK(omni_harness_forward(h, &err));
    const struct omni_tensor *out = omni_harness_pull(h, "embeds");
    ck_assert_ptr_nonnull(out);
    ck_assert_int_eq(out->ndim, 3);
    ck_assert_int_eq(out->shape[0], 1);
    ck_assert_int_eq(out->shape[1], 5 + 4 + 3);
    ck_assert_int_eq(out->shape[2], D);
    check_layout(out, &vis, 0, 5, 3, q);
    omni_tensor_release(&vis);
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_batch_of_two_and_empty_question)
{
    long live = omni_buffer_live_count();
    struct omni_harness *h = stage();
    const int32_t q[4] = {1, 2, 3, 4};
    struct omni_tensor vis;
    push(h, 2, 3, 2, q, &vis);
    OK(omni_harness_forward(h, &err));
    const struct omni_tensor *out = omni_harness_pull(h, "embeds");
    ck_assert_int_eq(out->shape[0], 2);
    check_layout(out, &vis, 0, 3, 2, q);
    check_layout(out, &vis, 1, 3, 2, q);
    omni_tensor_release(&vis);
    push(h, 1, 2, 0, NULL, &vis);
    OK(omni_harness_forward(h, &err));
    out = omni_harness_pull(h, "embeds");
    ck_assert_int_eq(out->shape[1], 6);
    check_layout(out, &vis, 0, 2, 0, NULL);
    omni_tensor_release(&vis);
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_refuses_sequences_longer_than_the_position_table)
{
    long live = omni_buffer_live_count();
    struct omni_harness *h = stage();
    static int32_t q[768];
    for (int i = 0; i < 768; i++)
        q[i] = 10 + i;
    struct omni_tensor vis;
    /* 729 visual + 4 + 767 = 1500: the whole table, accepted */
    push(h, 1, 729, 767, q, &vis);
    OK(omni_harness_forward(h, &err));
    ck_assert_int_eq(omni_harness_pull(h, "embeds")->shape[1], 1500);
    check_layout(omni_harness_pull(h, "embeds"), &vis, 0, 729, 767, q);
    omni_tensor_release(&vis);
    /* one more question token: 1501 positions, refused with the numbers */
    push(h, 1, 729, 768, q, &vis);
    omni_error_clear(&err);
    ck_assert_int_eq(omni_harness_forward(h, &err), OMNI_ERANGE);
    ck_assert_ptr_nonnull(strstr(err.msg, "1501"));
    ck_assert_ptr_nonnull(strstr(err.msg, "1500"));
    ck_assert_ptr_nonnull(strstr(err.msg, "768"));
    ck_assert_ptr_nonnull(strstr(err.msg, "767")); /* the longest question that fits */
    ck_assert_ptr_null(omni_harness_pull(h, "embeds"));
    omni_tensor_release(&vis);
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

START_TEST(test_rejects_mismatched_widths)
{
    long live = omni_buffer_live_count();
    struct omni_harness *h;
    OK(omni_harness_new(&h, "mmu_assemble", NULL, &err));
    omni_error_clear(&err);
    ck_assert_int_eq(omni_harness_load_weights(h, write_weights(D + 1), PFX, &err), OMNI_ESHAPE);
    ck_assert_ptr_nonnull(strstr(err.msg, "mmu_pos_embed"));
    omni_harness_free(h);
    h = stage();
    struct omni_tensor vis, ids;
    OK(omni_tensor_alloc_host(&vis, OMNI_DTYPE_F32, 3, (int64_t)1, (int64_t)4, (int64_t)(D + 2)));
    OK(omni_tensor_alloc_host(&ids, OMNI_DTYPE_I32, 2, (int64_t)1, (int64_t)2));
    OK(omni_harness_push(h, "visual", &vis, &err));
    OK(omni_harness_push(h, "ids", &ids, &err));
    ck_assert_int_eq(omni_harness_forward(h, &err), OMNI_ESHAPE);
    ck_assert_ptr_nonnull(strstr(err.msg, "visual"));
    omni_tensor_release(&vis);
    omni_tensor_release(&ids);
    omni_harness_free(h);
    TU_ASSERT_NO_LEAK(live);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("mmu_assemble");
    TCase *tc = tcase_create("mmu_assemble");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_sequence_layout_and_positions);
    tcase_add_test(tc, test_batch_of_two_and_empty_question);
    tcase_add_test(tc, test_refuses_sequences_longer_than_the_position_table);
    tcase_add_test(tc, test_rejects_mismatched_widths);
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
    return failed ? 1 : 0;
}
