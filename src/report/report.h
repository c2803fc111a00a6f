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
/* The percentiles from the intended start and the dropped iterations, when the run has any. */
void cc_console_intended(FILE *f, const struct cc_agg *a, int name_width,
                         const char *const *class_names, uint32_t nclasses);

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

/* The contents of _stats.csv, _failures.csv and _exceptions.csv, written to |f| (the web UI's
 * downloads). */
void cc_csv_stats(FILE *f, const struct cc_agg *a);
void cc_csv_failures(FILE *f, const struct cc_agg *a);
void cc_csv_exceptions(FILE *f, const struct cc_agg *a);

/* One CSV field, quoted when it must be (Python's csv.QUOTE_MINIMAL). */
void cc_csv_field(FILE *f, const char *s, bool last);

/* ---- JSON ------------------------------------------------------------------------------- */

struct cc_run_info {
    double start_s, end_s;
    uint32_t nclasses;
    const char *const *class_names;
    const uint32_t *class_users; /* live users per class at the end */
};

/* This second's statistics as one line of JSON (--json-stream); caller frees. */
char *cc_report_json_line(const struct cc_agg *a, double now_s, uint32_t users, const char *state);

/* The final results as one JSON object (see docs/statistics.md); caller frees. */
char *cc_report_json(const struct cc_agg *a, const struct cc_run_info *run);

struct json_t;
/* A JSON string of |s| (new reference); bytes that are not UTF-8 become U+FFFD. */
struct json_t *cc_json_str(const char *s);

/* ---- HTML report (html.c) ------------------------------------------------------------------ */

struct cc_runner;
struct cc_runner_view;
struct lua_State;

/*
 * The HTML report of the run |v| shows: one self-contained page (run information, request
 * statistics, the percentile table, failures, exceptions, charts over time, the task ratio
 * from |ratio_json|, which may be NULL). |download_link| adds a link to "?download=1" (the web
 * UI's view). Returns the page (caller frees) and its length in |len|.
 */
char *cc_report_html(const struct cc_runner_view *v, const char *ratio_json, bool download_link,
                     size_t *len);
/* cc_report_html() for the run of |r| now, the ratio taken from its control Lua state. */
char *cc_report_html_run(struct cc_runner *r, bool download_link, size_t *len);
/* |tpl| with Locust's {u}, {r} and {t} replaced by users, spawn rate and run time (seconds,
 * %g). Caller frees. */
char *cc_report_html_path(const char *tpl, size_t users, double rate, double run_time);
/* Writes the report of |r| to the file |path_template| names (--html). 0, or -1 after logging. */
int cc_report_html_save(struct cc_runner *r, const char *path_template);
/*
 * The task ratio tree for |num_users| users as JSON ({"per_class": ..., "total": ...}), from
 * the runtime of the control Lua state |L|; caller frees. NULL (after a warning) if it fails.
 */
char *cc_task_ratio_json(struct lua_State *L, long num_users);

#endif
