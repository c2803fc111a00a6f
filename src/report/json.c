/* SPDX-License-Identifier: MIT */
/* json.c: the final results as one JSON object (--json, --json-file). */
#include "report/report.h"

#include <jansson.h>
#include <string.h>

/* Percentile keys as the JSON names them: "50", "99.9", "100". */
static const char *const pct_keys[CC_NPERCENTILES] = {"50", "66", "75",   "80",    "90", "95",
                                                      "98", "99", "99.9", "99.99", "100"};

/* A JSON string of |s|; bytes that are not UTF-8 become U+FFFD, so nothing is dropped. */
static json_t *jstr(const char *s)
{
    json_t *j = json_string(s);
    if (j) return j;
    size_t n = strlen(s), k = 0;
    char *buf = cc_xmalloc(n * 3 + 1);
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned len = *p < 0x80         ? 1
                       : (*p >> 5) == 6  ? 2
                       : (*p >> 4) == 14 ? 3
                       : (*p >> 3) == 30 ? 4
                                         : 0;
        bool ok = len > 0;
        for (unsigned i = 1; ok && i < len; i++)
            ok = (p[i] & 0xC0) == 0x80;
        if (ok) {
            json_t *probe = json_stringn((const char *)p, len);
            ok = probe != NULL;
            json_decref(probe);
        }
        if (ok) {
            memcpy(buf + k, p, len);
            k += len;
            p += len;
        } else {
            memcpy(buf + k, "\xEF\xBF\xBD", 3);
            k += 3;
            p++;
        }
    }
    j = json_stringn(buf, k);
    cc_free(buf);
    return j ? j : json_string("");
}

json_t *cc_json_str(const char *s)
{
    return jstr(s);
}

static json_t *entry_json(const struct cc_agg *a, const struct cc_entry *e)
{
    double v[CC_NPERCENTILES];
    cc_entry_percentiles_ms(e, cc_percentiles, CC_NPERCENTILES, v);
    json_t *p = json_object();
    for (unsigned i = 0; i < CC_NPERCENTILES; i++)
        json_object_set_new(p, pct_keys[i], json_real(v[i]));
    json_t *o = json_object();
    json_object_set_new(o, "type", jstr(e->key ? e->key->part[0] : ""));
    json_object_set_new(o, "name", jstr(e->key ? e->key->part[1] : "Aggregated"));
    json_object_set_new(o, "num_requests", json_integer((json_int_t)e->count));
    json_object_set_new(o, "num_failures", json_integer((json_int_t)e->failures));
    json_object_set_new(o, "avg_response_time", json_real(cc_entry_avg_ms(e)));
    json_object_set_new(o, "min_response_time", json_real(cc_entry_min_ms(e)));
    json_object_set_new(o, "max_response_time", json_real(cc_entry_max_ms(e)));
    json_object_set_new(o, "median_response_time", json_real(v[0]));
    json_object_set_new(o, "total_content_length", json_integer((json_int_t)e->bytes));
    json_object_set_new(o, "avg_content_length", json_real(cc_entry_avg_bytes(e)));
    json_object_set_new(o, "requests_per_sec", json_real(cc_entry_total_rps(a, e)));
    json_object_set_new(o, "failures_per_sec", json_real(cc_entry_total_fail_per_s(a, e)));
    json_object_set_new(o, "fail_ratio", json_real(cc_entry_fail_ratio(e)));
    json_object_set_new(o, "percentiles", p);
    double iv[CC_NPERCENTILES];
    if (cc_entry_intended_percentiles_ms(e, cc_percentiles, CC_NPERCENTILES, iv)) {
        /* measured from when each request was meant to start (open model, pacing) */
        json_t *ip = json_object();
        for (unsigned i = 0; i < CC_NPERCENTILES; i++)
            json_object_set_new(ip, pct_keys[i], json_real(iv[i]));
        json_object_set_new(o, "intended_percentiles", ip);
        json_object_set_new(o, "intended_samples", json_integer((json_int_t)e->ihist.total));
    }
    return o;
}

char *cc_report_json_line(const struct cc_agg *a, double now_s, uint32_t users, const char *state)
{
    json_t *root = json_object();
    json_object_set_new(root, "time", json_real(now_s));
    json_object_set_new(root, "state", json_string(state));
    json_object_set_new(root, "user_count", json_integer(users));
    json_t *total = entry_json(a, &a->total);
    json_object_set_new(total, "current_rps", json_real(cc_entry_current_rps(a, &a->total)));
    json_object_set_new(total, "current_fail_per_sec",
                        json_real(cc_entry_current_fail_per_s(a, &a->total)));
    double p[2] = {0.5, 0.95}, v[2];
    if (cc_entry_current_percentiles_ms(a, &a->total, p, 2, v)) {
        json_object_set_new(total, "current_p50", json_real(v[0]));
        json_object_set_new(total, "current_p95", json_real(v[1]));
    }
    json_object_set_new(root, "total", total);
    json_t *stats = json_array();
    size_t n;
    struct cc_entry **sorted = cc_agg_sorted(a, &n);
    for (size_t i = 0; i < n; i++) {
        json_t *e = entry_json(a, sorted[i]);
        json_object_set_new(e, "current_rps", json_real(cc_entry_current_rps(a, sorted[i])));
        json_object_set_new(e, "current_fail_per_sec",
                            json_real(cc_entry_current_fail_per_s(a, sorted[i])));
        json_array_append_new(stats, e);
    }
    cc_free(sorted);
    json_object_set_new(root, "stats", stats);
    char *s = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
    json_decref(root);
    char *out = cc_xstrdup(s ? s : "{}");
    free(s);
    return out;
}

char *cc_report_json(const struct cc_agg *a, const struct cc_run_info *run)
{
    json_t *root = json_object();
    json_t *stats = json_array();
    size_t n;
    struct cc_entry **sorted = cc_agg_sorted(a, &n);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(stats, entry_json(a, sorted[i]));
    cc_free(sorted);
    json_object_set_new(root, "stats", stats);
    json_object_set_new(root, "total", entry_json(a, &a->total));

    json_t *fails = json_array();
    struct cc_failure **fl = cc_agg_sorted_failures(a, &n);
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_object();
        json_object_set_new(o, "method", jstr(fl[i]->key->part[0]));
        json_object_set_new(o, "name", jstr(fl[i]->key->part[1]));
        json_object_set_new(o, "error", jstr(fl[i]->key->part[2]));
        json_object_set_new(o, "occurrences", json_integer((json_int_t)fl[i]->occurrences));
        json_array_append_new(fails, o);
    }
    cc_free(fl);
    json_object_set_new(root, "failures", fails);

    json_t *excs = json_array();
    struct cc_exception **el = cc_agg_sorted_exceptions(a, &n);
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_object();
        json_object_set_new(o, "count", json_integer((json_int_t)el[i]->count));
        json_object_set_new(o, "message", jstr(el[i]->key->part[0]));
        json_object_set_new(o, "traceback", jstr(el[i]->key->part[1]));
        json_array_append_new(excs, o);
    }
    cc_free(el);
    json_object_set_new(root, "exceptions", excs);

    json_t *users = json_object();
    for (uint32_t i = 0; i < run->nclasses; i++)
        json_object_set_new(users, run->class_names[i], json_integer(run->class_users[i]));
    json_object_set_new(root, "user_count", users);
    json_t *dropped = json_object();
    for (uint32_t i = 0; i < run->nclasses && i < a->dropped_cap; i++)
        if (a->dropped[i])
            json_object_set_new(dropped, run->class_names[i],
                                json_integer((json_int_t)a->dropped[i]));
    json_object_set_new(root, "dropped_iterations", dropped);
    json_object_set_new(root, "start_time", json_real(run->start_s));
    json_object_set_new(root, "end_time", json_real(run->end_s));

    char *s = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
    json_decref(root);
    char *out = cc_xstrdup(s ? s : "{}");
    free(s);
    return out;
}
