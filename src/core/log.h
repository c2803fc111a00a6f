/* SPDX-License-Identifier: MIT */
/*
 * log.h: Locust-style log lines, "[2026-11-27 14:51:10,123] host/INFO/cicada.main: message",
 * to stderr or to --logfile; console tables go to stderr unformatted, as Locust's stats
 * logger does. Safe from any thread: each line is written with one call.
 */
#ifndef CC_LOG_H
#define CC_LOG_H

#include "core/common.h"

enum cc_log_level { CC_LOG_DEBUG, CC_LOG_INFO, CC_LOG_WARNING, CC_LOG_ERROR, CC_LOG_CRITICAL };

/* Sets the level and the destination (NULL: stderr). Returns -1 if the file cannot be opened. */
int cc_log_setup(enum cc_log_level level, const char *logfile);
void cc_log_close(void);
/* Parses DEBUG/INFO/WARNING/ERROR/CRITICAL (any case); -1 if unknown. */
int cc_log_parse_level(const char *s);
bool cc_log_enabled(enum cc_log_level level);

void cc_log(enum cc_log_level level, const char *module, const char *fmt, ...) CC_PRINTF(3, 4);
/*
 * A hook that sees every log line written (without its newline; |len| bytes, NUL-terminated),
 * for the web UI's Logs tab. It is called from whichever thread logs, so it must be thread
 * safe, and it must not log. NULL removes it.
 */
typedef void cc_log_hook_cb(const char *line, size_t len);
void cc_log_set_hook(cc_log_hook_cb *cb);

/* One unformatted line on stderr (the console tables). */
void cc_console(const char *fmt, ...) CC_PRINTF(1, 2);
/*
 * Shows |line| as the live status line at the bottom of a terminal (stderr), replacing the
 * last one; NULL clears it. Log lines and tables written meanwhile clear it first.
 */
void cc_status(const char *line);
/* Clears the status line if one is shown (before writing to stderr otherwise). */
void cc_status_clear(void);

#define cc_debug(mod, ...) cc_log(CC_LOG_DEBUG, mod, __VA_ARGS__)
#define cc_info(mod, ...)  cc_log(CC_LOG_INFO, mod, __VA_ARGS__)
#define cc_warn(mod, ...)  cc_log(CC_LOG_WARNING, mod, __VA_ARGS__)
#define cc_error(mod, ...) cc_log(CC_LOG_ERROR, mod, __VA_ARGS__)

#endif
