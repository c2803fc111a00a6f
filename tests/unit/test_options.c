/* SPDX-License-Identifier: MIT */
/* test_options.c: timespans, config files, environment and command line, and their order. */
#include "core/options.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

static void test_timespan(void **state)
{
    (void)state;
    assert_true(cc_parse_timespan("20") == 20);
    assert_true(cc_parse_timespan("1.5") == 1.5);
    assert_true(cc_parse_timespan("20s") == 20);
    assert_true(cc_parse_timespan("3m") == 180);
    assert_true(cc_parse_timespan("2h") == 7200);
    assert_true(cc_parse_timespan("1h20m") == 4800);
    assert_true(cc_parse_timespan("3h30m10s") == 12610);
    assert_true(cc_parse_timespan("1m30s") == 90);
    assert_true(cc_parse_timespan("") < 0);
    assert_true(cc_parse_timespan("abc") < 0);
    assert_true(cc_parse_timespan("10x") < 0);
    assert_true(cc_parse_timespan("1s2m") < 0); /* units in order */
    assert_true(cc_parse_timespan("-5") < 0);
}

static char *write_file(const char *text)
{
    char *path = strdup("/tmp/cicada-test-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static int load(struct cc_options *o, char **argv, char **envp, const char *home_dir,
                const char *cwd_conf, char **err)
{
    int argc = 0;
    while (argv[argc])
        argc++;
    cc_options_defaults(o);
    return cc_options_load(o, argc, argv, envp, home_dir, cwd_conf, err);
}

/* ~/.cicada.conf < ./cicada.conf < --config < environment < command line */
static void test_precedence(void **state)
{
    (void)state;
    char home[] = "/tmp/cicada-home-XXXXXX";
    assert_non_null(mkdtemp(home));
    char path[256];
    snprintf(path, sizeof(path), "%s/.cicada.conf", home);
    FILE *f = fopen(path, "w");
    fputs("# home\nusers = 1\nspawn-rate = 1\nrun-time = 1m\nhost = http://home\n"
          "tags = [a, b]\n",
          f);
    fclose(f);
    char *cwd = write_file("[cicada]\nusers = 2\nspawn_rate = 2\nrun-time = 2m\n");
    char *cfg = write_file("users = 3\nspawn-rate = 3\nheadless = true\n");
    char cfg_arg[300];
    snprintf(cfg_arg, sizeof(cfg_arg), "--config=%s", cfg);
    char *argv[] = {"cicada", cfg_arg, "-u", "5", "Shopper", "Admin", NULL};
    char *envp[] = {"CICADA_USERS=4", "CICADA_SPAWN_RATE=4", "OTHER=1", NULL};
    struct cc_options o;
    char *err = NULL;
    assert_int_equal(load(&o, argv, envp, home, cwd, &err), CC_OPT_OK);
    assert_int_equal(o.users, 5);               /* command line */
    assert_true(o.spawn_rate == 4);             /* environment */
    assert_true(o.headless);                    /* --config file */
    assert_true(o.run_time == 120);             /* ./cicada.conf */
    assert_string_equal(o.host, "http://home"); /* ~/.cicada.conf */
    assert_string_equal(o.tags, "a  b");
    assert_string_equal(o.classes, "Shopper Admin");
    cc_options_release(&o);
    unlink(path);
    rmdir(home);
    unlink(cwd);
    unlink(cfg);
    free(cwd);
    free(cfg);
}

static void expect_error(char **argv, char **envp, const char *conf, const char *needle)
{
    struct cc_options o;
    char *err = NULL;
    assert_int_equal(load(&o, argv, envp, NULL, conf, &err), CC_OPT_USAGE);
    assert_non_null(err);
    if (!strstr(err, needle)) fail_msg("error '%s' does not mention '%s'", err, needle);
    free(err);
    cc_options_release(&o);
}

static void test_errors_name_the_flag(void **state)
{
    (void)state;
    char *e0[] = {NULL};
    char *a1[] = {"cicada", "--userz", "3", NULL};
    expect_error(a1, e0, NULL, "did you mean --users?");
    char *a2[] = {"cicada", "-u", "many", NULL};
    expect_error(a2, e0, NULL, "--users");
    char *a3[] = {"cicada", "-t", "forever", NULL};
    expect_error(a3, e0, NULL, "--run-time");
    char *a4[] = {"cicada", "--users", NULL};
    expect_error(a4, e0, NULL, "--users expects a value");
    char *a5[] = {"cicada", "-r", "0", NULL};
    expect_error(a5, e0, NULL, "--spawn-rate");
    char *a6[] = {"cicada", "--csv-full-history", NULL};
    expect_error(a6, e0, NULL, "requires --csv");
    char *a7[] = {"cicada", "--loglevel", "LOUD", NULL};
    expect_error(a7, e0, NULL, "--loglevel");
    char *a8[] = {"cicada", NULL};
    char *e8[] = {"CICADA_HEADLESS=perhaps", NULL};
    expect_error(a8, e8, NULL, "CICADA_HEADLESS");
    char *conf = write_file("users = 1\nwat = 3\n");
    expect_error(a8, e0, conf, ":2: unrecognized option --wat");
    unlink(conf);
    free(conf);
}

static void test_forms(void **state)
{
    (void)state;
    char *argv[] = {"cicada", "-u10",       "--spawn-rate=2.5", "-T", "a",  "b",  "-E",
                    "c",      "--headless", "--json",           "-s", "1m", "--", "-Weird",
                    NULL};
    char *envp[] = {NULL};
    struct cc_options o;
    char *err = NULL;
    assert_int_equal(load(&o, argv, envp, NULL, NULL, &err), CC_OPT_OK);
    assert_int_equal(o.users, 10);
    assert_true(o.spawn_rate == 2.5);
    assert_string_equal(o.tags, "a b");
    assert_string_equal(o.exclude_tags, "c");
    assert_true(o.headless && o.json);
    assert_true(o.stop_timeout == 60);
    assert_string_equal(o.classes, "-Weird");
    char *lua = cc_options_to_lua(&o);
    assert_non_null(strstr(lua, "users=10,"));
    assert_non_null(strstr(lua, "tags=\"a b\""));
    assert_non_null(strstr(lua, "headless=true"));
    free(lua);
    cc_options_release(&o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timespan),
        cmocka_unit_test(test_precedence),
        cmocka_unit_test(test_errors_name_the_flag),
        cmocka_unit_test(test_forms),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
