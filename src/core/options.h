/* SPDX-License-Identifier: MIT */
/*
 * options.h: the command line, config files and CICADA_* environment variables.
 *
 * Flags take Locust's names wherever the concept is shared. Later sources override earlier
 * ones, as in Locust: ~/.cicada.conf, ./cicada.conf, --config FILE, environment, command line.
 * A config file holds `name = value` lines, names being long option names without the dashes.
 */
#ifndef CC_OPTIONS_H
#define CC_OPTIONS_H

#include "core/common.h"

struct cc_options {
    char *locustfile;  /* -f: the cicadafile */
    char *config;      /* --config */
    char *host;        /* -H */
    long users;        /* -u; -1 when not given */
    double spawn_rate; /* -r; -1 when not given */
    double run_time;   /* -t, seconds; 0: until stopped */
    bool headless;
    bool autostart;
    long autoquit;  /* with --autostart: quit this many seconds after the test ends; -1 */
    char *web_host; /* the web UI's address */
    long web_port;
    char *web_auth; /* user:password for the web UI, or NULL */
    char *tls_cert; /* HTTPS for the web UI */
    char *tls_key;
    char *html;                     /* write the HTML report to this file */
    char *json_stream;              /* a JSON line of statistics every second to this file */
    double check_fail_ratio;        /* pass/fail checks (as locust-plugins); -1: none */
    double check_avg_response_time; /* ms */
    double check_rps;
    char *slo; /* --slo: LLM service levels, "ttft_ms=500,tpot_ms=50" (cicada.openai reads it) */
    bool list;
    bool show_task_ratio;
    bool show_task_ratio_json;
    char *tags;         /* -T, space or comma separated */
    char *exclude_tags; /* -E */
    char *csv;          /* --csv PREFIX */
    bool csv_full_history;
    bool print_stats;
    bool only_summary;
    bool reset_stats;
    bool json;
    char *json_file;
    char *loglevel;
    char *logfile;
    long exit_code_on_error;
    double stop_timeout; /* -s, seconds */
    bool equal_weights;
    bool insecure; /* TLS certificates are not verified */
    long threads;  /* worker threads; 0: one per online CPU */
    /* distributed mode */
    bool master;
    bool worker;
    char *master_host; /* worker: where the master is */
    long master_port;
    char *master_bind_host; /* master: where it listens */
    long master_bind_port;
    long expect_workers;            /* master, headless: workers to wait for before starting */
    double expect_workers_max_wait; /* seconds; 0: forever */
    double heartbeat_timeout;       /* worker: seconds without word from the master */
    bool enable_rebalancing;
    long processes;         /* local worker processes to fork; -1: one per CPU */
    char *curve_secret_key; /* CURVE: this node's secret key (a Z85 key or a file) */
    char *curve_server_key; /* worker: the master's public key */
    char *curve_allow;      /* master: the workers' public keys, space separated */
    char *classes;          /* positional user class names, space separated */
    bool version;
    bool help;
};

/* Error categories, which decide the exit code. */
enum cc_opt_status { CC_OPT_OK = 0, CC_OPT_USAGE = 2 };

void cc_options_defaults(struct cc_options *o);
void cc_options_release(struct cc_options *o);

/*
 * Fills |o| from the config files, the environment (|envp|, NULL-terminated) and |argv|.
 * |home| is where ~/.cicada.conf is looked for (NULL: none) and |cwd_conf| the ./cicada.conf
 * path (NULL: none). Returns CC_OPT_OK, or CC_OPT_USAGE with a message naming the flag, file
 * or variable in |err| (caller frees).
 */
int cc_options_load(struct cc_options *o, int argc, char **argv, char **envp, const char *home,
                    const char *cwd_conf, char **err);

/*
 * Applies the `name = value` lines of |text| (|len| bytes) as a config file named |name| would.
 * Returns CC_OPT_OK, or CC_OPT_USAGE with "name:line: ..." in |err| (caller frees).
 */
int cc_options_parse_config(struct cc_options *o, const char *text, size_t len, const char *name,
                            char **err);

/* Parses a timespan ("20", "20s", "3m", "2h", "1h20m", "3h30m10s", "1.5"); -1 if invalid. */
double cc_parse_timespan(const char *s);

/* Writes the --help text. */
void cc_options_usage(void *file);

/* The options as a Lua table constructor, for scripts' env.parsed_options (caller frees). */
char *cc_options_to_lua(const struct cc_options *o);

#endif
