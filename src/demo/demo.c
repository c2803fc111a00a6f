/* SPDX-License-Identifier: MIT */
/* demo.c: "cicada demo-server": the demo shop on one event loop per thread, until a signal. */
#include "demo/demo.h"

#include "demo/shop.h"
#include "web/httpd.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define MAX_THREADS 256

struct demo_thread {
    uv_loop_t loop;
    uv_async_t stop; /* threads other than the first: close the server */
    struct cc_httpd *srv;
    uv_thread_t thread;
    bool started;
};

struct demo {
    struct demo_thread *t;
    unsigned n;
    uv_signal_t sigint, sigterm;
};

static void usage(FILE *f)
{
    fprintf(f, "Usage: cicada demo-server [--host HOST] [--port PORT] [--threads N]\n\n"
               "Serves the built-in demo shop (a JSON API to load test) until SIGINT or SIGTERM.\n"
               "The first line on stdout is \"listening on http://HOST:PORT\".\n\n"
               "  --host HOST    address to listen on, an IP literal (default 127.0.0.1)\n"
               "  --port PORT    port to listen on; 0 picks a free one (default 8080)\n"
               "  --threads N    event loops (threads) sharing the port (default 1)\n"
               "  -h, --help     show this help\n");
}

/* Reads "--name VALUE" or "--name=VALUE"; advances *|i| past what it used. */
static const char *opt_value(int argc, char **argv, int *i, const char *name)
{
    size_t n = strlen(name);
    const char *a = argv[*i];
    if (strncmp(a, name, n) != 0) return NULL;
    if (a[n] == '=') return a + n + 1;
    if (a[n] != '\0') return NULL;
    if (*i + 1 >= argc) return "";
    return argv[++*i];
}

static bool parse_uint(const char *s, long max, long *out)
{
    char *end;
    errno = 0;
    long v = s && *s ? strtol(s, &end, 10) : -1;
    if (!s || !*s || errno || *end || v < 0 || v > max) return false;
    *out = v;
    return true;
}

static void stop_cb(uv_async_t *a)
{
    struct demo_thread *t = a->data;
    cc_httpd_close(t->srv, NULL, NULL);
    uv_close((uv_handle_t *)a, NULL);
}

static void thread_main(void *arg)
{
    struct demo_thread *t = arg;
    uv_run(&t->loop, UV_RUN_DEFAULT);
}

static void signal_cb(uv_signal_t *h, int signum)
{
    (void)signum;
    struct demo *d = h->data;
    for (unsigned i = 1; i < d->n; i++)
        uv_async_send(&d->t[i].stop);
    cc_httpd_close(d->t[0].srv, NULL, NULL);
    /* With the handlers closed, a second signal ends the program the default way. */
    uv_close((uv_handle_t *)&d->sigint, NULL);
    uv_close((uv_handle_t *)&d->sigterm, NULL);
}

int cc_demo_server_main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    long port = 8080, threads = 1;
    int status = 0;

    for (int i = 1; i < argc; i++) {
        const char *v;
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else if ((v = opt_value(argc, argv, &i, "--host"))) {
            host = v;
        } else if ((v = opt_value(argc, argv, &i, "--port"))) {
            if (!parse_uint(v, 65535, &port)) {
                fprintf(stderr, "cicada demo-server: --port must be 0 to 65535\n");
                return 2;
            }
        } else if ((v = opt_value(argc, argv, &i, "--threads"))) {
            if (!parse_uint(v, MAX_THREADS, &threads) || threads < 1) {
                fprintf(stderr, "cicada demo-server: --threads must be 1 to %d\n", MAX_THREADS);
                return 2;
            }
        } else {
            fprintf(stderr, "cicada demo-server: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }

    /* A load test may open many connections: take the whole descriptor allowance. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    struct cc_shop *shop = cc_shop_new(NULL);
    struct demo d = {.n = (unsigned)threads};
    d.t = cc_xcalloc(d.n, sizeof(*d.t));
    unsigned flags = d.n > 1 ? CC_HTTPD_REUSEPORT : 0;
    unsigned made = 0;

    /* Every loop and server is made and bound here; a thread then only runs its loop. With
     * port 0 the first server picks the port and the others join it through SO_REUSEPORT. */
    for (unsigned i = 0; i < d.n; i++, made++) {
        struct demo_thread *t = &d.t[i];
        CC_ASSERT(uv_loop_init(&t->loop) == 0);
        t->srv = cc_httpd_new(&t->loop, NULL);
        int rv = cc_shop_mount(shop, t->srv);
        if (rv == 0) rv = cc_httpd_listen(t->srv, host, (int)port, flags);
        if (rv < 0) {
            fprintf(stderr, "cicada demo-server: cannot listen on %s port %ld: %s\n", host, port,
                    rv == UV_EINVAL ? "not an IP address" : uv_strerror(rv));
            made++;
            status = 1;
            break;
        }
        port = cc_httpd_port(t->srv);
    }
    if (status != 0) {
        for (unsigned i = 0; i < made; i++) {
            cc_httpd_close(d.t[i].srv, NULL, NULL);
            uv_run(&d.t[i].loop, UV_RUN_DEFAULT);
            uv_loop_close(&d.t[i].loop);
        }
        cc_free(d.t);
        cc_shop_free(shop);
        return status;
    }

    uv_loop_t *main_loop = &d.t[0].loop;
    uv_signal_init(main_loop, &d.sigint);
    uv_signal_init(main_loop, &d.sigterm);
    d.sigint.data = d.sigterm.data = &d;
    uv_signal_start(&d.sigint, signal_cb, SIGINT);
    uv_signal_start(&d.sigterm, signal_cb, SIGTERM);
    for (unsigned i = 1; i < d.n; i++) {
        struct demo_thread *t = &d.t[i];
        uv_async_init(&t->loop, &t->stop, stop_cb);
        t->stop.data = t;
        CC_ASSERT(uv_thread_create(&t->thread, thread_main, t) == 0);
        t->started = true;
    }

    bool v6 = strchr(host, ':') != NULL;
    printf("listening on http://%s%s%s:%ld\n", v6 ? "[" : "", host, v6 ? "]" : "", port);
    fflush(stdout);

    uv_run(main_loop, UV_RUN_DEFAULT);
    for (unsigned i = 0; i < d.n; i++) {
        if (d.t[i].started) uv_thread_join(&d.t[i].thread);
        uv_loop_close(&d.t[i].loop);
    }
    cc_free(d.t);
    cc_shop_free(shop);
    return 0;
}
