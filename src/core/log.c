/* SPDX-License-Identifier: MIT */
/* log.c: log lines and console output; see log.h. */
#include "core/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <unistd.h>

static enum cc_log_level min_level = CC_LOG_INFO;
static FILE *log_file; /* NULL: stderr */
static char hostname[64];
static cc_log_hook_cb *_Atomic log_hook;

static _Atomic bool status_shown; /* a status line without its newline is on the terminal */

void cc_status_clear(void)
{
    if (!status_shown) return;
    flockfile(stderr);
    fputs("\r\033[K", stderr);
    status_shown = false;
    funlockfile(stderr);
}

void cc_status(const char *line)
{
    if (!line) {
        cc_status_clear();
        return;
    }
    flockfile(stderr);
    fputs("\r\033[K", stderr);
    if (line) fputs(line, stderr);
    fflush(stderr);
    status_shown = line != NULL;
    funlockfile(stderr);
}

static const char *const level_names[] = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"};

int cc_log_parse_level(const char *s)
{
    for (unsigned i = 0; i < CC_ARRAY_LEN(level_names); i++)
        if (strcasecmp(s, level_names[i]) == 0) return (int)i;
    return -1;
}

int cc_log_setup(enum cc_log_level level, const char *logfile)
{
    min_level = level;
    if (gethostname(hostname, sizeof(hostname) - 1) != 0) strcpy(hostname, "localhost");
    if (logfile && *logfile) {
        FILE *f = fopen(logfile, "a");
        if (!f) return -1;
        setvbuf(f, NULL, _IOLBF, 0);
        log_file = f;
    }
    return 0;
}

void cc_log_close(void)
{
    if (log_file) fclose(log_file);
    log_file = NULL;
}

bool cc_log_enabled(enum cc_log_level level)
{
    return level >= min_level;
}

void cc_log(enum cc_log_level level, const char *module, const char *fmt, ...)
{
    if (level < min_level) return;
    char line[4096];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    localtime_r(&tv.tv_sec, &tm);
    int n = (int)strftime(line, sizeof(line), "[%Y-%m-%d %H:%M:%S", &tm);
    n += snprintf(line + n, sizeof(line) - (size_t)n,
                  ",%03d] %s/%s/cicada.%s: ", (int)(tv.tv_usec / 1000),
                  hostname[0] ? hostname : "localhost", level_names[level], module);
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    char *buf = line;
    if (m < 0) m = 0;
    if ((size_t)m + (size_t)n + 2 > sizeof(line)) { /* a long message, a traceback say */
        buf = cc_xmalloc((size_t)n + (size_t)m + 2);
        memcpy(buf, line, (size_t)n);
        vsnprintf(buf + n, (size_t)m + 1, fmt, ap2);
    }
    va_end(ap2);
    size_t len = (size_t)n + (size_t)m;
    cc_log_hook_cb *hook = atomic_load(&log_hook);
    if (hook) {
        buf[len] = '\0';
        hook(buf, len);
    }
    buf[len++] = '\n';
    FILE *f = log_file ? log_file : stderr;
    if (f == stderr) cc_status_clear();
    fwrite(buf, 1, len, f);
    fflush(f);
    if (buf != line) cc_free(buf);
}

void cc_log_set_hook(cc_log_hook_cb *cb)
{
    atomic_store(&log_hook, cb);
}

void cc_console(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cc_status_clear();
    flockfile(stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    funlockfile(stderr);
    va_end(ap);
}
