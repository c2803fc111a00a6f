/* SPDX-License-Identifier: MIT */
/* main.c: cicada's entry point: options, logging, and the run. */
#include "core/common.h"
#include "core/log.h"
#include "core/options.h"
#include "demo/demo.h"
#include "runner/runner.h"
#include "runner/testcmd.h"
#include "dist/zmq_uv.h"

#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <sys/resource.h>
#include <luajit.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

extern char **environ;

static bool has_runtime(const char *dir)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/cicada/runtime.lua", dir);
    return access(path, R_OK) == 0;
}

/* Where cicada's Lua modules are: $CICADA_LUA_DIR, beside the installed binary, or the tree
 * this binary was built from. */
static const char *find_lua_dir(void)
{
    static char dir[PATH_MAX + 32];
    const char *env = getenv("CICADA_LUA_DIR");
    if (env && *env) return env;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            snprintf(dir, sizeof(dir), "%s/../share/cicada/lua", exe);
            if (has_runtime(dir)) return dir;
        }
    }
    if (has_runtime(CICADA_SOURCE_LUA_DIR)) return CICADA_SOURCE_LUA_DIR;
    return CICADA_INSTALL_LUA_DIR;
}

/* Many users mean many sockets: take the whole file descriptor allowance, as Locust raises
 * its soft limit. Writing to a socket the peer closed is an error to count, not a signal. */
static void prepare_process(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGPIPE, SIG_IGN);
}

static void print_version(void)
{
    printf("cicada %s\n", CC_VERSION);
    printf("built with libuv %s, %s, jansson %s\n", uv_version_string(), LUAJIT_VERSION,
           JANSSON_VERSION);
}

/* cicada keygen: a CURVE key pair for --curve-secret-key, in zcert's format. */
static int keygen(void)
{
    char pub[CC_ZKEY_LEN + 1], sec[CC_ZKEY_LEN + 1];
    if (cc_zcurve_keypair(pub, sec) != 0) {
        fprintf(stderr, "cicada: this libzmq has no CURVE support\n");
        return 1;
    }
    printf("# cicada keygen: give this file to --curve-secret-key; give the public-key line\n"
           "# alone to the other side (--curve-server-key or --curve-allow)\n"
           "public-key = \"%s\"\nsecret-key = \"%s\"\n",
           pub, sec);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "demo-server") == 0)
        return cc_demo_server_main(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "keygen") == 0) return keygen();
    if (argc > 1 && strcmp(argv[1], "test") == 0) {
        prepare_process();
        return cc_test_main(argc - 1, argv + 1, find_lua_dir());
    }
    struct cc_options o;
    cc_options_defaults(&o);
    char *err = NULL;
    const char *home = getenv("HOME");
    int rc = cc_options_load(&o, argc, argv, environ, home, "cicada.conf", &err);
    if (rc != CC_OPT_OK) {
        fprintf(stderr, "cicada: error: %s\nTry 'cicada --help' for the options.\n", err);
        cc_free(err);
        cc_options_release(&o);
        return rc;
    }
    if (o.help) {
        cc_options_usage(stdout);
        cc_options_release(&o);
        return 0;
    }
    if (o.version) {
        print_version();
        cc_options_release(&o);
        return 0;
    }
    int level = cc_log_parse_level(o.loglevel ? o.loglevel : "INFO");
    if (cc_log_setup((enum cc_log_level)level, o.logfile) != 0) {
        fprintf(stderr, "cicada: cannot open the log file %s\n", o.logfile);
        cc_options_release(&o);
        return 1;
    }
    prepare_process();
    rc = cc_run(&o, find_lua_dir());
    cc_log_close();
    cc_options_release(&o);
    return rc;
}
