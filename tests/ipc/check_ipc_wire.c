/* The IPC message layer without processes: decoding limits and refusals,
 * the tensor-reference validator (every way a reference can point outside
 * its memory), segment names, and the flattened params tree. Messages are
 * built with this suite's own copy of the generated protobuf code. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ipc/ipc_impl.h"
#include "yaml_tree.h"
#include "../common/testutil.h"

static uint8_t *pack(Omni__Envelope *e, size_t *n)
{
    *n = omni__envelope__get_packed_size(e);
    uint8_t *b = malloc(*n + 1);
    ck_assert(b != NULL);
    omni__envelope__pack(e, b);
    return b;
}

/* A contiguous f32 [2,3] reference over inline bytes. */
static int64_t shp[2] = {2, 3}, str[2] = {3, 1};
static float vals[6] = {1, 2, 3, 4, 5, 6};

static void inline_ref(Omni__TensorRef *r)
{
    omni__tensor_ref__init(r);
    r->dtype = OMNI_DTYPE_F32;
    r->n_shape = r->n_strides = 2;
    r->shape = shp;
    r->strides = str;
    r->data_case = OMNI__TENSOR_REF__DATA_INLINE_DATA;
    r->inline_data = (ProtobufCBinaryData){sizeof vals, (uint8_t *)vals};
}

static int check(const Omni__TensorRef *r, struct omni_error *e)
{
    omni_error_clear(e);
    return omni__ipc_ref_check(r, NULL, e);
}

START_TEST(test_ref_check_accepts_well_formed_references)
{
    struct omni_error e;
    Omni__TensorRef r;
    inline_ref(&r);
    uint64_t nbytes = 0;
    ck_assert_int_eq(omni__ipc_ref_check(&r, &nbytes, &e), OMNI_OK);
    ck_assert_uint_eq(nbytes, 24);
    /* a transposed view inside a shm segment: extent (1*1 + 2*2 + 1) * 4 = 24 bytes */
    Omni__ShmRef s = OMNI__SHM_REF__INIT;
    s.name = "/omni.12.3.4";
    s.offset = 8;
    s.size = 32;
    int64_t tstr[2] = {1, 2};
    r.strides = tstr;
    r.data_case = OMNI__TENSOR_REF__DATA_SHM;
    r.shm = &s;
    ck_assert_int_eq(omni__ipc_ref_check(&r, &nbytes, &e), OMNI_OK);
    ck_assert_uint_eq(nbytes, 24);
    /* an empty tensor needs no bytes */
    int64_t zshape[2] = {0, 3};
    r.shape = zshape;
    ck_assert_int_eq(omni__ipc_ref_check(&r, &nbytes, &e), OMNI_OK);
    ck_assert_uint_eq(nbytes, 0);
}
END_TEST

START_TEST(test_ref_check_refuses_what_points_outside)
{
    struct omni_error e;
    Omni__TensorRef r;
    Omni__ShmRef s = OMNI__SHM_REF__INIT;
    s.name = "/omni.12.3.4";
    /* unknown dtypes */
    inline_ref(&r);
    r.dtype = 0;
    ck_assert_int_eq(check(&r, &e), OMNI_EPROTO);
    r.dtype = 99;
    ck_assert_int_eq(check(&r, &e), OMNI_EPROTO);
    /* rank above OMNI_MAX_DIMS, strides count differing from rank */
    inline_ref(&r);
    int64_t nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    r.shape = r.strides = nine;
    r.n_shape = r.n_strides = 9;
    ck_assert_int_eq(check(&r, &e), OMNI_EPROTO);
    ck_assert_msg(strstr(e.msg, "rank 9"), "%s", e.msg);
    inline_ref(&r);
    r.n_strides = 1;
    ck_assert_int_eq(check(&r, &e), OMNI_EPROTO);
    /* negative dims and strides */
    inline_ref(&r);
    int64_t neg[2] = {2, -3};
    r.shape = neg;
    ck_assert_int_eq(check(&r, &e), OMNI_EPROTO);
    inline_ref(&r);
    r.strides = neg;
    ck_assert_int_eq(check(&r, &e), OMNI_EPROTO);
    /* element counts that overflow */
    inline_ref(&r);
    int64_t huge[2] = {(int64_t)1 << 40, (int64_t)1 << 40}, hstr[2] = {(int64_t)1 << 40, 1};
    r.shape = huge;
    r.strides = hstr;
    ck_assert_int_eq(check(&r, &e), OMNI_EPROTO);
    /* inline bytes: one short, one long, strided */
    inline_ref(&r);
    r.inline_data.len = 23;
    ck_assert_int_eq(check(&r, &e), OMNI_EPROTO);
    r.inline_data.len = 25;
    ck_assert_int_eq(check(&r, &e), OMNI_EPROTO);
    inline_ref(&r);
    int64_t tstr[2] = {1, 2};
    r.strides = tstr;
    ck_assert_int_eq(check(&r, &e), OMNI_EPROTO);
    /* shm: extent past the segment, offset wrap-around */
    inline_ref(&r);
    r.data_case = OMNI__TENSOR_REF__DATA_SHM;
    r.shm = &s;
    s.size = 24;
    s.offset = 1;
    ck_assert_int_eq(check(&r, &e), OMNI_EPROTO);
    ck_assert_msg(strstr(e.msg, "exceed segment"), "%s", e.msg);
    s.offset = UINT64_MAX - 4;
    ck_assert_int_eq(check(&r, &e), OMNI_EPROTO);
    s.offset = 0;
    ck_assert_int_eq(check(&r, &e), OMNI_OK);
    /* CUDA: handles of the wrong size, extent past the block */
    inline_ref(&r);
    uint8_t h[64] = {0}, uuid[16] = {1};
    Omni__CudaIpcRef c = OMNI__CUDA_IPC_REF__INIT;
    c.mem_handle = (ProtobufCBinaryData){63, h};
    c.event_handle = (ProtobufCBinaryData){64, h};
    c.device_uuid = (ProtobufCBinaryData){16, uuid};
    c.size = 24;
    r.data_case = OMNI__TENSOR_REF__DATA_CUDA;
    r.cuda = &c;
    ck_assert_int_eq(check(&r, &e), OMNI_EPROTO);
    c.mem_handle.len = 64;
    ck_assert_int_eq(check(&r, &e), OMNI_OK);
    c.offset = 4;
    ck_assert_int_eq(check(&r, &e), OMNI_EPROTO);
    /* no data at all */
    inline_ref(&r);
    r.data_case = OMNI__TENSOR_REF__DATA__NOT_SET;
    ck_assert_int_eq(check(&r, &e), OMNI_EPROTO);
}
END_TEST

START_TEST(test_segment_names_are_omni_segments_only)
{
    ck_assert(omni__ipc_shm_name_ok("/omni.1.2.3"));
    ck_assert(omni__ipc_shm_name_ok("/omni.4294967295.18446744073709551615.0"));
    const char *bad[] = {"", "omni.1.2.3", "/omni.1.2", "/omni.1.2.3.4", "/omni.1.2.x", "/omni..2.3", "/omni.1.2.3/",
                         "/omni.1.2.3/../../etc/passwd", "/etc/passwd", "/omni.-1.2.3", "/omni.1.2.3 "};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(!omni__ipc_shm_name_ok(bad[i]), "accepted '%s'", bad[i]);
    Omni__TensorRef r;
    Omni__ShmRef s = OMNI__SHM_REF__INIT;
    inline_ref(&r);
    s.name = "/dev/../etc/passwd";
    s.size = 24;
    r.data_case = OMNI__TENSOR_REF__DATA_SHM;
    r.shm = &s;
    struct omni_error e;
    ck_assert_int_eq(check(&r, &e), OMNI_EPROTO);
    ck_assert_msg(strstr(e.msg, "not an omni segment name"), "%s", e.msg);
}
END_TEST

START_TEST(test_decode_refuses_garbage_size_and_version)
{
    struct omni_error e;
    Omni__Envelope *out = (Omni__Envelope *)1;
    /* bytes that are not an Envelope (a truncated length-delimited field) */
    const uint8_t garbage[] = {0x12, 0x40, 0x01, 0x02};
    ck_assert_int_eq(omni__ipc_decode(garbage, sizeof garbage, 1 << 20, &out, &e), OMNI_EPROTO);
    ck_assert(out == NULL);
    ck_assert_msg(strstr(e.msg, "malformed"), "%s", e.msg);
    /* an empty frame decodes to an Envelope without a body */
    ck_assert_int_eq(omni__ipc_decode("", 0, 1 << 20, &out, &e), OMNI_EPROTO);
    /* a good heartbeat, then the same over the size limit and with another version */
    Omni__Heartbeat hb = OMNI__HEARTBEAT__INIT;
    hb.seq = 7;
    Omni__Envelope env = OMNI__ENVELOPE__INIT;
    env.protocol = OMNI_IPC_PROTOCOL;
    env.body_case = OMNI__ENVELOPE__BODY_HEARTBEAT;
    env.heartbeat = &hb;
    size_t n;
    uint8_t *b = pack(&env, &n);
    ck_assert_int_eq(omni__ipc_decode(b, n, 1 << 20, &out, &e), OMNI_OK);
    ck_assert_uint_eq(out->heartbeat->seq, 7);
    omni__ipc_msg_free(out);
    ck_assert_int_eq(omni__ipc_decode(b, n, n - 1, &out, &e), OMNI_EPROTO);
    ck_assert_msg(strstr(e.msg, "exceeds the limit"), "%s", e.msg);
    free(b);
    env.protocol = OMNI_IPC_PROTOCOL + 1;
    b = pack(&env, &n);
    ck_assert_int_eq(omni__ipc_decode(b, n, 1 << 20, &out, &e), OMNI_EPROTO);
    ck_assert_msg(strstr(e.msg, "protocol version 2"), "%s", e.msg);
    free(b);
}
END_TEST

START_TEST(test_decode_refuses_bad_references_inside_messages)
{
    struct omni_error e;
    Omni__Envelope *out;
    Omni__TensorRef a, bref;
    inline_ref(&a);
    inline_ref(&bref);
    Omni__TensorRef *refs[2] = {&a, &bref};
    Omni__RunStage run = OMNI__RUN_STAGE__INIT;
    run.stage = "s";
    run.inputs = refs;
    run.n_inputs = 1;
    Omni__Envelope env = OMNI__ENVELOPE__INIT;
    env.protocol = OMNI_IPC_PROTOCOL;
    env.body_case = OMNI__ENVELOPE__BODY_RUN;
    env.run = &run;
    size_t n;
    uint8_t *b = pack(&env, &n);
    ck_assert_int_eq(omni__ipc_decode(b, n, 1 << 20, &out, &e), OMNI_OK);
    omni__ipc_msg_free(out);
    free(b);
    /* the same port twice */
    run.n_inputs = 2;
    b = pack(&env, &n);
    ck_assert_int_eq(omni__ipc_decode(b, n, 1 << 20, &out, &e), OMNI_EPROTO);
    ck_assert_msg(strstr(e.msg, "given twice"), "%s", e.msg);
    free(b);
    /* inline bytes that do not match the shape */
    run.n_inputs = 1;
    a.inline_data.len = 20;
    b = pack(&env, &n);
    ck_assert_int_eq(omni__ipc_decode(b, n, 1 << 20, &out, &e), OMNI_EPROTO);
    ck_assert_msg(strstr(e.msg, "run inputs"), "%s", e.msg);
    free(b);
    /* an Error message must carry an error status */
    Omni__Error er = OMNI__ERROR__INIT;
    er.status = 0;
    env.body_case = OMNI__ENVELOPE__BODY_ERROR;
    env.error = &er;
    b = pack(&env, &n);
    ck_assert_int_eq(omni__ipc_decode(b, n, 1 << 20, &out, &e), OMNI_EPROTO);
    free(b);
}
END_TEST

static Omni__ParamNode pn[8];
static Omni__ParamNode *pp[8];

static void node(int i, int kind, int parent, const char *key, const char *scalar)
{
    omni__param_node__init(&pn[i]);
    pn[i].kind = kind;
    pn[i].parent = parent;
    pn[i].key = (char *)(key ? key : "");
    pn[i].scalar = (char *)(scalar ? scalar : "");
    pn[i].line = 10 + i;
    pn[i].col = 3;
    pp[i] = &pn[i];
}

START_TEST(test_params_tree_rebuilds_nested_yaml)
{
    /* {file: a.json, list: [1, "2"], inner: {x: y}} */
    node(0, 2, -1, NULL, NULL);
    node(1, 0, 0, "file", "a.json");
    node(2, 1, 0, "list", NULL);
    node(3, 0, 2, NULL, "1");
    node(4, 0, 2, NULL, "2");
    pn[4].quoted = 1;
    node(5, 2, 0, "inner", NULL);
    node(6, 0, 5, "x", "y");
    struct omni__ynode *root = NULL;
    struct omni_error e;
    ck_assert_int_eq(omni__ipc_params_unflatten(pp, 7, "p.yaml", &root, &e), OMNI_OK);
    ck_assert_int_eq(root->kind, OMNI__Y_MAP);
    ck_assert_int_eq(root->n, 3);
    ck_assert_str_eq(root->keys[0], "file");
    ck_assert_str_eq(root->items[0]->scalar, "a.json");
    ck_assert_int_eq(root->key_lines[0], 11);
    ck_assert_int_eq(root->items[1]->kind, OMNI__Y_SEQ);
    ck_assert_int_eq(root->items[1]->n, 2);
    ck_assert_str_eq(root->items[1]->items[1]->scalar, "2");
    ck_assert_int_eq(root->items[1]->items[1]->quoted, 1);
    ck_assert_str_eq(root->items[2]->keys[0], "x");
    ck_assert_str_eq(root->items[2]->items[0]->scalar, "y");
    ck_assert_str_eq(root->items[2]->items[0]->file, "p.yaml");
    omni__ipc_params_free(root);
}
END_TEST

START_TEST(test_params_tree_refuses_bad_shapes)
{
    struct omni__ynode *root = NULL;
    struct omni_error e;
    /* root not a map */
    node(0, 1, -1, NULL, NULL);
    ck_assert_int_eq(omni__ipc_params_unflatten(pp, 1, "p", &root, &e), OMNI_EPROTO);
    /* a parent that comes later (a cycle), a scalar parent, a key under a sequence, no key under a map */
    node(0, 2, -1, NULL, NULL);
    node(1, 0, 1, "k", "v");
    ck_assert_int_eq(omni__ipc_params_unflatten(pp, 2, "p", &root, &e), OMNI_EPROTO);
    node(1, 0, 0, "k", "v");
    node(2, 0, 1, "j", "w");
    ck_assert_int_eq(omni__ipc_params_unflatten(pp, 3, "p", &root, &e), OMNI_EPROTO);
    node(2, 1, 0, "s", NULL);
    node(3, 0, 2, "bad", "x");
    ck_assert_int_eq(omni__ipc_params_unflatten(pp, 4, "p", &root, &e), OMNI_EPROTO);
    node(3, 0, 0, NULL, "x");
    ck_assert_int_eq(omni__ipc_params_unflatten(pp, 4, "p", &root, &e), OMNI_EPROTO);
    ck_assert(root == NULL);
    /* deeper than 64 */
    Omni__ParamNode *deep = calloc(80, sizeof *deep);
    Omni__ParamNode **dp = calloc(80, sizeof *dp);
    for (int i = 0; i < 80; i++) {
        omni__param_node__init(&deep[i]);
        deep[i].kind = i ? 1 : 2;
        deep[i].parent = i - 1;
        deep[i].key = i == 1 ? "k" : "";
        dp[i] = &deep[i];
    }
    ck_assert_int_eq(omni__ipc_params_unflatten(dp, 80, "p", &root, &e), OMNI_EPROTO);
    ck_assert_msg(strstr(e.msg, "deeper"), "%s", e.msg);
    free(deep);
    free(dp);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ipc_wire");
    TCase *tc = tcase_create("wire");
    tcase_set_timeout(tc, 10);
    tcase_add_test(tc, test_ref_check_accepts_well_formed_references);
    tcase_add_test(tc, test_ref_check_refuses_what_points_outside);
    tcase_add_test(tc, test_segment_names_are_omni_segments_only);
    tcase_add_test(tc, test_decode_refuses_garbage_size_and_version);
    tcase_add_test(tc, test_decode_refuses_bad_references_inside_messages);
    tcase_add_test(tc, test_params_tree_rebuilds_nested_yaml);
    tcase_add_test(tc, test_params_tree_refuses_bad_shapes);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_FORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
