/* SPDX-License-Identifier: MIT */
/* logring.c: the last log lines for the web UI; see logring.h. */
#include "web/logring.h"
#include "core/log.h"

#include <pthread.h>
#include <string.h>

static pthread_mutex_t ring_lock = PTHREAD_MUTEX_INITIALIZER;
static char *lines[CC_LOGRING_LINES]; /* by sequence number % CC_LOGRING_LINES */
static uint64_t last_seq;             /* number of the newest line; 0: none yet */

static void hook(const char *line, size_t len)
{
    cc_logring_add(line, len);
}

void cc_logring_start(void)
{
    cc_log_set_hook(hook);
}

void cc_logring_stop(void)
{
    cc_log_set_hook(NULL);
    pthread_mutex_lock(&ring_lock);
    for (size_t i = 0; i < CC_LOGRING_LINES; i++) {
        cc_free(lines[i]);
        lines[i] = NULL;
    }
    last_seq = 0;
    pthread_mutex_unlock(&ring_lock);
}

void cc_logring_add(const char *line, size_t len)
{
    if (len > CC_LOGRING_LINE_MAX) len = CC_LOGRING_LINE_MAX;
    char *copy = cc_xstrndup(line, len);
    pthread_mutex_lock(&ring_lock);
    uint64_t seq = ++last_seq;
    char **slot = &lines[seq % CC_LOGRING_LINES];
    char *old = *slot;
    *slot = copy;
    pthread_mutex_unlock(&ring_lock);
    cc_free(old);
}

uint64_t cc_logring_since(uint64_t after, cc_logring_line_cb *cb, void *arg)
{
    pthread_mutex_lock(&ring_lock);
    uint64_t last = last_seq;
    uint64_t first = last >= CC_LOGRING_LINES ? last - CC_LOGRING_LINES + 1 : 1;
    if (after + 1 > first) first = after + 1;
    for (uint64_t s = first; s <= last; s++) {
        const char *l = lines[s % CC_LOGRING_LINES];
        if (l) cb(s, l, arg);
    }
    pthread_mutex_unlock(&ring_lock);
    return last;
}
