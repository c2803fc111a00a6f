/* SPDX-License-Identifier: MIT */
/*
 * test_browser_proc.c: programs under a guard (proc.h): started, seen alive, ended with every
 * process of their group (also descendants that did not exit by themselves), their scratch
 * directory removed; a program that ends by itself; a program that cannot start; the
 * environment a program gets; scratch directories made and removed.
 */
#include "proto/browser/proc.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

static bool group_gone(pid_t pg)
{
    return kill(-pg, 0) == -1 && errno == ESRCH;
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Waits up to |ms| for |cond| on |p|. */
static bool wait_until(bool (*cond)(struct cc_proc *), struct cc_proc *p, int ms)
{
    for (int i = 0; i < ms / 10; i++) {
        if (cond(p)) return true;
        usleep(10000);
    }
    return cond(p);
}

static bool is_dead(struct cc_proc *p)
{
    return !cc_proc_alive(p);
}

static void test_start_stop(void **state)
{
    (void)state;
    char *dir = cc_proc_mkdtemp("cicada-test-proc-");
    assert_non_null(dir);
    char log[512], marker[512];
    snprintf(log, sizeof(log), "%s/log", dir);
    snprintf(marker, sizeof(marker), "%s/marker", dir);
    /* a shell whose children ignore SIGTERM: only SIGKILL after the grace period ends them */
    const char *argv[] = {
        "sh", "-c",   "trap '' TERM; echo started; sleep 60 & sleep 60 & touch \"$1\"; wait",
        "sh", marker, NULL};
    struct cc_proc p;
    struct cc_proc_opts o = {
        .path = "sh", .argv = argv, .log = log, .scratch = dir, .grace_ms = 300};
    assert_int_equal(cc_proc_start(&p, &o), 0);
    assert_true(p.pid > 0);
    assert_true(cc_proc_alive(&p));
    for (int i = 0; i < 500 && !exists(marker); i++)
        usleep(10000);
    assert_true(exists(marker));
    assert_false(group_gone(p.pid));

    cc_proc_stop(&p);
    cc_proc_stop(&p); /* idempotent */
    cc_proc_wait(&p);
    assert_true(p.reaped);
    assert_false(cc_proc_alive(&p));
    /* the group is gone (its members may take a moment to be reaped by init) */
    for (int i = 0; i < 200 && !group_gone(p.pid); i++)
        usleep(10000);
    assert_true(group_gone(p.pid));
    assert_false(exists(dir)); /* the guard removed the scratch directory */
    cc_free(dir);
}

static void test_exits_by_itself(void **state)
{
    (void)state;
    char *dir = cc_proc_mkdtemp("cicada-test-proc-");
    assert_non_null(dir);
    const char *argv[] = {"true", NULL};
    struct cc_proc p;
    struct cc_proc_opts o = {.path = "/bin/true", .argv = argv, .scratch = dir};
    assert_int_equal(cc_proc_start(&p, &o), 0);
    assert_true(wait_until(is_dead, &p, 5000));
    cc_proc_wait(&p);
    for (int i = 0; i < 200 && exists(dir); i++)
        usleep(10000);
    assert_false(exists(dir));
    cc_free(dir);
}

static void test_cannot_start(void **state)
{
    (void)state;
    const char *argv[] = {"nope", NULL};
    struct cc_proc p;
    struct cc_proc_opts o = {.path = "/nonexistent/cicada-no-such-program", .argv = argv};
    assert_int_equal(cc_proc_start(&p, &o), -ENOENT);
    struct cc_proc_opts o2 = {.path = "cicada-no-such-program-on-path", .argv = argv};
    assert_int_equal(cc_proc_start(&p, &o2), -ENOENT);

    /* executable but not a program the kernel runs: the guard reports the program gone */
    char *dir = cc_proc_mkdtemp("cicada-test-proc-");
    char path[512];
    snprintf(path, sizeof(path), "%s/notexec", dir);
    FILE *f = fopen(path, "w");
    fputs("\x7f"
          "ELF garbage",
          f);
    fclose(f);
    chmod(path, 0700);
    struct cc_proc_opts o3 = {.path = path, .argv = argv};
    assert_int_equal(cc_proc_start(&p, &o3), 0);
    assert_true(wait_until(is_dead, &p, 5000));
    cc_proc_wait(&p);
    assert_int_equal(cc_proc_rmtree(dir), 0);
    cc_free(dir);
}

static void test_env(void **state)
{
    (void)state;
    char *dir = cc_proc_mkdtemp("cicada-test-proc-");
    assert_non_null(dir);
    char out[512], tmpdir[600];
    snprintf(out, sizeof(out), "%s/out", dir);
    snprintf(tmpdir, sizeof(tmpdir), "TMPDIR=%s", dir);
    setenv("CICADA_TEST_KEPT", "kept", 1);
    const char *argv[] = {
        "sh", "-c", "echo \"$TMPDIR $CICADA_TEST_NEW $CICADA_TEST_KEPT\" > \"$1\"",
        "sh", out,  NULL};
    const char *env[] = {tmpdir, "CICADA_TEST_NEW=new", NULL};
    struct cc_proc p;
    struct cc_proc_opts o = {.path = "/bin/sh", .argv = argv, .env = env};
    assert_int_equal(cc_proc_start(&p, &o), 0);
    assert_true(wait_until(is_dead, &p, 5000));
    cc_proc_wait(&p);
    FILE *f = fopen(out, "r");
    assert_non_null(f);
    char line[1024] = "";
    assert_non_null(fgets(line, sizeof(line), f));
    fclose(f);
    char want[1024];
    snprintf(want, sizeof(want), "%s new kept\n", dir);
    assert_string_equal(line, want);
    assert_int_equal(cc_proc_rmtree(dir), 0);
    cc_free(dir);
}

static void test_rmtree(void **state)
{
    (void)state;
    char *dir = cc_proc_mkdtemp("cicada-test-proc-");
    assert_non_null(dir);
    char path[512];
    snprintf(path, sizeof(path), "%s/a/b/c", dir);
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "mkdir -p '%s' && touch '%s/f' && ln -s / '%s/a/root'", path, path,
             dir);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(cc_proc_rmtree(dir), 0);
    assert_false(exists(dir));
    assert_true(exists("/"));                 /* symbolic links are removed, not followed */
    assert_int_equal(cc_proc_rmtree(dir), 0); /* already gone */
    cc_free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_start_stop),   cmocka_unit_test(test_exits_by_itself),
        cmocka_unit_test(test_cannot_start), cmocka_unit_test(test_env),
        cmocka_unit_test(test_rmtree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
