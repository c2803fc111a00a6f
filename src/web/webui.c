/* SPDX-License-Identifier: MIT */
/* webui.c: the web UI's server: routes, authentication, the event stream; see webui.h. */
#include "web/webui.h"
#include "core/log.h"
#include "core/strbuf.h"
#include "report/report.h"
#include "web/api.h"
#include "web/assets.h"
#include "web/httpd.h"
#include "web/logring.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define PUSH_MS          1000 /* the event stream's period */
#define SSE_MAX_EXC      200  /* exceptions pushed to the page (all of them at /exceptions) */
#define FORM_VALUE_MAX   4096 /* a longer /swarm field is refused */
#define CLOSE_SPIN_LIMIT 100000

struct cc_webui;
typedef void route_fn(struct cc_webui *ui, struct cc_httpd_req *req);

/* A route's argument: the UI and the handler that the authentication check leads to. */
struct route_ctx {
    struct cc_webui *ui;
    route_fn *fn;
};

/* One open /stream: what it has been sent so far. */
struct sse_client {
    struct cc_webui *ui;
    struct cc_httpd_req *req;
    struct sse_client *prev, *next;
    uint64_t log_seq;  /* the last log line sent */
    size_t hist_sent;  /* chart points sent of the current test */
    double hist_start; /* the test those points belong to */
    uint64_t exc_sig;  /* the exceptions table last sent */
    bool exc_sent;
};

struct cc_webui {
    struct cc_runner *runner;
    const struct cc_options *o;
    uv_loop_t *loop;
    struct cc_httpd *httpd;
    uv_timer_t push_timer;
    struct sse_client *clients;
    struct route_ctx *routes;
    size_t nroutes;
    char *auth; /* base64 of user:password, or NULL */
    bool tls;
    unsigned closes; /* handles still closing in cc_webui_free() */

    /* /stats/requests, built once per change of the statistics */
    char *stats_json;
    size_t stats_len;
    uint64_t stats_key;
    bool stats_valid;
};

/* ---- helpers ------------------------------------------------------------------------------ */

static void respond_text(struct cc_httpd_req *req, int status, const char *ctype, const char *s)
{
    cc_httpd_respond(req, status, ctype, s, strlen(s));
}

static void respond_error(struct cc_httpd_req *req, int status, const char *msg)
{
    json_t *o = json_object();
    json_object_set_new(o, "error", json_string(msg));
    cc_httpd_respond_json(req, status, o);
    json_decref(o);
}

static char *dump(const json_t *j, size_t *len)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(15));
    char *out = cc_xstrdup(s ? s : "null");
    free(s);
    if (len) *len = strlen(out);
    return out;
}

/* A file name part: what is not a letter, digit, dot, dash or underscore becomes '_'. */
static void safe_part(struct cc_strbuf *b, const char *s)
{
    for (const char *p = s; *p; p++) {
        char ch = *p;
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '.' || ch == '-' || ch == '_';
        cc_strbuf_add(b, ok ? &ch : "_", 1);
    }
}

/* Locust's download name: <prefix>_<start, %Y-%m-%d-%Hh%M>_<script>[_<host>]<suffix>. */
static char *download_name(struct cc_webui *ui, const char *suffix)
{
    struct cc_runner_view v;
    cc_runner_view(ui->runner, &v);
    time_t t = (time_t)(v.start_s > 0 ? v.start_s : cc_wall_s());
    struct tm tm;
    localtime_r(&t, &tm);
    char ts[32];
    strftime(ts, sizeof(ts), "%Y-%m-%d-%Hh%M", &tm);
    const char *script = v.locustfile ? v.locustfile : "";
    const char *slash = strrchr(script, '/');
    struct cc_strbuf b = {0};
    cc_strbuf_printf(&b, "attachment;filename=cicada_%s_", ts);
    safe_part(&b, slash ? slash + 1 : script);
    if (v.host && *v.host) {
        cc_strbuf_adds(&b, "_");
        safe_part(&b, v.host);
    }
    cc_strbuf_adds(&b, suffix);
    return cc_strbuf_detach(&b, NULL);
}

static void respond_download(struct cc_webui *ui, struct cc_httpd_req *req, const char *ctype,
                             const char *suffix, const char *body, size_t len)
{
    char *cd = download_name(ui, suffix);
    cc_httpd_res_header(req, "Content-Disposition", cd);
    cc_free(cd);
    cc_httpd_respond(req, 200, ctype, body, len);
}

/* ---- authentication ------------------------------------------------------------------------- */

static bool authorized(const struct cc_webui *ui, const struct cc_httpd_req *req)
{
    const char *h = cc_httpd_req_header(req, "Authorization");
    if (!h || strncasecmp(h, "Basic ", 6) != 0) return false;
    h += 6;
    while (*h == ' ')
        h++;
    size_t n = strlen(h), m = strlen(ui->auth);
    return n == m && CRYPTO_memcmp(h, ui->auth, n) == 0;
}

static void route_cb(struct cc_httpd_req *req, void *arg)
{
    struct route_ctx *ctx = arg;
    if (ctx->ui->auth && !authorized(ctx->ui, req)) {
        cc_httpd_res_header(req, "WWW-Authenticate", "Basic realm=\"cicada\", charset=\"UTF-8\"");
        respond_error(req, 401, "authentication required");
        return;
    }
    ctx->fn(ctx->ui, req);
}

/* ---- the front end ------------------------------------------------------------------------ */

static void serve_asset(struct cc_httpd_req *req, const char *path)
{
    const struct cc_asset *a = cc_asset_find(path);
    if (!a) {
        respond_error(req, 404, "not found");
        return;
    }
    cc_httpd_res_header(req, "Cache-Control", "no-cache");
    cc_httpd_res_header(req, "X-Content-Type-Options", "nosniff");
    if (strcmp(path, "/index.html") == 0) {
        /* Everything the page loads comes from here; nothing from elsewhere. */
        cc_httpd_res_header(req, "Content-Security-Policy",
                            "default-src 'self'; style-src 'self' 'unsafe-inline'; "
                            "img-src 'self' data:; frame-ancestors 'none'");
    }
    cc_httpd_respond(req, 200, cc_asset_type(path), a->data, a->size);
}

static void h_index(struct cc_webui *ui, struct cc_httpd_req *req)
{
    (void)ui;
    serve_asset(req, "/index.html");
}

static void h_asset(struct cc_webui *ui, struct cc_httpd_req *req)
{
    (void)ui;
    const char *name = cc_httpd_req_param(req, "*");
    char path[256];
    if (!name || strlen(name) + 2 > sizeof(path) || strstr(name, "..")) {
        respond_error(req, 404, "not found");
        return;
    }
    snprintf(path, sizeof(path), "/%s", name);
    serve_asset(req, path);
}

/* What the page needs once: the classes, the form's defaults, what the run offers. */
static void h_ui_state(struct cc_webui *ui, struct cc_httpd_req *req)
{
    const struct cc_options *o = ui->o;
    struct cc_runner_view v;
    cc_runner_view(ui->runner, &v);
    json_t *root = json_object();
    json_object_set_new(root, "version", json_string(CC_VERSION));
    const char *script = v.locustfile ? strrchr(v.locustfile, '/') : NULL;
    json_object_set_new(root, "locustfile",
                        cc_json_str(script         ? script + 1
                                    : v.locustfile ? v.locustfile
                                                   : ""));
    json_object_set_new(root, "host", v.host ? cc_json_str(v.host) : json_null());
    json_object_set_new(root, "state", json_string(v.state));
    json_object_set_new(root, "threads", json_integer(v.threads));
    json_t *classes = json_array();
    for (uint32_t i = 0; i < v.nclasses; i++)
        json_array_append_new(classes, cc_json_str(v.class_names[i]));
    json_object_set_new(root, "user_classes", classes);
    json_t *d = json_object();
    json_object_set_new(d, "user_count", json_integer(o->users >= 0 ? o->users : 1));
    json_object_set_new(d, "spawn_rate", json_real(o->spawn_rate > 0 ? o->spawn_rate : 1));
    json_object_set_new(d, "host", cc_json_str(o->host ? o->host : ""));
    json_object_set_new(d, "run_time", json_real(o->run_time));
    json_object_set_new(root, "defaults", d);
    json_object_set_new(root, "full_history", json_boolean(o->csv && o->csv_full_history));
    json_object_set_new(root, "percentiles_to_chart", json_pack("[f,f]", 0.5, 0.95));
    json_object_set_new(root, "is_distributed", json_boolean(v.distributed));
    cc_httpd_respond_json(req, 200, root);
    json_decref(root);
}

/* ---- statistics ----------------------------------------------------------------------------- */

/* Identifies what /stats/requests shows: it is rebuilt only when this changes. */
static uint64_t stats_key(const struct cc_runner_view *v)
{
    const struct cc_agg *a = v->agg;
    struct {
        uint64_t intervals, count, failures, fails, excs;
        double start;
        uint64_t users, target;
        const char *state;
    } k = {a->intervals,       a->total.count,    a->total.failures,
           a->fail_keys.count, a->exc_keys.count, a->start_s,
           v->user_count,      v->target,         v->state};
    return cc_hash(CC_HASH_INIT, &k, sizeof(k));
}

static const char *stats_json(struct cc_webui *ui, size_t *len)
{
    struct cc_runner_view v;
    cc_runner_view(ui->runner, &v);
    uint64_t key = stats_key(&v);
    if (!ui->stats_valid || key != ui->stats_key) {
        json_t *j = cc_api_stats_requests(&v);
        cc_free(ui->stats_json);
        ui->stats_json = dump(j, &ui->stats_len);
        json_decref(j);
        ui->stats_key = key;
        ui->stats_valid = true;
    }
    *len = ui->stats_len;
    return ui->stats_json;
}

static void h_stats_requests(struct cc_webui *ui, struct cc_httpd_req *req)
{
    size_t len;
    const char *s = stats_json(ui, &len);
    cc_httpd_respond(req, 200, "application/json", s, len);
}

static void h_exceptions(struct cc_webui *ui, struct cc_httpd_req *req)
{
    struct cc_runner_view v;
    cc_runner_view(ui->runner, &v);
    json_t *j = cc_api_exceptions(v.agg, SIZE_MAX);
    cc_httpd_respond_json(req, 200, j);
    json_decref(j);
}

static void respond_csv(struct cc_webui *ui, struct cc_httpd_req *req,
                        void (*write)(FILE *, const struct cc_agg *), const char *suffix)
{
    struct cc_runner_view v;
    cc_runner_view(ui->runner, &v);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    CC_ASSERT(f != NULL);
    write(f, v.agg);
    fclose(f);
    respond_download(ui, req, "text/csv", suffix, buf, len);
    free(buf);
}

static void h_csv_requests(struct cc_webui *ui, struct cc_httpd_req *req)
{
    respond_csv(ui, req, cc_csv_stats, "_requests.csv");
}

static void h_csv_failures(struct cc_webui *ui, struct cc_httpd_req *req)
{
    respond_csv(ui, req, cc_csv_failures, "_failures.csv");
}

static void h_csv_exceptions(struct cc_webui *ui, struct cc_httpd_req *req)
{
    respond_csv(ui, req, cc_csv_exceptions, "_exceptions.csv");
}

static void h_csv_full_history(struct cc_webui *ui, struct cc_httpd_req *req)
{
    const struct cc_options *o = ui->o;
    if (!o->csv || !o->csv_full_history) {
        respond_text(req, 404, "text/html; charset=utf-8",
                     "Error: Server was not started with option to generate full history.");
        return;
    }
    char path[4096];
    snprintf(path, sizeof(path), "%s_stats_history.csv", o->csv);
    FILE *f = fopen(path, "rb");
    if (!f) {
        respond_error(req, 404, "the history file cannot be read");
        return;
    }
    struct cc_strbuf b = {0};
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        cc_strbuf_add(&b, chunk, n);
    fclose(f);
    respond_download(ui, req, "text/csv", "_requests_full_history.csv", cc_strbuf_str(&b), b.len);
    cc_strbuf_release(&b);
}

static bool query_flag(struct cc_httpd_req *req, const char *key)
{
    char v[16];
    int n = cc_httpd_req_query_get(req, key, v, sizeof(v));
    return n > 0 && strcmp(v, "0") != 0 && strcasecmp(v, "false") != 0;
}

static void h_report(struct cc_webui *ui, struct cc_httpd_req *req)
{
    bool download = query_flag(req, "download");
    size_t len;
    char *html = cc_report_html_run(ui->runner, !download, &len);
    if (download)
        respond_download(ui, req, "text/html; charset=utf-8", ".html", html, len);
    else
        cc_httpd_respond(req, 200, "text/html; charset=utf-8", html, len);
    cc_free(html);
}

/* The final-results JSON (--json-file's shape) of the statistics now. */
static void h_results(struct cc_webui *ui, struct cc_httpd_req *req)
{
    struct cc_runner_view v;
    cc_runner_view(ui->runner, &v);
    uint32_t *users = cc_xcalloc(v.nclasses + 1, sizeof(uint32_t));
    for (uint32_t i = 0; i < v.nclasses; i++)
        users[i] = cc_runner_class_users(ui->runner, i);
    struct cc_run_info info = {.start_s = v.start_s,
                               .end_s = v.end_s > 0 ? v.end_s : cc_wall_s(),
                               .nclasses = v.nclasses,
                               .class_names = v.class_names,
                               .class_users = users};
    char *json = cc_report_json(v.agg, &info);
    if (query_flag(req, "download"))
        respond_download(ui, req, "application/json", "_results.json", json, strlen(json));
    else
        respond_text(req, 200, "application/json", json);
    cc_free(json);
    cc_free(users);
}

static long ratio_users(const struct cc_runner_view *v)
{
    return v->user_count ? (long)v->user_count : (long)v->target;
}

static void h_tasks(struct cc_webui *ui, struct cc_httpd_req *req)
{
    struct cc_runner_view v;
    cc_runner_view(ui->runner, &v);
    char *json = cc_task_ratio_json(cc_runner_lua(ui->runner), ratio_users(&v));
    respond_text(req, 200, "application/json", json ? json : "{\"per_class\": {}, \"total\": {}}");
    cc_free(json);
}

static void add_log_line(uint64_t seq, const char *line, void *arg)
{
    (void)seq;
    json_array_append_new(arg, cc_json_str(line));
}

static void h_logs(struct cc_webui *ui, struct cc_httpd_req *req)
{
    (void)ui;
    json_t *lines = json_array();
    cc_logring_since(0, add_log_line, lines);
    json_t *root = json_object();
    json_object_set_new(root, "master", lines);
    json_object_set_new(root, "workers", json_object());
    cc_httpd_respond_json(req, 200, root);
    json_decref(root);
}

static void h_worker_count(struct cc_webui *ui, struct cc_httpd_req *req)
{
    (void)ui;
    respond_text(req, 200, "application/json", "{\"worker_count\": 0}");
}

static void h_metrics(struct cc_webui *ui, struct cc_httpd_req *req)
{
    struct cc_runner_view v;
    cc_runner_view(ui->runner, &v);
    size_t len;
    char *text = cc_api_metrics(&v, &len);
    cc_httpd_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    cc_free(text);
}

static void h_history(struct cc_webui *ui, struct cc_httpd_req *req)
{
    struct cc_runner_view v;
    cc_runner_view(ui->runner, &v);
    char from[32];
    size_t since = 0;
    if (cc_httpd_req_query_get(req, "from", from, sizeof(from)) > 0)
        since = (size_t)strtoull(from, NULL, 10);
    json_t *j = cc_api_history(&v, since);
    cc_httpd_respond_json(req, 200, j);
    json_decref(j);
}

/* The run as the navbar shows it. */
static json_t *run_json(struct cc_webui *ui)
{
    struct cc_runner_view v;
    cc_runner_view(ui->runner, &v);
    json_t *o = json_object();
    json_object_set_new(o, "state", json_string(v.state));
    json_object_set_new(o, "host", v.host ? cc_json_str(v.host) : json_null());
    json_object_set_new(o, "user_count", json_integer(v.user_count));
    json_object_set_new(o, "target", json_integer((json_int_t)v.target));
    json_object_set_new(o, "start_time", json_real(cc_api_round3(v.start_s)));
    json_object_set_new(o, "end_time", json_real(cc_api_round3(v.end_s)));
    json_object_set_new(o, "run_time", json_real(v.run_time));
    json_t *classes = json_object();
    for (uint32_t i = 0; i < v.nclasses; i++)
        json_object_set_new(classes, v.class_names[i],
                            json_integer(cc_runner_class_users(ui->runner, i)));
    json_object_set_new(o, "classes", classes);
    json_object_set_new(o, "exceptions", json_integer((json_int_t)v.agg->exc_keys.count));
    return o;
}

static void h_run(struct cc_webui *ui, struct cc_httpd_req *req)
{
    json_t *j = run_json(ui);
    cc_httpd_respond_json(req, 200, j);
    json_decref(j);
}

/* ---- controlling the run -------------------------------------------------------------------- */

struct swarm_form {
    const char *const *class_names;
    uint32_t nclasses;
    bool *selected;
    bool any_class;
    char *user_count, *spawn_rate, *host, *run_time;
    char *error;
};

static void form_set(char **slot, const char *v)
{
    cc_free(*slot);
    *slot = cc_xstrdup(v);
}

static void swarm_field(struct swarm_form *f, const char *key, const char *val)
{
    if (strcmp(key, "user_count") == 0) {
        form_set(&f->user_count, val);
    } else if (strcmp(key, "spawn_rate") == 0) {
        form_set(&f->spawn_rate, val);
    } else if (strcmp(key, "host") == 0) {
        /* As Locust does, < and > are dropped: the host is shown in pages. */
        char *h = cc_xstrdup(val), *w = h;
        for (const char *p = val; *p; p++)
            if (*p != '<' && *p != '>') *w++ = *p;
        *w = '\0';
        cc_free(f->host);
        f->host = h;
    } else if (strcmp(key, "run_time") == 0) {
        form_set(&f->run_time, val);
    } else if (strcmp(key, "user_classes") == 0) {
        for (uint32_t i = 0; i < f->nclasses; i++) {
            if (strcmp(f->class_names[i], val) == 0) {
                f->selected[i] = true;
                f->any_class = true;
                return;
            }
        }
        if (!f->error) {
            struct cc_strbuf b = {0};
            cc_strbuf_printf(&b, "unknown user class: %s", val);
            f->error = cc_strbuf_detach(&b, NULL);
        }
    }
}

/* Reads an application/x-www-form-urlencoded body, every key=value pair in order. */
static void swarm_parse(struct swarm_form *f, const char *body, size_t len)
{
    const char *p = body, *end = body + len;
    char *key = cc_xmalloc(FORM_VALUE_MAX), *val = cc_xmalloc(FORM_VALUE_MAX);
    while (p < end && !f->error) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *pe = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(pe - p));
        const char *ke = eq ? eq : pe;
        int kl = cc_httpd_url_decode(p, (size_t)(ke - p), true, key, FORM_VALUE_MAX);
        int vl =
            eq ? cc_httpd_url_decode(eq + 1, (size_t)(pe - eq - 1), true, val, FORM_VALUE_MAX) : 0;
        if (!eq) val[0] = '\0';
        if (kl < 0 || vl < 0)
            f->error = cc_xstrdup("the form is malformed (a bad %-escape or a field too long)");
        else if (kl > 0)
            swarm_field(f, key, val);
        p = pe + 1;
    }
    cc_free(key);
    cc_free(val);
}

static void swarm_reply(struct cc_httpd_req *req, bool ok, const char *msg, const char *host,
                        double run_time, const struct swarm_form *f)
{
    json_t *o = json_object();
    json_object_set_new(o, "success", json_boolean(ok));
    json_object_set_new(o, "message", cc_json_str(msg));
    json_object_set_new(o, "host", host ? cc_json_str(host) : json_null());
    if (ok && run_time > 0) json_object_set_new(o, "run_time", json_real(run_time));
    if (ok && f && f->any_class) {
        json_t *list = json_array();
        for (uint32_t i = 0; i < f->nclasses; i++)
            if (f->selected[i]) json_array_append_new(list, cc_json_str(f->class_names[i]));
        json_object_set_new(o, "user_classes", list);
    }
    cc_httpd_respond_json(req, 200, o);
    json_decref(o);
}

static bool parse_long(const char *s, long *out)
{
    char *end;
    while (*s == ' ')
        s++;
    if (!*s) return false;
    long v = strtol(s, &end, 10);
    while (*end == ' ')
        end++;
    if (*end) return false;
    *out = v;
    return true;
}

static bool parse_double(const char *s, double *out)
{
    char *end;
    while (*s == ' ')
        s++;
    if (!*s) return false;
    double v = strtod(s, &end);
    while (*end == ' ')
        end++;
    if (*end || !isfinite(v)) return false;
    *out = v;
    return true;
}

static void h_swarm(struct cc_webui *ui, struct cc_httpd_req *req)
{
    struct cc_runner_view v;
    cc_runner_view(ui->runner, &v);
    struct swarm_form f = {.class_names = v.class_names, .nclasses = v.nclasses};
    f.selected = cc_xcalloc(v.nclasses + 1, sizeof(bool));
    size_t len;
    const char *body = cc_httpd_req_body(req, &len);
    swarm_parse(&f, body, len);

    long users = ui->o->users >= 0 ? ui->o->users : 1;
    double rate = ui->o->spawn_rate > 0 ? ui->o->spawn_rate : 1;
    double run_time = 0;
    const char *msg = NULL;
    if (!f.error && f.user_count && !parse_long(f.user_count, &users))
        msg = "user_count must be a whole number";
    else if (!f.error && f.spawn_rate && !parse_double(f.spawn_rate, &rate))
        msg = "spawn_rate must be a number";
    else if (!f.error && f.run_time && *f.run_time &&
             (run_time = cc_parse_timespan(f.run_time)) < 0)
        msg = "Valid run_time formats are : 20, 20s, 3m, 2h, 1h20m, 3h30m10s, etc.";
    if (f.error) msg = f.error;

    bool starting = strcmp(v.state, "ready") == 0 || strcmp(v.state, "stopped") == 0;
    if (!msg && starting) {
        /* A new test runs the classes the form picked, or all of them. */
        for (uint32_t i = 0; !f.any_class && i < v.nclasses; i++)
            f.selected[i] = true;
        if (cc_runner_select_classes(ui->runner, f.selected) != 0)
            msg = "the user classes can only be picked when a test starts";
    }
    char *err = NULL;
    if (!msg && cc_runner_swarm(ui->runner, users, rate, f.host, run_time, &err) != 0) msg = err;

    cc_runner_view(ui->runner, &v);
    if (msg) {
        cc_warn("web", "/swarm refused: %s", msg);
        swarm_reply(req, false, msg, v.host, 0, NULL);
    } else {
        cc_info("web", "/swarm: %ld users at %g per second%s", users, rate,
                starting ? "" : " (the running test's new target)");
        swarm_reply(req, true, "Swarming started", v.host, run_time, &f);
    }
    cc_free(err);
    cc_free(f.error);
    cc_free(f.selected);
    cc_free(f.user_count);
    cc_free(f.spawn_rate);
    cc_free(f.host);
    cc_free(f.run_time);
}

static void h_stop(struct cc_webui *ui, struct cc_httpd_req *req)
{
    cc_runner_stop(ui->runner);
    respond_text(req, 200, "application/json",
                 "{\"success\": true, \"message\": \"Test stopped\"}");
}

static void h_reset(struct cc_webui *ui, struct cc_httpd_req *req)
{
    cc_runner_reset_stats(ui->runner);
    ui->stats_valid = false;
    respond_text(req, 200, "text/html; charset=utf-8", "ok");
}

/* ---- the event stream ----------------------------------------------------------------------- */

struct push_shared {
    const char *stats;
    char *run;
    char *exceptions; /* NULL until a client needs it */
    uint64_t exc_sig;
};

static uint64_t exceptions_sig(const struct cc_agg *a)
{
    uint64_t total = 0;
    for (size_t i = 0; i < a->exc_keys.count; i++)
        total += a->excs[i].count;
    uint64_t k[3] = {a->exc_keys.count, total, (uint64_t)(a->start_s * 1000)};
    return cc_hash(CC_HASH_INIT, k, sizeof(k));
}

static void add_log_json(uint64_t seq, const char *line, void *arg)
{
    (void)seq;
    json_array_append_new(arg, cc_json_str(line));
}

/* Sends |c| what changed since its last push. Errors are left to the abort callback. */
static void push_client(struct cc_webui *ui, struct sse_client *c, struct push_shared *sh)
{
    struct cc_httpd_req *req = c->req;
    struct cc_runner_view v;
    cc_runner_view(ui->runner, &v);

    cc_httpd_sse_send(req, "stats", sh->stats);
    cc_httpd_sse_send(req, "run", sh->run);

    /* Chart points: the new ones, or all of them when another test began. */
    if (v.start_s != c->hist_start || v.history_n < c->hist_sent) {
        c->hist_start = v.start_s;
        c->hist_sent = 0;
    }
    if (v.history_n > c->hist_sent || c->hist_sent == 0) {
        json_t *h = cc_api_history(&v, c->hist_sent);
        char *s = dump(h, NULL);
        json_decref(h);
        cc_httpd_sse_send(req, "history", s);
        cc_free(s);
        c->hist_sent = v.history_n;
    }

    if (!c->exc_sent || c->exc_sig != sh->exc_sig) {
        if (!sh->exceptions) {
            json_t *e = cc_api_exceptions(v.agg, SSE_MAX_EXC);
            sh->exceptions = dump(e, NULL);
            json_decref(e);
        }
        cc_httpd_sse_send(req, "exceptions", sh->exceptions);
        c->exc_sig = sh->exc_sig;
        c->exc_sent = true;
    }

    json_t *lines = json_array();
    uint64_t last = cc_logring_since(c->log_seq, add_log_json, lines);
    if (json_array_size(lines) > 0) {
        json_t *o = json_object();
        json_object_set_new(o, "last", json_integer((json_int_t)last));
        json_object_set(o, "lines", lines);
        char *s = dump(o, NULL);
        json_decref(o);
        cc_httpd_sse_send(req, "logs", s);
        cc_free(s);
    }
    json_decref(lines);
    c->log_seq = last;
}

static void push_all(struct cc_webui *ui, struct sse_client *only)
{
    struct cc_runner_view v;
    cc_runner_view(ui->runner, &v);
    size_t len;
    struct push_shared sh = {.stats = stats_json(ui, &len), .exc_sig = exceptions_sig(v.agg)};
    json_t *run = run_json(ui);
    sh.run = dump(run, NULL);
    json_decref(run);
    if (only) {
        push_client(ui, only, &sh);
    } else {
        for (struct sse_client *c = ui->clients; c; c = c->next)
            push_client(ui, c, &sh);
    }
    cc_free(sh.run);
    cc_free(sh.exceptions);
}

static void push_cb(uv_timer_t *t)
{
    struct cc_webui *ui = t->data;
    push_all(ui, NULL);
}

static void sse_abort(struct cc_httpd_req *req, void *arg)
{
    struct sse_client *c = arg;
    struct cc_webui *ui = c->ui;
    if (c->prev)
        c->prev->next = c->next;
    else
        ui->clients = c->next;
    if (c->next) c->next->prev = c->prev;
    cc_free(c);
    cc_httpd_stream_end(req); /* the client is gone: this releases the request */
    if (!ui->clients) uv_timer_stop(&ui->push_timer);
}

static void h_stream(struct cc_webui *ui, struct cc_httpd_req *req)
{
    if (cc_httpd_sse_start(req) != 0) {
        cc_httpd_stream_end(req);
        return;
    }
    struct sse_client *c = cc_xcalloc(1, sizeof(*c));
    c->ui = ui;
    c->req = req;
    c->hist_start = -1;
    c->next = ui->clients;
    if (ui->clients) ui->clients->prev = c;
    ui->clients = c;
    cc_httpd_req_on_abort(req, sse_abort, c);
    /* Ask the browser to come back quickly if the stream breaks. */
    cc_httpd_stream_write(req, "retry: 1000\n\n", 13);
    push_all(ui, c);
    if (!uv_is_active((uv_handle_t *)&ui->push_timer))
        uv_timer_start(&ui->push_timer, push_cb, PUSH_MS, PUSH_MS);
}

/* ---- set-up and tear-down ------------------------------------------------------------------- */

static const struct {
    const char *method, *pattern;
    route_fn *fn;
} route_table[] = {
    {"GET", "/", h_index},
    {"GET", "/index.html", h_index},
    {"GET", "/assets/*", h_asset},
    {"GET", "/ui/state", h_ui_state},
    {"GET", "/ui/run", h_run},
    {"GET", "/ui/history", h_history},
    {"GET", "/stream", h_stream},
    {"POST", "/swarm", h_swarm},
    {"GET", "/stop", h_stop},
    {"POST", "/stop", h_stop},
    {"GET", "/stats/reset", h_reset},
    {"POST", "/stats/reset", h_reset},
    {"GET", "/stats/requests", h_stats_requests},
    {"GET", "/stats/requests/csv", h_csv_requests},
    {"GET", "/stats/failures/csv", h_csv_failures},
    {"GET", "/stats/requests_full_history/csv", h_csv_full_history},
    {"GET", "/stats/report", h_report},
    {"GET", "/stats/results", h_results},
    {"GET", "/exceptions", h_exceptions},
    {"GET", "/exceptions/csv", h_csv_exceptions},
    {"GET", "/tasks", h_tasks},
    {"GET", "/logs", h_logs},
    {"GET", "/worker-count", h_worker_count},
    {"GET", "/metrics", h_metrics},
};

static char *base64(const char *s)
{
    size_t n = strlen(s);
    char *out = cc_xmalloc(4 * ((n + 2) / 3) + 1);
    EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)s, (int)n);
    return out;
}

static const char *bind_host(const char *h)
{
    if (!h || !*h || strcmp(h, "*") == 0) return "0.0.0.0";
    return h;
}

struct cc_webui *cc_webui_start(struct cc_runner *r, uv_loop_t *loop, const struct cc_options *o,
                                char **err)
{
    struct cc_webui *ui = cc_xcalloc(1, sizeof(*ui));
    ui->runner = r;
    ui->o = o;
    ui->loop = loop;
    if (o->web_auth) {
        if (!strchr(o->web_auth, ':')) {
            *err = cc_xstrdup("--web-auth takes USER:PASSWORD");
            cc_free(ui);
            return NULL;
        }
        ui->auth = base64(o->web_auth);
    }

    struct cc_httpd_opts hopts;
    cc_httpd_opts_defaults(&hopts);
    hopts.max_connections = 256;
    hopts.idle_timeout_ms = 60000;
    ui->httpd = cc_httpd_new(loop, &hopts);
    ui->nroutes = CC_ARRAY_LEN(route_table);
    ui->routes = cc_xcalloc(ui->nroutes, sizeof(*ui->routes));
    for (size_t i = 0; i < ui->nroutes; i++) {
        ui->routes[i] = (struct route_ctx){.ui = ui, .fn = route_table[i].fn};
        CC_ASSERT(cc_httpd_route(ui->httpd, route_table[i].method, route_table[i].pattern, route_cb,
                                 &ui->routes[i]) == 0);
    }
    uv_timer_init(loop, &ui->push_timer);
    ui->push_timer.data = ui;

    int rv = 0;
    const char *host = bind_host(o->web_host);
    if (o->tls_cert && o->tls_key) {
        rv = cc_httpd_tls(ui->httpd, o->tls_cert, o->tls_key, err);
        ui->tls = rv == 0;
    }
    if (rv == 0) {
        rv = cc_httpd_listen(ui->httpd, host, (int)o->web_port, 0);
        if (rv != 0) {
            struct cc_strbuf b = {0};
            cc_strbuf_printf(&b, "the web UI cannot listen on %s port %ld: %s", host, o->web_port,
                             rv == UV_EINVAL ? "not an IP address" : uv_strerror(rv));
            *err = cc_strbuf_detach(&b, NULL);
        }
    }
    if (rv != 0) {
        cc_webui_free(ui);
        return NULL;
    }
    cc_logring_start();
    bool v6 = strchr(host, ':') != NULL;
    cc_info("main", "Starting web interface at %s://%s%s%s:%d", ui->tls ? "https" : "http",
            v6 ? "[" : "", host, v6 ? "]" : "", cc_httpd_port(ui->httpd));
    return ui;
}

int cc_webui_port(const struct cc_webui *ui)
{
    return cc_httpd_port(ui->httpd);
}

static void timer_closed(uv_handle_t *h)
{
    struct cc_webui *ui = h->data;
    ui->closes--;
}

static void httpd_closed(void *arg)
{
    struct cc_webui *ui = arg;
    ui->closes--;
}

void cc_webui_free(struct cc_webui *ui)
{
    if (!ui) return;
    ui->closes = 2;
    uv_timer_stop(&ui->push_timer);
    uv_close((uv_handle_t *)&ui->push_timer, timer_closed);
    cc_httpd_close(ui->httpd, httpd_closed, ui);
    /* Close callbacks only: nothing here waits for I/O, so the loop never blocks. */
    for (unsigned i = 0; ui->closes > 0 && i < CLOSE_SPIN_LIMIT; i++)
        uv_run(ui->loop, UV_RUN_NOWAIT);
    CC_ASSERT(ui->closes == 0);
    cc_logring_stop();
    cc_free(ui->routes);
    cc_free(ui->auth);
    cc_free(ui->stats_json);
    cc_free(ui);
}
