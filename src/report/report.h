/* SPDX-License-Identifier: MIT */
/*
 * report.h: what a run shows and writes: Locust's console tables, Locust's four CSV files, and
 * the final results as one JSON object.
 */
#ifndef CC_REPORT_H
#define CC_REPORT_H

#include "stats/stats.h"

#include <stdio.h>

/* A response time for people: whole milliseconds from 100 ms, else 1 or 2 decimals. */
void cc_fmt_ms(char *buf, size_t n, double ms);
/* A number for CSV and JSON: at most |decimals| decimals, trailing zeros dropped. */
void cc_fmt_num(char *buf, size_t n, double v, int decimals);

/* ---- console ---------------------------------------------------------------------------- */

/* The name column's width: the terminal's width less 80, at most 80 (80 when not a terminal). */
int cc_console_name_width(void);
/* Locust's stats table; |current| shows current rates, else rates over the whole run. */
void cc_console_stats(FILE *f, const struct cc_agg *a, bool current, int name_width);
void cc_console_percentiles(FILE *f, const struct cc_agg *a, int name_width);
void cc_console_errors(FILE *f, const struct cc_agg *a, int name_width);

/* ---- CSV -------------------------------------------------------------------------------- */

struct cc_csv {
    char *prefix;
    bool full_history;
    FILE *history; /* appended to each second; the other three are rewritten whole */
};

/* Creates the prefix's directories and the four files with their headers. -1 with |err|. */
int cc_csv_open(struct cc_csv *c, const char *prefix, bool full_history, char **err);
/* Rewrites _stats, _failures and _exceptions and appends this second's history rows. */
void cc_csv_write(struct cc_csv *c, const struct cc_agg *a, uint32_t user_count, double now_s,
                  bool history);
void cc_csv_close(struct cc_csv *c);

/* One CSV field, quoted when it must be (Python's csv.QUOTE_MINIMAL). */
void cc_csv_field(FILE *f, const char *s, bool last);

/* ---- JSON ------------------------------------------------------------------------------- */

struct cc_run_info {
    double start_s, end_s;
    uint32_t nclasses;
    const char *const *class_names;
    const uint32_t *class_users; /* live users per class at the end */
};

/* The final results as one JSON object (see docs/statistics.md); caller frees. */
char *cc_report_json(const struct cc_agg *a, const struct cc_run_info *run);

#endif
