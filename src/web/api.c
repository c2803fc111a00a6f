/* SPDX-License-Identifier: MIT */
/* api.c: the web UI's JSON and Prometheus answers; see api.h. */
#include "web/api.h"
#include "dist/master.h"
#include "report/report.h"

#include <math.h>
#include <string.h>

double cc_api_round3(double v)
{
    if (!isfinite(v)) return 0;
    return round(v * 1000.0) / 1000.0;
}

static json_t *num(double v)
{
    return json_real(cc_api_round3(v));
}

/* Locust's safe_name: the name with & < > escaped (quote=False). */
static json_t *safe_name(const char *s)
{
    struct cc_strbuf b = {0};
    for (const char *p = s; *p; p++) {
        if (*p == '&')
            cc_strbuf_adds(&b, "&amp;");
        else if (*p == '<')
            cc_strbuf_adds(&b, "&lt;");
        else if (*p == '>')
            cc_strbuf_adds(&b, "&gt;");
        else
            cc_strbuf_add(&b, p, 1);
    }
    json_t *j = cc_json_str(cc_strbuf_str(&b));
    cc_strbuf_release(&b);
    return j;
}

/* One row as Locust's StatsEntry.to_dict() gives it; the Aggregated row's method is null. */
static json_t *entry_json(const struct cc_agg *a, const struct cc_entry *e)
{
    static const double ps[3] = {0.5, 0.95, 0.99};
    double v[3];
    cc_entry_percentiles_ms(e, ps, 3, v);
    const char *name = e->key ? e->key->part[1] : "Aggregated";
    json_t *o = json_object();
    json_object_set_new(o, "method", e->key ? cc_json_str(e->key->part[0]) : json_null());
    json_object_set_new(o, "name", cc_json_str(name));
    json_object_set_new(o, "safe_name", safe_name(name));
    json_object_set_new(o, "num_requests", json_integer((json_int_t)e->count));
    json_object_set_new(o, "num_failures", json_integer((json_int_t)e->failures));
    json_object_set_new(o, "min_response_time", num(cc_entry_min_ms(e)));
    json_object_set_new(o, "max_response_time", num(cc_entry_max_ms(e)));
    json_object_set_new(o, "current_rps", num(cc_entry_current_rps(a, e)));
    json_object_set_new(o, "current_fail_per_sec", num(cc_entry_current_fail_per_s(a, e)));
    json_object_set_new(o, "avg_response_time", num(cc_entry_avg_ms(e)));
    json_object_set_new(o, "median_response_time", num(e->count ? v[0] : 0));
    json_object_set_new(o, "total_rps", num(cc_entry_total_rps(a, e)));
    json_object_set_new(o, "total_fail_per_sec", num(cc_entry_total_fail_per_s(a, e)));
    json_object_set_new(o, "response_time_percentile_0.95", num(e->count ? v[1] : 0));
    json_object_set_new(o, "response_time_percentile_0.99", num(e->count ? v[2] : 0));
    json_object_set_new(o, "avg_content_length", num(cc_entry_avg_bytes(e)));
    return o;
}

json_t *cc_api_stats_requests(const struct cc_runner_view *v)
{
    const struct cc_agg *a = v->agg;
    json_t *root = json_object();

    json_t *stats = json_array();
    size_t n;
    struct cc_entry **sorted = cc_agg_sorted(a, &n);
    for (size_t i = 0; i < n && i < CC_API_MAX_ROWS; i++)
        json_array_append_new(stats, entry_json(a, sorted[i]));
    cc_free(sorted);
    json_array_append_new(stats, entry_json(a, &a->total));
    json_object_set_new(root, "stats", stats);

    json_t *errors = json_array();
    struct cc_failure **fails = cc_agg_sorted_failures(a, &n);
    for (size_t i = 0; i < n && i < CC_API_MAX_ROWS; i++) {
        const struct cc_ikey *k = fails[i]->key;
        json_t *o = json_object();
        json_object_set_new(o, "method", cc_json_str(k->part[0]));
        json_object_set_new(o, "name", cc_json_str(k->part[1]));
        json_object_set_new(o, "error", cc_json_str(k->part[2]));
        json_object_set_new(o, "occurrences", json_integer((json_int_t)fails[i]->occurrences));
        json_object_set_new(o, "first_seen", num(fails[i]->first_s));
        json_object_set_new(o, "last_seen", num(fails[i]->last_s));
        json_array_append_new(errors, o);
    }
    cc_free(fails);
    json_object_set_new(root, "errors", errors);

    double rps = cc_entry_current_rps(a, &a->total);
    double fps = cc_entry_current_fail_per_s(a, &a->total);
    json_object_set_new(root, "total_rps", num(rps));
    json_object_set_new(root, "total_fail_per_sec", num(fps));
    json_object_set_new(root, "current_rps", num(rps));
    json_object_set_new(root, "current_fail_per_sec", num(fps));
    json_object_set_new(root, "fail_ratio", json_real(cc_entry_fail_ratio(&a->total)));

    static const double chart_ps[2] = {0.5, 0.95};
    double cur[2];
    bool have =
        a->total.count > 0 && cc_entry_current_percentiles_ms(a, &a->total, chart_ps, 2, cur);
    json_t *pct = json_object();
    json_object_set_new(pct, "response_time_percentile_0.5", have ? num(cur[0]) : json_null());
    json_object_set_new(pct, "response_time_percentile_0.95", have ? num(cur[1]) : json_null());
    json_object_set_new(root, "current_response_time_percentiles", pct);

    /* A distributed master's workers, as Locust lists them; a local run has none. */
    json_t *workers = json_array();
    size_t live = 0;
    for (size_t i = 0; i < v->nworkers; i++) {
        const struct cc_dist_node *node = v->workers[i];
        json_t *w = json_object();
        json_object_set_new(w, "id", json_string(node->id));
        json_object_set_new(w, "state", json_string(cc_dist_node_state_name(node->state)));
        json_object_set_new(w, "user_count", json_integer((json_int_t)node->user_count));
        json_object_set_new(w, "cpu_usage", json_real(node->cpu));
        json_object_set_new(w, "memory_usage", json_integer((json_int_t)node->memory));
        json_array_append_new(workers, w);
        if (node->state != CC_DN_MISSING && node->state != CC_DN_STOPPED) live++;
    }
    json_object_set_new(root, "workers", workers);
    json_object_set_new(root, "worker_count", json_integer((json_int_t)live));
    json_object_set_new(root, "state", json_string(v->state));
    json_object_set_new(root, "user_count", json_integer(v->user_count));
    return root;
}

json_t *cc_api_exceptions(const struct cc_agg *a, size_t max)
{
    json_t *list = json_array();
    size_t n;
    struct cc_exception **excs = cc_agg_sorted_exceptions(a, &n);
    for (size_t i = 0; i < n && i < max; i++) {
        json_t *o = json_object();
        json_object_set_new(o, "count", json_integer((json_int_t)excs[i]->count));
        json_object_set_new(o, "msg", cc_json_str(excs[i]->key->part[0]));
        json_object_set_new(o, "traceback", cc_json_str(excs[i]->key->part[1]));
        json_object_set_new(o, "nodes", json_string("local"));
        json_array_append_new(list, o);
    }
    cc_free(excs);
    json_t *root = json_object();
    json_object_set_new(root, "exceptions", list);
    return root;
}

json_t *cc_api_history(const struct cc_runner_view *v, size_t from)
{
    if (from > v->history_n) from = v->history_n;
    json_t *pts = json_array();
    for (size_t i = from; i < v->history_n; i++) {
        const struct cc_history_point *p = &v->history[i];
        json_t *row = json_array();
        json_array_append_new(row, num(p->time_s));
        json_array_append_new(row, json_integer(p->users));
        json_array_append_new(row, num(p->rps));
        json_array_append_new(row, num(p->fail_per_s));
        json_array_append_new(row, num(p->p50_ms));
        json_array_append_new(row, num(p->p95_ms));
        json_array_append_new(row, num(p->avg_ms));
        json_array_append_new(pts, row);
    }
    json_t *o = json_object();
    json_object_set_new(o, "start_time", num(v->start_s));
    json_object_set_new(o, "from", json_integer((json_int_t)from));
    json_object_set_new(o, "n", json_integer((json_int_t)v->history_n));
    json_object_set_new(o, "points", pts);
    return o;
}

/* ---- Prometheus ---------------------------------------------------------------------------- */

/* A label value: backslash, double quote and line feed escaped (exposition format 0.0.4). */
static void label(struct cc_strbuf *b, const char *s)
{
    for (const char *p = s; *p; p++) {
        if (*p == '\\')
            cc_strbuf_adds(b, "\\\\");
        else if (*p == '"')
            cc_strbuf_adds(b, "\\\"");
        else if (*p == '\n')
            cc_strbuf_adds(b, "\\n");
        else
            cc_strbuf_add(b, p, 1);
    }
}

static void family(struct cc_strbuf *b, const char *name, const char *type, const char *help)
{
    cc_strbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* "name{method="GET",name="/x"" without the closing brace, for the caller to extend. */
static void series(struct cc_strbuf *b, const char *metric, const struct cc_entry *e)
{
    cc_strbuf_adds(b, metric);
    cc_strbuf_adds(b, "{method=\"");
    label(b, e->key->part[0]);
    cc_strbuf_adds(b, "\",name=\"");
    label(b, e->key->part[1]);
    cc_strbuf_adds(b, "\"");
}

static void value(struct cc_strbuf *b, double v)
{
    if (!isfinite(v)) v = 0;
    cc_strbuf_printf(b, " %.10g\n", v);
}

static const double summary_q[] = {0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0};

static void summary(struct cc_strbuf *b, const char *metric, const struct cc_entry *e)
{
    double v[CC_ARRAY_LEN(summary_q)];
    cc_entry_percentiles_ms(e, summary_q, CC_ARRAY_LEN(summary_q), v);
    char sum_name[96], count_name[96];
    snprintf(sum_name, sizeof(sum_name), "%s_sum", metric);
    snprintf(count_name, sizeof(count_name), "%s_count", metric);
    for (size_t q = 0; q < CC_ARRAY_LEN(summary_q); q++) {
        if (e->key) {
            series(b, metric, e);
            cc_strbuf_printf(b, ",quantile=\"%g\"}", summary_q[q]);
        } else {
            cc_strbuf_printf(b, "%s{quantile=\"%g\"}", metric, summary_q[q]);
        }
        value(b, e->count ? v[q] / 1000.0 : NAN);
    }
    if (e->key) {
        series(b, sum_name, e);
        cc_strbuf_adds(b, "}");
    } else {
        cc_strbuf_adds(b, sum_name);
    }
    value(b, e->sum_ms / 1000.0);
    if (e->key) {
        series(b, count_name, e);
        cc_strbuf_adds(b, "}");
    } else {
        cc_strbuf_adds(b, count_name);
    }
    value(b, (double)e->count);
}

char *cc_api_metrics(const struct cc_runner_view *v, size_t *len)
{
    static const char *const states[] = {"ready", "spawning", "running", "stopping", "stopped"};
    const struct cc_agg *a = v->agg;
    struct cc_strbuf b = {0};
    size_t n;
    struct cc_entry **sorted = cc_agg_sorted(a, &n);

    family(&b, "cicada_users", "gauge", "Simulated users running now.");
    cc_strbuf_adds(&b, "cicada_users");
    value(&b, v->user_count);
    family(&b, "cicada_users_target", "gauge", "Users the test ramps to.");
    cc_strbuf_adds(&b, "cicada_users_target");
    value(&b, (double)v->target);
    family(&b, "cicada_state", "gauge", "The run's state: 1 for the current one.");
    for (size_t i = 0; i < CC_ARRAY_LEN(states); i++) {
        cc_strbuf_printf(&b, "cicada_state{state=\"%s\"}", states[i]);
        value(&b, strcmp(states[i], v->state) == 0);
    }
    family(&b, "cicada_requests_per_second", "gauge",
           "Requests per second over the last 10 seconds, all requests together.");
    cc_strbuf_adds(&b, "cicada_requests_per_second");
    value(&b, cc_entry_current_rps(a, &a->total));
    family(&b, "cicada_failures_per_second", "gauge",
           "Failed requests per second over the last 10 seconds, all requests together.");
    cc_strbuf_adds(&b, "cicada_failures_per_second");
    value(&b, cc_entry_current_fail_per_s(a, &a->total));

    family(&b, "cicada_requests_total", "counter",
           "Requests completed, failed ones included, since the test started or was reset.");
    for (size_t i = 0; i < n; i++) {
        series(&b, "cicada_requests_total", sorted[i]);
        cc_strbuf_adds(&b, "}");
        value(&b, (double)sorted[i]->count);
    }
    family(&b, "cicada_failures_total", "counter", "Failed requests (a subset of the requests).");
    for (size_t i = 0; i < n; i++) {
        series(&b, "cicada_failures_total", sorted[i]);
        cc_strbuf_adds(&b, "}");
        value(&b, (double)sorted[i]->failures);
    }
    family(&b, "cicada_response_bytes_total", "counter", "Bytes of the responses received.");
    for (size_t i = 0; i < n; i++) {
        series(&b, "cicada_response_bytes_total", sorted[i]);
        cc_strbuf_adds(&b, "}");
        value(&b, (double)sorted[i]->bytes);
    }
    family(&b, "cicada_response_time_seconds", "summary",
           "Response times since the test started or was reset.");
    for (size_t i = 0; i < n; i++)
        summary(&b, "cicada_response_time_seconds", sorted[i]);
    family(&b, "cicada_response_time_all_seconds", "summary",
           "Response times of all requests together (the Aggregated row).");
    summary(&b, "cicada_response_time_all_seconds", &a->total);

    uint64_t excs = 0;
    for (size_t i = 0; i < a->exc_keys.count; i++)
        excs += a->excs[i].count;
    family(&b, "cicada_exceptions_total", "counter", "Errors raised by user code.");
    cc_strbuf_adds(&b, "cicada_exceptions_total");
    value(&b, (double)excs);

    cc_free(sorted);
    return cc_strbuf_detach(&b, len);
}
