/* SPDX-License-Identifier: MIT */
/*
 * testcmd.c: `cicada test FILE`. One Lua state on this thread's loop loads the file (as a run
 * would, so the same file also loads with -f), then one fiber runs its tests in order
 * (lua/cicada/testing.lua): requests and waits yield to the loop as in a load test. The fiber
 * writes TAP and JUnit XML itself and returns the exit code.
 */
#include "runner/testcmd.h"
#include "core/common.h"
#include "core/log.h"
#include "lua/vm.h"
#include "stats/stats.h"

#include <lua.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct test_opts {
    const char *file, *host, *tap, *junit, *select, *loglevel;
    bool exitfirst, insecure;
};

static void usage(FILE *out)
{
    fprintf(out, "Usage: cicada test [options] FILE\n"
                 "\n"
                 "Runs the test_* functions of FILE once each, as functional tests. Fixtures are\n"
                 "passed by parameter name (http, client, rest, host, and the file's own).\n"
                 "The same FILE runs as a load test with `cicada -f FILE`.\n"
                 "\n"
                 "  -H, --host URL        the base URL of the http, client and rest fixtures\n"
                 "  --tap FILE            write TAP to FILE (default: stdout; '-' is stdout)\n"
                 "  --junit-xml FILE      also write JUnit XML to FILE\n"
                 "  -k TEXT               run only the tests whose name contains TEXT\n"
                 "  -x, --exitfirst       stop after the first failing test\n"
                 "  --insecure            do not verify TLS certificates\n"
                 "  -L, --loglevel LEVEL  DEBUG, INFO, WARNING, ERROR or CRITICAL (default INFO)\n"
                 "  -h, --help            this help\n"
                 "\n"
                 "Exit status: 0 when every test passed or was skipped, 1 otherwise, 2 for a bad\n"
                 "command line.\n");
}

/* Reads |argv| into |o|; returns 0, 1 after --help, or -1 after a usage message. */
static int parse_args(int argc, char **argv, struct test_opts *o)
{
    static const struct {
        const char *s, *l;
        size_t off; /* the field for options with a value; SIZE_MAX for flags */
    } defs[] = {
        {"-H", "--host", offsetof(struct test_opts, host)},
        {NULL, "--tap", offsetof(struct test_opts, tap)},
        {NULL, "--junit-xml", offsetof(struct test_opts, junit)},
        {"-k", NULL, offsetof(struct test_opts, select)},
        {"-L", "--loglevel", offsetof(struct test_opts, loglevel)},
        {"-f", "--locustfile", offsetof(struct test_opts, file)},
    };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 1;
        }
        if (strcmp(a, "-x") == 0 || strcmp(a, "--exitfirst") == 0) {
            o->exitfirst = true;
            continue;
        }
        if (strcmp(a, "--insecure") == 0) {
            o->insecure = true;
            continue;
        }
        if (a[0] != '-' || strcmp(a, "-") == 0) {
            if (o->file) {
                fprintf(stderr, "cicada test: one file at a time (%s and %s)\n", o->file, a);
                return -1;
            }
            o->file = a;
            continue;
        }
        const char *value = NULL;
        size_t field = SIZE_MAX;
        for (size_t d = 0; d < CC_ARRAY_LEN(defs) && field == SIZE_MAX; d++) {
            size_t ll = defs[d].l ? strlen(defs[d].l) : 0;
            if ((defs[d].s && strcmp(a, defs[d].s) == 0) || (ll && strcmp(a, defs[d].l) == 0)) {
                field = defs[d].off;
                if (i + 1 >= argc) {
                    fprintf(stderr, "cicada test: %s needs a value\n", a);
                    return -1;
                }
                value = argv[++i];
            } else if (ll && strncmp(a, defs[d].l, ll) == 0 && a[ll] == '=') {
                field = defs[d].off;
                value = a + ll + 1;
            }
        }
        if (field == SIZE_MAX) {
            fprintf(stderr, "cicada test: unknown option %s\nTry 'cicada test --help'.\n", a);
            return -1;
        }
        *(const char **)((char *)o + field) = value;
    }
    if (!o->file) {
        fprintf(stderr, "cicada test: give the file of tests: cicada test FILE\n");
        return -1;
    }
    return 0;
}

/* Appends |s| as a Lua string literal. */
static void lua_str(char **buf, size_t *len, size_t *cap, const char *key, const char *s)
{
    if (!s) return;
    size_t need = strlen(key) + 4 * strlen(s) + 8;
    cc_grow((void **)buf, cap, *len + need, 1);
    char *p = *buf + *len;
    p += sprintf(p, "%s=\"", key);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\')
            p += sprintf(p, "\\%c", *c);
        else if (*c < 0x20 || *c == 0x7f)
            p += sprintf(p, "\\%03u", *c);
        else
            *p++ = (char)*c;
    }
    p += sprintf(p, "\",");
    *len = (size_t)(p - *buf);
}

/* The options as the Lua table constructor the runtime reads into env.parsed_options. */
static char *options_lua(const struct test_opts *o)
{
    char *buf = NULL;
    size_t len = 0, cap = 0;
    cc_grow((void **)&buf, &cap, 128, 1);
    len = (size_t)sprintf(buf, "{test_command=true,exitfirst=%s,insecure=%s,",
                          o->exitfirst ? "true" : "false", o->insecure ? "true" : "false");
    lua_str(&buf, &len, &cap, "host", o->host);
    lua_str(&buf, &len, &cap, "tap", o->tap);
    lua_str(&buf, &len, &cap, "junit_xml", o->junit);
    lua_str(&buf, &len, &cap, "select", o->select);
    lua_str(&buf, &len, &cap, "locustfile", o->file);
    cc_grow((void **)&buf, &cap, len + 2, 1);
    buf[len++] = '}';
    buf[len] = '\0';
    return buf;
}

struct outcome {
    uv_loop_t *loop;
    int code;
};

/* The tests' fiber ended: it returned the exit code (anything else is an error of ours). */
static void tests_done(struct cc_fiber *f, void *arg)
{
    struct outcome *out = arg;
    out->code = lua_type(f->co, -1) == LUA_TNUMBER ? (int)lua_tointeger(f->co, -1) : 1;
    uv_stop(out->loop);
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

int cc_test_main(int argc, char **argv, const char *lua_dir)
{
    struct test_opts o = {0};
    int rc = parse_args(argc, argv, &o);
    if (rc != 0) return rc > 0 ? 0 : 2;
    int level = cc_log_parse_level(o.loglevel ? o.loglevel : "INFO");
    if (level < 0) {
        fprintf(stderr, "cicada test: unknown log level %s\n", o.loglevel);
        return 2;
    }
    cc_log_setup((enum cc_log_level)level, NULL);
    if (access(o.file, R_OK) != 0) {
        fprintf(stderr, "cicada test: cannot read %s\n", o.file);
        return 1;
    }

    uv_loop_t loop;
    CC_ASSERT(uv_loop_init(&loop) == 0);
    struct cc_shard shard;
    struct cc_recorder rec;
    cc_shard_init(&shard);
    cc_recorder_init(&rec, &shard); /* requests are recorded as in a run, and not reported */
    char *opts_lua = options_lua(&o);
    struct cc_vm_opts vo = {
        .role = CC_ROLE_CONTROL,
        .worker_index = -1,
        .threads = 1,
        .script = o.file,
        .lua_dir = lua_dir,
        .options = opts_lua,
        .host = o.host,
        .seed = cc_now_ns(),
    };
    struct cc_vm vm;
    struct outcome out = {.loop = &loop, .code = 1};
    char *err = NULL;
    if (cc_vm_init(&vm, &loop, &vo, &rec, NULL, NULL, &err) != 0) {
        fprintf(stderr, "cicada test: %s did not load:\n%s\n", o.file, err);
        /* a TAP reader sees the run end early, not an empty success */
        FILE *tap = !o.tap || strcmp(o.tap, "-") == 0 ? stdout : fopen(o.tap, "w");
        if (tap) fprintf(tap, "TAP version 13\nBail out! %s did not load\n", o.file);
        if (tap && tap != stdout) fclose(tap);
        cc_free(err);
    } else {
        cc_vm_call(&vm, "run_tests", 0, tests_done, &out);
        uv_run(&loop, UV_RUN_DEFAULT);
    }

    if (vm.L) cc_vm_close(&vm);
    cc_vm_release(&vm);
    uv_walk(&loop, close_walk, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    cc_recorder_release(&rec);
    cc_shard_release(&shard);
    cc_free(opts_lua);
    fflush(stdout);
    return out.code;
}
