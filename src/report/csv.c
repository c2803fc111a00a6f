/* SPDX-License-Identifier: MIT */
/*
 * csv.c: Locust's four CSV files with Locust's columns, in Locust's order, written as Python's
 * csv module writes them (minimal quoting, CRLF line ends). Times are milliseconds, with up to
 * three decimals where Locust rounds to whole ones.
 */
#include "report/report.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

static const char *const stats_cols[] = {"Type",
                                         "Name",
                                         "Request Count",
                                         "Failure Count",
                                         "Median Response Time",
                                         "Average Response Time",
                                         "Min Response Time",
                                         "Max Response Time",
                                         "Average Content Size",
                                         "Requests/s",
                                         "Failures/s"};
static const char *const history_head[] = {"Timestamp", "User Count", "Type",
                                           "Name",      "Requests/s", "Failures/s"};
static const char *const history_tail[] = {
    "Total Request Count",         "Total Failure Count",     "Total Median Response Time",
    "Total Average Response Time", "Total Min Response Time", "Total Max Response Time",
    "Total Average Content Size"};
static const char *const failure_cols[] = {"Method",      "Name",       "Error",
                                           "Occurrences", "First Seen", "Last Seen"};
static const char *const exception_cols[] = {"Count", "Message", "Traceback", "Nodes"};

void cc_csv_field(FILE *f, const char *s, bool last)
{
    if (strpbrk(s, ",\"\r\n")) {
        fputc('"', f);
        for (const char *p = s; *p; p++) {
            if (*p == '"') fputc('"', f);
            fputc(*p, f);
        }
        fputc('"', f);
    } else {
        fputs(s, f);
    }
    fputs(last ? "\r\n" : ",", f);
}

static void num(FILE *f, double v, int decimals, bool last)
{
    char b[64];
    cc_fmt_num(b, sizeof(b), v, decimals);
    cc_csv_field(f, b, last);
}

static void header(FILE *f, const char *const *cols, size_t n, bool more)
{
    for (size_t i = 0; i < n; i++)
        cc_csv_field(f, cols[i], !more && i + 1 == n);
}

static void percentile_header(FILE *f, bool more)
{
    for (unsigned i = 0; i < CC_NPERCENTILES; i++)
        cc_csv_field(f, cc_percentile_labels[i], !more && i + 1 == CC_NPERCENTILES);
}

static void percentiles(FILE *f, const struct cc_entry *e, const double *v, bool last)
{
    for (unsigned i = 0; i < CC_NPERCENTILES; i++) {
        bool end = last && i + 1 == CC_NPERCENTILES;
        if (!e->count)
            cc_csv_field(f, "N/A", end);
        else
            num(f, v[i], 3, end);
    }
}

static const char *etype(const struct cc_entry *e)
{
    return e->key ? e->key->part[0] : "";
}

static const char *ename(const struct cc_entry *e)
{
    return e->key ? e->key->part[1] : "Aggregated";
}

static void stats_row(FILE *f, const struct cc_agg *a, const struct cc_entry *e)
{
    double v[CC_NPERCENTILES];
    cc_entry_percentiles_ms(e, cc_percentiles, CC_NPERCENTILES, v);
    cc_csv_field(f, etype(e), false);
    cc_csv_field(f, ename(e), false);
    num(f, (double)e->count, 0, false);
    num(f, (double)e->failures, 0, false);
    num(f, cc_entry_percentile_ms(e, 0.5), 3, false);
    num(f, cc_entry_avg_ms(e), 3, false);
    num(f, cc_entry_min_ms(e), 3, false);
    num(f, cc_entry_max_ms(e), 3, false);
    num(f, cc_entry_avg_bytes(e), 3, false);
    num(f, cc_entry_total_rps(a, e), 6, false);
    num(f, cc_entry_total_fail_per_s(a, e), 6, false);
    percentiles(f, e, v, true);
}

static FILE *rewrite(struct cc_csv *c, const char *suffix)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s_%s.csv", c->prefix, suffix);
    return fopen(path, "w");
}

void cc_csv_stats(FILE *f, const struct cc_agg *a)
{
    header(f, stats_cols, CC_ARRAY_LEN(stats_cols), true);
    percentile_header(f, false);
    size_t n;
    struct cc_entry **sorted = cc_agg_sorted(a, &n);
    for (size_t i = 0; i < n; i++)
        stats_row(f, a, sorted[i]);
    cc_free(sorted);
    stats_row(f, a, &a->total);
}

static void write_stats(struct cc_csv *c, const struct cc_agg *a)
{
    FILE *f = rewrite(c, "stats");
    if (!f) return;
    cc_csv_stats(f, a);
    fclose(f);
}

static void history_row(FILE *f, const struct cc_agg *a, const struct cc_entry *e, uint32_t users,
                        double now_s, bool current)
{
    double v[CC_NPERCENTILES];
    if (!current || !cc_entry_current_percentiles_ms(a, e, cc_percentiles, CC_NPERCENTILES, v))
        cc_entry_percentiles_ms(e, cc_percentiles, CC_NPERCENTILES, v);
    char b[64];
    snprintf(b, sizeof(b), "%lld", (long long)now_s);
    cc_csv_field(f, b, false);
    num(f, users, 0, false);
    cc_csv_field(f, etype(e), false);
    cc_csv_field(f, ename(e), false);
    snprintf(b, sizeof(b), "%f", cc_entry_current_rps(a, e));
    cc_csv_field(f, b, false);
    snprintf(b, sizeof(b), "%f", cc_entry_current_fail_per_s(a, e));
    cc_csv_field(f, b, false);
    percentiles(f, e, v, false);
    num(f, (double)e->count, 0, false);
    num(f, (double)e->failures, 0, false);
    num(f, cc_entry_percentile_ms(e, 0.5), 3, false);
    num(f, cc_entry_avg_ms(e), 3, false);
    num(f, cc_entry_min_ms(e), 3, false);
    num(f, cc_entry_max_ms(e), 3, false);
    num(f, cc_entry_avg_bytes(e), 3, true);
}

void cc_csv_failures(FILE *f, const struct cc_agg *a)
{
    header(f, failure_cols, CC_ARRAY_LEN(failure_cols), false);
    size_t n;
    struct cc_failure **fails = cc_agg_sorted_failures(a, &n);
    for (size_t i = 0; i < n; i++) {
        const struct cc_ikey *k = fails[i]->key;
        cc_csv_field(f, k->part[0], false);
        cc_csv_field(f, k->part[1], false);
        cc_csv_field(f, k->part[2], false);
        num(f, (double)fails[i]->occurrences, 0, false);
        num(f, fails[i]->first_s, 3, false);
        num(f, fails[i]->last_s, 3, true);
    }
    cc_free(fails);
}

static void write_failures(struct cc_csv *c, const struct cc_agg *a)
{
    FILE *f = rewrite(c, "failures");
    if (!f) return;
    cc_csv_failures(f, a);
    fclose(f);
}

void cc_csv_exceptions(FILE *f, const struct cc_agg *a)
{
    header(f, exception_cols, CC_ARRAY_LEN(exception_cols), false);
    size_t n;
    struct cc_exception **excs = cc_agg_sorted_exceptions(a, &n);
    for (size_t i = 0; i < n; i++) {
        num(f, (double)excs[i]->count, 0, false);
        cc_csv_field(f, excs[i]->key->part[0], false);
        cc_csv_field(f, excs[i]->key->part[1], false);
        cc_csv_field(f, "local", true);
    }
    cc_free(excs);
}

static void write_exceptions(struct cc_csv *c, const struct cc_agg *a)
{
    FILE *f = rewrite(c, "exceptions");
    if (!f) return;
    cc_csv_exceptions(f, a);
    fclose(f);
}

/* mkdir -p for the directories of |prefix|. */
static int make_dirs(const char *prefix)
{
    char *p = cc_xstrdup(prefix);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = '\0';
        if (mkdir(p, 0777) != 0 && errno != EEXIST) {
            cc_free(p);
            return -1;
        }
        *s = '/';
    }
    cc_free(p);
    return 0;
}

int cc_csv_open(struct cc_csv *c, const char *prefix, bool full_history, char **err)
{
    memset(c, 0, sizeof(*c));
    c->prefix = cc_xstrdup(prefix);
    c->full_history = full_history;
    char path[4096];
    snprintf(path, sizeof(path), "%s_stats_history.csv", prefix);
    if (make_dirs(prefix) != 0 || !(c->history = fopen(path, "w"))) {
        snprintf(path, sizeof(path), "cannot write the CSV files %s_*.csv: %s", prefix,
                 strerror(errno));
        *err = cc_xstrdup(path);
        cc_free(c->prefix);
        c->prefix = NULL;
        return -1;
    }
    header(c->history, history_head, CC_ARRAY_LEN(history_head), true);
    percentile_header(c->history, true);
    header(c->history, history_tail, CC_ARRAY_LEN(history_tail), false);
    fflush(c->history);
    return 0;
}

void cc_csv_write(struct cc_csv *c, const struct cc_agg *a, uint32_t user_count, double now_s,
                  bool history)
{
    if (!c->prefix) return;
    write_stats(c, a);
    write_failures(c, a);
    write_exceptions(c, a);
    if (!history) return;
    if (c->full_history) {
        size_t n;
        struct cc_entry **sorted = cc_agg_sorted(a, &n);
        for (size_t i = 0; i < n; i++)
            history_row(c->history, a, sorted[i], user_count, now_s, true);
        cc_free(sorted);
    }
    history_row(c->history, a, &a->total, user_count, now_s, c->full_history);
    fflush(c->history);
}

void cc_csv_close(struct cc_csv *c)
{
    if (c->history) fclose(c->history);
    cc_free(c->prefix);
    memset(c, 0, sizeof(*c));
}
