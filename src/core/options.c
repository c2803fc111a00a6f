/* SPDX-License-Identifier: MIT */
/* options.c: one table of options, read from config files, the environment and argv. */
#include "core/options.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum opt_type { T_FLAG, T_STR, T_WORDS, T_LONG, T_DOUBLE, T_SPAN };

struct opt_def {
    const char *name; /* long name, without dashes */
    char short_name;
    enum opt_type type;
    size_t off;
    bool cli_only; /* not read from config files or the environment */
    const char *metavar;
    const char *help;
};

#define OFF(f) offsetof(struct cc_options, f)

static const struct opt_def defs[] = {
    {"locustfile", 'f', T_STR, OFF(locustfile), false, "FILE",
     "the Lua script with the user classes (default: cicadafile.lua)"},
    {"config", 0, T_STR, OFF(config), true, "FILE", "read options from this config file"},
    {"host", 'H', T_STR, OFF(host), false, "HOST",
     "the system to load test, e.g. http://10.21.32.33; overrides every class's host"},
    {"users", 'u', T_LONG, OFF(users), false, "N", "peak number of concurrent users"},
    {"spawn-rate", 'r', T_DOUBLE, OFF(spawn_rate), false, "RATE",
     "users started (or stopped) per second"},
    {"run-time", 't', T_SPAN, OFF(run_time), false, "TIME",
     "stop after this long, e.g. 300s, 20m, 3h, 1h30m (default: until stopped)"},
    {"headless", 0, T_FLAG, OFF(headless), false, NULL, "run without the web UI, starting at once"},
    {"autostart", 0, T_FLAG, OFF(autostart), false, NULL,
     "start the test at once, with the web UI running"},
    {"autoquit", 0, T_LONG, OFF(autoquit), false, "SECONDS",
     "with --autostart: quit this long after the test ends (default: keep the UI up)"},
    {"web-host", 0, T_STR, OFF(web_host), false, "HOST",
     "the web UI's address (default 127.0.0.1; * for every interface)"},
    {"web-port", 'P', T_LONG, OFF(web_port), false, "PORT", "the web UI's port (default 8089)"},
    {"web-auth", 0, T_STR, OFF(web_auth), false, "USER:PASSWORD",
     "basic authentication for the web UI"},
    {"tls-cert", 0, T_STR, OFF(tls_cert), false, "FILE",
     "serve the web UI over HTTPS: certificate"},
    {"tls-key", 0, T_STR, OFF(tls_key), false, "FILE", "serve the web UI over HTTPS: private key"},
    {"html", 0, T_STR, OFF(html), false, "FILE", "write the HTML report to FILE at the end"},
    {"list", 'l', T_FLAG, OFF(list), true, NULL, "list the user classes and exit"},
    {"show-task-ratio", 0, T_FLAG, OFF(show_task_ratio), true, NULL,
     "print the task ratios of the user classes and exit"},
    {"show-task-ratio-json", 0, T_FLAG, OFF(show_task_ratio_json), true, NULL,
     "print the task ratios as JSON and exit"},
    {"tags", 'T', T_WORDS, OFF(tags), false, "TAG...", "run only the tasks with one of these tags"},
    {"exclude-tags", 'E', T_WORDS, OFF(exclude_tags), false, "TAG...",
     "run only the tasks with none of these tags"},
    {"csv", 0, T_STR, OFF(csv), false, "PREFIX",
     "write PREFIX_stats.csv, PREFIX_stats_history.csv, PREFIX_failures.csv, "
     "PREFIX_exceptions.csv"},
    {"csv-full-history", 0, T_FLAG, OFF(csv_full_history), false, NULL,
     "write every entry's row each second to the history file, with current percentiles"},
    {"print-stats", 0, T_FLAG, OFF(print_stats), false, NULL,
     "print the stats table every 2 seconds (the default when headless)"},
    {"only-summary", 0, T_FLAG, OFF(only_summary), false, NULL,
     "print only the final summary, not the table every 2 seconds"},
    {"reset-stats", 0, T_FLAG, OFF(reset_stats), false, NULL,
     "reset the statistics once every user has been spawned"},
    {"json", 0, T_FLAG, OFF(json), false, NULL, "print the final statistics as JSON on stdout"},
    {"json-file", 0, T_STR, OFF(json_file), false, "FILE",
     "write the final statistics as JSON to FILE"},
    {"json-stream", 0, T_STR, OFF(json_stream), false, "FILE",
     "write one JSON line of statistics every second to FILE"},
    {"check-fail-ratio", 0, T_DOUBLE, OFF(check_fail_ratio), false, "RATIO",
     "fail the run (exit code 3) if the failure ratio ends above RATIO (0 to 1); failures "
     "alone then do not fail it"},
    {"check-avg-response-time", 0, T_DOUBLE, OFF(check_avg_response_time), false, "MS",
     "fail the run (exit code 3) if the average response time ends above MS"},
    {"check-rps", 0, T_DOUBLE, OFF(check_rps), false, "RPS",
     "fail the run (exit code 3) if the requests per second end below RPS"},
    {"slo", 0, T_STR, OFF(slo), false, "NAME=VALUE,...",
     "service levels of LLM requests for goodput, e.g. ttft_ms=500,tpot_ms=50 (see "
     "docs/openai.md)"},
    {"loglevel", 'L', T_STR, OFF(loglevel), false, "LEVEL",
     "DEBUG, INFO, WARNING, ERROR or CRITICAL (default INFO)"},
    {"logfile", 0, T_STR, OFF(logfile), false, "FILE", "write the log to FILE, not stderr"},
    {"exit-code-on-error", 0, T_LONG, OFF(exit_code_on_error), false, "CODE",
     "exit code when any request failed or any exception occurred (default 1)"},
    {"stop-timeout", 's', T_SPAN, OFF(stop_timeout), false, "TIME",
     "let users finish their task for up to this long when stopping (default 0: stop at once)"},
    {"equal-weights", 0, T_FLAG, OFF(equal_weights), false, NULL,
     "give every task the same weight"},
    {"insecure", 0, T_FLAG, OFF(insecure), false, NULL,
     "do not verify TLS certificates (every client of every user)"},
    {"threads", 0, T_LONG, OFF(threads), false, "N",
     "worker threads, each with its own event loop (default: one per CPU)"},
    {"master", 0, T_FLAG, OFF(master), false, NULL,
     "run as the master of a distributed test: workers (cicada's or Locust's) run the users"},
    {"worker", 0, T_FLAG, OFF(worker), false, NULL,
     "run as a worker of a distributed test, under a master (cicada's or Locust's)"},
    {"master-host", 0, T_STR, OFF(master_host), false, "HOST",
     "worker: the master's address (default 127.0.0.1)"},
    {"master-port", 0, T_LONG, OFF(master_port), false, "PORT",
     "worker: the master's port (default 5557)"},
    {"master-bind-host", 0, T_STR, OFF(master_bind_host), false, "HOST",
     "master: the address to listen on (default *: every interface)"},
    {"master-bind-port", 0, T_LONG, OFF(master_bind_port), false, "PORT",
     "master: the port to listen on (default 5557)"},
    {"expect-workers", 0, T_LONG, OFF(expect_workers), false, "N",
     "master, headless: wait for N workers before starting (default 1)"},
    {"expect-workers-max-wait", 0, T_SPAN, OFF(expect_workers_max_wait), false, "TIME",
     "master, headless: give up after waiting this long for them (default: wait forever)"},
    {"heartbeat-timeout", 0, T_SPAN, OFF(heartbeat_timeout), false, "TIME",
     "worker: give up on a master silent this long (default 60s)"},
    {"enable-rebalancing", 0, T_FLAG, OFF(enable_rebalancing), false, NULL,
     "master: give a missing worker's users to the others"},
    {"processes", 0, T_LONG, OFF(processes), false, "N",
     "fork N local worker processes under a local master (-1: one per CPU); with --worker, N "
     "workers for a remote master"},
    {"curve-secret-key", 0, T_STR, OFF(curve_secret_key), false, "KEY|FILE",
     "encrypt master/worker traffic with CURVE: this node's secret key (see cicada keygen)"},
    {"curve-server-key", 0, T_STR, OFF(curve_server_key), false, "KEY|FILE",
     "worker, with CURVE: the master's public key"},
    {"curve-allow", 0, T_WORDS, OFF(curve_allow), false, "KEY|FILE...",
     "master, with CURVE: admit only workers with these public keys"},
    {"version", 'V', T_FLAG, OFF(version), true, NULL, "print the version and exit"},
    {"help", 'h', T_FLAG, OFF(help), true, NULL, "show this help and exit"},
};

void cc_options_defaults(struct cc_options *o)
{
    memset(o, 0, sizeof(*o));
    o->locustfile = cc_xstrdup("cicadafile.lua");
    o->users = -1;
    o->spawn_rate = -1;
    o->exit_code_on_error = 1;
    o->autoquit = -1;
    o->check_fail_ratio = -1;
    o->check_avg_response_time = -1;
    o->check_rps = -1;
    o->web_host = cc_xstrdup("127.0.0.1");
    o->web_port = 8089;
    o->master_host = cc_xstrdup("127.0.0.1");
    o->master_port = 5557;
    o->master_bind_host = cc_xstrdup("*");
    o->master_bind_port = 5557;
    o->expect_workers = 1;
    o->heartbeat_timeout = 60;
}

void cc_options_release(struct cc_options *o)
{
    for (size_t i = 0; i < CC_ARRAY_LEN(defs); i++) {
        if (defs[i].type == T_STR || defs[i].type == T_WORDS) {
            char **p = (char **)((char *)o + defs[i].off);
            cc_free(*p);
            *p = NULL;
        }
    }
    cc_free(o->classes);
    o->classes = NULL;
}

static char *fmt_err(const char *fmt, ...) CC_PRINTF(1, 2);
static char *fmt_err(const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    return cc_xstrdup(buf);
}

double cc_parse_timespan(const char *s)
{
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    double plain = strtod(s, &end);
    if (*end == '\0' && errno == 0 && plain >= 0 && isfinite(plain)) return plain;

    /* 1h30m10s: each unit at most once, in that order */
    static const struct {
        char unit;
        double scale;
    } units[] = {{'h', 3600}, {'m', 60}, {'s', 1}};
    double total = 0;
    size_t u = 0;
    const char *p = s;
    while (*p) {
        if (!isdigit((unsigned char)*p) && *p != '.') return -1;
        double v = strtod(p, &end);
        if (end == p) return -1;
        char c = (char)tolower((unsigned char)*end);
        while (u < CC_ARRAY_LEN(units) && units[u].unit != c)
            u++;
        if (u == CC_ARRAY_LEN(units)) return -1;
        total += v * units[u].scale;
        u++;
        p = end + 1;
    }
    return total;
}

static bool parse_bool(const char *v, bool *out)
{
    static const char *yes[] = {"1", "true", "yes", "on"};
    static const char *no[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(v, yes[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcasecmp(v, no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

/* Stores |value| into option |d|; |src| names where it came from for messages. */
static int set_value(struct cc_options *o, const struct opt_def *d, const char *value,
                     const char *src, char **err)
{
    void *field = (char *)o + d->off;
    char *end;
    switch (d->type) {
    case T_FLAG: {
        bool b = true;
        if (value && !parse_bool(value, &b)) {
            *err = fmt_err("%s: --%s takes true or false, not '%s'", src, d->name, value);
            return CC_OPT_USAGE;
        }
        *(bool *)field = b;
        return CC_OPT_OK;
    }
    case T_STR:
    case T_WORDS: {
        char **p = field;
        cc_free(*p);
        /* config files may write lists as [a, b] */
        if (d->type == T_WORDS && value[0] == '[') {
            size_t n = strlen(value);
            char *s = cc_xstrndup(value + 1, n > 1 && value[n - 1] == ']' ? n - 2 : n - 1);
            for (char *c = s; *c; c++)
                if (*c == ',') *c = ' ';
            *p = s;
        } else {
            *p = cc_xstrdup(value);
        }
        return CC_OPT_OK;
    }
    case T_LONG: {
        errno = 0;
        long v = strtol(value, &end, 10);
        if (*value == '\0' || *end != '\0' || errno) {
            *err = fmt_err("%s: --%s takes a whole number, not '%s'", src, d->name, value);
            return CC_OPT_USAGE;
        }
        *(long *)field = v;
        return CC_OPT_OK;
    }
    case T_DOUBLE: {
        errno = 0;
        double v = strtod(value, &end);
        if (*value == '\0' || *end != '\0' || errno || !isfinite(v)) {
            *err = fmt_err("%s: --%s takes a number, not '%s'", src, d->name, value);
            return CC_OPT_USAGE;
        }
        *(double *)field = v;
        return CC_OPT_OK;
    }
    case T_SPAN: {
        double v = cc_parse_timespan(value);
        if (v < 0) {
            *err = fmt_err("%s: --%s takes a time span such as 20s, 3m, 2h or 1h20m, not '%s'", src,
                           d->name, value);
            return CC_OPT_USAGE;
        }
        *(double *)field = v;
        return CC_OPT_OK;
    }
    }
    return CC_OPT_OK;
}

static const struct opt_def *find_long(const char *name, size_t len)
{
    for (size_t i = 0; i < CC_ARRAY_LEN(defs); i++)
        if (strlen(defs[i].name) == len && strncmp(defs[i].name, name, len) == 0) return &defs[i];
    return NULL;
}

static const struct opt_def *find_short(char c)
{
    for (size_t i = 0; i < CC_ARRAY_LEN(defs); i++)
        if (defs[i].short_name == c) return &defs[i];
    return NULL;
}

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t row[64];
    if (lb >= CC_ARRAY_LEN(row)) return 99;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t prev = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t cur = row[j];
            size_t sub = prev + (a[i - 1] != b[j - 1]);
            row[j] = CC_MIN(CC_MIN(row[j] + 1, row[j - 1] + 1), sub);
            prev = cur;
        }
    }
    return row[lb];
}

static char *unknown_option(const char *src, const char *name, size_t len)
{
    char *n = cc_xstrndup(name, len);
    const char *best = NULL;
    size_t best_d = 4;
    for (size_t i = 0; i < CC_ARRAY_LEN(defs); i++) {
        size_t d = edit_distance(n, defs[i].name);
        if (d < best_d) {
            best_d = d;
            best = defs[i].name;
        }
    }
    char *e = best ? fmt_err("%s: unrecognized option --%s (did you mean --%s?)", src, n, best)
                   : fmt_err("%s: unrecognized option --%s", src, n);
    cc_free(n);
    return e;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

/* One `name = value` line of a config file (|line| is modified); |src| is "file:line". */
static int config_line(struct cc_options *o, char *line, const char *src, char **err)
{
    char *s = trim(line);
    if (*s == '\0' || *s == '#' || *s == ';' || *s == '[') return CC_OPT_OK;
    char *eq = strchr(s, '=');
    if (!eq) {
        *err = fmt_err("%s: expected 'name = value'", src);
        return CC_OPT_USAGE;
    }
    *eq = '\0';
    char *key = trim(s), *val = trim(eq + 1);
    if (strncmp(key, "--", 2) == 0) key += 2;
    for (char *c = key; *c; c++)
        if (*c == '_') *c = '-';
    const struct opt_def *d = find_long(key, strlen(key));
    if (!d || d->cli_only) {
        *err = unknown_option(src, key, strlen(key));
        return CC_OPT_USAGE;
    }
    size_t vl = strlen(val);
    if (vl >= 2 && (val[0] == '"' || val[0] == '\'') && val[vl - 1] == val[0]) {
        val[vl - 1] = '\0';
        val++;
    }
    return set_value(o, d, val, src, err);
}

int cc_options_parse_config(struct cc_options *o, const char *text, size_t len, const char *name,
                            char **err)
{
    int rc = CC_OPT_OK;
    size_t pos = 0;
    for (int lineno = 1; rc == CC_OPT_OK && pos < len; lineno++) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
        char *line = cc_xstrndup(text + pos, n);
        if (memchr(text + pos, '\0', n)) {
            *err = fmt_err("%.200s:%d: the file holds a NUL byte", name, lineno);
            rc = CC_OPT_USAGE;
        } else {
            char src[300];
            snprintf(src, sizeof(src), "%.200s:%d", name, lineno);
            rc = config_line(o, line, src, err);
        }
        cc_free(line);
        pos += n + 1;
    }
    return rc;
}

#define CONFIG_MAX (1 << 20) /* a config file larger than 1 MiB is a mistake */

/* Reads one config file; a missing optional file is not an error. */
static int load_file(struct cc_options *o, const char *path, bool required, char **err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (!required) return CC_OPT_OK;
        *err = fmt_err("--config: cannot open %s: %s", path, strerror(errno));
        return CC_OPT_USAGE;
    }
    char *text = cc_xmalloc(CONFIG_MAX + 1);
    size_t len = fread(text, 1, CONFIG_MAX + 1, f);
    fclose(f);
    int rc;
    if (len > CONFIG_MAX) {
        *err = fmt_err("%s: larger than 1 MiB; is it really a config file?", path);
        rc = CC_OPT_USAGE;
    } else {
        rc = cc_options_parse_config(o, text, len, path, err);
    }
    cc_free(text);
    return rc;
}

static int load_env(struct cc_options *o, char **envp, char **err)
{
    for (size_t i = 0; i < CC_ARRAY_LEN(defs); i++) {
        const struct opt_def *d = &defs[i];
        if (d->cli_only) continue;
        char var[64] = "CICADA_";
        size_t k = strlen(var);
        for (const char *c = d->name; *c && k < sizeof(var) - 1; c++)
            var[k++] = *c == '-' ? '_' : (char)toupper((unsigned char)*c);
        var[k] = '\0';
        for (char **e = envp; e && *e; e++) {
            if (strncmp(*e, var, k) == 0 && (*e)[k] == '=') {
                int rc = set_value(o, d, *e + k + 1, var, err);
                if (rc) return rc;
            }
        }
    }
    return CC_OPT_OK;
}

static void add_class(struct cc_options *o, const char *name)
{
    size_t old = o->classes ? strlen(o->classes) : 0;
    char *s = cc_xmalloc(old + strlen(name) + 2);
    if (old) {
        memcpy(s, o->classes, old);
        s[old++] = ' ';
    }
    strcpy(s + old, name);
    cc_free(o->classes);
    o->classes = s;
}

/* A T_WORDS option takes the following arguments up to the next one that starts with '-'. */
static int take_words(struct cc_options *o, const struct opt_def *d, int argc, char **argv, int *i,
                      const char *first, char **err)
{
    size_t len = first ? strlen(first) : 0;
    char *s = first ? cc_xstrdup(first) : cc_xstrdup("");
    while (*i + 1 < argc && argv[*i + 1][0] != '-') {
        const char *w = argv[++*i];
        s = cc_xrealloc(s, len + strlen(w) + 2);
        if (len) s[len++] = ' ';
        strcpy(s + len, w);
        len += strlen(w);
    }
    int rc = set_value(o, d, s, "command line", err);
    cc_free(s);
    return rc;
}

static int load_argv(struct cc_options *o, int argc, char **argv, char **err)
{
    bool positional_only = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (positional_only || a[0] != '-' || a[1] == '\0') {
            add_class(o, a);
            continue;
        }
        if (strcmp(a, "--") == 0) {
            positional_only = true;
            continue;
        }
        const struct opt_def *d;
        const char *inline_val = NULL;
        if (a[1] == '-') {
            const char *name = a + 2;
            const char *eq = strchr(name, '=');
            size_t len = eq ? (size_t)(eq - name) : strlen(name);
            d = find_long(name, len);
            if (!d) {
                *err = unknown_option("command line", name, len);
                return CC_OPT_USAGE;
            }
            if (eq) inline_val = eq + 1;
        } else {
            d = find_short(a[1]);
            if (!d) {
                *err = fmt_err("command line: unrecognized option -%c", a[1]);
                return CC_OPT_USAGE;
            }
            if (a[2]) inline_val = a + 2;
        }
        int rc;
        if (d->type == T_FLAG) {
            rc = set_value(o, d, inline_val, "command line", err);
        } else if (d->type == T_WORDS) {
            rc = take_words(o, d, argc, argv, &i, inline_val, err);
        } else if (inline_val) {
            rc = set_value(o, d, inline_val, "command line", err);
        } else if (i + 1 < argc) {
            rc = set_value(o, d, argv[++i], "command line", err);
        } else {
            *err = fmt_err("command line: --%s expects a value (%s)", d->name, d->metavar);
            rc = CC_OPT_USAGE;
        }
        if (rc) return rc;
    }
    return CC_OPT_OK;
}

/* --config must be known before the files are read: find it on the command line first. */
static const char *config_arg(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) break;
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) return argv[i + 1];
        if (strncmp(argv[i], "--config=", 9) == 0) return argv[i] + 9;
    }
    return NULL;
}

static int validate(const struct cc_options *o, char **err)
{
    if (o->users < -1) {
        *err = fmt_err("--users must be 0 or more");
        return CC_OPT_USAGE;
    }
    if (o->spawn_rate != -1 && !(o->spawn_rate > 0)) {
        *err = fmt_err("--spawn-rate must be above 0");
        return CC_OPT_USAGE;
    }
    if (o->threads < 0 || o->threads > 1024) {
        *err = fmt_err("--threads must be between 1 and 1024 (0: one per CPU)");
        return CC_OPT_USAGE;
    }
    if (o->web_port < 0 || o->web_port > 65535) {
        *err = fmt_err("--web-port must be between 0 and 65535");
        return CC_OPT_USAGE;
    }
    if ((o->tls_cert != NULL) != (o->tls_key != NULL)) {
        *err = fmt_err("--tls-cert and --tls-key go together");
        return CC_OPT_USAGE;
    }
    if (o->csv_full_history && !o->csv) {
        *err = fmt_err("--csv-full-history requires --csv");
        return CC_OPT_USAGE;
    }
    if (o->loglevel) {
        static const char *levels[] = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"};
        bool ok = false;
        for (size_t i = 0; i < CC_ARRAY_LEN(levels); i++)
            ok |= strcasecmp(o->loglevel, levels[i]) == 0;
        if (!ok) {
            *err = fmt_err("--loglevel must be DEBUG, INFO, WARNING, ERROR or CRITICAL, not '%s'",
                           o->loglevel);
            return CC_OPT_USAGE;
        }
    }
    return CC_OPT_OK;
}

int cc_options_load(struct cc_options *o, int argc, char **argv, char **envp, const char *home,
                    const char *cwd_conf, char **err)
{
    int rc = CC_OPT_OK;
    *err = NULL;
    if (home) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/.cicada.conf", home);
        rc = load_file(o, path, false, err);
    }
    if (!rc && cwd_conf) rc = load_file(o, cwd_conf, false, err);
    const char *cfg = config_arg(argc, argv);
    if (!rc && cfg) rc = load_file(o, cfg, true, err);
    if (!rc) rc = load_env(o, envp, err);
    if (!rc) rc = load_argv(o, argc, argv, err);
    if (!rc) rc = validate(o, err);
    return rc;
}

void cc_options_usage(void *file)
{
    FILE *f = file;
    fprintf(f,
            "Usage: cicada [OPTIONS] [UserClass ...]\n"
            "       cicada test FILE [--junit-xml FILE] [-k TEXT] ...   run test_* functions once\n"
            "       cicada demo-server [--port PORT]               a web shop to test against\n"
            "       cicada keygen                                  a CURVE key pair\n\n"
            "Runs the users of a Lua script against a system and reports Locust-style "
            "statistics.\n\nOptions:\n");
    for (size_t i = 0; i < CC_ARRAY_LEN(defs); i++) {
        const struct opt_def *d = &defs[i];
        char flag[64];
        if (d->short_name)
            snprintf(flag, sizeof(flag), "-%c, --%s%s%s", d->short_name, d->name,
                     d->metavar ? " " : "", d->metavar ? d->metavar : "");
        else
            snprintf(flag, sizeof(flag), "    --%s%s%s", d->name, d->metavar ? " " : "",
                     d->metavar ? d->metavar : "");
        fprintf(f, "  %-34s %s\n", flag, d->help);
    }
    fprintf(f, "\nEvery option but --config, --list, --show-task-ratio*, --version and --help can\n"
               "also be set in ~/.cicada.conf, ./cicada.conf or a --config file (name = value)\n"
               "or as an environment variable CICADA_<NAME> (e.g. CICADA_SPAWN_RATE=10).\n");
}

static void lua_quote(char **buf, size_t *len, size_t *cap, const char *s)
{
    cc_grow((void **)buf, cap, *len + strlen(s) * 4 + 3, 1);
    char *p = *buf + *len;
    *p++ = '"';
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            *p++ = '\\';
            *p++ = (char)c;
        } else if (c < 32 || c == 127) {
            p += sprintf(p, "\\%03u", c);
        } else {
            *p++ = (char)c;
        }
    }
    *p++ = '"';
    *len = (size_t)(p - *buf);
}

char *cc_options_to_lua(const struct cc_options *o)
{
    char *buf = NULL;
    size_t len = 0, cap = 0;
    cc_grow((void **)&buf, &cap, 2, 1);
    buf[len++] = '{';
    for (size_t i = 0; i < CC_ARRAY_LEN(defs); i++) {
        const struct opt_def *d = &defs[i];
        const void *field = (const char *)o + d->off;
        char key[64], num[64];
        size_t kl = 0;
        for (const char *c = d->name; *c && kl < sizeof(key) - 1; c++)
            key[kl++] = *c == '-' ? '_' : *c;
        key[kl] = '\0';
        cc_grow((void **)&buf, &cap, len + kl + 80, 1);
        len += (size_t)sprintf(buf + len, "%s=", key);
        switch (d->type) {
        case T_FLAG:
            len += (size_t)sprintf(buf + len, "%s", *(const bool *)field ? "true" : "false");
            break;
        case T_STR:
        case T_WORDS: {
            const char *s = *(char *const *)field;
            if (s)
                lua_quote(&buf, &len, &cap, s);
            else
                len += (size_t)sprintf(buf + len, "nil");
            break;
        }
        case T_LONG:
            len += (size_t)sprintf(buf + len, "%ld", *(const long *)field);
            break;
        case T_DOUBLE:
        case T_SPAN:
            snprintf(num, sizeof(num), "%.17g", *(const double *)field);
            len += (size_t)sprintf(buf + len, "%s", num);
            break;
        }
        buf[len++] = ',';
    }
    cc_grow((void **)&buf, &cap, len + 16, 1);
    len += (size_t)sprintf(buf + len, "user_classes=");
    if (o->classes)
        lua_quote(&buf, &len, &cap, o->classes);
    else
        len += (size_t)sprintf(buf + len, "nil");
    cc_grow((void **)&buf, &cap, len + 2, 1);
    buf[len++] = '}';
    buf[len] = '\0';
    return buf;
}
