/* SPDX-License-Identifier: MIT */
/*
 * test_webui.c: what the web UI's endpoints answer (Locust's shapes), /metrics, the HTML
 * report, the log ring, the embedded assets, and HTTPS in httpd.
 */
#include "core/log.h"
#include "core/strbuf.h"
#include "report/report.h"
#include "web/api.h"
#include "web/assets.h"
#include "web/httpd.h"
#include "web/logring.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>
#include <cmocka.h>

/* ---- a run to look at ---------------------------------------------------------------------- */

struct fixture {
    struct cc_agg agg;
    struct cc_shard shard;
    struct cc_recorder rec;
    struct cc_history_point hist[3];
    const char *classes[2];
    struct cc_runner_view view;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    cc_shard_init(&f->shard);
    cc_recorder_init(&f->rec, &f->shard);
    const struct cc_ikey *items = cc_recorder_key(&f->rec, "GET", 3, "/items", 6);
    const struct cc_ikey *odd = cc_recorder_key(&f->rec, "POST", 4, "/a \"b\"\n<c>&", 12);
    for (int i = 1; i <= 100; i++)
        cc_recorder_request(&f->rec, items, (uint64_t)i * 1000000, 100, NULL, 0);
    cc_recorder_request(&f->rec, odd, 2000000, 0, "HTTP 500 <oops>", 15);
    cc_recorder_exception(&f->rec, "bad <thing>", 11, "line 1\nline 2", 13);
    cc_agg_init(&f->agg, true);
    f->agg.start_s = 1000;
    cc_agg_open_interval(&f->agg, 0);
    cc_agg_merge(&f->agg, &f->shard, 0);
    cc_agg_close_interval(&f->agg, 1000000000);
    cc_agg_open_interval(&f->agg, 1000000000);
    for (int i = 0; i < 3; i++)
        f->hist[i] = (struct cc_history_point){.time_s = 1001 + i,
                                               .users = 5,
                                               .rps = 100.5,
                                               .fail_per_s = 1,
                                               .p50_ms = 50,
                                               .p95_ms = 95,
                                               .avg_ms = 51};
    f->classes[0] = "Web";
    f->classes[1] = "Admin";
    f->view = (struct cc_runner_view){.state = "running",
                                      .user_count = 5,
                                      .target = 5,
                                      .nclasses = 2,
                                      .class_names = f->classes,
                                      .threads = 2,
                                      .host = "http://127.0.0.1:1",
                                      .start_s = 1000,
                                      .end_s = 1003,
                                      .rate = 5,
                                      .agg = &f->agg,
                                      .history = f->hist,
                                      .history_n = 3,
                                      .locustfile = "/some/dir/cicadafile.lua"};
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    cc_agg_release(&f->agg);
    cc_recorder_release(&f->rec);
    cc_shard_release(&f->shard);
    free(f);
    return 0;
}

static void assert_keys(json_t *o, const char *const *keys, size_t n)
{
    assert_true(json_is_object(o));
    assert_int_equal(json_object_size(o), n);
    for (size_t i = 0; i < n; i++) {
        if (!json_object_get(o, keys[i])) fail_msg("missing key %s", keys[i]);
    }
}

/* ---- /stats/requests and friends ------------------------------------------------------------ */

static void test_stats_requests(void **state)
{
    struct fixture *f = *state;
    json_t *j = cc_api_stats_requests(&f->view);
    static const char *const top[] = {"stats",       "errors",
                                      "total_rps",   "total_fail_per_sec",
                                      "current_rps", "current_fail_per_sec",
                                      "fail_ratio",  "current_response_time_percentiles",
                                      "state",       "user_count",
                                      "workers",     "worker_count"};
    assert_keys(j, top, CC_ARRAY_LEN(top));
    static const char *const entry[] = {"method",
                                        "name",
                                        "safe_name",
                                        "num_requests",
                                        "num_failures",
                                        "min_response_time",
                                        "max_response_time",
                                        "current_rps",
                                        "current_fail_per_sec",
                                        "avg_response_time",
                                        "median_response_time",
                                        "total_rps",
                                        "total_fail_per_sec",
                                        "response_time_percentile_0.95",
                                        "response_time_percentile_0.99",
                                        "avg_content_length"};
    json_t *stats = json_object_get(j, "stats");
    assert_int_equal(json_array_size(stats), 3);
    for (size_t i = 0; i < 3; i++)
        assert_keys(json_array_get(stats, i), entry, CC_ARRAY_LEN(entry));
    /* sorted by name, Aggregated last with a null method */
    json_t *odd = json_array_get(stats, 0), *items = json_array_get(stats, 1);
    json_t *total = json_array_get(stats, 2);
    assert_string_equal(json_string_value(json_object_get(items, "name")), "/items");
    assert_string_equal(json_string_value(json_object_get(items, "method")), "GET");
    assert_int_equal(json_integer_value(json_object_get(items, "num_requests")), 100);
    assert_float_equal(json_real_value(json_object_get(items, "min_response_time")), 1, 0.02);
    assert_float_equal(json_real_value(json_object_get(items, "max_response_time")), 100, 1);
    assert_float_equal(json_real_value(json_object_get(items, "median_response_time")), 50, 2);
    assert_float_equal(json_real_value(json_object_get(items, "avg_content_length")), 100, 0);
    assert_string_equal(json_string_value(json_object_get(odd, "safe_name")),
                        "/a \"b\"\n&lt;c&gt;&amp;");
    assert_string_equal(json_string_value(json_object_get(total, "name")), "Aggregated");
    assert_true(json_is_null(json_object_get(total, "method")));
    assert_int_equal(json_integer_value(json_object_get(total, "num_requests")), 101);
    assert_int_equal(json_integer_value(json_object_get(total, "num_failures")), 1);

    json_t *errors = json_object_get(j, "errors");
    assert_int_equal(json_array_size(errors), 1);
    json_t *e = json_array_get(errors, 0);
    assert_string_equal(json_string_value(json_object_get(e, "error")), "HTTP 500 <oops>");
    assert_int_equal(json_integer_value(json_object_get(e, "occurrences")), 1);

    assert_float_equal(json_real_value(json_object_get(j, "fail_ratio")), 1.0 / 101, 1e-9);
    json_t *cur = json_object_get(j, "current_response_time_percentiles");
    assert_non_null(json_object_get(cur, "response_time_percentile_0.5"));
    assert_non_null(json_object_get(cur, "response_time_percentile_0.95"));
    assert_string_equal(json_string_value(json_object_get(j, "state")), "running");
    assert_int_equal(json_integer_value(json_object_get(j, "user_count")), 5);
    assert_int_equal(json_array_size(json_object_get(j, "workers")), 0);
    json_decref(j);
}

static void test_stats_requests_empty(void **state)
{
    (void)state;
    struct cc_agg a;
    cc_agg_init(&a, false);
    struct cc_runner_view v = {.state = "ready", .agg = &a};
    json_t *j = cc_api_stats_requests(&v);
    json_t *stats = json_object_get(j, "stats");
    assert_int_equal(json_array_size(stats), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(stats, 0), "num_requests")),
                     0);
    json_t *cur = json_object_get(j, "current_response_time_percentiles");
    assert_true(json_is_null(json_object_get(cur, "response_time_percentile_0.5")));
    assert_float_equal(json_real_value(json_object_get(j, "fail_ratio")), 0, 0);
    json_decref(j);
    cc_agg_release(&a);
}

static void test_exceptions_and_history(void **state)
{
    struct fixture *f = *state;
    json_t *j = cc_api_exceptions(&f->agg, 10);
    json_t *list = json_object_get(j, "exceptions");
    assert_int_equal(json_array_size(list), 1);
    static const char *const keys[] = {"count", "msg", "traceback", "nodes"};
    json_t *e = json_array_get(list, 0);
    assert_keys(e, keys, CC_ARRAY_LEN(keys));
    assert_string_equal(json_string_value(json_object_get(e, "msg")), "bad <thing>");
    assert_string_equal(json_string_value(json_object_get(e, "traceback")), "line 1\nline 2");
    assert_string_equal(json_string_value(json_object_get(e, "nodes")), "local");
    json_decref(j);
    j = cc_api_exceptions(&f->agg, 0);
    assert_int_equal(json_array_size(json_object_get(j, "exceptions")), 0);
    json_decref(j);

    j = cc_api_history(&f->view, 1);
    assert_int_equal(json_integer_value(json_object_get(j, "from")), 1);
    assert_int_equal(json_integer_value(json_object_get(j, "n")), 3);
    json_t *pts = json_object_get(j, "points");
    assert_int_equal(json_array_size(pts), 2);
    json_t *p = json_array_get(pts, 0);
    assert_int_equal(json_array_size(p), 7);
    assert_float_equal(json_real_value(json_array_get(p, 0)), 1002, 0);
    assert_int_equal(json_integer_value(json_array_get(p, 1)), 5);
    assert_float_equal(json_real_value(json_array_get(p, 2)), 100.5, 0);
    json_decref(j);
    j = cc_api_history(&f->view, 99); /* past the end: clamped, no points */
    assert_int_equal(json_integer_value(json_object_get(j, "from")), 3);
    assert_int_equal(json_array_size(json_object_get(j, "points")), 0);
    json_decref(j);
}

/* ---- /metrics ------------------------------------------------------------------------------- */

static void test_metrics(void **state)
{
    struct fixture *f = *state;
    size_t len;
    char *m = cc_api_metrics(&f->view, &len);
    assert_int_equal(strlen(m), len);
    assert_non_null(strstr(m, "# TYPE cicada_users gauge\ncicada_users 5\n"));
    assert_non_null(strstr(m, "cicada_state{state=\"running\"} 1\n"));
    assert_non_null(strstr(m, "cicada_state{state=\"ready\"} 0\n"));
    assert_non_null(strstr(m, "cicada_requests_total{method=\"GET\",name=\"/items\"} 100\n"));
    /* label values escape backslash, quote and newline */
    assert_non_null(
        strstr(m, "cicada_failures_total{method=\"POST\",name=\"/a \\\"b\\\"\\n<c>&\"} 1\n"));
    assert_non_null(strstr(m, "cicada_response_time_seconds{method=\"GET\",name=\"/items\","
                              "quantile=\"0.5\"} 0.0"));
    assert_non_null(
        strstr(m, "cicada_response_time_seconds_count{method=\"GET\",name=\"/items\"} 100\n"));
    assert_non_null(strstr(m, "cicada_response_time_seconds_sum{method=\"GET\",name=\"/items\"} "
                              "5.05\n"));
    assert_non_null(strstr(m, "cicada_response_time_all_seconds_count 101\n"));
    assert_non_null(strstr(m, "cicada_exceptions_total 1\n"));
    /* every line is a comment or "name[{labels}] value" */
    for (char *line = strtok(m, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '#') continue;
        char *sp = strrchr(line, ' ');
        assert_non_null(sp);
        char *end;
        strtod(sp + 1, &end);
        assert_true(*end == '\0');
        assert_memory_equal(line, "cicada_", 7);
    }
    cc_free(m);
}

/* ---- the HTML report ------------------------------------------------------------------------ */

static void test_html_report(void **state)
{
    struct fixture *f = *state;
    const char *ratio = "{\"per_class\": {\"Web\": {\"ratio\": 1, \"tasks\": {\"t<1>\": "
                        "{\"ratio\": 0.25}}}}, \"total\": {\"Web\": {\"ratio\": 1}}}";
    size_t len;
    char *html = cc_report_html(&f->view, ratio, true, &len);
    assert_int_equal(strlen(html), len);
    static const char *const sections[] = {"<h2>Request Statistics</h2>",
                                           "<h2>Response Time Statistics</h2>",
                                           "<h2>Failures Statistics</h2>",
                                           "<h2>Exceptions Statistics</h2>",
                                           "<h2>Charts</h2>",
                                           "<h2>Final ratio</h2>"};
    for (size_t i = 0; i < CC_ARRAY_LEN(sections); i++)
        if (!strstr(html, sections[i])) fail_msg("missing %s", sections[i]);
    assert_non_null(strstr(html, "<title>cicada report: cicadafile.lua</title>"));
    assert_non_null(strstr(html, "<td>/items</td>"));
    /* names and messages are escaped, the raw forms never appear */
    assert_non_null(strstr(html, "/a &quot;b&quot;\n&lt;c&gt;&amp;"));
    assert_non_null(strstr(html, "HTTP 500 &lt;oops&gt;"));
    assert_non_null(strstr(html, "bad &lt;thing&gt;"));
    assert_null(strstr(html, "<oops>"));
    assert_non_null(strstr(html, "t&lt;1&gt;"));
    assert_non_null(strstr(html, "25.0%"));
    assert_non_null(strstr(html, "<th>99%ile</th>"));
    assert_non_null(strstr(html, "http://127.0.0.1:1"));
    assert_non_null(strstr(html, "(3s)"));
    assert_non_null(strstr(html, "href=\"?download=1\""));
    assert_non_null(strstr(html, "Chart.js v3")); /* the library is inlined */
    assert_non_null(strstr(html, "window.CicadaCharts"));
    assert_null(strstr(html, "@@"));
    /* the chart data is JSON with every '<' escaped, so it cannot end its script element */
    const char *tag = "<script type=\"application/json\" id=\"report-data\">";
    const char *data = strstr(html, tag);
    assert_non_null(data);
    data += strlen(tag);
    const char *end = strstr(data, "</script>");
    char *json = strndup(data, (size_t)(end - data));
    json_t *j = json_loads(json, 0, NULL);
    assert_non_null(j);
    assert_int_equal(json_array_size(json_object_get(j, "points")), 3);
    json_decref(j);
    free(json);
    /* exactly one "</script" per script element: the inlined code never closes one early */
    size_t closes = 0;
    for (const char *p = html; (p = strstr(p, "</script")); p++)
        closes++;
    assert_int_equal(closes, 4);
    cc_free(html);

    html = cc_report_html(&f->view, NULL, false, &len);
    assert_null(strstr(html, "?download=1"));
    assert_non_null(strstr(html, "No task ratio."));
    cc_free(html);
}

static void test_html_path(void **state)
{
    (void)state;
    char *p = cc_report_html_path("out/r_{u}_{r}_{t}.html", 50, 2.5, 60);
    assert_string_equal(p, "out/r_50_2.5_60.html");
    cc_free(p);
    p = cc_report_html_path("{x}{u", 1, 1, 0);
    assert_string_equal(p, "{x}{u");
    cc_free(p);
}

/* ---- small pieces ---------------------------------------------------------------------------- */

static void test_strbuf(void **state)
{
    (void)state;
    struct cc_strbuf b = {0};
    assert_string_equal(cc_strbuf_str(&b), "");
    cc_strbuf_adds(&b, "a");
    cc_strbuf_html(&b, "<x y='1'>&\"");
    cc_strbuf_printf(&b, "%d-%s", 42, "z");
    char big[1000];
    memset(big, 'q', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    cc_strbuf_printf(&b, "%s", big);
    size_t len;
    char *s = cc_strbuf_detach(&b, &len);
    assert_int_equal(len, strlen(s));
    assert_memory_equal(s, "a&lt;x y=&#39;1&#39;&gt;&amp;&quot;42-z", 39);
    assert_int_equal(len, 39 + 999);
    assert_null(b.data);
    cc_free(s);
}

static uint64_t seen;
static char last_line[64];

static void count_line(uint64_t seq, const char *line, void *arg)
{
    (void)arg;
    assert_true(seq > seen);
    seen = seq;
    snprintf(last_line, sizeof(last_line), "%s", line);
}

static void test_logring(void **state)
{
    (void)state;
    cc_logring_start();
    cc_log_setup(CC_LOG_INFO, "/dev/null");
    cc_info("test", "hello %d", 1);
    seen = 0;
    uint64_t last = cc_logring_since(0, count_line, NULL);
    assert_int_equal(last, 1);
    assert_non_null(strstr(last_line, "INFO/cicada.test: hello 1"));
    /* more lines than the ring keeps: the oldest go, numbering goes on */
    for (int i = 0; i < CC_LOGRING_LINES + 10; i++)
        cc_logring_add("x", 1);
    seen = last;
    last = cc_logring_since(last, count_line, NULL);
    assert_int_equal(last, CC_LOGRING_LINES + 11);
    seen = 0;
    assert_int_equal(cc_logring_since(0, count_line, NULL), CC_LOGRING_LINES + 11);
    assert_int_equal(seen, CC_LOGRING_LINES + 11);
    cc_log_close();
    cc_logring_stop();
    assert_int_equal(cc_logring_since(0, count_line, NULL), 0);
}

static void test_assets(void **state)
{
    (void)state;
    static const char *const must[] = {"/index.html", "/app.js",      "/charts.js", "/style.css",
                                       "/chart.js",   "/report.html", "/report.js", "/report.css"};
    for (size_t i = 0; i < CC_ARRAY_LEN(must); i++) {
        const struct cc_asset *a = cc_asset_find(must[i]);
        if (!a) fail_msg("missing asset %s", must[i]);
        assert_true(a->size > 100);
        assert_int_equal(a->data[a->size], '\0');
    }
    assert_null(cc_asset_find("/nope.js"));
    assert_string_equal(cc_asset_type("/a.js"), "text/javascript; charset=utf-8");
    assert_string_equal(cc_asset_type("/a.html"), "text/html; charset=utf-8");
    assert_string_equal(cc_asset_type("/a"), "application/octet-stream");
}

/* ---- HTTPS in httpd ---------------------------------------------------------------------------
 */

static void hello(struct cc_httpd_req *req, void *arg)
{
    (void)arg;
    cc_httpd_respond(req, 200, "text/plain", "hello", 5);
}

struct tls_client {
    uv_loop_t *loop;
    int port;
    char reply[4096];
    int rc;
};

/* A blocking TLS client on its own thread, while the loop serves. */
static void client_thread(void *arg)
{
    struct tls_client *c = arg;
    c->rc = -1;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)c->port)};
    sa.sin_addr.s_addr = htonl(0x7f000001);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
        SSL *ssl = SSL_new(ctx);
        SSL_set_fd(ssl, fd);
        if (SSL_connect(ssl) == 1) {
            const char req[] = "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
            SSL_write(ssl, req, sizeof(req) - 1);
            size_t got = 0;
            int n;
            while (got < sizeof(c->reply) - 1 &&
                   (n = SSL_read(ssl, c->reply + got, (int)(sizeof(c->reply) - 1 - got))) > 0)
                got += (size_t)n;
            c->reply[got] = '\0';
            /* the server ended with a close_notify: a clean end of the stream */
            c->rc = SSL_get_error(ssl, 0) == SSL_ERROR_ZERO_RETURN ? 0 : 1;
        }
        SSL_free(ssl);
    }
    close(fd);
    SSL_CTX_free(ctx);
}

static void stop_loop(uv_timer_t *t)
{
    uv_stop(t->loop);
}

static void test_httpd_tls(void **state)
{
    (void)state;
    char dir[] = "/tmp/cicada-tls-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey rsa:2048 -nodes -keyout %s/key.pem -out %s/cert.pem "
             "-days 1 -subj /CN=localhost >/dev/null 2>&1",
             dir, dir);
    assert_int_equal(system(cmd), 0);
    char cert[256], key[256];
    snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
    snprintf(key, sizeof(key), "%s/key.pem", dir);

    uv_loop_t loop;
    uv_loop_init(&loop);
    struct cc_httpd *s = cc_httpd_new(&loop, NULL);
    assert_int_equal(cc_httpd_route(s, "GET", "/hello", hello, NULL), 0);
    char *err = NULL;
    assert_int_equal(cc_httpd_tls(s, cert, cert, &err), CC_HTTPD_ETLS); /* not a key */
    assert_non_null(strstr(err, "private key"));
    cc_free(err);
    err = NULL;
    assert_int_equal(cc_httpd_tls(s, cert, key, &err), 0);
    assert_int_equal(cc_httpd_listen(s, "127.0.0.1", 0, 0), 0);
    err = NULL;
    assert_int_equal(cc_httpd_tls(s, cert, key, &err), CC_HTTPD_ESTATE);
    cc_free(err);

    struct tls_client c = {.loop = &loop, .port = cc_httpd_port(s)};
    uv_thread_t th;
    uv_thread_create(&th, client_thread, &c);
    /* serve until the client has its answer (it closes its socket at the end) */
    uv_timer_t t;
    uv_timer_init(&loop, &t);
    for (int i = 0; i < 300; i++) {
        uv_timer_start(&t, stop_loop, 20, 0);
        uv_run(&loop, UV_RUN_DEFAULT);
        struct cc_httpd_stats st;
        cc_httpd_get_stats(s, &st);
        if (st.requests == 1 && st.open == 0) break;
    }
    uv_thread_join(&th);
    assert_int_equal(c.rc, 0);
    assert_non_null(strstr(c.reply, "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(c.reply, "\r\n\r\nhello"));

    uv_close((uv_handle_t *)&t, NULL);
    cc_httpd_close(s, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_stats_requests, setup, teardown),
        cmocka_unit_test(test_stats_requests_empty),
        cmocka_unit_test_setup_teardown(test_exceptions_and_history, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metrics, setup, teardown),
        cmocka_unit_test_setup_teardown(test_html_report, setup, teardown),
        cmocka_unit_test(test_html_path),
        cmocka_unit_test(test_strbuf),
        cmocka_unit_test(test_logring),
        cmocka_unit_test(test_assets),
        cmocka_unit_test(test_httpd_tls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
