/* SPDX-License-Identifier: MIT */
/*
 * html.c: the HTML report (--html FILE, the web UI's /stats/report). One self-contained page:
 * the template web/report.html with its CSS, the chart library and the report's script inlined,
 * the tables rendered here as HTML (readable without JavaScript), and the chart points as JSON.
 */
#include "report/report.h"
#include "core/log.h"
#include "core/strbuf.h"
#include "runner/runner.h"
#include "web/assets.h"

#include <jansson.h>
#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* PERCENTILES_FOR_HTML_REPORT in Locust. */
static const double report_ps[] = {0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0};
static const char *const report_labels[] = {"50%ile", "60%ile", "70%ile", "80%ile",
                                            "90%ile", "95%ile", "99%ile", "100%ile"};

#define MAX_CHART_POINTS 20000 /* longer histories are thinned to about this many points */

static void add_ms(struct cc_strbuf *b, double ms)
{
    char t[64];
    cc_fmt_ms(t, sizeof(t), ms);
    cc_strbuf_adds(b, t);
}

static void cell_text(struct cc_strbuf *b, const char *s)
{
    cc_strbuf_adds(b, "<td>");
    cc_strbuf_html(b, s);
    cc_strbuf_adds(b, "</td>");
}

static void cell_num(struct cc_strbuf *b, double v, int decimals)
{
    char t[64];
    cc_fmt_num(t, sizeof(t), v, decimals);
    cc_strbuf_printf(b, "<td class=\"num\">%s</td>", t);
}

static void cell_ms(struct cc_strbuf *b, double ms)
{
    cc_strbuf_adds(b, "<td class=\"num\">");
    add_ms(b, ms);
    cc_strbuf_adds(b, "</td>");
}

static void thead(struct cc_strbuf *b, const char *const *cols, size_t n)
{
    cc_strbuf_adds(b, "<table><thead><tr>");
    for (size_t i = 0; i < n; i++) {
        cc_strbuf_adds(b, "<th>");
        cc_strbuf_html(b, cols[i]);
        cc_strbuf_adds(b, "</th>");
    }
    cc_strbuf_adds(b, "</tr></thead><tbody>");
}

static const char *etype(const struct cc_entry *e)
{
    return e->key ? e->key->part[0] : "";
}

static const char *ename(const struct cc_entry *e)
{
    return e->key ? e->key->part[1] : "Aggregated";
}

static void requests_table(struct cc_strbuf *b, const struct cc_agg *a, struct cc_entry **rows,
                           size_t n)
{
    static const char *const cols[] = {
        "Type",     "Name",     "# Requests",           "# Fails", "Average (ms)",
        "Min (ms)", "Max (ms)", "Average size (bytes)", "RPS",     "Failures/s"};
    thead(b, cols, CC_ARRAY_LEN(cols));
    for (size_t i = 0; i <= n; i++) {
        const struct cc_entry *e = i < n ? rows[i] : &a->total;
        cc_strbuf_adds(b, i < n ? "<tr>" : "<tr class=\"total\">");
        cell_text(b, etype(e));
        cell_text(b, ename(e));
        cell_num(b, (double)e->count, 0);
        cell_num(b, (double)e->failures, 0);
        cell_ms(b, cc_entry_avg_ms(e));
        cell_ms(b, cc_entry_min_ms(e));
        cell_ms(b, cc_entry_max_ms(e));
        cell_num(b, cc_entry_avg_bytes(e), 0);
        cell_num(b, cc_entry_total_rps(a, e), 2);
        cell_num(b, cc_entry_total_fail_per_s(a, e), 2);
        cc_strbuf_adds(b, "</tr>");
    }
    cc_strbuf_adds(b, "</tbody></table>");
}

static void percentile_table(struct cc_strbuf *b, const struct cc_agg *a, struct cc_entry **rows,
                             size_t n)
{
    const char *cols[2 + CC_ARRAY_LEN(report_ps)] = {"Method", "Name"};
    for (size_t i = 0; i < CC_ARRAY_LEN(report_ps); i++)
        cols[2 + i] = report_labels[i];
    thead(b, cols, CC_ARRAY_LEN(cols));
    for (size_t i = 0; i <= n; i++) {
        const struct cc_entry *e = i < n ? rows[i] : &a->total;
        double v[CC_ARRAY_LEN(report_ps)];
        cc_entry_percentiles_ms(e, report_ps, CC_ARRAY_LEN(report_ps), v);
        cc_strbuf_adds(b, i < n ? "<tr>" : "<tr class=\"total\">");
        cell_text(b, etype(e));
        cell_text(b, ename(e));
        for (size_t k = 0; k < CC_ARRAY_LEN(report_ps); k++) {
            if (e->count)
                cell_ms(b, v[k]);
            else
                cc_strbuf_adds(b, "<td class=\"num\">N/A</td>");
        }
        cc_strbuf_adds(b, "</tr>");
    }
    cc_strbuf_adds(b, "</tbody></table>");
}

static void fmt_time(char *buf, size_t n, double epoch)
{
    time_t t = (time_t)epoch;
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(buf, n, "%Y-%m-%d %H:%M:%S", &tm);
}

static void failures_table(struct cc_strbuf *b, const struct cc_agg *a)
{
    size_t n;
    struct cc_failure **fl = cc_agg_sorted_failures(a, &n);
    if (n == 0) {
        cc_strbuf_adds(b, "<p class=\"none\">No failures.</p>");
        cc_free(fl);
        return;
    }
    static const char *const cols[] = {"# Failures", "Method",     "Name",
                                       "Message",    "First seen", "Last seen"};
    thead(b, cols, CC_ARRAY_LEN(cols));
    for (size_t i = 0; i < n; i++) {
        char first[32], last[32];
        fmt_time(first, sizeof(first), fl[i]->first_s);
        fmt_time(last, sizeof(last), fl[i]->last_s);
        cc_strbuf_adds(b, "<tr>");
        cell_num(b, (double)fl[i]->occurrences, 0);
        cell_text(b, fl[i]->key->part[0]);
        cell_text(b, fl[i]->key->part[1]);
        cell_text(b, fl[i]->key->part[2]);
        cell_text(b, first);
        cell_text(b, last);
        cc_strbuf_adds(b, "</tr>");
    }
    cc_free(fl);
    cc_strbuf_adds(b, "</tbody></table>");
}

static void exceptions_table(struct cc_strbuf *b, const struct cc_agg *a)
{
    size_t n;
    struct cc_exception **el = cc_agg_sorted_exceptions(a, &n);
    if (n == 0) {
        cc_strbuf_adds(b, "<p class=\"none\">No exceptions.</p>");
        cc_free(el);
        return;
    }
    static const char *const cols[] = {"Count", "Message", "Traceback", "Nodes"};
    thead(b, cols, CC_ARRAY_LEN(cols));
    for (size_t i = 0; i < n; i++) {
        cc_strbuf_adds(b, "<tr>");
        cell_num(b, (double)el[i]->count, 0);
        cell_text(b, el[i]->key->part[0]);
        cc_strbuf_adds(b, "<td><pre>");
        cc_strbuf_html(b, el[i]->key->part[1]);
        cc_strbuf_adds(b, "</pre></td>");
        cell_text(b, "local");
        cc_strbuf_adds(b, "</tr>");
    }
    cc_free(el);
    cc_strbuf_adds(b, "</tbody></table>");
}

/* A ratio tree {name: {ratio, tasks?: {...}}} as nested lists. */
static void ratio_list(struct cc_strbuf *b, json_t *tree, int depth)
{
    if (!json_is_object(tree) || depth > 16) return;
    cc_strbuf_adds(b, "<ul>");
    const char *name;
    json_t *node;
    json_object_foreach(tree, name, node)
    {
        double r = json_number_value(json_object_get(node, "ratio"));
        cc_strbuf_printf(b, "<li><span class=\"pct\">%.1f%%</span> ", r * 100);
        cc_strbuf_html(b, name);
        json_t *tasks = json_object_get(node, "tasks");
        if (tasks) ratio_list(b, tasks, depth + 1);
        cc_strbuf_adds(b, "</li>");
    }
    cc_strbuf_adds(b, "</ul>");
}

static void ratio_section(struct cc_strbuf *b, const char *ratio_json)
{
    json_t *root = ratio_json ? json_loads(ratio_json, 0, NULL) : NULL;
    if (!root) {
        cc_strbuf_adds(b, "<p class=\"none\">No task ratio.</p>");
        return;
    }
    cc_strbuf_adds(b, "<div class=\"ratio\"><div><h3>Per user class</h3>");
    ratio_list(b, json_object_get(root, "per_class"), 0);
    cc_strbuf_adds(b, "</div><div><h3>Total</h3>");
    ratio_list(b, json_object_get(root, "total"), 0);
    cc_strbuf_adds(b, "</div></div>");
    json_decref(root);
}

static void duration(char *buf, size_t n, double s)
{
    long t = (long)llround(s < 0 ? 0 : s);
    if (t >= 3600)
        snprintf(buf, n, "%ldh %ldm %lds", t / 3600, t / 60 % 60, t % 60);
    else if (t >= 60)
        snprintf(buf, n, "%ldm %lds", t / 60, t % 60);
    else
        snprintf(buf, n, "%lds", t);
}

static void info_section(struct cc_strbuf *b, const struct cc_runner_view *v, double end_s)
{
    char start[32] = "not started", end[32] = "", dur[64] = "";
    if (v->start_s > 0) {
        fmt_time(start, sizeof(start), v->start_s);
        fmt_time(end, sizeof(end), end_s);
        duration(dur, sizeof(dur), end_s - v->start_s);
    }
    const char *script = v->locustfile ? v->locustfile : "";
    const char *slash = strrchr(script, '/');
    cc_strbuf_adds(b, "<dl class=\"info\"><dt>During</dt><dd id=\"during\">");
    cc_strbuf_html(b, start);
    if (v->start_s > 0) {
        cc_strbuf_adds(b, " &ndash; ");
        cc_strbuf_html(b, end);
        cc_strbuf_adds(b, " (");
        cc_strbuf_html(b, dur);
        cc_strbuf_adds(b, ")");
    }
    cc_strbuf_adds(b, "</dd><dt>Target host</dt><dd id=\"host\">");
    cc_strbuf_html(b, v->host && *v->host ? v->host : "(set by the script)");
    cc_strbuf_adds(b, "</dd><dt>Script</dt><dd id=\"script\">");
    cc_strbuf_html(b, slash ? slash + 1 : script);
    cc_strbuf_printf(b, "</dd><dt>Users</dt><dd>%u (target %zu)</dd>", v->user_count, v->target);
    cc_strbuf_adds(b, "</dl>");
}

/* The chart points as JSON, with every '<' escaped so that the text cannot end its script
 * element; '<' only occurs inside JSON strings, where \u003c means the same. */
static void chart_data(struct cc_strbuf *b, const struct cc_runner_view *v)
{
    json_t *pts = json_array();
    size_t step = v->history_n > MAX_CHART_POINTS ? v->history_n / MAX_CHART_POINTS + 1 : 1;
    for (size_t i = 0; i < v->history_n; i += step) {
        const struct cc_history_point *p = &v->history[i];
        json_t *row = json_array();
        json_array_append_new(row, json_real(round(p->time_s * 1000) / 1000));
        json_array_append_new(row, json_integer(p->users));
        json_array_append_new(row, json_real(round(p->rps * 1000) / 1000));
        json_array_append_new(row, json_real(round(p->fail_per_s * 1000) / 1000));
        json_array_append_new(row, json_real(round(p->p50_ms * 1000) / 1000));
        json_array_append_new(row, json_real(round(p->p95_ms * 1000) / 1000));
        json_array_append_new(row, json_real(round(p->avg_ms * 1000) / 1000));
        json_array_append_new(pts, row);
    }
    json_t *root = json_object();
    json_object_set_new(root, "points", pts);
    char *s = json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(15));
    json_decref(root);
    for (const char *p = s ? s : "{}"; *p; p++) {
        if (*p == '<')
            cc_strbuf_adds(b, "\\u003c");
        else
            cc_strbuf_add(b, p, 1);
    }
    free(s);
}

/* Script text inlined in a <script> element: "</script" and "<!--" could end or confuse the
 * element, so their '<' or '!' is escaped (the same text inside JavaScript strings). */
static void inline_script(struct cc_strbuf *b, const char *path)
{
    const struct cc_asset *as = cc_asset_find(path);
    if (!as) return;
    const char *s = (const char *)as->data, *end = s + as->size, *run = s;
    for (const char *p = s; p < end; p++) {
        if (*p != '<') continue;
        if ((size_t)(end - p) >= 8 && strncasecmp(p, "</script", 8) == 0) {
            cc_strbuf_add(b, run, (size_t)(p - run));
            cc_strbuf_adds(b, "<\\/");
            run = p + 2;
        } else if ((size_t)(end - p) >= 4 && memcmp(p, "<!--", 4) == 0) {
            cc_strbuf_add(b, run, (size_t)(p - run));
            cc_strbuf_adds(b, "<\\!--");
            run = p + 4;
        }
    }
    cc_strbuf_add(b, run, (size_t)(end - run));
}

static void inline_asset(struct cc_strbuf *b, const char *path)
{
    const struct cc_asset *as = cc_asset_find(path);
    if (as) cc_strbuf_add(b, as->data, as->size);
}

char *cc_report_html(const struct cc_runner_view *v, const char *ratio_json, bool download_link,
                     size_t *len)
{
    const struct cc_agg *a = v->agg;
    double end_s = v->end_s > 0 ? v->end_s : cc_wall_s();
    size_t n;
    struct cc_entry **rows = cc_agg_sorted(a, &n);
    const struct cc_asset *tpl = cc_asset_find("/report.html");
    CC_ASSERT(tpl != NULL);

    struct cc_strbuf b = {0};
    const char *s = (const char *)tpl->data, *end = s + tpl->size;
    while (s < end) {
        const char *at = strstr(s, "@@");
        if (!at) {
            cc_strbuf_add(&b, s, (size_t)(end - s));
            break;
        }
        cc_strbuf_add(&b, s, (size_t)(at - s));
        const char *close = strstr(at + 2, "@@");
        if (!close) {
            cc_strbuf_add(&b, at, (size_t)(end - at));
            break;
        }
        size_t klen = (size_t)(close - at - 2);
        const char *key = at + 2;
#define IS(k) (klen == sizeof(k) - 1 && memcmp(key, k, klen) == 0)
        if (IS("TITLE")) {
            const char *script = v->locustfile ? strrchr(v->locustfile, '/') : NULL;
            cc_strbuf_adds(&b, "cicada report: ");
            cc_strbuf_html(&b, script ? script + 1 : v->locustfile ? v->locustfile : "");
        } else if (IS("VERSION")) {
            cc_strbuf_adds(&b, CC_VERSION);
        } else if (IS("INFO")) {
            info_section(&b, v, end_s);
        } else if (IS("DOWNLOAD")) {
            if (download_link)
                cc_strbuf_adds(&b, "<a class=\"download\" href=\"?download=1\">Download the "
                                   "report</a>");
        } else if (IS("REQUESTS")) {
            requests_table(&b, a, rows, n);
        } else if (IS("PERCENTILES")) {
            percentile_table(&b, a, rows, n);
        } else if (IS("FAILURES")) {
            failures_table(&b, a);
        } else if (IS("EXCEPTIONS")) {
            exceptions_table(&b, a);
        } else if (IS("RATIO")) {
            ratio_section(&b, ratio_json);
        } else if (IS("DATA")) {
            chart_data(&b, v);
        } else if (IS("CSS")) {
            inline_asset(&b, "/report.css");
        } else if (IS("CHARTJS")) {
            inline_script(&b, "/chart.js");
        } else if (IS("CHARTS")) {
            inline_script(&b, "/charts.js");
        } else if (IS("SCRIPT")) {
            inline_script(&b, "/report.js");
        } else {
            cc_strbuf_add(&b, at, klen + 4); /* not ours: kept as it is */
        }
#undef IS
        s = close + 2;
    }
    cc_free(rows);
    return cc_strbuf_detach(&b, len);
}

char *cc_task_ratio_json(struct lua_State *L, long num_users)
{
    int top = lua_gettop(L);
    char *out = NULL;
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "loaded");
    lua_getfield(L, -1, "cicada.runtime");
    if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "task_ratio");
        if (lua_isfunction(L, -1)) {
            lua_pushinteger(L, (lua_Integer)num_users);
            lua_pushboolean(L, 1);
            if (lua_pcall(L, 2, 1, 0) == 0 && lua_isstring(L, -1))
                out = cc_xstrdup(lua_tostring(L, -1));
            else if (lua_isstring(L, -1))
                cc_warn("report", "task ratio: %s", lua_tostring(L, -1));
        }
    }
    lua_settop(L, top);
    return out;
}

/* The users the ratio is computed for: the users running, else the last target. */
static long ratio_users(const struct cc_runner_view *v)
{
    return v->user_count ? (long)v->user_count : (long)v->target;
}

char *cc_report_html_run(struct cc_runner *r, bool download_link, size_t *len)
{
    struct cc_runner_view v;
    cc_runner_view(r, &v);
    char *ratio = cc_task_ratio_json(cc_runner_lua(r), ratio_users(&v));
    char *html = cc_report_html(&v, ratio, download_link, len);
    cc_free(ratio);
    return html;
}

/* |tpl| with Locust's {u}, {r} and {t} replaced by users, spawn rate and run time. */
char *cc_report_html_path(const char *tpl, size_t users, double rate, double run_time)
{
    struct cc_strbuf b = {0};
    for (const char *p = tpl; *p; p++) {
        if (p[0] == '{' && p[1] && p[2] == '}' && strchr("urt", p[1])) {
            if (p[1] == 'u')
                cc_strbuf_printf(&b, "%zu", users);
            else if (p[1] == 'r')
                cc_strbuf_printf(&b, "%g", rate);
            else
                cc_strbuf_printf(&b, "%g", run_time);
            p += 2;
        } else {
            cc_strbuf_add(&b, p, 1);
        }
    }
    return cc_strbuf_detach(&b, NULL);
}

int cc_report_html_save(struct cc_runner *r, const char *path_template)
{
    struct cc_runner_view v;
    cc_runner_view(r, &v);
    char *path = cc_report_html_path(path_template, v.target, v.rate, v.run_time);
    size_t len;
    char *html = cc_report_html_run(r, false, &len);
    FILE *f = fopen(path, "w");
    int rv = 0;
    if (!f || fwrite(html, 1, len, f) != len) {
        cc_error("report", "cannot write the HTML report %s", path);
        rv = -1;
    } else {
        cc_info("report", "HTML report written to %s", path);
    }
    if (f && fclose(f) != 0 && rv == 0) {
        cc_error("report", "cannot write the HTML report %s", path);
        rv = -1;
    }
    cc_free(html);
    cc_free(path);
    return rv;
}
