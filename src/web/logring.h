/* SPDX-License-Identifier: MIT */
/*
 * logring.h: the last log lines, kept for the web UI's Logs tab and /logs.
 *
 * While started, every line cc_log() writes (from any thread) is copied into a ring of the
 * last CC_LOGRING_LINES lines, each numbered from 1 in order. Readers ask for the lines after
 * the last number they have seen. Everything here is thread safe (one mutex).
 */
#ifndef CC_LOGRING_H
#define CC_LOGRING_H

#include "core/common.h"

#define CC_LOGRING_LINES    500
#define CC_LOGRING_LINE_MAX 8192 /* longer lines are cut */

/* Installs the log hook and starts keeping lines. */
void cc_logring_start(void);
/* Removes the hook and frees the lines. */
void cc_logring_stop(void);
/* Adds one line (what the log hook does; also for tests). */
void cc_logring_add(const char *line, size_t len);

typedef void cc_logring_line_cb(uint64_t seq, const char *line, void *arg);
/*
 * Calls |cb| for each kept line numbered above |after|, oldest first, with the ring locked
 * (|cb| must not log). Returns the number of the newest line (0 when none was ever kept).
 */
uint64_t cc_logring_since(uint64_t after, cc_logring_line_cb *cb, void *arg);

#endif
