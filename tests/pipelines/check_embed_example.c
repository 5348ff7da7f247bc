/* examples/embed against an installed omni: `make install` into a temporary
 * prefix, build the program with pkg-config exactly as its README says, and
 * run it on the tiny text-to-image pipeline (plugins found in the prefix). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

static int sh(const char *cmd)
{
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

START_TEST(test_embed_example_builds_with_pkg_config_and_runs)
{
    char prefix[1024], cmd[8192], cwd[1024], png[1200];
    ck_assert_ptr_nonnull(getcwd(cwd, sizeof cwd));
    snprintf(prefix, sizeof prefix, "%s/prefix", tu_tmpdir());
    const char *build = getenv("OMNI_BUILD") ? getenv("OMNI_BUILD") : "build";
    snprintf(cmd, sizeof cmd, "make -s --no-print-directory BUILD=%s install PREFIX=%s > %s/install.log 2>&1",
             build, prefix, tu_tmpdir());
    ck_assert_msg(sh(cmd) == 0, "make install failed (see %s/install.log)", tu_tmpdir());
    /* a sanitizer build of omni needs the program built with the same runtime */
    const char *san = getenv("OMNI_SANFLAGS") ? getenv("OMNI_SANFLAGS") : "";
    snprintf(cmd, sizeof cmd,
             "PKG_CONFIG_PATH=%s/lib/pkgconfig cc %s -o %s/embed examples/embed/embed.c "
             "$(PKG_CONFIG_PATH=%s/lib/pkgconfig pkg-config --cflags --libs omni)",
             prefix, san, tu_tmpdir(), prefix);
    ck_assert_msg(sh(cmd) == 0, "building examples/embed with pkg-config failed: %s", cmd);
    snprintf(png, sizeof png, "%s/embed.png", tu_tmpdir());
    /* no OMNI_PLUGIN_PATH: the installed library must find its installed plugins */
    snprintf(cmd, sizeof cmd,
             "cd %s && env -u OMNI_PLUGIN_PATH OMNI_TINY=%s/%s/tiny OMNI_SHARED=%s/../shared %s/embed "
             "%s/pipelines/t2i-tiny.yaml 'A red bicycle' %s > %s/embed.log 2>&1",
             tu_tmpdir(), cwd, build, cwd, tu_tmpdir(), cwd, png, tu_tmpdir());
    ck_assert_msg(sh(cmd) == 0, "examples/embed failed (see %s/embed.log)", tu_tmpdir());
    struct omni_tensor img;
    struct omni_error err;
    ck_assert_msg(omni_image_load(png, &img, &err) == OMNI_OK, "%s", err.msg);
    ck_assert_int_eq(img.shape[0], 16);
    omni_tensor_release(&img);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("embed_example");
    TCase *tc = tcase_create("install");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_embed_example_builds_with_pkg_config_and_runs);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
