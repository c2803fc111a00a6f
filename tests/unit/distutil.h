/* SPDX-License-Identifier: MIT */
/*
 * distutil.h: helpers for the distributed-mode tests: run a loop until a condition holds (with
 * a generous deadline, never a timing assertion), free ports, and child processes (Locust).
 */
#ifndef CC_TEST_DISTUTIL_H
#define CC_TEST_DISTUTIL_H

#include "core/common.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

static void du_tick(uv_timer_t *t)
{
    (void)t;
}

/* Runs |loop| until |cond(ctx)| is true or |seconds| pass. Returns whether it became true. */
static inline bool du_run_until(uv_loop_t *loop, bool (*cond)(void *), void *ctx, double seconds)
{
    uv_timer_t tick;
    uv_timer_init(loop, &tick);
    uv_timer_start(&tick, du_tick, 10, 10);
    uint64_t end = cc_now_ns() + (uint64_t)(seconds * 1e9);
    bool ok = cond(ctx);
    while (!ok && cc_now_ns() < end) {
        uv_run(loop, UV_RUN_ONCE);
        ok = cond(ctx);
    }
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return ok;
}

static bool du_false(void *ctx)
{
    (void)ctx;
    return false;
}

/* Runs |loop| for |seconds| (to show that something does not happen). */
static inline void du_run_for(uv_loop_t *loop, double seconds)
{
    du_run_until(loop, du_false, NULL, seconds);
}

/* Runs the loop until every handle is closed; true when uv_loop_close() then succeeds. */
static inline bool du_loop_done(uv_loop_t *loop)
{
    for (int i = 0; i < 1000 && uv_loop_alive(loop); i++)
        uv_run(loop, UV_RUN_ONCE);
    return uv_loop_close(loop) == 0;
}

/* A TCP port on 127.0.0.1 that was free a moment ago. */
static inline int du_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int port = 0;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0) close(fd);
    return port;
}

/* A child process on the loop; its output goes to |log|. */
struct du_proc {
    uv_process_t p;
    bool running;
    int64_t status;
    int signal;
};

static void du_proc_exit(uv_process_t *p, int64_t status, int sig)
{
    struct du_proc *c = cc_container_of(p, struct du_proc, p);
    c->running = false;
    c->status = status;
    c->signal = sig;
    uv_close((uv_handle_t *)p, NULL);
}

static inline int du_spawn(uv_loop_t *loop, struct du_proc *c, char **argv, const char *cwd,
                           const char *log)
{
    memset(c, 0, sizeof(*c));
    FILE *f = fopen(log, "w");
    if (!f) return -1;
    int fd = dup(fileno(f));
    fclose(f);
    uv_stdio_container_t io[3] = {
        {.flags = UV_IGNORE},
        {.flags = UV_INHERIT_FD, .data.fd = fd},
        {.flags = UV_INHERIT_FD, .data.fd = fd},
    };
    uv_process_options_t o = {
        .exit_cb = du_proc_exit,
        .file = argv[0],
        .args = argv,
        .cwd = cwd,
        .stdio = io,
        .stdio_count = 3,
    };
    int rv = uv_spawn(loop, &c->p, &o);
    close(fd);
    if (rv == 0) c->running = true;
    return rv;
}

static bool du_proc_done(void *ctx)
{
    return !((struct du_proc *)ctx)->running;
}

/* Kills the child by its pid (if it still runs) and reaps it. */
static inline void du_kill(uv_loop_t *loop, struct du_proc *c, int sig)
{
    if (!c->running) return;
    uv_process_kill(&c->p, sig);
    du_run_until(loop, du_proc_done, c, 10);
}

static inline bool du_have_locust(void)
{
    struct stat st;
    return stat("/usr/lib/python3/dist-packages/locust/runners.py", &st) == 0 &&
           access("/usr/bin/python3", X_OK) == 0;
}

/* Reads a whole file into a new NUL-terminated string (NULL when it cannot). */
static inline char *du_slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)(n > 0 ? n : 0) + 1);
    size_t got = fread(s, 1, (size_t)(n > 0 ? n : 0), f);
    s[got] = '\0';
    fclose(f);
    return s;
}

#endif
