/* SPDX-License-Identifier: MIT */
/* console.c: Locust's console tables: stats, percentiles and the error report. */
#include "report/report.h"

#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define TYPE_WIDTH 8

void cc_fmt_ms(char *buf, size_t n, double ms)
{
    if (ms >= 100 || ms == 0)
        snprintf(buf, n, "%.0f", ms);
    else if (ms >= 10)
        snprintf(buf, n, "%.1f", ms);
    else
        snprintf(buf, n, "%.2f", ms);
}

void cc_fmt_num(char *buf, size_t n, double v, int decimals)
{
    snprintf(buf, n, "%.*f", decimals, v);
    if (!strchr(buf, '.')) return;
    char *e = buf + strlen(buf) - 1;
    while (*e == '0')
        *e-- = '\0';
    if (*e == '.') *e = '\0';
    if (strcmp(buf, "-0") == 0) strcpy(buf, "0");
}

int cc_console_name_width(void)
{
    struct winsize ws;
    if (isatty(STDERR_FILENO) && ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) {
        int w = (int)ws.ws_col - 80;
        return w < 0 ? 0 : (w > 80 ? 80 : w);
    }
    return 80;
}

static void stats_row(FILE *f, const struct cc_agg *a, const struct cc_entry *e, bool current,
                      int nw)
{
    char type[64], fails[64], avg[32], min[32], max[32], med[32];
    const char *method = e->key ? e->key->part[0] : "";
    const char *name = e->key ? e->key->part[1] : "Aggregated";
    snprintf(type, sizeof(type), "%s%s", method, *method ? " " : "");
    snprintf(fails, sizeof(fails), "%llu(%.2f%%)", (unsigned long long)e->failures,
             cc_entry_fail_ratio(e) * 100);
    cc_fmt_ms(avg, sizeof(avg), cc_entry_avg_ms(e));
    cc_fmt_ms(min, sizeof(min), cc_entry_min_ms(e));
    cc_fmt_ms(max, sizeof(max), cc_entry_max_ms(e));
    cc_fmt_ms(med, sizeof(med), cc_entry_percentile_ms(e, 0.5));
    double rps = current ? cc_entry_current_rps(a, e) : cc_entry_total_rps(a, e);
    double fps = current ? cc_entry_current_fail_per_s(a, e) : cc_entry_total_fail_per_s(a, e);
    fprintf(f, "%-*s %-*s %7llu %12s |%7s %7s %7s%7s | %7.2f %11.2f\n", TYPE_WIDTH, type, nw, name,
            (unsigned long long)e->count, fails, avg, min, max, med, rps, fps);
}

void cc_console_stats(FILE *f, const struct cc_agg *a, bool current, int name_width)
{
    int nw = name_width - TYPE_WIDTH + 4;
    char sep[512];
    snprintf(sep, sizeof(sep),
             "%.*s|%.*s|-------|-------------|-------|-------|-------|-------|"
             "--------|-----------",
             TYPE_WIDTH, "--------", nw,
             "------------------------------------------------------------------------------------"
             "------------------------------------");
    flockfile(f);
    fprintf(f, "%-*s %-*s %7s %12s |%7s %7s %7s%7s | %7s %11s\n", TYPE_WIDTH, "Type", nw, "Name",
            "# reqs", "# fails", "Avg", "Min", "Max", "Med", "req/s", "failures/s");
    fprintf(f, "%s\n", sep);
    size_t n;
    struct cc_entry **sorted = cc_agg_sorted(a, &n);
    for (size_t i = 0; i < n; i++)
        stats_row(f, a, sorted[i], current, nw);
    cc_free(sorted);
    fprintf(f, "%s\n", sep);
    stats_row(f, a, &a->total, current, nw);
    fprintf(f, "\n");
    funlockfile(f);
}

static void percentile_row(FILE *f, const struct cc_entry *e, int nw)
{
    double v[CC_NPERCENTILES];
    cc_entry_percentiles_ms(e, cc_percentiles, CC_NPERCENTILES, v);
    fprintf(f, "%-*s %-*s", TYPE_WIDTH, e->key ? e->key->part[0] : "", nw,
            e->key ? e->key->part[1] : "Aggregated");
    for (unsigned i = 0; i < CC_NPERCENTILES; i++) {
        char b[32];
        cc_fmt_ms(b, sizeof(b), v[i]);
        fprintf(f, " %6s", b);
    }
    fprintf(f, " %8llu\n", (unsigned long long)e->count);
}

void cc_console_percentiles(FILE *f, const struct cc_agg *a, int name_width)
{
    char sep[1024];
    int k = snprintf(sep, sizeof(sep), "%.*s|", TYPE_WIDTH, "--------");
    for (int i = 0; i < name_width && k < (int)sizeof(sep) - 200; i++)
        sep[k++] = '-';
    for (unsigned i = 0; i < CC_NPERCENTILES; i++)
        k += snprintf(sep + k, sizeof(sep) - (size_t)k, "|------");
    snprintf(sep + k, sizeof(sep) - (size_t)k, "|--------");

    flockfile(f);
    fprintf(f, "Response time percentiles (approximated)\n");
    fprintf(f, "%-*s %-*s", TYPE_WIDTH, "Type", name_width, "Name");
    for (unsigned i = 0; i < CC_NPERCENTILES; i++)
        fprintf(f, " %6s", cc_percentile_labels[i]);
    fprintf(f, " %8s\n%s\n", "# reqs", sep);
    size_t n;
    struct cc_entry **sorted = cc_agg_sorted(a, &n);
    for (size_t i = 0; i < n; i++)
        percentile_row(f, sorted[i], name_width);
    cc_free(sorted);
    fprintf(f, "%s\n", sep);
    if (a->total.count) percentile_row(f, &a->total, name_width);
    fprintf(f, "\n");
    funlockfile(f);
}

void cc_console_intended(FILE *f, const struct cc_agg *a, int name_width,
                         const char *const *class_names, uint32_t nclasses)
{
    size_t n;
    struct cc_entry **sorted = cc_agg_sorted(a, &n);
    bool any = a->total.ihist.total > 0;
    uint64_t dropped = 0;
    for (size_t i = 0; i < a->dropped_cap; i++)
        dropped += a->dropped[i];
    if (!any && !dropped) {
        cc_free(sorted);
        return;
    }
    flockfile(f);
    if (any) {
        fprintf(f, "Response time percentiles from the intended start (coordinated omission "
                   "corrected)\n");
        fprintf(f, "%-*s %-*s", TYPE_WIDTH, "Type", name_width, "Name");
        for (unsigned i = 0; i < CC_NPERCENTILES; i++)
            fprintf(f, " %6s", cc_percentile_labels[i]);
        fprintf(f, " %8s\n", "# samples");
        for (size_t k = 0; k <= n; k++) {
            const struct cc_entry *e = k < n ? sorted[k] : &a->total;
            double v[CC_NPERCENTILES];
            if (!cc_entry_intended_percentiles_ms(e, cc_percentiles, CC_NPERCENTILES, v)) continue;
            fprintf(f, "%-*s %-*s", TYPE_WIDTH, e->key ? e->key->part[0] : "", name_width,
                    e->key ? e->key->part[1] : "Aggregated");
            for (unsigned i = 0; i < CC_NPERCENTILES; i++) {
                char b[32];
                cc_fmt_ms(b, sizeof(b), v[i]);
                fprintf(f, " %6s", b);
            }
            fprintf(f, " %8llu\n", (unsigned long long)e->ihist.total);
        }
        fprintf(f, "\n");
    }
    for (size_t i = 0; i < a->dropped_cap && i < nclasses; i++)
        if (a->dropped[i])
            fprintf(f, "Dropped iterations of %s (no free user when they were due): %llu\n",
                    class_names[i], (unsigned long long)a->dropped[i]);
    if (dropped) fprintf(f, "\n");
    funlockfile(f);
    cc_free(sorted);
}

void cc_console_errors(FILE *f, const struct cc_agg *a, int name_width)
{
    size_t n;
    struct cc_failure **fails = cc_agg_sorted_failures(a, &n);
    if (n == 0) {
        cc_free(fails);
        return;
    }
    char sep[512];
    int dashes = 80 + name_width - 19;
    snprintf(
        sep, sizeof(sep), "------------------|%.*s", dashes,
        "-------------------------------------------------------------------------------------"
        "-------------------------------------------------------------------------------------");
    flockfile(f);
    fprintf(f, "Error report\n%-18s %-100s\n%s\n", "# occurrences", "Error", sep);
    for (size_t i = 0; i < n; i++) {
        const struct cc_ikey *k = fails[i]->key;
        char occ[32];
        snprintf(occ, sizeof(occ), "%llu", (unsigned long long)fails[i]->occurrences);
        fprintf(f, "%-18s %s %s: %s\n", occ, k->part[0], k->part[1], k->part[2]);
    }
    fprintf(f, "%s\n\n", sep);
    funlockfile(f);
    cc_free(fails);
}
